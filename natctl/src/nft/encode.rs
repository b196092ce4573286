//! Encodes a [`Rule`] as nftables expressions, the way `nft` itself would:
//! `meta nfproto`, `iifname`/`oifname`, address prefixes, `meta l4proto` + `th dport`,
//! a `counter` on every rule, then the statement.

use std::cell::RefCell;
use std::ffi::c_void;
use std::net::IpAddr;

use ipnet::IpNet;
use nftnl::expr::{
    Bitwise, Cmp, CmpOp, Conntrack, Counter, Immediate, Ipv4HeaderField, Ipv6HeaderField,
    Masquerade, Meta, NatType, NetworkHeaderField, Payload, Register, States as ConnState,
    TcpHeaderField, TransportHeaderField,
};
use nftnl::{Chain, MsgType, NlMsg, ProtoFamily};

use super::expr::{
    Ct, NatRange, RangeEq, SetLookup, IP_CT_DIR_ORIGINAL, IP_CT_DIR_REPLY, NF_NAT_RANGE_NETMAP,
};
use crate::rule::{Action, Family, Match, NatKind, Part, Rule, Verdict, ZoneDir};
use crate::set::OrSet;

/// `NFTA_RULE_USERDATA` (linux/netfilter/nf_tables.h).
const NFTA_RULE_USERDATA: u16 = 7;
/// `NFTNL_UDATA_RULE_COMMENT`: the userdata record nft shows as `comment "..."`.
const UDATA_COMMENT: u8 = 0;
/// The kernel keeps at most 256 bytes of rule userdata (`NFT_USERDATA_MAXLEN`).
const USERDATA_MAX: usize = 256;

/// Longest comment the kernel accepts: the userdata TLV (type, length, text, NUL) is
/// 2 + text + 1 bytes and must fit in the kernel's 256 (`NFT_USERDATA_MAXLEN`).
pub const COMMENT_MAX: usize = USERDATA_MAX - 3;

/// A rule comment that fits in the kernel's rule userdata: at most [`COMMENT_MAX`] bytes and no
/// NUL (the userdata record is NUL-terminated, and nft and `list` read it up to the first NUL).
/// [`RuleComment::new`] is the only way to make one, so [`RuleMsg`] never has to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleComment(String);

/// Why a text cannot be a rule comment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommentError {
    #[error("a rule comment of {len} bytes is too long ({COMMENT_MAX} bytes at most)")]
    TooLong { len: usize },
    #[error("a rule comment cannot hold a NUL byte (found at byte {at})")]
    Nul { at: usize },
}

impl RuleComment {
    pub fn new(text: String) -> Result<RuleComment, CommentError> {
        if text.len() > COMMENT_MAX {
            return Err(CommentError::TooLong { len: text.len() });
        }
        if let Some(at) = text.bytes().position(|b| b == 0) {
            return Err(CommentError::Nul { at });
        }
        Ok(RuleComment(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The userdata record nft shows as `comment "..."`: type, length (with the NUL), text,
    /// NUL. At most `USERDATA_MAX` bytes.
    fn udata(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.0.len() + 3);
        v.push(UDATA_COMMENT);
        // Cannot truncate: the text is at most COMMENT_MAX (253) bytes.
        v.push((self.0.len() + 1) as u8);
        v.extend_from_slice(self.0.as_bytes());
        v.push(0);
        v
    }
}

/// A rule message carrying a comment of up to [`COMMENT_MAX`] bytes. nftnl's `set_comment` caps
/// comments at 128 bytes, too short for two full IPv6 addresses plus ports and an interface,
/// so the userdata attribute is appended to the message nftnl writes.
pub struct RuleMsg<'a> {
    rule: nftnl::Rule<'a>,
    comment: RuleComment,
    /// Insert at the head of the chain (nft `insert rule`): the add message without
    /// NLM_F_APPEND (and without a position) puts the rule first.
    at_head: bool,
}

// SAFETY: `write` puts nftnl's own rule message at `buf`, then one NFTA_RULE_USERDATA attribute
// right after it: 4 header bytes + at most USERDATA_MAX (256) bytes of userdata, which
// RuleComment guarantees. The rules natctl builds have at most two dozen expressions, so the
// whole message stays a few KiB, far below the `nft_nlmsg_maxsize()` bytes that `NlMsg`
// promises at `buf`.
unsafe impl NlMsg for RuleMsg<'_> {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, msg_type: MsgType) {
        let userdata = self.comment.udata();
        let attr_len = 4 + userdata.len();
        // SAFETY: the caller gives `buf` room for `nft_nlmsg_maxsize()` bytes, 4-aligned (nftnl
        // batch messages start at NLMSG_ALIGN'ed offsets of a malloc'ed buffer), which is what
        // nftnl's `write` needs too. After it, `buf` starts with a complete nlmsghdr, so reading
        // and updating `nlmsg_len` is in bounds and aligned. The attribute is written at the
        // 4-aligned end of that message and spans align4(attr_len) <= 260 bytes, in bounds as
        // argued on the impl above; the u16 stores are unaligned writes, and `userdata` is a
        // separate allocation, so the copy does not overlap.
        unsafe {
            self.rule.write(buf, seq, msg_type);
            let hdr = buf.cast::<libc::nlmsghdr>();
            let start = align4((*hdr).nlmsg_len as usize);
            let at = buf.cast::<u8>().add(start);
            std::ptr::write_bytes(at, 0, align4(attr_len));
            at.cast::<u16>().write_unaligned(attr_len as u16);
            at.add(2).cast::<u16>().write_unaligned(NFTA_RULE_USERDATA);
            std::ptr::copy_nonoverlapping(userdata.as_ptr(), at.add(4), userdata.len());
            (*hdr).nlmsg_len = (start + align4(attr_len)) as u32;
            if self.at_head {
                (*hdr).nlmsg_flags &= !(libc::NLM_F_APPEND as u16);
            }
        }
    }
}

