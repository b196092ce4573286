//! Per-key chains: a packet's cost does not grow with the rules of other interfaces, marks or
//! hosts.
//!
//! A hub center holds a few rules for each of its thousand tunnels, all in the same base chains.
//! Walked one by one, they cost every packet a thousand comparisons (measured: 1,000 rules that
//! do not match cut a forwarding namespace's packet rate by 10x). So a rule part that names an
//! input interface, a connection mark or a destination host lives in a chain of its own for
//! that key (`forward.iif.c07-wg`), and its base chain holds, first of all, one dispatch rule per
//! kind of key: a lookup of the packet's key in a verdict map (`iifname vmap @forward.iif`),
//! whose element for the key jumps to that chain. A packet pays one hash lookup per kind of key
//! its base chain dispatches, then walks only its own key's rules; rules without a key stay in
//! the base chain, after the dispatch rules.
//!
//! Which key a part has is the first of its stage's kinds ([`Stage::keys`]) that its matches
//! name: a filter in `forward` or `local_in` by its interface (all those chains dispatch by),
//! an early one (`zones`) by its destination host if it names one, else its interface; a zone,
//! mark, connection mark, DNAT or NETMAP for one destination host is keyed by that host, else by
//! its interface; a connection mark's restore parts by the mark. The part keeps every match it
//! has, so its expressions (and `audit`) are the same wherever it lives.
//!
//! A key's chain and map element come with the key's first rule, in the same transaction, and
//! go with its last (`del`). The dispatch rules and their maps come with the base chains.

use std::ffi::{c_void, CString};
use std::net::IpAddr;
use std::ptr::NonNull;

use nftnl::expr::{Cmp, CmpOp, Conntrack, Expression, Ipv4HeaderField, Ipv6HeaderField, Meta};
use nftnl::expr::{NetworkHeaderField, Payload, Register};
use nftnl::nftnl_sys::{self as sys, libc};
use nftnl::{Chain, MsgType, NlMsg, Table};

use super::encode::{ifname, RuleComment, RuleMsg};
use crate::rule::{Match, Part, Stage};

/// What a per-key chain is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `iifname`
    Iif,
    /// `ct mark`
    CtMark,
    /// `ip daddr`, one host
    Dst4,
    /// `ip6 daddr`, one host
    Dst6,
}

/// The key of one per-key chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Iif(String),
    CtMark(u32),
    Dst(IpAddr),
}

/// nft's datatype numbers for set keys (nftables `enum datatypes`), so that `nft list` shows
/// the maps as `type ifname : verdict` and their elements by name.
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;
const TYPE_MARK: u32 = 19;
const TYPE_IFNAME: u32 = 41;
/// `NFT_DATA_VERDICT` (linux/netfilter/nf_tables.h): the map's values are verdicts.
const NFT_DATA_VERDICT: u32 = 0xffff_ff00;

