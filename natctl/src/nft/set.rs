//! natctl's named sets and maps in nftables: their messages (a set made or deleted, an element
//! added or deleted) and how they are read back (one set, every set, one element, every
//! element with its counter).
//!
//! A set lives in natctl's table beside the dispatch maps, which natctl names with a dot
//! (`forward.iif`); a [`SetName`] has none, so the two never meet, and listings pass the
//! dispatch maps by.

use std::ffi::{c_char, c_void, CStr, CString};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ptr::NonNull;

use common::Kind;
use nftnl::nftnl_sys::{self as sys, libc};
use nftnl::{MsgType, NlMsg};

use super::encode::ifname;
use super::list::request_msg;
use super::{allocated, batch, TABLE};
use crate::set::{Key, KeyType, SetDef, SetName, Value, ValueType};

/// nft's datatype numbers (nftables `enum datatypes`), so that `nft list` shows the keys and
/// values by name: `integer` for a zone, whose values are 2 bytes.
const TYPE_INTEGER: u32 = 4;
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;
const TYPE_MARK: u32 = 19;
const TYPE_IFNAME: u32 = 41;

/// nft's userdata records of a set (`NFTNL_UDATA_SET_KEYBYTEORDER`, `..._DATABYTEORDER`) and
/// its byte orders (`BYTEORDER_HOST_ENDIAN` 1, `BYTEORDER_BIG_ENDIAN` 2): what `nft list` reads
/// to print the elements; the kernel does not read them.
const UDATA_KEY_BYTEORDER: u8 = 0;
const UDATA_DATA_BYTEORDER: u8 = 1;
/// `NFTNL_UDATA_SET_COMMENT`: the set's comment, which says a map's marks are connection marks
/// (their values are marks as any other, 4 bytes of nft's `mark`).
const UDATA_COMMENT: u8 = 7;
const CTMARK_COMMENT: &str = "natctl: connection marks, one key's each";
/// `NFTNL_UDATA_SET_KEY_TYPEOF`, `..._DATA_TYPEOF`: the expressions nft prints a map's keys and
/// values as (`typeof iifname : ct zone`). A zone has no nft type: without them `nft list`
/// prints a map of zones as `type ifname : 0`, which `nft -f` refuses, so a saved ruleset
/// (`nft list ruleset > FILE`) would not load back. Each holds the expression's kind
/// (`UDATA_TYPEOF_EXPR`: nft's `enum expr_types`) and its own records (`UDATA_TYPEOF_DATA`), as
/// nft writes them for `typeof` and reads them back, whichever version wrote them.
const UDATA_KEY_TYPEOF: u8 = 3;
const UDATA_DATA_TYPEOF: u8 = 4;
const UDATA_TYPEOF_EXPR: u8 = 0;
const UDATA_TYPEOF_DATA: u8 = 1;
const EXPR_PAYLOAD: u32 = 7;
const EXPR_META: u32 = 9;
const EXPR_CT: u32 = 12;
/// A payload's records: its protocol (nft's `PROTO_DESC_IP`, `PROTO_DESC_IP6`) and field
/// (`IPHDR_DADDR`, `IP6HDR_DADDR`); a meta or ct expression's: its key, and a ct's direction
/// (none: -1).
const PROTO_DESC_IP: u32 = 12;
const IPHDR_DADDR: u32 = 12;
const PROTO_DESC_IP6: u32 = 13;
const IP6HDR_DADDR: u32 = 9;
const NFT_META_MARK: u32 = 3;
const NFT_META_IIFNAME: u32 = 6;
const NFT_CT_ZONE: u32 = 17;
const CT_DIR_NONE: u32 = u32::MAX;
/// nft's width of a type in a concatenation's type number (`TYPE_BITS`).
const TYPE_BITS: u32 = 6;
const HOST_ENDIAN: u32 = 1;
const BIG_ENDIAN: u32 = 2;

impl KeyType {
    /// (nft datatype, length in bytes, byte order).
    fn encoding(self) -> (u32, u32, u32) {
        match self {
            KeyType::Ifname => (TYPE_IFNAME, libc::IFNAMSIZ as u32, HOST_ENDIAN),
            KeyType::Ipv4Addr => (TYPE_IPADDR, 4, BIG_ENDIAN),
            KeyType::Ipv6Addr => (TYPE_IP6ADDR, 16, BIG_ENDIAN),
            KeyType::Mark => (TYPE_MARK, 4, HOST_ENDIAN),
        }
    }

    fn decode(datatype: u32, len: u32) -> Option<KeyType> {
        [
            KeyType::Ifname,
            KeyType::Ipv4Addr,
            KeyType::Ipv6Addr,
            KeyType::Mark,
        ]
        .into_iter()
        .find(|t| (t.encoding().0, t.encoding().1) == (datatype, len))
    }

