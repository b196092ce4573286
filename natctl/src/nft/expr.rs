//! Expressions the nftnl crate does not offer, written over its re-exported `nftnl_sys`:
//! NAT with address/port ranges and flags (NETMAP), `ct [dir] zone set`, `ct direction`, and
//! `range`.

use std::ffi::c_void;
use std::ptr::NonNull;

use nftnl::expr::{Expression, NatType, Register};
use nftnl::nftnl_sys as sys;
use nftnl::{ProtoFamily, Rule};

/// `NF_NAT_RANGE_NETMAP` (linux/netfilter/nf_nat.h; not in libc): map the whole prefix 1:1.
pub const NF_NAT_RANGE_NETMAP: u32 = 0x40;

fn alloc(name: &std::ffi::CStr) -> NonNull<sys::nftnl_expr> {
    // SAFETY: `name` is NUL-terminated and outlives the call; libnftnl only reads it (to look
    // up the expression type) and returns a new expression we own, or NULL.
    super::allocated(unsafe { sys::nftnl_expr_alloc(name.as_ptr()) })
}

/// `snat|dnat [prefix] to ADDR[-ADDR][:PORT[-PORT]]` reading its values from registers.
pub struct NatRange {
    pub nat_type: NatType,
    pub family: ProtoFamily,
    pub addr_min: Register,
    pub addr_max: Option<Register>,
    pub proto_min: Option<Register>,
    pub proto_max: Option<Register>,
    /// `NF_NAT_RANGE_*` flags beyond those the kernel derives from the registers.
    pub flags: u32,
}

impl Expression for NatRange {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        let expr = alloc(c"nat");
        let e = expr.as_ptr();
        let set = |attr: u32, v: u32| {
            // SAFETY: `e` is the non-NULL "nat" expression allocated above and not yet handed
            // to the rule; every `attr` passed below is a u32 attribute of "nat".
            unsafe { sys::nftnl_expr_set_u32(e, attr as u16, v) }
        };
        set(sys::NFTNL_EXPR_NAT_TYPE, self.nat_type as u32);
        set(sys::NFTNL_EXPR_NAT_FAMILY, self.family as u32);
        set(sys::NFTNL_EXPR_NAT_REG_ADDR_MIN, self.addr_min.to_raw());
        if let Some(r) = self.addr_max {
            set(sys::NFTNL_EXPR_NAT_REG_ADDR_MAX, r.to_raw());
        }
        if let Some(r) = self.proto_min {
            set(sys::NFTNL_EXPR_NAT_REG_PROTO_MIN, r.to_raw());
        }
        if let Some(r) = self.proto_max {
            set(sys::NFTNL_EXPR_NAT_REG_PROTO_MAX, r.to_raw());
        }
        if self.flags != 0 {
            set(sys::NFTNL_EXPR_NAT_FLAGS, self.flags);
        }
        expr
    }
}

/// A `ct` expression on register 1 for what the nftnl crate lacks: `ct [original|reply] KEY set`
/// from the register, or a load of KEY into it.
pub struct Ct {
    /// The `NFT_CT_*` key.
    key: u32,
    /// Set KEY from register 1 (`sreg`), else load it into register 1 (`dreg`).
    set: bool,
    /// `None`: not direction-specific (for a zone: both directions); `Some(0)`: the original
    /// direction's tuple; `Some(1)`: the reply's.
    dir: Option<u8>,
    /// The register it sets KEY from or loads it into.
    reg: Register,
}

/// `IP_CT_DIR_ORIGINAL` and `IP_CT_DIR_REPLY` (linux/netfilter/nf_conntrack_tuple_common.h).
pub const IP_CT_DIR_ORIGINAL: u8 = 0;
pub const IP_CT_DIR_REPLY: u8 = 1;

impl Ct {
    /// `ct [original|reply] zone set` from register 1 (a host-order u16).
    pub fn zone_set(dir: Option<u8>) -> Ct {
        Ct {
            key: libc::NFT_CT_ZONE as u32,
            set: true,
            dir,
            reg: Register::Reg1,
        }
    }

    /// `ct mark` into REG (a host-order u32), e.g. beside an interface name in register 1 for
    /// a lookup of the two.
    pub fn mark_into(reg: Register) -> Ct {
        Ct {
            key: libc::NFT_CT_MARK as u32,
            set: false,
            dir: None,
            reg,
        }
    }