impl KeyKind {
    fn label(self) -> &'static str {
        match self {
            KeyKind::Iif => "iif",
            KeyKind::CtMark => "ctmark",
            KeyKind::Dst4 => "dst4",
            KeyKind::Dst6 => "dst6",
        }
    }

    /// The verdict map of STAGE for this kind: `forward.iif`.
    pub fn map_name(self, stage: Stage) -> CString {
        cstring(format!("{}.{}", stage_name(stage), self.label()))
    }

    /// (nft datatype, length in bytes) of the key.
    fn key_type(self) -> (u32, u32) {
        match self {
            KeyKind::Iif => (TYPE_IFNAME, libc::IFNAMSIZ as u32),
            KeyKind::CtMark => (TYPE_MARK, 4),
            KeyKind::Dst4 => (TYPE_IPADDR, 4),
            KeyKind::Dst6 => (TYPE_IP6ADDR, 16),
        }
    }

    /// The byte order of the key as nft records it in a set's userdata
    /// (`NFTNL_UDATA_SET_KEYBYTEORDER`: nft's `BYTEORDER_HOST_ENDIAN` 1, `BYTEORDER_BIG_ENDIAN`
    /// 2), so that `nft list` shows the elements as names, marks and addresses; the kernel does
    /// not read it.
    fn byteorder(self) -> u32 {
        match self {
            KeyKind::Iif | KeyKind::CtMark => 1,
            KeyKind::Dst4 | KeyKind::Dst6 => 2,
        }
    }

    /// The comment of the dispatch rule (not a natctl id: `list` and `audit` pass it by).
    pub fn comment(self) -> String {
        format!("natctl dispatch by {}", self.label())
    }

    /// Whether PART names a key of this kind, and which.
    fn key_of(self, part: &Part) -> Option<Key> {
        part.matches.iter().find_map(|m| match (self, m) {
            (KeyKind::Iif, Match::Iif(name)) => Some(Key::Iif(name.clone())),
            (KeyKind::CtMark, Match::CtMark(mark)) => Some(Key::CtMark(*mark)),
            (KeyKind::Dst4, Match::Dst(net))
                if net.addr().is_ipv4() && net.prefix_len() == net.max_prefix_len() =>
            {
                Some(Key::Dst(net.addr()))
            }
            (KeyKind::Dst6, Match::Dst(net))
                if net.addr().is_ipv6() && net.prefix_len() == net.max_prefix_len() =>
            {
                Some(Key::Dst(net.addr()))
            }
            _ => None,
        })
    }
}

impl Stage {
    /// The kinds of key this base chain dispatches by (those its rule kinds can name), in the
    /// order a part is keyed by: a destination host first where rules name one, so that what
    /// a hub does for each of its tunnels' addresses on the one interface they are all reached
    /// by (`zone --iif br --dst 100.64.0.7`) is spread over the addresses; a filter only by its
    /// interface, since an interface's accepts and its default belong in one chain.
    pub fn keys(self) -> &'static [KeyKind] {
        use KeyKind::*;
        match self {
            Stage::Zones | Stage::Marks | Stage::Dstnat => &[Dst4, Dst6, Iif],
            Stage::Connmarks => &[Dst4, Dst6, Iif, CtMark],
            Stage::LocalMarks => &[CtMark, Dst4, Dst6],
            Stage::ZonesOut | Stage::MarksOut | Stage::Output => &[Dst4, Dst6],
            Stage::Srcnat | Stage::Input | Stage::Forward | Stage::LocalIn => &[Iif],
        }
    }
}

impl Key {
    pub fn kind(&self) -> KeyKind {
        match self {
            Key::Iif(_) => KeyKind::Iif,
            Key::CtMark(_) => KeyKind::CtMark,
            Key::Dst(IpAddr::V4(_)) => KeyKind::Dst4,
            Key::Dst(IpAddr::V6(_)) => KeyKind::Dst6,
        }
    }

    /// The key's chain in STAGE: `forward.iif.c07-wg`, `connmarks.ctmark.0x10007`,
    /// `zones.dst4.100.64.0.7`.
    pub fn chain_name(&self, stage: Stage) -> String {
        let value = match self {
            Key::Iif(name) => name.clone(),
            Key::CtMark(mark) => format!("{mark:#x}"),
            Key::Dst(addr) => addr.to_string(),
        };
        format!("{}.{}.{value}", stage_name(stage), self.kind().label())
    }

    /// The key as the map holds it (what the dispatch rule loads into its register).
    fn bytes(&self) -> Vec<u8> {
        match self {
            Key::Iif(name) => ifname(name).to_vec(),
            // marks are host-order u32s in registers, as `ct mark` loads them
            Key::CtMark(mark) => mark.to_ne_bytes().to_vec(),
            Key::Dst(IpAddr::V4(a)) => a.octets().to_vec(),
            Key::Dst(IpAddr::V6(a)) => a.octets().to_vec(),
        }
    }
}