    /// The expression nft prints a key of this type as in a map's `typeof`: (kind, records).
    /// (`iifname`, `ip daddr`, `ip6 daddr`, `meta mark`: a map keyed by an address is looked
    /// up by source or destination alike; nft reads only the type from it)
    fn typeof_expr(self) -> (u32, &'static [u32]) {
        match self {
            KeyType::Ifname => (EXPR_META, &[NFT_META_IIFNAME]),
            KeyType::Ipv4Addr => (EXPR_PAYLOAD, &[PROTO_DESC_IP, IPHDR_DADDR]),
            KeyType::Ipv6Addr => (EXPR_PAYLOAD, &[PROTO_DESC_IP6, IP6HDR_DADDR]),
            KeyType::Mark => (EXPR_META, &[NFT_META_MARK]),
        }
    }

    /// The key of this type in BYTES (as the kernel holds it), if they are one.
    fn key_of(self, bytes: &[u8]) -> Option<Key> {
        match self {
            KeyType::Ifname => {
                let name = bytes.split(|b| *b == 0).next()?;
                Some(Key::Ifname(String::from_utf8_lossy(name).into_owned()))
            }
            KeyType::Ipv4Addr => {
                let octets: [u8; 4] = bytes.try_into().ok()?;
                Some(Key::Addr(IpAddr::V4(Ipv4Addr::from(octets))))
            }
            KeyType::Ipv6Addr => {
                let octets: [u8; 16] = bytes.try_into().ok()?;
                Some(Key::Addr(IpAddr::V6(Ipv6Addr::from(octets))))
            }
            KeyType::Mark => Some(Key::Mark(u32::from_ne_bytes(bytes.try_into().ok()?))),
        }
    }
}

impl ValueType {
    /// (nft datatype, length in bytes, byte order).
    fn encoding(self) -> (u32, u32, u32) {
        match self {
            ValueType::Zone => (TYPE_INTEGER, 2, HOST_ENDIAN),
            ValueType::Mark | ValueType::Ctmark => (TYPE_MARK, 4, HOST_ENDIAN),
            ValueType::Ipv4Addr => (TYPE_IPADDR, 4, BIG_ENDIAN),
            ValueType::Ipv6Addr => (TYPE_IP6ADDR, 16, BIG_ENDIAN),
        }
    }

    /// The value type of DATATYPE and LEN; marks are connection marks when the set's comment
    /// (CTMARK) says so.
    fn decode(datatype: u32, len: u32, ctmark: bool) -> Option<ValueType> {
        [
            ValueType::Zone,
            if ctmark {
                ValueType::Ctmark
            } else {
                ValueType::Mark
            },
            ValueType::Ipv4Addr,
            ValueType::Ipv6Addr,
        ]
        .into_iter()
        .find(|t| (t.encoding().0, t.encoding().1) == (datatype, len))
    }

    fn value_of(self, bytes: &[u8]) -> Option<Value> {
        match self {
            ValueType::Zone => Some(Value::Zone(u16::from_ne_bytes(bytes.try_into().ok()?))),
            ValueType::Mark | ValueType::Ctmark => {
                Some(Value::Mark(u32::from_ne_bytes(bytes.try_into().ok()?)))
            }
            ValueType::Ipv4Addr => {
                let octets: [u8; 4] = bytes.try_into().ok()?;
                Some(Value::Addr(IpAddr::V4(Ipv4Addr::from(octets))))
            }
            ValueType::Ipv6Addr => {
                let octets: [u8; 16] = bytes.try_into().ok()?;
                Some(Value::Addr(IpAddr::V6(Ipv6Addr::from(octets))))
            }
        }
    }
}

impl Key {
    /// The key as the set holds it (what a rule loads into its register to look it up).
    fn bytes(&self) -> Vec<u8> {
        match self {
            Key::Ifname(name) => ifname(name).to_vec(),
            Key::Addr(IpAddr::V4(a)) => a.octets().to_vec(),
            Key::Addr(IpAddr::V6(a)) => a.octets().to_vec(),
            // marks are host-order u32s in registers, as `meta mark` and `ct mark` load them
            Key::Mark(mark) => mark.to_ne_bytes().to_vec(),
        }
    }
}

impl Value {
    fn bytes(&self) -> Vec<u8> {
        match self {
            // a zone is a host-order u16 in its register, as `ct zone set` reads it
            Value::Zone(zone) => zone.to_ne_bytes().to_vec(),
            Value::Mark(mark) => mark.to_ne_bytes().to_vec(),
            Value::Addr(IpAddr::V4(a)) => a.octets().to_vec(),
            Value::Addr(IpAddr::V6(a)) => a.octets().to_vec(),
        }
    }
}

fn cname(name: &SetName) -> CString {
    cstring(name.to_string())
}

fn cstring(name: String) -> CString {
    // A SetName is letters, digits, '_' and '-', its companions add a dot and a word: no NUL.
    CString::new(name).unwrap_or_default()
}

