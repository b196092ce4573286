//! Encodes a [`Rule`] as nftables expressions, the way `nft` itself would:
//! `meta nfproto`, `iifname`/`oifname`, address prefixes, `meta l4proto` + `th dport`,
//! a `counter` on every rule, then the statement.

use std::ffi::c_void;
use std::net::IpAddr;

use ipnet::IpNet;
use nftnl::expr::{
    Bitwise, Cmp, CmpOp, Counter, Immediate, Ipv4HeaderField, Ipv6HeaderField, Masquerade, Meta,
    NatType, NetworkHeaderField, Payload, Register, TcpHeaderField, TransportHeaderField,
};
use nftnl::{Chain, MsgType, NlMsg, ProtoFamily};

use super::expr::{CtZoneSet, NatRange, RangeEq, NF_NAT_RANGE_NETMAP};
use crate::rule::{Action, Family, Match, NatKind, Rule, ZoneDir};

/// `NFTA_RULE_USERDATA` (linux/netfilter/nf_tables.h).
const NFTA_RULE_USERDATA: u16 = 7;
/// `NFTNL_UDATA_RULE_COMMENT`: the userdata record nft shows as `comment "..."`.
const UDATA_COMMENT: u8 = 0;
/// The kernel keeps at most 256 bytes of rule userdata (`NFT_USERDATA_MAXLEN`).
const USERDATA_MAX: usize = 256;

/// A rule message carrying a comment of up to 250 bytes. nftnl's `set_comment` caps comments at
/// 128 bytes, too short for two full IPv6 addresses plus ports and an interface, so the
/// userdata attribute is appended to the message nftnl writes.
pub struct RuleMsg<'a> {
    rule: nftnl::Rule<'a>,
    userdata: Vec<u8>,
}

// SAFETY: writes nftnl's own rule message, then one attribute of at most 260 bytes; the buffer
// has room for `nft_nlmsg_maxsize()` bytes, far more than any rule natctl builds.
unsafe impl NlMsg for RuleMsg<'_> {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, msg_type: MsgType) {
        unsafe {
            self.rule.write(buf, seq, msg_type);
            let hdr = buf.cast::<libc::nlmsghdr>();
            let start = align4((*hdr).nlmsg_len as usize);
            let attr_len = 4 + self.userdata.len();
            let at = buf.cast::<u8>().add(start);
            std::ptr::write_bytes(at, 0, align4(attr_len));
            at.cast::<u16>().write_unaligned(attr_len as u16);
            at.add(2).cast::<u16>().write_unaligned(NFTA_RULE_USERDATA);
            std::ptr::copy_nonoverlapping(self.userdata.as_ptr(), at.add(4), self.userdata.len());
            (*hdr).nlmsg_len = (start + align4(attr_len)) as u32;
        }
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The userdata TLV for a comment: type, length (with the NUL), text, NUL.
fn comment_udata(comment: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(comment.len() + 3);
    v.push(UDATA_COMMENT);
    v.push((comment.len() + 1) as u8);
    v.extend_from_slice(comment.as_bytes());
    v.push(0);
    v
}

/// Longest comment the kernel accepts (userdata TLV of 2 + text + NUL bytes).
pub const COMMENT_MAX: usize = USERDATA_MAX - 3;

/// Builds the rule message for `chain` (the chain of `rule.stage`).
pub fn rule_msg<'a>(chain: &'a Chain<'a>, rule: &Rule) -> RuleMsg<'a> {
    let mut r = nftnl::Rule::new(chain);
    if let Some(f) = rule.family {
        r.add_expr(&Meta::NfProto);
        r.add_expr(&Cmp::new(CmpOp::Eq, nfproto(f)));
    }
    for m in &rule.matches {
        add_match(&mut r, m);
    }
    r.add_expr(&Counter);
    add_action(&mut r, &rule.action);
    let comment = rule.comment();
    debug_assert!(comment.len() <= COMMENT_MAX);
    RuleMsg {
        rule: r,
        userdata: comment_udata(&comment),
    }
}

fn nfproto(f: Family) -> u8 {
    match f {
        Family::V4 => libc::NFPROTO_IPV4 as u8,
        Family::V6 => libc::NFPROTO_IPV6 as u8,
    }
}

/// An interface name as nft compares it: IFNAMSIZ bytes, NUL-padded.
fn ifname(name: &str) -> [u8; libc::IFNAMSIZ] {
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
        Match::Oif(name) => {
            r.add_expr(&Meta::OifName);
            r.add_expr(&Cmp::new(CmpOp::Eq, &ifname(name)[..]));
        }
        Match::Src(net) => add_prefix(r, net, true),
        Match::Dst(net) => add_prefix(r, net, false),
        Match::Proto(p) => {
            r.add_expr(&Meta::L4Proto);
            r.add_expr(&Cmp::new(CmpOp::Eq, p.number()));
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
    }
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

fn add_action(r: &mut nftnl::Rule, action: &Action) {
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
        Action::Zone { zone, dir } => {
            // conntrack zones are host-order u16s; Immediate copies the raw bytes.
            r.add_expr(&Immediate::new(*zone, Register::Reg1));
            r.add_expr(&CtZoneSet {
                dir: match dir {
                    ZoneDir::Both => None,
                    ZoneDir::Original => Some(0),
                    ZoneDir::Reply => Some(1),
                },
            });
        }
        Action::Mark(mark) => {
            r.add_expr(&Immediate::new(*mark, Register::Reg1));
            r.add_expr(&Meta::Mark { set: true });
        }
    }
}

fn load_addr(r: &mut nftnl::Rule, a: &IpAddr, reg: Register) {
    match a {
        IpAddr::V4(a) => r.add_expr(&Immediate::new(a.octets(), reg)),
        IpAddr::V6(a) => r.add_expr(&Immediate::new(a.octets(), reg)),
    }
}