    /// `ct direction` into register 1: one byte, `IP_CT_DIR_ORIGINAL` (0) or
    /// [`IP_CT_DIR_REPLY`].
    pub fn direction() -> Ct {
        Ct {
            key: libc::NFT_CT_DIRECTION as u32,
            set: false,
            dir: None,
            reg: Register::Reg1,
        }
    }
}

impl Expression for Ct {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        let expr = alloc(c"ct");
        let e = expr.as_ptr();
        let register = if self.set {
            sys::NFTNL_EXPR_CT_SREG
        } else {
            sys::NFTNL_EXPR_CT_DREG
        };
        // SAFETY: `e` is the non-NULL "ct" expression allocated above; KEY and SREG/DREG are u32
        // attributes of "ct" and DIR a u8 one, each set with the setter of its type.
        unsafe {
            sys::nftnl_expr_set_u32(e, sys::NFTNL_EXPR_CT_KEY as u16, self.key);
            sys::nftnl_expr_set_u32(e, register as u16, self.reg.to_raw());
            if let Some(dir) = self.dir {
                sys::nftnl_expr_set_u8(e, sys::NFTNL_EXPR_CT_DIR as u16, dir);
            }
        }
        expr
    }
}

/// `range` on register 1: FROM <= value <= TO, big-endian bytes compared as nft does.
pub struct RangeEq {
    pub from: Vec<u8>,
    pub to: Vec<u8>,
}

impl Expression for RangeEq {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        let expr = alloc(c"range");
        let e = expr.as_ptr();
        // SAFETY: `e` is the non-NULL "range" expression allocated above; SREG and OP are u32
        // attributes; FROM/TO_DATA get pointers valid for the lengths passed, which libnftnl
        // copies (at most NFT_DATA_VALUE_MAXLEN; ours are 2 bytes) before the call returns.
        unsafe {
            sys::nftnl_expr_set_u32(
                e,
                sys::NFTNL_EXPR_RANGE_SREG as u16,
                Register::Reg1.to_raw(),
            );
            sys::nftnl_expr_set_u32(
                e,
                sys::NFTNL_EXPR_RANGE_OP as u16,
                libc::NFT_RANGE_EQ as u32,
            );
            sys::nftnl_expr_set(
                e,
                sys::NFTNL_EXPR_RANGE_FROM_DATA as u16,
                self.from.as_ptr() as *const c_void,
                self.from.len() as u32,
            );
            sys::nftnl_expr_set(
                e,
                sys::NFTNL_EXPR_RANGE_TO_DATA as u16,
                self.to.as_ptr() as *const c_void,
                self.to.len() as u32,
            );
        }
        expr
    }
}

/// `lookup` of register 1 in the named set SET: the rule goes on only when the key is there
/// (nft `iifname @SET`), and with DREG the map's value for it is loaded there (nft `iifname map
/// @SET`). As the kernel reports it back: its flags (0) and no set id.
pub struct SetLookup {
    pub set: std::ffi::CString,
    pub dreg: Option<Register>,
    /// Match when the key is not there (`!= @SET`, `NFT_LOOKUP_F_INV`).
    pub inverted: bool,
}

impl Expression for SetLookup {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        let expr = alloc(c"lookup");
        let e = expr.as_ptr();
        // SAFETY: `e` is the non-NULL "lookup" expression allocated above and not yet handed to
        // the rule; each attribute is set with the setter of its type, and the set's name is
        // NUL-terminated and copied by libnftnl.
        unsafe {
            sys::nftnl_expr_set_u32(
                e,
                sys::NFTNL_EXPR_LOOKUP_SREG as u16,
                Register::Reg1.to_raw(),
            );
            sys::nftnl_expr_set_str(e, sys::NFTNL_EXPR_LOOKUP_SET as u16, self.set.as_ptr());
            if let Some(dreg) = self.dreg {
                sys::nftnl_expr_set_u32(e, sys::NFTNL_EXPR_LOOKUP_DREG as u16, dreg.to_raw());
            }
            sys::nftnl_expr_set_u32(
                e,
                sys::NFTNL_EXPR_LOOKUP_FLAGS as u16,
                u32::from(self.inverted),
            );
        }
        expr
    }
}