/// A libnftnl set naming natctl's table and NAME, for a message about it.
///
/// # Safety
/// The caller frees the returned set once (`nftnl_set_free`).
unsafe fn set_object(name: &CStr) -> *mut sys::nftnl_set {
    let s = allocated(
        // SAFETY: allocation only; NULL is handled by `allocated`.
        unsafe { sys::nftnl_set_alloc() },
    )
    .as_ptr();
    // SAFETY: `s` was allocated above; the strings are NUL-terminated and copied by libnftnl.
    unsafe {
        sys::nftnl_set_set_u32(s, sys::NFTNL_SET_FAMILY as u16, libc::NFPROTO_INET as u32);
        sys::nftnl_set_set_str(s, sys::NFTNL_SET_TABLE as u16, TABLE.as_ptr());
        sys::nftnl_set_set_str(s, sys::NFTNL_SET_NAME as u16, name.as_ptr());
    }
    s
}

/// A set made (NEWSET with NLM_F_EXCL: it must not exist) or deleted (DELSET by name).
pub struct SetMsg {
    set: NonNull<sys::nftnl_set>,
}

/// How a set's keys or values are encoded: (nft datatype, length in bytes, byte order).
type Encoding = (u32, u32, u32);

impl SetMsg {
    /// Set DEF, without the sets natctl keeps beside it ([`SetMsg::companions`]).
    pub fn new(def: &SetDef) -> SetMsg {
        let mut records = Vec::new();
        match def.value {
            Some(ValueType::Ctmark) => {
                // (type, length with the NUL, text, NUL)
                let text = [CTMARK_COMMENT.as_bytes(), &[0]].concat();
                udata_record(&mut records, UDATA_COMMENT, &text);
            }
            Some(ValueType::Zone) => records = zone_map_typeof(def.key),
            _ => {}
        }
        let value = def.value.map(ValueType::encoding);
        SetMsg::of(
            &cname(&def.name),
            def.key.encoding(),
            value,
            def.counter,
            &records,
        )
    }

    /// The sets natctl keeps beside map DEF of connection marks ([`Companion`]), to make.
    pub fn companions(def: &SetDef) -> Vec<SetMsg> {
        Companion::of(def).iter().map(|c| c.set_msg(def)).collect()
    }

    /// Set NAME of keys KEY (and values VALUE: a map), with a counter per element or not, and
    /// RECORDS after the byte orders in its userdata (a comment, the `typeof` of a map of
    /// zones).
    fn of(
        name: &CStr,
        key: Encoding,
        value: Option<Encoding>,
        counter: bool,
        records: &[u8],
    ) -> SetMsg {
        // SAFETY: `set_object` hands over a set we free in Drop.
        let s = unsafe { set_object(name) };
        let (key_type, key_len, key_order) = key;
        let mut udata = Vec::new();
        udata_record(&mut udata, UDATA_KEY_BYTEORDER, &key_order.to_ne_bytes());
        // SAFETY: `s` is the set allocated above; each attribute is set with the setter of its
        // type; the counter expression is allocated here (non-NULL, see `allocated`) and handed
        // to the set, which frees it; libnftnl copies `udata`.
        unsafe {
            let mut flags = 0u32;
            if let Some((data_type, data_len, data_order)) = value {
                flags |= libc::NFT_SET_MAP as u32;
                sys::nftnl_set_set_u32(s, sys::NFTNL_SET_DATA_TYPE as u16, data_type);
                sys::nftnl_set_set_u32(s, sys::NFTNL_SET_DATA_LEN as u16, data_len);
                udata_record(&mut udata, UDATA_DATA_BYTEORDER, &data_order.to_ne_bytes());
            }
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_FLAGS as u16, flags);
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_KEY_TYPE as u16, key_type);
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_KEY_LEN as u16, key_len);
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_ID as u16, 1);
            if counter {
                let counter = allocated(sys::nftnl_expr_alloc(c"counter".as_ptr()));
                sys::nftnl_set_add_expr(s, counter.as_ptr());
            }
            udata.extend_from_slice(records);
            sys::nftnl_set_set_data(
                s,
                sys::NFTNL_SET_USERDATA as u16,
                udata.as_ptr().cast::<c_void>(),
                udata.len() as u32,
            );
        }
        SetMsg { set: allocated(s) }
    }

    /// The set NAME, to delete.
    pub fn named(name: &CStr) -> SetMsg {
        SetMsg {
            // SAFETY: `set_object` hands over a set we free in Drop.
            set: allocated(unsafe { set_object(name) }),
        }
    }

    /// Set DEF and THOSE of the sets natctl keeps beside it, to delete.
    pub fn with_companions(def: &SetDef, those: &[Companion]) -> Vec<SetMsg> {
        let mut names = vec![cname(&def.name)];
        names.extend(those.iter().map(|c| c.cname(&def.name)));
        names.iter().map(|n| SetMsg::named(n)).collect()
    }
}