/// The key PART is dispatched by in its stage; None: it lives in the base chain.
pub fn key_of(part: &Part) -> Option<Key> {
    part.stage.keys().iter().find_map(|k| k.key_of(part))
}

/// The name of the chain PART lives in.
pub fn chain_of(part: &Part) -> String {
    match key_of(part) {
        Some(key) => key.chain_name(part.stage),
        None => stage_name(part.stage),
    }
}

/// The chains RULE's parts live in, each once, in the order of its parts.
pub fn chains_of(rule: &crate::rule::Rule) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in rule.parts.iter().map(chain_of) {
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

fn stage_name(stage: Stage) -> String {
    stage.name().to_string_lossy().into_owned()
}

fn cstring(s: String) -> CString {
    // Chain, map and interface names hold no NUL: IfName refuses one, the rest are ours.
    CString::new(s).unwrap_or_default()
}

/// The chain named NAME in TABLE, as a message subject: a key's chain is a regular chain (no
/// hook), added idempotently (no NLM_F_EXCL) or deleted.
pub fn chain<'a>(table: &'a Table, name: &str) -> Chain<'a> {
    Chain::new(cstring(name.to_string()), table)
}

/// A verdict map of a base chain (`map forward.iif { type ifname : verdict }`), for adding
/// (idempotent).
pub struct DispatchMap {
    set: NonNull<sys::nftnl_set>,
}

impl DispatchMap {
    pub fn new(stage: Stage, kind: KeyKind, id: u32) -> DispatchMap {
        let set = super::allocated(
            // SAFETY: allocation only; NULL is handled by `allocated`.
            unsafe { sys::nftnl_set_alloc() },
        );
        let (key_type, key_len) = kind.key_type();
        let name = kind.map_name(stage);
        // one userdata record: type NFTNL_UDATA_SET_KEYBYTEORDER (0), length 4, a host-order u32
        let mut udata = vec![0u8, 4];
        udata.extend_from_slice(&kind.byteorder().to_ne_bytes());
        let s = set.as_ptr();
        // SAFETY: `s` is the set allocated above; each attribute is set with the setter of its
        // type, and the strings are NUL-terminated and copied by libnftnl before the call returns.
        unsafe {
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_FAMILY as u16, libc::NFPROTO_INET as u32);
            sys::nftnl_set_set_str(s, sys::NFTNL_SET_TABLE as u16, super::TABLE.as_ptr());
            sys::nftnl_set_set_str(s, sys::NFTNL_SET_NAME as u16, name.as_ptr());
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_ID as u16, id);
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_FLAGS as u16, libc::NFT_SET_MAP as u32);
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_KEY_TYPE as u16, key_type);
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_KEY_LEN as u16, key_len);
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_DATA_TYPE as u16, NFT_DATA_VERDICT);
            sys::nftnl_set_set_data(
                s,
                sys::NFTNL_SET_USERDATA as u16,
                udata.as_ptr().cast::<c_void>(),
                udata.len() as u32,
            );
        }
        DispatchMap { set }
    }
}

impl Drop for DispatchMap {
    fn drop(&mut self) {
        // SAFETY: `set` was allocated by `nftnl_set_alloc` and is freed once, here.
        unsafe { sys::nftnl_set_free(self.set.as_ptr()) }
    }
}

// SAFETY: `write` builds one NEWSET message at `buf`, which the caller sizes for
// `nft_nlmsg_maxsize()` bytes; a set without elements is a few hundred bytes.
unsafe impl NlMsg for DispatchMap {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, msg_type: MsgType) {
        // SAFETY: as above; without NLM_F_EXCL, an existing map is left as it is.
        unsafe {
            let kinds = (libc::NFT_MSG_NEWSET, libc::NFT_MSG_DELSET);
            let hdr = super::set::header(buf, seq, msg_type, kinds, false);
            sys::nftnl_set_nlmsg_build_payload(hdr, self.set.as_ptr());
        }
    }
}

