//! Receive offload toward a TUN device, what a NIC's GRO does: the packets that one batch of
//! datagrams opened for one interface reach the kernel in as few writes as they can.
//! Consecutive TCP segments of one connection, or same-size UDP datagrams of one flow, become
//! one packet with a virtio-net header saying how it splits (GSO). The kernel then routes,
//! filters, NATs and forwards it once, and splits it only where it must: at a socket that
//! wants datagrams one by one, or at a link that cannot carry it whole.
//!
//! A packet joins the newest packet of its flow in the batch only if the merged packet splits
//! back into exactly the packets that came:
//! - the same addresses, ports, IP header fields, TCP acknowledgement, window and options;
//! - the next TCP sequence number and, in IPv4, the next identification;
//! - the first packet's payload size (the last may be shorter, and then nothing joins after
//!   it; nor after a TCP segment with PSH);
//! - a valid checksum: the kernel fills in each split packet's, so a packet whose checksum is
//!   wrong must not be merged into one that is right. It goes on alone, and is dropped where
//!   it would have been.
//!
//! Anything else (ICMP, fragments, IP options, SYN/FIN/RST, a packet out of order) is written
//! as it came, in the order it came.

use crate::vnet::{
    be16, be32, fold, put16, sum, Header, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, LEN as HEADER,
    NEEDS_CSUM,
};

/// IP's lengths are 16 bits.
const MAX_LEN: usize = 65_535;
/// The kernel splits a UDP GSO packet into at most this many datagrams (`UDP_MAX_SEGMENTS`).
const MAX_UDP_SEGMENTS: usize = 64;

const TCP: u8 = 6;
const UDP: u8 = 17;
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const URG: u8 = 0x20;
const CWR: u8 = 0x80;

/// What the TUN device's kernel takes merged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offload {
    pub tcp: bool,
    pub udp: bool,
}

impl Offload {
    /// Stops merging packets like `written` (one [`Batch::drain`] gave), which the kernel
    /// refused. Returns whether it was a merged packet.
    pub fn refuse(&mut self, written: &[u8]) -> bool {
        match written.get(1) {
            Some(&GSO_UDP_L4) => self.udp = false,
            Some(&GSO_TCPV4 | &GSO_TCPV6) => self.tcp = false,
            _ => return false,
        }
        true
    }
}

/// A packet that may merge: where its parts are and what must follow it.
#[derive(Clone, Copy, Debug)]
struct Parsed {
    v6: bool,
    udp: bool,
    /// The IP header's length, then the TCP or UDP header's.
    ip_len: usize,
    l4_len: usize,
    payload: usize,
    seq: u32,
    id: u16,
    push: bool,
}

impl Parsed {
    fn headers(&self) -> usize {
        self.ip_len + self.l4_len
    }

    fn checksum_offset(&self) -> usize {
        if self.udp {
            6
        } else {
            16
        }
    }
}

/// Reads `p` as a TCP segment or (with `udp`) a UDP datagram that may merge; None otherwise.
fn parse(p: &[u8], offload: Offload) -> Option<Parsed> {
    let (v6, ip_len, proto, id) = match p.first()? >> 4 {
        // No options, no fragment, and the length the IP header says.
        4 if p.len() >= 20
            && p[0] & 0x0f == 5
            && usize::from(be16(p, 2)) == p.len()
            && be16(p, 6) & 0x3fff == 0 =>
        {
            (false, 20, p[9], be16(p, 4))
        }
        // No extension header.
        6 if p.len() >= 40 && usize::from(be16(p, 4)) + 40 == p.len() => (true, 40, p[6], 0),
        _ => return None,
    };
    let l4 = &p[ip_len..];
    let (udp, l4_len, seq, push) = match proto {
        TCP if offload.tcp && l4.len() >= 20 => {
            let flags = l4[13];
            if flags & ACK == 0 || flags & (SYN | FIN | RST | URG | CWR) != 0 {
                return None;
            }
            let len = usize::from(l4[12] >> 4) * 4;
            if len < 20 {
                return None;
            }
            (false, len, be32(l4, 4), flags & PSH != 0)
        }
        UDP if offload.udp && l4.len() >= 8 && usize::from(be16(l4, 4)) == l4.len() => {
            (true, 8, 0, false)
        }
        _ => return None,
    };
    if l4_len < 8 || l4_len >= l4.len() {
        return None;
    }
    Some(Parsed {
        v6,
        udp,
        ip_len,
        l4_len,
        payload: l4.len() - l4_len,
        seq,
        id,
        push,
    })
}

/// The sum of the pseudo-header of `p`'s TCP or UDP part, `l4_len` bytes long.
fn pseudo(p: &[u8], at: &Parsed, l4_len: usize) -> u64 {
    let proto = if at.udp { UDP } else { TCP };
    crate::vnet::pseudo(p, at.v6, proto, l4_len)
}