/// A set natctl keeps beside a map M of connection marks (nft's lookups in M's keys and marks
/// would need a map as a set, which kernels before 6.4 refuse), written in the transaction of
/// each of M's elements and deleted with M. The guard of `connmark --iif @M --set @M` drops a
/// reply on a key of M (`M.keys`) that is no pair of M (`M.pairs`); its restores take the mark
/// of connections marked by M (`M.values`); `M.marks` says who holds a mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Companion {
    /// `M.pairs`: `type ifname . mark`, each key with its mark.
    Pairs,
    /// `M.marks`: `type mark : ifname`, each mark's key.
    Marks,
    /// `M.keys`: `type ifname`, M's keys.
    Keys,
    /// `M.values`: `type mark`, M's marks.
    Values,
}

impl Companion {
    const ALL: [Companion; 4] = [
        Companion::Pairs,
        Companion::Marks,
        Companion::Keys,
        Companion::Values,
    ];

    /// The sets natctl keeps beside DEF: all for a map of connection marks, else none.
    pub fn of(def: &SetDef) -> &'static [Companion] {
        if def.value == Some(ValueType::Ctmark) {
            &Companion::ALL
        } else {
            &[]
        }
    }

    pub fn name(self, map: &SetName) -> String {
        match self {
            Companion::Pairs => map.pairs(),
            Companion::Marks => map.marks(),
            Companion::Keys => map.keys(),
            Companion::Values => map.values(),
        }
    }

    fn cname(self, map: &SetName) -> CString {
        cstring(self.name(map))
    }

    /// Its definition beside DEF.
    pub(super) fn set_msg(self, def: &SetDef) -> SetMsg {
        let key = def.key.encoding();
        let mark = ValueType::Ctmark.encoding();
        let (of, value) = match self {
            Companion::Pairs => {
                let pair = (
                    (key.0 << TYPE_BITS) | mark.0,
                    // (each part of a concatenation takes whole 4-byte registers)
                    key.1.next_multiple_of(4) + mark.1,
                    key.2,
                );
                (pair, None)
            }
            Companion::Marks => (mark, Some(key)),
            Companion::Keys => (key, None),
            Companion::Values => (mark, None),
        };
        SetMsg::of(&self.cname(&def.name), of, value, false, &[])
    }

    /// What it holds of DEF's element KEY : MARK (as bytes).
    fn element(self, def: &SetDef, key: &[u8], mark: &[u8]) -> ElementMsg {
        let (of, value) = match self {
            Companion::Pairs => {
                let mut pair = key.to_vec();
                pair.resize(key.len().next_multiple_of(4), 0);
                pair.extend_from_slice(mark);
                (pair, None)
            }
            Companion::Marks => (mark.to_vec(), Some(key.to_vec())),
            Companion::Keys => (key.to_vec(), None),
            Companion::Values => (mark.to_vec(), None),
        };
        ElementMsg {
            set: self.cname(&def.name),
            key: of,
            value,
        }
    }
}

/// Those of the sets natctl keeps beside DEF that are not there (a map made by a natctl that
/// kept fewer).
pub fn lacking(def: &SetDef) -> io::Result<Vec<Companion>> {
    let mut out = Vec::new();
    for &c in Companion::of(def) {
        if reported(&c.cname(&def.name))?.is_none() {
            out.push(c);
        }
    }
    Ok(out)
}

impl Drop for SetMsg {
    fn drop(&mut self) {
        // SAFETY: `set` was allocated by `nftnl_set_alloc` and is freed once, here.
        unsafe { sys::nftnl_set_free(self.set.as_ptr()) }
    }
}

/// Builds at BUF the header of an add (NEW, with NLM_F_CREATE, and NLM_F_EXCL when EXCLUSIVE:
/// the object must not be there) or a delete (DEL) message in natctl's family, for NlMsg's
/// `write`.
///
/// # Safety
/// BUF has room for `nft_nlmsg_maxsize()` bytes, 4-aligned.
pub(super) unsafe fn header(
    buf: *mut c_void,
    seq: u32,
    msg_type: MsgType,
    (new, del): (i32, i32),
    exclusive: bool,
) -> *mut libc::nlmsghdr {
    let (msg, flags) = match msg_type {
        MsgType::Add if exclusive => (new, libc::NLM_F_CREATE | libc::NLM_F_EXCL | libc::NLM_F_ACK),
        MsgType::Add => (new, libc::NLM_F_CREATE | libc::NLM_F_ACK),
        MsgType::Del => (del, libc::NLM_F_ACK),
    };
    // SAFETY: as the caller promises.
    unsafe {
        sys::nftnl_nlmsg_build_hdr(
            buf.cast::<c_char>(),
            msg as u16,
            libc::NFPROTO_INET as u16,
            flags as u16,
            seq,
        )
    }
}