impl<'a> RuleMsg<'a> {
    /// RULE with COMMENT, inserted at the head of its chain (AT_HEAD) or appended.
    pub fn new(rule: nftnl::Rule<'a>, comment: RuleComment, at_head: bool) -> RuleMsg<'a> {
        RuleMsg {
            rule,
            comment,
            at_head,
        }
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Builds the message for `part` of `rule` in `chain` (the chain of `part.stage`). Refuses a
/// rule whose comment (its canonical arguments) does not fit in the kernel's userdata.
pub fn rule_msg<'a>(
    chain: &'a Chain<'a>,
    rule: &Rule,
    part: &Part,
) -> Result<RuleMsg<'a>, CommentError> {
    let comment = RuleComment::new(rule.comment())?;
    Ok(RuleMsg::new(
        expressions(chain, rule, part),
        comment,
        part.at_head(),
    ))
}

/// `part` of `rule` in `chain` as nftnl expressions, without its comment.
fn expressions<'a>(chain: &'a Chain<'a>, rule: &Rule, part: &Part) -> nftnl::Rule<'a> {
    let mut r = nftnl::Rule::new(chain);
    if let Some(f) = rule.family {
        r.add_expr(&Meta::NfProto);
        r.add_expr(&Cmp::new(CmpOp::Eq, nfproto(f)));
    }
    // (the lookups in sets after the other matches, so that an element's counter counts only
    // what the whole rule matched; the lookup in the map the statement takes its value from
    // last, since it leaves the value in register 1 for the statement)
    let value_map = part.action.map();
    let (lookups, plain): (Vec<&Match>, Vec<&Match>) =
        part.matches.iter().partition(|m| lookup_set(m).is_some());
    let (valued, members): (Vec<&Match>, Vec<&Match>) = lookups
        .into_iter()
        .partition(|m| value_map.is_some() && lookup_set(m) == value_map);
    for m in plain {
        add_match(&mut r, m);
    }
    for (m, dreg) in members
        .into_iter()
        .map(|m| (m, None))
        .chain(valued.into_iter().map(|m| (m, Some(Register::Reg1))))
    {
        add_lookup(&mut r, m, rule.family, dreg);
    }
    r.add_expr(&Counter);
    add_action(&mut r, &part.action, rule.family);
    r
}

/// The shape ([`list::shape_of`](super::list)) of `part` of `rule` as natctl encodes it: what
/// the kernel's copy of that nftables rule must have to be the rule its comment names.
pub fn part_shape(rule: &Rule, part: &Part) -> Vec<u8> {
    let table = super::table();
    let chain = part.stage.chain(&table);
    // (the comment is no part of a shape: left out, it is neither formatted nor parsed)
    let msg = expressions(&chain, rule, part);
    // (one buffer for every part a listing audits: a fresh zeroed one each time was a tenth of
    // `natctl list` at 16,000 rules)
    thread_local! {
        // u32 words: the buffer must be 4-aligned like nftnl's batch pages.
        static BUF: RefCell<Vec<u32>> =
            RefCell::new(vec![0u32; nftnl::nft_nlmsg_maxsize() as usize / 4]);
    }
    BUF.with_borrow_mut(|buf| {
        // SAFETY: `buf` is 4-aligned and holds nft_nlmsg_maxsize() bytes, as `write` requires
        // (what an earlier part left in it is overwritten: `write` sets every byte up to the
        // nlmsg_len it writes); it then starts with a complete rule message, which libnftnl
        // parses (reading within its nlmsg_len) into the rule allocated here (non-NULL, see
        // `allocated`), freed before return.
        unsafe {
            msg.write(buf.as_mut_ptr().cast(), 0, MsgType::Add);
            let r = super::allocated(nftnl::nftnl_sys::nftnl_rule_alloc()).as_ptr();
            let parsed = nftnl::nftnl_sys::nftnl_rule_nlmsg_parse(buf.as_ptr().cast(), r);
            let shape = if parsed < 0 {
                Vec::new()
            } else {
                super::list::shape_of(r)
            };
            nftnl::nftnl_sys::nftnl_rule_free(r);
            shape
        }
    })
}

fn nfproto(f: Family) -> u8 {
    match f {
        Family::V4 => libc::NFPROTO_IPV4 as u8,
        Family::V6 => libc::NFPROTO_IPV6 as u8,
    }
}

/// An interface name as nft compares it: IFNAMSIZ bytes, NUL-padded.
pub fn ifname(name: &str) -> [u8; libc::IFNAMSIZ] {
    let mut b = [0u8; libc::IFNAMSIZ];
    b[..name.len()].copy_from_slice(name.as_bytes());
    b
}

fn addr_bytes(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn add_match(r: &mut nftnl::Rule, m: &Match) {
    match m {
        Match::Iif(name) => {
            r.add_expr(&Meta::IifName);
            r.add_expr(&Cmp::new(CmpOp::Eq, &ifname(name)[..]));
        }
        Match::IifIn(_) | Match::DstIn(_) | Match::CtMarkIn(_) | Match::IifMarkNotIn(_) => {
            add_lookup(r, m, None, None)
        }
        Match::Oif(name) => {
            r.add_expr(&Meta::OifName);
            r.add_expr(&Cmp::new(CmpOp::Eq, &ifname(name)[..]));
        }
        Match::Src(net) => add_prefix(r, net, true),
        Match::Dst(net) => add_prefix(r, net, false),
        Match::Proto(p) => {
            r.add_expr(&Meta::L4Proto);
            r.add_expr(&Cmp::new(CmpOp::Eq, *p));
        }
        Match::Dport(first, last) => {
            // TCP and UDP keep the destination port at the same offset.
            r.add_expr(&Payload::Transport(TransportHeaderField::Tcp(
                TcpHeaderField::Dport,
            )));
            if first == last {
                r.add_expr(&Cmp::new(CmpOp::Eq, &first.to_be_bytes()[..]));
            } else {
                r.add_expr(&RangeEq {
                    from: first.to_be_bytes().to_vec(),
                    to: last.to_be_bytes().to_vec(),
                });
            }
        }
        Match::CtReply => {
            r.add_expr(&Ct::direction());
            r.add_expr(&Cmp::new(CmpOp::Eq, IP_CT_DIR_REPLY));
        }
        Match::CtOriginal => {
            r.add_expr(&Ct::direction());
            r.add_expr(&Cmp::new(CmpOp::Eq, IP_CT_DIR_ORIGINAL));
        }
        Match::CtNew => {
            // As nft encodes `ct state new`: load the state bits, keep NEW's, compare with 0.
            let new = ConnState::NEW.bits();
            r.add_expr(&Conntrack::State);
            r.add_expr(&Bitwise::new(new, 0u32));
            r.add_expr(&Cmp::new(CmpOp::Neq, 0u32));
        }
        Match::CtMark(mark) => {
            // marks are host-order u32s, loaded and compared as nft does.
            r.add_expr(&Conntrack::Mark { set: false });
            r.add_expr(&Cmp::new(CmpOp::Eq, *mark));
        }
        Match::CtMarkNot(mark) => {
            r.add_expr(&Conntrack::Mark { set: false });
            r.add_expr(&Cmp::new(CmpOp::Neq, *mark));
        }
    }
}

/// The set a match looks the packet up in, if it does.
fn lookup_set(m: &Match) -> Option<&str> {
    match m {
        Match::IifIn(set) | Match::DstIn(set) | Match::CtMarkIn(set) | Match::IifMarkNotIn(set) => {
            Some(set)
        }
        _ => None,
    }
}

/// A lookup in a set of natctl's: the key loaded into register 1 (the interface's name, or the
/// destination of FAMILY: IPv4 unless IPv6), then looked up; with DREG, the map's value loaded
/// there.
fn add_lookup(r: &mut nftnl::Rule, m: &Match, family: Option<Family>, dreg: Option<Register>) {
    let set = match m {
        Match::IifIn(set) => {
            r.add_expr(&Meta::IifName);
            set
        }
        Match::DstIn(set) => {
            r.add_expr(&Payload::Network(match family {
                Some(Family::V6) => NetworkHeaderField::Ipv6(Ipv6HeaderField::Daddr),
                _ => NetworkHeaderField::Ipv4(Ipv4HeaderField::Daddr),
            }));
            set
        }
        Match::CtMarkIn(set) => {
            r.add_expr(&Conntrack::Mark { set: false });
            set
        }
        Match::IifMarkNotIn(set) => {
            // (the name fills register 1, the mark the first word after it: one key of both)
            r.add_expr(&Meta::IifName);
            r.add_expr(&Ct::mark_into(Register::Reg2));
            set
        }
        _ => return add_match(r, m),
    };
    r.add_expr(&SetLookup {
        // (a set name holds no NUL: SetName refuses one)
        set: std::ffi::CString::new(set.as_str()).unwrap_or_default(),
        dreg,
        inverted: matches!(m, Match::IifMarkNotIn(_)),
    });
}

/// `ip saddr NET` and friends: load the address, mask it unless the prefix is full, compare.
fn add_prefix(r: &mut nftnl::Rule, net: &IpNet, source: bool) {
    if net.prefix_len() == 0 {
        return; // matches every address of the family; `meta nfproto` already checked that
    }
    let field = match (net, source) {
        (IpNet::V4(_), true) => NetworkHeaderField::Ipv4(Ipv4HeaderField::Saddr),
        (IpNet::V4(_), false) => NetworkHeaderField::Ipv4(Ipv4HeaderField::Daddr),
        (IpNet::V6(_), true) => NetworkHeaderField::Ipv6(Ipv6HeaderField::Saddr),
        (IpNet::V6(_), false) => NetworkHeaderField::Ipv6(Ipv6HeaderField::Daddr),
    };
    r.add_expr(&Payload::Network(field));
    let network = addr_bytes(&net.network());
    if net.prefix_len() < net.max_prefix_len() {
        let mask = addr_bytes(&net.netmask());
        let zero = vec![0u8; mask.len()];
        r.add_expr(&Bitwise::new(mask.as_slice(), zero.as_slice()));
    }
    r.add_expr(&Cmp::new(CmpOp::Eq, network.as_slice()));
}

fn add_action(r: &mut nftnl::Rule, action: &Action, family: Option<Family>) {
    match action {
        Action::Masquerade => r.add_expr(&Masquerade),
        Action::Nat {
            kind,
            min,
            max,
            ports,
            netmap,
        } => {
            let family = match min {
                IpAddr::V4(_) => ProtoFamily::Ipv4,
                IpAddr::V6(_) => ProtoFamily::Ipv6,
            };
            load_addr(r, min, Register::Reg1);
            let addr_max = (max != min).then(|| {
                load_addr(r, max, Register::Reg2);
                Register::Reg2
            });
            let (proto_min, proto_max) = match ports {
                None => (None, None),
                Some((first, last)) => {
                    r.add_expr(&Immediate::new(first.to_be_bytes(), Register::Reg3));
                    let max = (first != last).then(|| {
                        r.add_expr(&Immediate::new(last.to_be_bytes(), Register::Reg4));
                        Register::Reg4
                    });
                    (Some(Register::Reg3), max)
                }
            };
            r.add_expr(&NatRange {
                nat_type: match kind {
                    NatKind::Snat => NatType::SNat,
                    NatKind::Dnat => NatType::DNat,
                },
                family,
                addr_min: Register::Reg1,
                addr_max,
                proto_min,
                proto_max,
                flags: if *netmap { NF_NAT_RANGE_NETMAP } else { 0 },
            });
        }
        Action::NatMap { kind, map: _ } => r.add_expr(&NatRange {
            nat_type: match kind {
                NatKind::Snat => NatType::SNat,
                NatKind::Dnat => NatType::DNat,
            },
            family: match family {
                Some(Family::V6) => ProtoFamily::Ipv6,
                _ => ProtoFamily::Ipv4,
            },
            // (the map's value, which its lookup left there)
            addr_min: Register::Reg1,
            addr_max: None,
            proto_min: None,
            proto_max: None,
            flags: 0,
        }),
        Action::Zone { zone, dir } => {
            // conntrack zones are host-order u16s; Immediate copies the raw bytes. (From a map,
            // its lookup left the zone in register 1.)
            if let OrSet::Given(zone) = zone {
                r.add_expr(&Immediate::new(*zone, Register::Reg1));
            }
            r.add_expr(&Ct::zone_set(match dir {
                ZoneDir::Both => None,
                ZoneDir::Original => Some(0),
                ZoneDir::Reply => Some(1),
            }));
        }
        Action::Mark(mark) => {
            if let OrSet::Given(mark) = mark {
                r.add_expr(&Immediate::new(*mark, Register::Reg1));
            }
            r.add_expr(&Meta::Mark { set: true });
        }
        Action::CtMark(mark) => {
            if let OrSet::Given(mark) = mark {
                r.add_expr(&Immediate::new(*mark, Register::Reg1));
            }
            r.add_expr(&Conntrack::Mark { set: true });
        }
        Action::MarkFromCt => {
            r.add_expr(&Conntrack::Mark { set: false });
            r.add_expr(&Meta::Mark { set: true });
        }
        Action::Verdict { verdict, .. } => r.add_expr(&match verdict {
            Verdict::Accept => nftnl::expr::Verdict::Accept,
            Verdict::Drop => nftnl::expr::Verdict::Drop,
        }),
    }
}

fn load_addr(r: &mut nftnl::Rule, a: &IpAddr, reg: Register) {
    match a {
        IpAddr::V4(a) => r.add_expr(&Immediate::new(a.octets(), reg)),
        IpAddr::V6(a) => r.add_expr(&Immediate::new(a.octets(), reg)),
    }
}

#[cfg(test)]
mod tests {
    use nftnl::{nft_nlmsg_maxsize, MsgType, NlMsg};

    use super::*;
    use crate::nft::{list, table, Stage};
    use crate::rule::Arg;

    /// Writes `msg` as a batch would and returns the netlink message's bytes.
    fn written(msg: &RuleMsg) -> Vec<u8> {
        // u32 words: the buffer must be 4-aligned like nftnl's batch pages.
        let mut buf = vec![0u32; nft_nlmsg_maxsize() as usize / 4];
        // SAFETY: `buf` is 4-aligned and holds nft_nlmsg_maxsize() bytes, as `write` requires.
        unsafe { msg.write(buf.as_mut_ptr().cast(), 1, MsgType::Add) };
        let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let len = u32::from_ne_bytes(bytes[..4].try_into().unwrap()) as usize;
        bytes[..len].to_vec()
    }

    /// The attributes after nlmsghdr (16 bytes) and nfgenmsg (4): (type, whole TLV with padding).
    fn attributes(msg: &[u8]) -> Vec<(u16, &[u8])> {
        let mut out = Vec::new();
        let mut at = 20;
        while at < msg.len() {
            let len = u16::from_ne_bytes([msg[at], msg[at + 1]]) as usize;
            let kind = u16::from_ne_bytes([msg[at + 2], msg[at + 3]]) & 0x3fff;
            let end = at + align4(len);
            out.push((kind, &msg[at..end]));
            at = end;
        }
        assert_eq!(at, msg.len(), "attributes end where nlmsg_len says");
        out
    }

    fn masquerade(oif: &str) -> Rule {
        Rule {
            kind: "masquerade",
            family: None,
            parts: vec![Part {
                stage: Stage::Srcnat,
                matches: vec![Match::Oif(oif.into())],
                action: Action::Masquerade,
            }],
            args: vec![("oif", Some(Arg::text(oif)))],
        }
    }

    #[test]
    fn comment_is_the_last_attribute_byte_for_byte() {
        let table = table();
        let chain = Stage::Srcnat.chain(&table);
        let msg = RuleMsg {
            rule: nftnl::Rule::new(&chain),
            comment: RuleComment::new("hi".into()).unwrap(),
            at_head: false,
        };
        let bytes = written(&msg);
        let attrs = attributes(&bytes);
        let (kind, tlv) = *attrs.last().unwrap();
        assert_eq!(kind, NFTA_RULE_USERDATA);
        let mut want = Vec::new();
        want.extend_from_slice(&9u16.to_ne_bytes()); // 4 + userdata [0, 3, 'h', 'i', 0]
        want.extend_from_slice(&7u16.to_ne_bytes()); // NFTA_RULE_USERDATA
        want.extend_from_slice(&[0, 3, b'h', b'i', 0]); // comment record: type 0, len 3
        want.extend_from_slice(&[0, 0, 0]); // padding to 4 bytes
        assert_eq!(tlv, &want[..]);
        // nftnl's own attributes come first, and name the table and chain.
        assert!(
            attrs
                .iter()
                .filter(|(k, _)| *k == NFTA_RULE_USERDATA)
                .count()
                == 1
        );
        assert!(bytes.windows(7).any(|w| w == b"natctl\0"));
        assert!(bytes.windows(7).any(|w| w == b"srcnat\0"));
    }

    #[test]
    fn a_rule_reads_back_its_comment() {
        let table = table();
        let chain = Stage::Srcnat.chain(&table);
        let rule = masquerade("wan0");
        let bytes = written(&rule_msg(&chain, &rule, &rule.parts[0]).unwrap());
        let (kind, tlv) = *attributes(&bytes).last().unwrap();
        assert_eq!(kind, NFTA_RULE_USERDATA);
        let len = u16::from_ne_bytes([tlv[0], tlv[1]]) as usize;
        assert_eq!(len, 4 + 2 + rule.comment().len() + 1);
        assert_eq!(
            list::comment_of(&tlv[4..len]).as_deref(),
            Some(rule.comment().as_str())
        );
    }

    #[test]
    fn the_longest_comment_fills_the_userdata() {
        let table = table();
        let chain = Stage::Srcnat.chain(&table);
        let text = "x".repeat(COMMENT_MAX);
        let msg = RuleMsg {
            rule: nftnl::Rule::new(&chain),
            comment: RuleComment::new(text.clone()).unwrap(),
            at_head: false,
        };
        let bytes = written(&msg);
        let (_, tlv) = *attributes(&bytes).last().unwrap();
        assert_eq!(tlv.len(), 4 + USERDATA_MAX);
        assert_eq!(&tlv[..2], &(4 + USERDATA_MAX as u16).to_ne_bytes());
        assert_eq!(&tlv[4..6], &[UDATA_COMMENT, 254]);
        assert_eq!(&tlv[6..6 + COMMENT_MAX], text.as_bytes());
        assert_eq!(tlv[6 + COMMENT_MAX], 0);
    }

    #[test]
    fn an_over_long_comment_is_refused() {
        let e = RuleComment::new("x".repeat(COMMENT_MAX + 1)).unwrap_err();
        assert_eq!(e, CommentError::TooLong { len: 254 });
        assert_eq!(
            e.to_string(),
            "a rule comment of 254 bytes is too long (253 bytes at most)"
        );
        let table = table();
        let chain = Stage::Srcnat.chain(&table);
        let rule = masquerade(&"w".repeat(COMMENT_MAX));
        let err = rule_msg(&chain, &rule, &rule.parts[0])
            .err()
            .expect("refused");
        assert_eq!(
            err,
            CommentError::TooLong {
                len: rule.comment().len()
            }
        );
    }

    #[test]
    fn a_rule_at_the_head_is_added_without_append() {
        let table = table();
        let chain = Stage::Forward.chain(&table);
        let flags = |at_head: bool| {
            let msg = RuleMsg {
                rule: nftnl::Rule::new(&chain),
                comment: RuleComment::new("x".into()).unwrap(),
                at_head,
            };
            let bytes = written(&msg);
            u16::from_ne_bytes([bytes[6], bytes[7]])
        };
        let append = libc::NLM_F_APPEND as u16;
        assert_eq!(flags(false) & append, append);
        assert_eq!(flags(true) & append, 0);
        assert_eq!(flags(true) | append, flags(false));
    }

    #[test]
    fn a_nul_is_refused() {
        assert_eq!(
            RuleComment::new("a\0b".into()),
            Err(CommentError::Nul { at: 1 })
        );
    }
}
