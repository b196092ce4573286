//! Reads natctl's table back from the kernel through raw `nftnl_sys` (the nftnl crate can only
//! list table names): every rule's chain, handle, comment, counter and the shape of its
//! expressions (what `audit` compares with what the comment's id stands for); and the names of
//! every table in the namespace.

use std::borrow::Cow;
use std::collections::HashSet;
use std::ffi::{c_char, CStr, CString};
use std::io;

use common::Kind;
use nftnl::nftnl_sys::{self as sys, libc};

use super::batch;
use super::TABLE;

/// One rule in natctl's table as the kernel has it.
#[derive(Debug, Clone)]
pub struct KernelRule {
    pub chain: String,
    pub handle: u64,
    /// The userdata comment, if the rule has one.
    pub comment: Option<String>,
    pub packets: u64,
    pub bytes: u64,
    /// The rule's expressions, normalised for comparison ([`shape_of`]).
    pub shape: Vec<u8>,
    /// Packets can reach it: it is in a base chain, or in a key's chain that an element of its
    /// dispatch map leads to (an element deleted with `nft` leaves the chain's rules unreached).
    pub reachable: bool,
}

impl KernelRule {
    /// The natctl id its comment carries (None: not a rule natctl wrote).
    pub fn id(&self) -> Option<&str> {
        crate::rule::parse_comment(self.comment.as_deref()?).map(|(id, _)| id)
    }
}

/// A request: the nfnetlink header for `msg_type` in `family`, then what `fill` appends to the
/// message at the header it is given (in a buffer of `nft_nlmsg_maxsize()` bytes).
pub(super) fn request_msg(
    msg_type: i32,
    family: u16,
    flags: i32,
    seq: u32,
    fill: impl FnOnce(*mut libc::nlmsghdr),
) -> Vec<u8> {
    // u32 words: libnftnl writes through an `nlmsghdr *`, which must be 4-aligned.
    let mut buf = vec![0u32; nftnl::nft_nlmsg_maxsize() as usize / 4];
    // SAFETY: `buf` is 4-aligned and nft_nlmsg_maxsize() bytes long; libnftnl writes the 20
    // bytes of nlmsghdr + nfgenmsg at its start and returns a pointer to that header.
    let hdr = unsafe {
        sys::nftnl_nlmsg_build_hdr(
            buf.as_mut_ptr().cast::<c_char>(),
            msg_type as u16,
            family,
            flags as u16,
            seq,
        )
    };
    fill(hdr);
    // SAFETY: `hdr` points at the initialised, aligned header at the start of `buf`, which is
    // still alive and not otherwise borrowed.
    let len = unsafe { (*hdr).nlmsg_len } as usize;
    buf.iter().flat_map(|w| w.to_ne_bytes()).take(len).collect()
}

/// Every rule in `table inet natctl`, in chain order. An absent table gives an empty list.
pub fn rules() -> io::Result<Vec<KernelRule>> {
    let mut out = dump_rules(None)?;
    // (a base chain's name has no dot; a key's chain is named STAGE.KIND.VALUE)
    // (the maps asked are those of the key chains present: a key chain STAGE.KIND.VALUE is
    // reached through the map STAGE.KIND; neither a stage nor a kind has a dot)
    let maps: HashSet<String> = out
        .iter()
        .filter_map(|k| {
            let mut parts = k.chain.splitn(3, '.');
            let (stage, kind, _) = (parts.next()?, parts.next()?, parts.next()?);
            Some(format!("{stage}.{kind}"))
        })
        .collect();
    if !maps.is_empty() {
        let maps: Vec<String> = maps.into_iter().collect();
        let targets = jump_targets(&maps)?;
        for k in &mut out {
            k.reachable = !k.chain.contains('.') || targets.contains(&k.chain);
        }
    }
    Ok(out)
}

/// The rules of natctl's chains CHAINS, each asked for by name (the kernel looks the chain up
/// and dumps only its rules): what `del` needs of a big table, whose whole dump costs time in
/// proportion to the table. Their `reachable` is not looked at (true). A chain that is not
/// there has no rules.
pub fn rules_in(chains: &[String]) -> io::Result<Vec<KernelRule>> {
    let mut out = Vec::new();
    for chain in chains {
        let Ok(name) = CString::new(chain.as_str()) else {
            continue;
        };
        out.extend(dump_rules(Some(&name))?);
    }
    Ok(out)
}