/// Whether `p`'s TCP or UDP checksum is right (an IPv4 UDP datagram may carry none).
fn checksum_ok(p: &[u8], at: &Parsed) -> bool {
    let l4 = &p[at.ip_len..];
    if at.udp && !at.v6 && be16(l4, 6) == 0 {
        return true;
    }
    fold(sum(l4, pseudo(p, at, l4.len()))) == 0xffff
}

/// A packet of the batch: the header room, then the packet, merged with those that joined it.
#[derive(Default)]
struct Item {
    buf: Vec<u8>,
    /// How the first packet reads, if others may join it.
    head: Option<Parsed>,
    segments: usize,
    next_seq: u32,
    next_id: u16,
    closed: bool,
    /// Whether the first packet's checksum was found right (checked when a second comes).
    checked: bool,
}

impl Item {
    fn packet(&self) -> &[u8] {
        &self.buf[HEADER..]
    }

    /// Whether `p` (read as `at`) belongs to this item's flow: family, protocol, addresses
    /// and ports.
    fn same_flow(&self, p: &[u8], at: &Parsed) -> bool {
        let Some(head) = &self.head else {
            return false;
        };
        let q = self.packet();
        let addrs = if at.v6 { 8..40 } else { 12..20 };
        head.v6 == at.v6
            && head.udp == at.udp
            && q[addrs.clone()] == p[addrs]
            && q[head.ip_len..head.ip_len + 4] == p[at.ip_len..at.ip_len + 4]
    }

    /// Whether `p` may follow this item's packets (the item is of its flow).
    fn takes(&mut self, p: &[u8], at: &Parsed) -> bool {
        let Some(head) = self.head else {
            return false;
        };
        if self.closed
            || at.payload > head.payload
            || self.buf.len() - HEADER + at.payload > MAX_LEN
            || (at.udp && self.segments >= MAX_UDP_SEGMENTS)
            || (!at.udp && at.seq != self.next_seq)
            || (!at.v6 && at.id != self.next_id)
            || at.l4_len != head.l4_len
        {
            return false;
        }
        let q = self.packet();
        let same_ip = if at.v6 {
            q[..4] == p[..4] && q[6..8] == p[6..8]
        } else {
            q[..2] == p[..2] && q[6..10] == p[6..10]
        };
        let (o, n) = (at.ip_len, at.headers());
        // TCP: acknowledgement, data offset, flags but PSH, window, urgent pointer, options.
        let same_l4 = at.udp
            || (q[o + 8..o + 13] == p[o + 8..o + 13]
                && q[o + 13] & !PSH == p[o + 13] & !PSH
                && q[o + 14..o + 16] == p[o + 14..o + 16]
                && q[o + 18..n] == p[o + 18..n]);
        if !same_ip || !same_l4 || !checksum_ok(p, at) {
            return false;
        }
        if !self.checked {
            if !checksum_ok(q, &head) {
                self.closed = true;
                return false;
            }
            self.checked = true;
        }
        true
    }

    fn join(&mut self, p: &[u8], at: &Parsed) {
        self.buf.extend_from_slice(&p[at.headers()..]);
        self.segments += 1;
        self.next_seq = self.next_seq.wrapping_add(at.payload as u32);
        self.next_id = self.next_id.wrapping_add(1);
        if at.push {
            let flags = HEADER + at.ip_len + 13;
            self.buf[flags] |= PSH;
        }
        if at.push || at.payload < self.head.map_or(0, |h| h.payload) {
            self.closed = true;
        }
    }

    /// Fills in the virtio-net header, and for a merged packet its lengths and checksums:
    /// the IPv4 header's in full, the TCP or UDP one as the pseudo-header's sum that the
    /// kernel completes for each split packet.
    fn finish(&mut self) -> &[u8] {
        self.buf[..HEADER].fill(0);
        let Some(head) = self.head.filter(|_| self.segments > 1) else {
            return &self.buf;
        };
        let (hdr, p) = self.buf.split_at_mut(HEADER);
        let total = p.len();
        let l4_len = total - head.ip_len;
        if head.v6 {
            put16(p, 4, l4_len as u16);
        } else {
            put16(p, 2, total as u16);
            crate::vnet::ipv4_checksum(&mut p[..20]);
        }
        let l4 = head.ip_len;
        if head.udp {
            put16(p, l4 + 4, l4_len as u16);
        }
        let check = fold(pseudo(p, &head, l4_len));
        put16(p, l4 + head.checksum_offset(), check);
        Header {
            flags: NEEDS_CSUM,
            gso_type: match (head.udp, head.v6) {
                (true, _) => GSO_UDP_L4,
                (false, false) => GSO_TCPV4,
                (false, true) => GSO_TCPV6,
            },
            hdr_len: head.headers() as u16,
            gso_size: head.payload as u16,
            csum_start: head.ip_len as u16,
            csum_offset: head.checksum_offset() as u16,
        }
        .write(hdr);
        &self.buf
    }
}