/// Writes at BUF one NEWSETELEM (NLM_F_EXCL when EXCLUSIVE) or DELSETELEM message of the
/// element KEY of set SET, with what FILL sets on it besides (its value, its verdict).
///
/// # Safety
/// BUF has room for `nft_nlmsg_maxsize()` bytes, 4-aligned; FILL sets attributes of the element
/// it is given with their setters, from buffers libnftnl copies.
pub(super) unsafe fn write_element(
    buf: *mut c_void,
    seq: u32,
    msg_type: MsgType,
    exclusive: bool,
    (set, key): (&CStr, &[u8]),
    fill: impl FnOnce(*mut sys::nftnl_set_elem),
) {
    // SAFETY: the set and element are allocated here (non-NULL, see `allocated`), filled with
    // the setter of each attribute's type from buffers that outlive the calls (libnftnl copies
    // them), written into `buf` as the caller allows (one element: a key, a value or a chain's
    // name of a few hundred bytes at most), and freed (the set frees its element).
    unsafe {
        let s = set_object(set);
        let elem = allocated(sys::nftnl_set_elem_alloc()).as_ptr();
        sys::nftnl_set_elem_set(
            elem,
            sys::NFTNL_SET_ELEM_KEY as u16,
            key.as_ptr().cast::<c_void>(),
            key.len() as u32,
        );
        if msg_type == MsgType::Add {
            fill(elem);
        }
        sys::nftnl_set_elem_add(s, elem);
        let kinds = (libc::NFT_MSG_NEWSETELEM, libc::NFT_MSG_DELSETELEM);
        let hdr = header(buf, seq, msg_type, kinds, exclusive);
        sys::nftnl_set_elems_nlmsg_build_payload(hdr, s);
        sys::nftnl_set_free(s);
    }
}

// SAFETY: `write` builds one NEWSET or DELSET message, without elements (a few hundred bytes),
// at `buf`, which the caller sizes for `nft_nlmsg_maxsize()` bytes.
unsafe impl NlMsg for SetMsg {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, msg_type: MsgType) {
        // SAFETY: as above.
        unsafe {
            let kinds = (libc::NFT_MSG_NEWSET, libc::NFT_MSG_DELSET);
            let hdr = header(buf, seq, msg_type, kinds, true);
            sys::nftnl_set_nlmsg_build_payload(hdr, self.set.as_ptr());
        }
    }
}

/// One element of set NAME: added (NEWSETELEM with NLM_F_EXCL: the key must not be there) or
/// deleted (DELSETELEM by key).
pub struct ElementMsg {
    set: CString,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

impl ElementMsg {
    /// The element KEY (: VALUE) of set DEF, with what the sets natctl keeps beside it (but
    /// LACKING) hold of it ([`Companion`]).
    pub fn with_companions(
        def: &SetDef,
        lacking: &[Companion],
        key: &Key,
        value: Option<&Value>,
    ) -> Vec<ElementMsg> {
        let key = key.bytes();
        let value = value.map(Value::bytes);
        let mut out: Vec<ElementMsg> = match &value {
            Some(mark) => Companion::of(def)
                .iter()
                .filter(|c| !lacking.contains(c))
                .map(|c| c.element(def, &key, mark))
                .collect(),
            None => Vec::new(),
        };
        out.push(ElementMsg {
            set: cname(&def.name),
            key,
            value,
        });
        out
    }

    /// What THOSE of the sets natctl keeps beside DEF hold of its ELEMENTS.
    pub fn of_companions(
        def: &SetDef,
        those: &[Companion],
        elements: &[Element],
    ) -> Vec<ElementMsg> {
        let mut out = Vec::new();
        for e in elements {
            let Some(mark) = e.value.as_ref().map(Value::bytes) else {
                continue;
            };
            let key = e.key.bytes();
            out.extend(those.iter().map(|c| c.element(def, &key, &mark)));
        }
        out
    }
}

// SAFETY: `write` builds one NEWSETELEM/DELSETELEM message of one element (a key and a value
// of at most 20 bytes each) at `buf`, sized by the caller for `nft_nlmsg_maxsize()` bytes.
unsafe impl NlMsg for ElementMsg {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, msg_type: MsgType) {
        // SAFETY: as above; the value is set with its setter from a buffer libnftnl copies.
        unsafe {
            write_element(buf, seq, msg_type, true, (&self.set, &self.key), |elem| {
                if let Some(value) = &self.value {
                    sys::nftnl_set_elem_set(
                        elem,
                        sys::NFTNL_SET_ELEM_DATA as u16,
                        value.as_ptr().cast::<c_void>(),
                        value.len() as u32,
                    );
                }
            });
        }
    }
}

/// A set as the kernel reports it: natctl's definition of it, or None for a set of a kind
/// natctl does not make (put in its table by hand), and its name either way.
struct Reported {
    name: String,
    def: Option<SetDef>,
}