/// The rules of natctl's table, or of its chain CHAIN only.
fn dump_rules(chain: Option<&CStr>) -> io::Result<Vec<KernelRule>> {
    let seq = 1;
    let family = libc::NFPROTO_INET as u16;
    let msg = request_msg(
        libc::NFT_MSG_GETRULE,
        family,
        libc::NLM_F_DUMP,
        seq,
        |hdr| {
            // SAFETY: `hdr` is the header request_msg just built, with a maximum-size message's
            // room after it for the few bytes of a table and a chain name. The rule is
            // allocated here (non-NULL, see `allocated`), TABLE and CHAIN are NUL-terminated and
            // copied by libnftnl, and the rule is freed once its attributes are written into the
            // message, which keeps no pointer to it.
            unsafe {
                let r = super::allocated(sys::nftnl_rule_alloc()).as_ptr();
                sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_TABLE as u16, TABLE.as_ptr());
                if let Some(chain) = chain {
                    sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_CHAIN as u16, chain.as_ptr());
                }
                sys::nftnl_rule_nlmsg_build_payload(hdr, r);
                sys::nftnl_rule_free(r);
            }
        },
    );
    let mut out = Vec::new();
    match batch::request(&msg, seq, parse_rule, &mut out) {
        Ok(()) => Ok(out),
        Err(e) if Kind::of(&e) == Kind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The chains that the elements of natctl's dispatch maps MAPS jump to.
fn jump_targets(maps: &[String]) -> io::Result<HashSet<String>> {
    let seq = 1;
    let mut out = HashSet::new();
    for map in maps {
        let Ok(map) = CString::new(map.as_str()) else {
            continue;
        };
        let msg = request_msg(
            libc::NFT_MSG_GETSETELEM,
            libc::NFPROTO_INET as u16,
            libc::NLM_F_DUMP,
            seq,
            |hdr| {
                // SAFETY: as in `rules`, with a set (naming the table and the map) whose
                // element list is empty: the request asks for its elements.
                unsafe {
                    let s = super::allocated(sys::nftnl_set_alloc()).as_ptr();
                    sys::nftnl_set_set_str(s, sys::NFTNL_SET_TABLE as u16, TABLE.as_ptr());
                    sys::nftnl_set_set_str(s, sys::NFTNL_SET_NAME as u16, map.as_ptr());
                    sys::nftnl_set_elems_nlmsg_build_payload(hdr, s);
                    sys::nftnl_set_free(s);
                }
            },
        );
        match batch::request(&msg, seq, parse_targets, &mut out) {
            Ok(()) => {}
            // (a map not made yet: no element)
            Err(e) if Kind::of(&e) == Kind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn parse_targets(hdr: &libc::nlmsghdr, out: &mut HashSet<String>) -> libc::c_int {
    // SAFETY: `hdr` is a whole NEWSETELEM message that libmnl has length-checked inside our
    // receive buffer. The set and the element iterator are allocated here (non-NULL, see
    // `allocated`) and freed on every path out; each chain name libnftnl returns points into the
    // parsed set and is copied before the set is freed.
    unsafe {
        let s = super::allocated(sys::nftnl_set_alloc()).as_ptr();
        if sys::nftnl_set_elems_nlmsg_parse(hdr, s) < 0 {
            sys::nftnl_set_free(s);
            return mnl::mnl_sys::MNL_CB_ERROR;
        }
        let it = super::allocated(sys::nftnl_set_elems_iter_create(s)).as_ptr();
        loop {
            let e = sys::nftnl_set_elems_iter_next(it);
            if e.is_null() {
                break;
            }
            if sys::nftnl_set_elem_is_set(e, sys::NFTNL_SET_ELEM_CHAIN as u16) {
                let chain = sys::nftnl_set_elem_get_str(e, sys::NFTNL_SET_ELEM_CHAIN as u16);
                if !chain.is_null() {
                    out.insert(CStr::from_ptr(chain).to_string_lossy().into_owned());
                }
            }
        }
        sys::nftnl_set_elems_iter_destroy(it);
        sys::nftnl_set_free(s);
    }
    mnl::mnl_sys::MNL_CB_OK
}

/// Whether `table inet natctl` exists.
pub fn table_exists() -> io::Result<bool> {
    let seq = 1;
    let family = libc::NFPROTO_INET as u16;
    let msg = request_msg(
        libc::NFT_MSG_GETTABLE,
        family,
        libc::NLM_F_ACK,
        seq,
        |hdr| {
            // SAFETY: as in `rules`, with a table object instead of a rule.
            unsafe {
                let t = super::allocated(sys::nftnl_table_alloc()).as_ptr();
                sys::nftnl_table_set_str(t, sys::NFTNL_TABLE_NAME as u16, TABLE.as_ptr());
                sys::nftnl_table_nlmsg_build_payload(hdr, t);
                sys::nftnl_table_free(t);
            }
        },
    );
    match batch::request(&msg, seq, |_, _| mnl::mnl_sys::MNL_CB_OK, &mut ()) {
        Ok(()) => Ok(true),
        Err(e) if Kind::of(&e) == Kind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn parse_rule(hdr: &libc::nlmsghdr, out: &mut Vec<KernelRule>) -> libc::c_int {
    // SAFETY: `hdr` is a whole NEWRULE message that libmnl has length-checked inside our
    // receive buffer. The rule and the expression iterator are allocated here (non-NULL, see
    // `allocated`) and freed on every path out. Every string or data pointer libnftnl returns
    // points into the parsed rule and is copied before the rule is freed; a missing chain name
    // (NULL) is refused as a malformed message, and an expression's name is never NULL (libnftnl
    // parses only expressions of a known type, whose name it sets).
    unsafe {
        let r = super::allocated(sys::nftnl_rule_alloc()).as_ptr();
        if sys::nftnl_rule_nlmsg_parse(hdr, r) < 0 {
            sys::nftnl_rule_free(r);
            return mnl::mnl_sys::MNL_CB_ERROR;
        }
        let chain = sys::nftnl_rule_get_str(r, sys::NFTNL_RULE_CHAIN as u16);
        if chain.is_null() {
            sys::nftnl_rule_free(r);
            return mnl::mnl_sys::MNL_CB_ERROR;
        }
        let chain = CStr::from_ptr(chain).to_string_lossy().into_owned();
        let handle = sys::nftnl_rule_get_u64(r, sys::NFTNL_RULE_HANDLE as u16);
        let mut comment = None;
        if sys::nftnl_rule_is_set(r, sys::NFTNL_RULE_USERDATA as u16) {
            let mut len = 0u32;
            let data = sys::nftnl_rule_get_data(r, sys::NFTNL_RULE_USERDATA as u16, &mut len);
            if !data.is_null() {
                let bytes = std::slice::from_raw_parts(data.cast::<u8>(), len as usize);
                comment = comment_of(bytes);
            }
        }
        let (mut packets, mut bytes) = (0, 0);
        let it = super::allocated(sys::nftnl_expr_iter_create(r)).as_ptr();
        loop {
            let e = sys::nftnl_expr_iter_next(it);
            if e.is_null() {
                break;
            }
            let name = CStr::from_ptr(sys::nftnl_expr_get_str(e, sys::NFTNL_EXPR_NAME as u16));
            if name == c"counter" {
                packets = sys::nftnl_expr_get_u64(e, sys::NFTNL_EXPR_CTR_PACKETS as u16);
                bytes = sys::nftnl_expr_get_u64(e, sys::NFTNL_EXPR_CTR_BYTES as u16);
            }
        }
        sys::nftnl_expr_iter_destroy(it);
        let shape = shape_of(r);
        sys::nftnl_rule_free(r);
        out.push(KernelRule {
            chain,
            handle,
            comment,
            packets,
            bytes,
            shape,
            reachable: true,
        });
    }
    mnl::mnl_sys::MNL_CB_OK
}

/// The highest expression attribute number looked at (libnftnl keeps them in a u32 bitmap).
const MAX_ATTR: u16 = 31;

/// A rule's expressions as comparable bytes: each expression's name, then every attribute
/// libnftnl holds for it (number, length, value), except what does not say what the rule does
/// or what the kernel fills in by itself: a counter's values, the NAT flags the kernel derives
/// from the registers given (NF_NAT_RANGE_MAP_IPS, NF_NAT_RANGE_PROTO_SPECIFIED), and a
/// zero bitwise operation or masquerade flags (the defaults, which the kernel reports whether
/// or not they were sent). A rule natctl builds and the same rule dumped by the kernel have the
/// same shape; any other expression, value, register or order gives another.
///
/// # Safety
/// `r` must be a valid libnftnl rule (built or parsed), alive for the call.
pub(super) unsafe fn shape_of(r: *mut sys::nftnl_rule) -> Vec<u8> {
    let mut out = Vec::new();
    // SAFETY: the caller gives a valid rule; the iterator is allocated here (non-NULL, see
    // `allocated`) and destroyed before returning. Every expression the iterator yields has a
    // name (see `parse_rule`); each attribute is read only when libnftnl says it is set, and its
    // bytes (`len` of them at the returned pointer, which points into the expression) are
    // copied at once.
    unsafe {
        let it = super::allocated(sys::nftnl_expr_iter_create(r)).as_ptr();
        loop {
            let e = sys::nftnl_expr_iter_next(it);
            if e.is_null() {
                break;
            }
            let name = CStr::from_ptr(sys::nftnl_expr_get_str(e, sys::NFTNL_EXPR_NAME as u16));
            out.extend_from_slice(name.to_bytes_with_nul());
            if name == c"counter" {
                continue;
            }
            // (borrowed from the expression until written out: no copy per attribute)
            let mut attrs: Vec<(u16, Cow<[u8]>)> = Vec::new();
            for attr in 1..=MAX_ATTR {
                if !sys::nftnl_expr_is_set(e, attr) {
                    continue;
                }
                let mut len = 0u32;
                let data = sys::nftnl_expr_get(e, attr, &mut len);
                if !data.is_null() {
                    let value = std::slice::from_raw_parts(data.cast::<u8>(), len as usize);
                    attrs.push((attr, Cow::Borrowed(value)));
                }
            }
            normalise(name.to_bytes(), &mut attrs);
            for (attr, value) in attrs {
                out.push(attr as u8);
                out.extend_from_slice(&(value.len() as u16).to_ne_bytes());
                out.extend_from_slice(&value);
            }
            out.push(0xff);
        }
        sys::nftnl_expr_iter_destroy(it);
    }
    out
}

/// Leaves out of an expression's attributes what the kernel reports whether or not it was
/// sent: a NAT's flags derived from its registers (`NF_NAT_RANGE_MAP_IPS`,
/// `NF_NAT_RANGE_PROTO_SPECIFIED`) and its maximum registers when they are the minimum ones (a
/// single address or port), a zero bitwise operation (`NFT_BITWISE_BOOL`), zero masquerade
/// flags.
fn normalise(name: &[u8], attrs: &mut Vec<(u16, Cow<[u8]>)>) {
    const NAT_DERIVED: u32 = 0x1 | 0x2;
    let as_u32 = |v: &[u8]| v.try_into().ok().map(u32::from_ne_bytes);
    let get = |attrs: &[(u16, Cow<[u8]>)], a: u32| {
        attrs
            .iter()
            .find(|(k, _)| u32::from(*k) == a)
            .map(|(_, v)| v.to_vec())
    };
    match name {
        b"nat" => {
            let same =
                |lo: u32, hi: u32| get(attrs, lo).is_some() && get(attrs, lo) == get(attrs, hi);
            let drop_addr_max = same(
                sys::NFTNL_EXPR_NAT_REG_ADDR_MIN,
                sys::NFTNL_EXPR_NAT_REG_ADDR_MAX,
            );
            let drop_proto_max = same(
                sys::NFTNL_EXPR_NAT_REG_PROTO_MIN,
                sys::NFTNL_EXPR_NAT_REG_PROTO_MAX,
            );
            attrs.retain_mut(|(k, v)| match u32::from(*k) {
                sys::NFTNL_EXPR_NAT_REG_ADDR_MAX => !drop_addr_max,
                sys::NFTNL_EXPR_NAT_REG_PROTO_MAX => !drop_proto_max,
                sys::NFTNL_EXPR_NAT_FLAGS => match as_u32(v) {
                    Some(f) => {
                        *v = Cow::Owned((f & !NAT_DERIVED).to_ne_bytes().to_vec());
                        f & !NAT_DERIVED != 0
                    }
                    None => true,
                },
                _ => true,
            });
        }
        // NFTNL_EXPR_BITWISE_OP follows NFTNL_EXPR_BITWISE_XOR (libnftnl 1.1.6 and later)
        b"bitwise" => attrs.retain(|(k, v)| {
            u32::from(*k) != sys::NFTNL_EXPR_BITWISE_XOR + 1 || as_u32(v) != Some(0)
        }),
        b"masq" => attrs
            .retain(|(k, v)| u32::from(*k) != sys::NFTNL_EXPR_MASQ_FLAGS || as_u32(v) != Some(0)),
        _ => {}
    }
}

/// The family and name of every table in the namespace (`nft list tables`), e.g. ("inet",
/// "filter").
pub fn tables() -> io::Result<Vec<(String, String)>> {
    let seq = 1;
    let msg = request_msg(
        libc::NFT_MSG_GETTABLE,
        libc::NFPROTO_UNSPEC as u16,
        libc::NLM_F_DUMP,
        seq,
        |_| {},
    );
    let mut out = Vec::new();
    batch::request(&msg, seq, parse_table, &mut out)?;
    Ok(out)
}

fn parse_table(hdr: &libc::nlmsghdr, out: &mut Vec<(String, String)>) -> libc::c_int {
    // SAFETY: `hdr` is a whole NEWTABLE message that libmnl has length-checked inside our
    // receive buffer; the table object is allocated here (non-NULL, see `allocated`), its name
    // (NULL refused) copied before it is freed on every path out.
    unsafe {
        let t = super::allocated(sys::nftnl_table_alloc()).as_ptr();
        if sys::nftnl_table_nlmsg_parse(hdr, t) < 0 {
            sys::nftnl_table_free(t);
            return mnl::mnl_sys::MNL_CB_ERROR;
        }
        let name = sys::nftnl_table_get_str(t, sys::NFTNL_TABLE_NAME as u16);
        if name.is_null() {
            sys::nftnl_table_free(t);
            return mnl::mnl_sys::MNL_CB_ERROR;
        }
        let name = CStr::from_ptr(name).to_string_lossy().into_owned();
        let family = sys::nftnl_table_get_u32(t, sys::NFTNL_TABLE_FAMILY as u16);
        sys::nftnl_table_free(t);
        out.push((family_name(family), name));
    }
    mnl::mnl_sys::MNL_CB_OK
}

/// A table family as nft names it.
fn family_name(family: u32) -> String {
    match family as i32 {
        libc::NFPROTO_INET => "inet".into(),
        libc::NFPROTO_IPV4 => "ip".into(),
        libc::NFPROTO_IPV6 => "ip6".into(),
        libc::NFPROTO_ARP => "arp".into(),
        libc::NFPROTO_BRIDGE => "bridge".into(),
        libc::NFPROTO_NETDEV => "netdev".into(),
        other => format!("family{other}"),
    }
}

/// The comment record in rule userdata (TLVs of type u8, length u8, value).
pub(super) fn comment_of(mut udata: &[u8]) -> Option<String> {
    while udata.len() >= 2 {
        let (kind, len) = (udata[0], udata[1] as usize);
        let value = udata.get(2..2 + len)?;
        if kind == 0 {
            let text = value.split(|b| *b == 0).next().unwrap_or(value);
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        udata = &udata[2 + len..];
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn comment_records() {
        assert_eq!(
            super::comment_of(&[0, 3, b'h', b'i', 0]).as_deref(),
            Some("hi")
        );
        assert_eq!(
            super::comment_of(&[1, 1, 9, 0, 2, b'x', 0]).as_deref(),
            Some("x")
        );
        assert_eq!(super::comment_of(&[0, 9, b'x']), None);
    }
}