/// The packets one batch of datagrams opened for one interface, merged as they come.
#[derive(Default)]
pub struct Batch {
    /// A pool: the first `used` are this batch's, the rest keep their buffers for the next.
    items: Vec<Item>,
    used: usize,
    offload: Offload,
}

impl Batch {
    /// Starts a batch for a TUN device that takes `offload` merged.
    pub fn start(&mut self, offload: Offload) {
        debug_assert_eq!(self.used, 0, "a batch was not drained");
        self.offload = offload;
    }

    /// Adds `packet`: merged into the newest packet of its flow if it may follow it, else
    /// after the others.
    pub fn push(&mut self, packet: &[u8]) {
        let parsed = parse(packet, self.offload);
        if let Some(at) = &parsed {
            let newest = self.items[..self.used]
                .iter_mut()
                .rev()
                .find(|i| i.same_flow(packet, at));
            if let Some(item) = newest {
                if item.takes(packet, at) {
                    item.join(packet, at);
                    return;
                }
            }
        }
        if self.used == self.items.len() {
            self.items.push(Item::default());
        }
        let item = &mut self.items[self.used];
        self.used += 1;
        item.buf.clear();
        item.buf.resize(HEADER, 0);
        item.buf.extend_from_slice(packet);
        item.head = parsed;
        item.segments = 1;
        item.checked = false;
        item.closed = parsed.is_some_and(|at| at.push);
        if let Some(at) = parsed {
            item.next_seq = at.seq.wrapping_add(at.payload as u32);
            item.next_id = at.id.wrapping_add(1);
        }
    }

    /// Hands each packet, its virtio-net header first, to `write`, in the order they came,
    /// and empties the batch.
    pub fn drain(&mut self, mut write: impl FnMut(&[u8])) {
        for item in &mut self.items[..self.used] {
            write(item.finish());
        }
        self.used = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vnet::build::{l4_checksum, tcp, udp};

    const BOTH: Offload = Offload {
        tcp: true,
        udp: true,
    };

    fn run(offload: Offload, packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut batch = Batch::default();
        batch.start(offload);
        for p in packets {
            batch.push(p);
        }
        let mut out = Vec::new();
        batch.drain(|b| out.push(b.to_vec()));
        out
    }

    /// What the kernel does with a merged packet: split it as wgd splits what it reads
    /// ([`crate::split`]), after checking that the header says what the kernel needs: the
    /// checksum field holding the pseudo-header's sum over the merged length.
    fn split(written: &[u8]) -> Vec<Vec<u8>> {
        let (hdr, p) = written.split_at(HEADER);
        let header = Header::read(hdr.try_into().unwrap());
        if header.gso_type == 0 {
            assert_eq!(
                header,
                Header::default(),
                "a packet alone has an empty header"
            );
            return vec![p.to_vec()];
        }
        assert_eq!(header.flags, NEEDS_CSUM);
        let at = parse(p, BOTH).expect("a merged packet parses");
        assert_eq!(usize::from(header.hdr_len), at.headers());
        assert_eq!(usize::from(header.csum_start), at.ip_len);
        let l4_total = p.len() - at.ip_len;
        assert_eq!(
            be16(p, at.ip_len + at.checksum_offset()),
            fold(pseudo(p, &at, l4_total))
        );
        let mut out = Vec::new();
        crate::split::packets(header, &mut p.to_vec(), &mut Vec::new(), |q| {
            out.push(q.to_vec())
        })
        .expect("a merged packet splits");
        out
    }

    fn split_all(written: &[Vec<u8>]) -> Vec<Vec<u8>> {
        written.iter().flat_map(|w| split(w)).collect()
    }

    #[test]
    fn a_run_of_tcp_segments_becomes_one_packet_that_splits_back_in_both_families() {
        for v6 in [false, true] {
            let segs = vec![
                tcp(v6, 100, 7, ACK, &[1; 1000]),
                tcp(v6, 1100, 8, ACK, &[2; 1000]),
                tcp(v6, 2100, 9, ACK | PSH, &[3; 400]),
            ];
            let written = run(BOTH, &segs);
            assert_eq!(written.len(), 1, "v6 {v6}");
            let gso = if v6 { GSO_TCPV6 } else { GSO_TCPV4 };
            assert_eq!(written[0][1], gso);
            assert_eq!(u16::from_le_bytes([written[0][4], written[0][5]]), 1000);
            assert_eq!(split_all(&written), segs, "v6 {v6}");
        }
    }

    #[test]
    fn same_size_udp_datagrams_merge_only_where_the_kernel_takes_them() {
        for v6 in [false, true] {
            let grams: Vec<Vec<u8>> = (0..5).map(|i| udp(v6, 40 + i, &[i as u8; 64])).collect();
            let written = run(BOTH, &grams);
            assert_eq!(written.len(), 1, "v6 {v6}");
            assert_eq!(written[0][1], GSO_UDP_L4);
            assert_eq!(split_all(&written), grams, "v6 {v6}");
            let tcp_only = Offload {
                tcp: true,
                udp: false,
            };
            assert_eq!(run(tcp_only, &grams).len(), 5);
        }
    }

    #[test]
    fn what_may_not_follow_is_written_alone_and_in_order() {
        let first = tcp(false, 100, 7, ACK, &[1; 1000]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "a gap in the sequence",
                tcp(false, 1200, 8, ACK, &[2; 1000]),
            ),
            (
                "a gap in the identification",
                tcp(false, 1100, 9, ACK, &[2; 1000]),
            ),
            ("a FIN", tcp(false, 1100, 8, ACK | FIN, &[2; 1000])),
            ("a larger payload", tcp(false, 1100, 8, ACK, &[2; 1001])),
            ("another acknowledgement", {
                let mut p = tcp(false, 1100, 8, ACK, &[2; 1000]);
                p[20 + 11] = 8;
                l4_checksum(&mut p);
                p
            }),
            ("other options", {
                let mut p = tcp(false, 1100, 8, ACK, &[2; 1000]);
                p[20 + 27] = 10;
                l4_checksum(&mut p);
                p
            }),
            ("a wrong checksum", {
                let mut p = tcp(false, 1100, 8, ACK, &[2; 1000]);
                p[100] ^= 1;
                p
            }),
            ("another TTL", {
                let mut p = tcp(false, 1100, 8, ACK, &[2; 1000]);
                p[8] = 63;
                p
            }),
        ];
        for (what, second) in cases {
            let sent = vec![first.clone(), second.clone()];
            let written = run(BOTH, &sent);
            assert_eq!(written.len(), 2, "{what}");
            assert_eq!(split_all(&written), sent, "{what}");
        }
    }