/// A map element `KEY : jump CHAIN`: added (idempotent: no NLM_F_EXCL) with the key's first
/// rule, deleted with its last.
pub struct Element {
    map: CString,
    key: Vec<u8>,
    chain: CString,
}

impl Element {
    pub fn new(stage: Stage, key: &Key) -> Element {
        Element {
            map: key.kind().map_name(stage),
            key: key.bytes(),
            chain: cstring(key.chain_name(stage)),
        }
    }
}

// SAFETY: `write` builds one NEWSETELEM/DELSETELEM message of one element (a key of at most 16
// bytes and a chain name of at most a few hundred) at `buf`, sized by the caller for
// `nft_nlmsg_maxsize()` bytes.
unsafe impl NlMsg for Element {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, msg_type: MsgType) {
        // SAFETY: as above; the verdict and the chain's name are set with their setters (the
        // name is copied by libnftnl). Without NLM_F_EXCL, an existing element stays.
        unsafe {
            super::set::write_element(buf, seq, msg_type, false, (&self.map, &self.key), |elem| {
                sys::nftnl_set_elem_set_u32(
                    elem,
                    sys::NFTNL_SET_ELEM_VERDICT as u16,
                    libc::NFT_JUMP as u32,
                );
                sys::nftnl_set_elem_set_str(
                    elem,
                    sys::NFTNL_SET_ELEM_CHAIN as u16,
                    self.chain.as_ptr(),
                );
            });
        }
    }
}

/// `lookup` of register 1 in a verdict map: the map's verdict for the key (a jump to its
/// chain), or nothing when the key is not there.
struct VerdictLookup {
    map: CString,
    id: u32,
}

impl Expression for VerdictLookup {
    fn to_expr(&self, _rule: &nftnl::Rule) -> NonNull<sys::nftnl_expr> {
        // SAFETY: the expression is allocated here (non-NULL, see `allocated`) and filled with
        // the setter of each attribute's type; the name is copied by libnftnl.
        unsafe {
            let e = super::allocated(sys::nftnl_expr_alloc(c"lookup".as_ptr()));
            let p = e.as_ptr();
            sys::nftnl_expr_set_u32(
                p,
                sys::NFTNL_EXPR_LOOKUP_SREG as u16,
                Register::Reg1.to_raw(),
            );
            sys::nftnl_expr_set_u32(
                p,
                sys::NFTNL_EXPR_LOOKUP_DREG as u16,
                libc::NFT_REG_VERDICT as u32,
            );
            sys::nftnl_expr_set_str(p, sys::NFTNL_EXPR_LOOKUP_SET as u16, self.map.as_ptr());
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_LOOKUP_SET_ID as u16, self.id);
            e
        }
    }
}

/// The dispatch rule of KIND in CHAIN (the base chain of STAGE), inserted at its head:
/// `[meta nfproto ipv4|ipv6] LOAD vmap @MAP`. ID: the map's id in this transaction.
pub fn dispatch_rule<'a>(
    chain: &'a Chain<'a>,
    stage: Stage,
    kind: KeyKind,
    id: u32,
) -> RuleMsg<'a> {
    let mut r = nftnl::Rule::new(chain);
    match kind {
        KeyKind::Iif => r.add_expr(&Meta::IifName),
        KeyKind::CtMark => r.add_expr(&Conntrack::Mark { set: false }),
        KeyKind::Dst4 => {
            r.add_expr(&Meta::NfProto);
            r.add_expr(&Cmp::new(CmpOp::Eq, libc::NFPROTO_IPV4 as u8));
            r.add_expr(&Payload::Network(NetworkHeaderField::Ipv4(
                Ipv4HeaderField::Daddr,
            )));
        }
        KeyKind::Dst6 => {
            r.add_expr(&Meta::NfProto);
            r.add_expr(&Cmp::new(CmpOp::Eq, libc::NFPROTO_IPV6 as u8));
            r.add_expr(&Payload::Network(NetworkHeaderField::Ipv6(
                Ipv6HeaderField::Daddr,
            )));
        }
    }
    r.add_expr(&VerdictLookup {
        map: kind.map_name(stage),
        id,
    });
    let comment = RuleComment::new(kind.comment()).expect("a short comment without NUL");
    RuleMsg::new(r, comment, true)
}