/// The set NAME in natctl's table (None: it is not there, nor is the table).
pub fn get(name: &SetName) -> io::Result<Option<SetDef>> {
    Ok(reported(&cname(name))?.and_then(|r| r.def))
}

/// The set NAME as the kernel reports it (None: it is not there, nor is the table).
fn reported(name: &CStr) -> io::Result<Option<Reported>> {
    let seq = 1;
    let msg = request_msg(
        libc::NFT_MSG_GETSET,
        libc::NFPROTO_INET as u16,
        libc::NLM_F_ACK,
        seq,
        |hdr| {
            // SAFETY: `hdr` is the header request_msg just built, with room for a set's names;
            // the set is freed once written into the message, which keeps no pointer to it.
            unsafe {
                let s = set_object(name);
                sys::nftnl_set_nlmsg_build_payload(hdr, s);
                sys::nftnl_set_free(s);
            }
        },
    );
    let mut out = Vec::new();
    match batch::request(&msg, seq, parse_set, &mut out) {
        Ok(()) => Ok(out.into_iter().next()),
        Err(e) if Kind::of(&e) == Kind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every set of natctl's, by name (natctl's own dispatch maps and sets of other kinds are
/// passed by).
pub fn all() -> io::Result<Vec<SetDef>> {
    let seq = 1;
    let msg = request_msg(
        libc::NFT_MSG_GETSET,
        libc::NFPROTO_INET as u16,
        libc::NLM_F_DUMP,
        seq,
        |hdr| {
            // SAFETY: as in `get`, with a set naming the table only.
            unsafe {
                let s = allocated(sys::nftnl_set_alloc()).as_ptr();
                sys::nftnl_set_set_str(s, sys::NFTNL_SET_TABLE as u16, TABLE.as_ptr());
                sys::nftnl_set_nlmsg_build_payload(hdr, s);
                sys::nftnl_set_free(s);
            }
        },
    );
    let mut out = Vec::new();
    match batch::request(&msg, seq, parse_set, &mut out) {
        Ok(()) => {}
        Err(e) if Kind::of(&e) == Kind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut sets: Vec<SetDef> = out
        .into_iter()
        .filter_map(|r| {
            if r.def.is_none() && !r.name.contains('.') {
                common::vlog!(1, "set {} is not of a kind natctl makes; passed by", r.name);
            }
            r.def
        })
        .collect();
    sets.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(sets)
}

fn parse_set(hdr: &libc::nlmsghdr, out: &mut Vec<Reported>) -> libc::c_int {
    // SAFETY: `hdr` is a whole NEWSET message that libmnl has length-checked inside our receive
    // buffer; the set is allocated here (non-NULL, see `allocated`) and freed on every path out;
    // its table and name (NULL refused) are copied before that.
    unsafe {
        let s = allocated(sys::nftnl_set_alloc()).as_ptr();
        if sys::nftnl_set_nlmsg_parse(hdr, s) < 0 {
            sys::nftnl_set_free(s);
            return mnl::mnl_sys::MNL_CB_ERROR;
        }
        let table = sys::nftnl_set_get_str(s, sys::NFTNL_SET_TABLE as u16);
        let name = sys::nftnl_set_get_str(s, sys::NFTNL_SET_NAME as u16);
        if table.is_null() || name.is_null() {
            sys::nftnl_set_free(s);
            return mnl::mnl_sys::MNL_CB_ERROR;
        }
        // (a dump of one family lists the sets of every table of it)
        if CStr::from_ptr(table) != TABLE {
            sys::nftnl_set_free(s);
            return mnl::mnl_sys::MNL_CB_OK;
        }
        let name = CStr::from_ptr(name).to_string_lossy().into_owned();
        let u32_of = |attr: u32| sys::nftnl_set_get_u32(s, attr as u16);
        let flags = u32_of(sys::NFTNL_SET_FLAGS);
        let key = KeyType::decode(
            u32_of(sys::NFTNL_SET_KEY_TYPE),
            u32_of(sys::NFTNL_SET_KEY_LEN),
        );
        let mut comment = None;
        if sys::nftnl_set_is_set(s, sys::NFTNL_SET_USERDATA as u16) {
            let mut len = 0u32;
            let p = sys::nftnl_set_get_data(s, sys::NFTNL_SET_USERDATA as u16, &mut len);
            if !p.is_null() {
                let udata = std::slice::from_raw_parts(p.cast::<u8>(), len as usize);
                comment = udata_comment(udata);
            }
        }
        let ctmark = comment.as_deref() == Some(CTMARK_COMMENT);
        let value = if flags & libc::NFT_SET_MAP as u32 != 0 {
            ValueType::decode(
                u32_of(sys::NFTNL_SET_DATA_TYPE),
                u32_of(sys::NFTNL_SET_DATA_LEN),
                ctmark,
            )
            .map(Some)
        } else {
            Some(None)
        };
        // (only flags natctl sets: an interval, timeout or concatenated set is not one of ours)
        let ours = flags & !(libc::NFT_SET_MAP as u32) == 0;
        let counter = sys::nftnl_set_is_set(s, sys::NFTNL_SET_EXPR as u16);
        sys::nftnl_set_free(s);
        let def = match (name.parse::<SetName>(), key, value, ours) {
            (Ok(name), Some(key), Some(value), true) => Some(SetDef {
                name,
                key,
                value,
                counter,
            }),
            _ => None,
        };
        out.push(Reported { name, def });
    }
    mnl::mnl_sys::MNL_CB_OK
}

/// A record of a set's userdata: type, length, value.
fn udata_record(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    let len = u8::try_from(value.len()).expect("a userdata record is under 256 bytes");
    out.extend_from_slice(&[kind, len]);
    out.extend_from_slice(value);
}

/// The `typeof` records of a map of zones keyed by KEY: `typeof iifname : ct zone` (or `ip
/// daddr`, `ip6 daddr`, `meta mark`).
fn zone_map_typeof(key: KeyType) -> Vec<u8> {
    let expr = |(kind, fields): (u32, &[u32])| {
        let mut data = Vec::new();
        for (at, field) in (0u8..).zip(fields) {
            udata_record(&mut data, at, &field.to_ne_bytes());
        }
        let mut out = Vec::new();
        udata_record(&mut out, UDATA_TYPEOF_EXPR, &kind.to_ne_bytes());
        udata_record(&mut out, UDATA_TYPEOF_DATA, &data);
        out
    };
    let mut out = Vec::new();
    udata_record(&mut out, UDATA_KEY_TYPEOF, &expr(key.typeof_expr()));
    let zone: (u32, &[u32]) = (EXPR_CT, &[NFT_CT_ZONE, CT_DIR_NONE]);
    udata_record(&mut out, UDATA_DATA_TYPEOF, &expr(zone));
    out
}

/// The comment record of a set's userdata (TLVs of type u8, length u8, value).
fn udata_comment(mut udata: &[u8]) -> Option<String> {
    while udata.len() >= 2 {
        let (kind, len) = (udata[0], udata[1] as usize);
        let value = udata.get(2..2 + len)?;
        if kind == UDATA_COMMENT {
            let text = value.split(|b| *b == 0).next().unwrap_or(value);
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        udata = &udata[2 + len..];
    }
    None
}

/// The key holding MARK in map DEF of connection marks (its `DEF.marks`), if one does.
pub fn mark_holder(def: &SetDef, mark: u32) -> io::Result<Option<Key>> {
    let marks = Elements {
        key: KeyType::Mark,
        value: None,
        holders: Some(def.key),
        out: Vec::new(),
    };
    let name = cstring(def.name.marks());
    let found = read_elements(&name, marks, libc::NLM_F_ACK, Some(&mark.to_ne_bytes()))?;
    Ok(found.into_iter().next().and_then(|e| e.holder))
}

/// One element as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub key: Key,
    pub value: Option<Value>,
    /// (packets, bytes) of its counter, if its set counts.
    pub counter: Option<(u64, u64)>,
    /// In a map of connection marks' `.marks`: the key its mark is (read by its map's key type).
    holder: Option<Key>,
}

/// What a parse of set DEF's elements collects.
struct Elements {
    key: KeyType,
    value: Option<ValueType>,
    /// Reading a `.marks` map: its values are keys of its map's, of this type.
    holders: Option<KeyType>,
    out: Vec<Element>,
}

impl Elements {
    fn of(def: &SetDef) -> Elements {
        Elements {
            key: def.key,
            value: def.value,
            holders: None,
            out: Vec::new(),
        }
    }
}

/// The element of set DEF with KEY (None: not there).
pub fn element(def: &SetDef, key: &Key) -> io::Result<Option<Element>> {
    let key = key.bytes();
    read_elements(
        &cname(&def.name),
        Elements::of(def),
        libc::NLM_F_ACK,
        Some(&key),
    )
    .map(|mut e| e.pop())
}

/// Every element of set DEF, in the kernel's order.
pub fn elements(def: &SetDef) -> io::Result<Vec<Element>> {
    read_elements(&cname(&def.name), Elements::of(def), libc::NLM_F_DUMP, None)
}

/// The elements of set NAME (only KEY's, when given), read as FOUND says.
fn read_elements(
    name: &CStr,
    mut found: Elements,
    flags: i32,
    key: Option<&[u8]>,
) -> io::Result<Vec<Element>> {
    let seq = 1;
    let msg = request_msg(
        libc::NFT_MSG_GETSETELEM,
        libc::NFPROTO_INET as u16,
        flags,
        seq,
        |hdr| {
            // SAFETY: as in `get`; the element (when one is asked for) is allocated here
            // (non-NULL, see `allocated`), its key copied by libnftnl, and freed with the set.
            unsafe {
                let s = set_object(name);
                if let Some(key) = key {
                    let e = allocated(sys::nftnl_set_elem_alloc()).as_ptr();
                    sys::nftnl_set_elem_set(
                        e,
                        sys::NFTNL_SET_ELEM_KEY as u16,
                        key.as_ptr().cast::<c_void>(),
                        key.len() as u32,
                    );
                    sys::nftnl_set_elem_add(s, e);
                }
                sys::nftnl_set_elems_nlmsg_build_payload(hdr, s);
                sys::nftnl_set_free(s);
            }
        },
    );
    match batch::request(&msg, seq, parse_elements, &mut found) {
        Ok(()) => Ok(found.out),
        // (no such element, set or table)
        Err(e) if Kind::of(&e) == Kind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn parse_elements(hdr: &libc::nlmsghdr, found: &mut Elements) -> libc::c_int {
    // SAFETY: `hdr` is a whole NEWSETELEM message that libmnl has length-checked inside our
    // receive buffer. The set and the element iterator are allocated here (non-NULL, see
    // `allocated`) and freed on every path out; every key, value and expression libnftnl
    // returns points into the parsed set and is read before the set is freed.
    unsafe {
        let s = allocated(sys::nftnl_set_alloc()).as_ptr();
        if sys::nftnl_set_elems_nlmsg_parse(hdr, s) < 0 {
            sys::nftnl_set_free(s);
            return mnl::mnl_sys::MNL_CB_ERROR;
        }
        let it = allocated(sys::nftnl_set_elems_iter_create(s)).as_ptr();
        loop {
            let e = sys::nftnl_set_elems_iter_next(it);
            if e.is_null() {
                break;
            }
            let data = |attr: u32| -> Option<&[u8]> {
                if !sys::nftnl_set_elem_is_set(e, attr as u16) {
                    return None;
                }
                let mut len = 0u32;
                let p = sys::nftnl_set_elem_get(e, attr as u16, &mut len);
                (!p.is_null()).then(|| std::slice::from_raw_parts(p.cast::<u8>(), len as usize))
            };
            let Some(key) = data(sys::NFTNL_SET_ELEM_KEY).and_then(|b| found.key.key_of(b)) else {
                continue;
            };
            let value = found
                .value
                .and_then(|t| data(sys::NFTNL_SET_ELEM_DATA).and_then(|b| t.value_of(b)));
            let holder = found
                .holders
                .and_then(|t| data(sys::NFTNL_SET_ELEM_DATA).and_then(|b| t.key_of(b)));
            let mut counter = None;
            if sys::nftnl_set_elem_is_set(e, sys::NFTNL_SET_ELEM_EXPR as u16) {
                let mut len = 0u32;
                let expr = sys::nftnl_set_elem_get(e, sys::NFTNL_SET_ELEM_EXPR as u16, &mut len)
                    .cast::<sys::nftnl_expr>();
                if !expr.is_null() {
                    counter = Some((
                        sys::nftnl_expr_get_u64(expr, sys::NFTNL_EXPR_CTR_PACKETS as u16),
                        sys::nftnl_expr_get_u64(expr, sys::NFTNL_EXPR_CTR_BYTES as u16),
                    ));
                }
            }
            found.out.push(Element {
                key,
                value,
                counter,
                holder,
            });
        }
        sys::nftnl_set_elems_iter_destroy(it);
        sys::nftnl_set_free(s);
    }
    mnl::mnl_sys::MNL_CB_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `typeof` records of a map of zones are byte for byte what nft (1.0.6) writes for
    /// `typeof iifname : ct zone` and `typeof ip6 daddr : ct zone` (from `nft --debug=mnl add
    /// map ...`; the records are in host byte order).
    #[test]
    #[cfg(target_endian = "little")]
    fn a_zone_maps_typeof_is_what_nft_writes() {
        let ct_zone = [
            0x04, 0x14, 0x00, 0x04, 0x0c, 0, 0, 0, 0x01, 0x0c, 0x00, 0x04, 0x11, 0, 0, 0, 0x01,
            0x04, 0xff, 0xff, 0xff, 0xff,
        ];
        let iifname = [
            0x03, 0x0e, 0x00, 0x04, 0x09, 0, 0, 0, 0x01, 0x06, 0x00, 0x04, 0x06, 0, 0, 0,
        ];
        let ip6_daddr = [
            0x03, 0x14, 0x00, 0x04, 0x07, 0, 0, 0, 0x01, 0x0c, 0x00, 0x04, 0x0d, 0, 0, 0, 0x01,
            0x04, 0x09, 0, 0, 0,
        ];
        assert_eq!(
            zone_map_typeof(KeyType::Ifname),
            [&iifname[..], &ct_zone].concat()
        );
        assert_eq!(
            zone_map_typeof(KeyType::Ipv6Addr),
            [&ip6_daddr[..], &ct_zone].concat()
        );
    }
}