    #[test]
    fn a_tcp_header_shorter_than_20_bytes_merges_nothing() {
        // What a device may send through its tunnel: data offset 3 (12 bytes), thrice.
        let bad = |seq: u32, id: u16| {
            let mut p = tcp(false, seq, id, ACK, &[1; 100]);
            p[20 + 12] = 0x30;
            p
        };
        // (In sequence, as read with that offset: 120 bytes of payload each.)
        let sent = vec![bad(100, 1), bad(220, 2), bad(340, 3)];
        let written = run(BOTH, &sent);
        assert_eq!(written.len(), 3);
        assert!(written.iter().zip(&sent).all(|(w, p)| &w[HEADER..] == p));
    }

    #[test]
    fn a_first_packet_with_a_wrong_checksum_takes_no_other() {
        let mut first = tcp(false, 100, 7, ACK, &[1; 1000]);
        first[200] ^= 1;
        let sent = vec![first, tcp(false, 1100, 8, ACK, &[2; 1000])];
        assert_eq!(
            run(BOTH, &sent),
            vec![
                [&[0; HEADER][..], &sent[0]].concat(),
                [&[0; HEADER][..], &sent[1]].concat()
            ]
        );
    }

    #[test]
    fn flows_interleaved_merge_each_and_a_shorter_segment_ends_its_run() {
        let a = |seq: u32, id: u16, len: usize| tcp(false, seq, id, ACK, &vec![9; len]);
        let b = |id: u16| udp(true, id, &[5; 64]);
        let sent = vec![
            a(0, 1, 500),
            b(0),
            a(500, 2, 500),
            b(0),
            a(1000, 3, 100),
            a(1100, 4, 500),
        ];
        let written = run(BOTH, &sent);
        assert_eq!(written.len(), 3);
        let order: Vec<Vec<u8>> = vec![
            sent[0].clone(),
            sent[2].clone(),
            sent[4].clone(),
            sent[1].clone(),
            sent[3].clone(),
            sent[5].clone(),
        ];
        assert_eq!(split_all(&written), order);
    }

    #[test]
    fn without_offload_nothing_merges_and_a_merge_stays_under_64_kib() {
        let segs: Vec<Vec<u8>> = (0..60)
            .map(|i| tcp(false, i * 1400, i as u16, ACK, &[7; 1400]))
            .collect();
        assert_eq!(run(Offload::default(), &segs).len(), 60);
        let written = run(BOTH, &segs);
        assert!(written.iter().all(|w| w.len() - HEADER <= MAX_LEN));
        assert_eq!(written.len(), 2);
        assert_eq!(split_all(&written), segs);
    }
}