/// The base chains whose dispatch rules are not all there: each with the handles of those it
/// has. They are made anew, all of them, so that they stand in key order at the head of the
/// chain (one added alone at the head would stand before the others). RULES: (chain, comment,
/// handle) of every rule in the table.
pub fn lacking<'a>(
    rules: impl Iterator<Item = (&'a str, Option<&'a str>, u64)> + Clone,
) -> Vec<(Stage, Vec<u64>)> {
    let mut out = Vec::new();
    for stage in Stage::ALL {
        let chain = stage_name(stage);
        let comments: Vec<String> = stage.keys().iter().map(|k| k.comment()).collect();
        let present: Vec<u64> = rules
            .clone()
            .filter(|(c, k, _)| *c == chain && k.is_some_and(|k| comments.iter().any(|m| m == k)))
            .map(|(_, _, handle)| handle)
            .collect();
        if present.len() != comments.len() {
            out.push((stage, present));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::{Action, Verdict};

    fn part(stage: Stage, matches: Vec<Match>) -> Part {
        Part {
            stage,
            matches,
            action: Action::Verdict {
                verdict: Verdict::Accept,
                at_head: false,
            },
        }
    }

    #[test]
    fn a_part_lives_in_the_chain_of_its_first_key() {
        let iif = Match::Iif("c07-wg".into());
        let host = Match::Dst("100.64.0.7/32".parse().unwrap());
        let host6 = Match::Dst("fd00::7/128".parse().unwrap());
        let net = Match::Dst("100.64.0.0/24".parse().unwrap());
        let cases = [
            (
                part(Stage::Forward, vec![iif.clone(), host.clone()]),
                "forward.iif.c07-wg",
            ),
            (
                part(Stage::Zones, vec![host.clone()]),
                "zones.dst4.100.64.0.7",
            ),
            (part(Stage::ZonesOut, vec![host6]), "zones_out.dst6.fd00::7"),
            (part(Stage::Zones, vec![net.clone()]), "zones"),
            // a stage that does not dispatch by destination keeps the part
            (part(Stage::Srcnat, vec![host]), "srcnat"),
            (
                part(
                    Stage::Connmarks,
                    vec![Match::CtReply, Match::CtMark(0x10007)],
                ),
                "connmarks.ctmark.0x10007",
            ),
            (part(Stage::Marks, vec![net]), "marks"),
        ];
        for (p, chain) in cases {
            assert_eq!(chain_of(&p), chain, "{p:?}");
        }
    }

    #[test]
    fn a_base_chain_lacking_any_dispatch_rule_has_them_all_made_anew() {
        let all = lacking(std::iter::empty::<(&str, Option<&str>, u64)>());
        assert_eq!(all.len(), Stage::ALL.len());
        assert!(all.iter().all(|(_, present)| present.is_empty()));
        let rules: Vec<(String, String, u64)> = Stage::ALL
            .iter()
            .flat_map(|s| s.keys().iter().map(move |k| (stage_name(*s), k.comment())))
            .zip(1..)
            .map(|((c, k), h)| (c, k, h))
            .collect();
        let view = |skip: Option<u64>| {
            rules
                .iter()
                .filter(move |(_, _, h)| Some(*h) != skip)
                .map(|(c, k, h)| (c.as_str(), Some(k.as_str()), *h))
        };
        assert!(lacking(view(None)).is_empty());
        // (zones loses one of its three: the two others are made anew with it)
        assert_eq!(lacking(view(Some(2))), vec![(Stage::Zones, vec![1, 3])]);
    }
}
