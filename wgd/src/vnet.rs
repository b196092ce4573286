//! The virtio-net header before every packet of a TUN device opened with `IFF_VNET_HDR`
//! (`struct virtio_net_hdr`, little-endian), and the Internet checksum arithmetic that merging
//! ([`crate::gro`]) and splitting ([`crate::split`]) share.

/// The header's length.
pub const LEN: usize = 10;

/// `flags`: the checksum at `csum_start + csum_offset` holds only the pseudo-header's sum;
/// the sum from `csum_start` to the end completes it.
pub const NEEDS_CSUM: u8 = 1;

/// `gso_type`s: one packet standing for several of `gso_size` bytes of payload each.
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_TCPV6: u8 = 4;
pub const GSO_UDP_L4: u8 = 5;
/// Or'ed into a TCP `gso_type`: the packets carry ECN's CWR flag (only the first keeps it).
pub const GSO_ECN: u8 = 0x80;

/// One header, its fields in host order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub flags: u8,
    pub gso_type: u8,
    /// The length of the headers before the payload (a hint: the kernel gives the length of
    /// the packet's first buffer).
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl Header {
    pub fn read(b: &[u8; LEN]) -> Header {
        let le = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        Header {
            flags: b[0],
            gso_type: b[1],
            hdr_len: le(2),
            gso_size: le(4),
            csum_start: le(6),
            csum_offset: le(8),
        }
    }

    pub fn write(&self, b: &mut [u8]) {
        b[0] = self.flags;
        b[1] = self.gso_type;
        for (at, v) in [
            (2, self.hdr_len),
            (4, self.gso_size),
            (6, self.csum_start),
            (8, self.csum_offset),
        ] {
            b[at..at + 2].copy_from_slice(&v.to_le_bytes());
        }
    }
}

pub fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// The one's-complement sum of `bytes`, as 16-bit words, not yet folded.
pub fn sum(bytes: &[u8], mut acc: u64) -> u64 {
    let mut words = bytes.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc + u64::from(u32::from_be_bytes(tail))
}

pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The sum of the pseudo-header of IP packet `p`'s upper layer: its addresses, protocol
/// `proto` and `l4_len`.
pub fn pseudo(p: &[u8], v6: bool, proto: u8, l4_len: usize) -> u64 {
    let addrs = if v6 { &p[8..40] } else { &p[12..20] };
    sum(addrs, u64::from(proto) + l4_len as u64)
}

/// Fills in IPv4 header `h`'s checksum.
pub fn ipv4_checksum(h: &mut [u8]) {
    put16(h, 10, 0);
    let c = !fold(sum(h, 0));
    put16(h, 10, c);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_reads_back_what_was_written() {
        let h = Header {
            flags: NEEDS_CSUM,
            gso_type: GSO_TCPV6,
            hdr_len: 72,
            gso_size: 1388,
            csum_start: 40,
            csum_offset: 16,
        };
        let mut b = [0; LEN];
        h.write(&mut b);
        assert_eq!(b, [1, 4, 72, 0, 0x6c, 0x05, 40, 0, 16, 0]);
        assert_eq!(Header::read(&b), h);
    }

    #[test]
    fn the_ipv4_header_checksum_of_a_known_header() {
        // RFC 1071's usual example: 45 00 00 73 00 00 40 00 40 11 .. .. c0 a8 00 01 c0 a8 00 c7
        let mut h = [
            0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0xaa, 0xbb, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8,
            0, 0xc7,
        ];
        ipv4_checksum(&mut h);
        assert_eq!(be16(&h, 10), 0xb861);
    }
}

/// Packets for the tests, from 10.0.0.1 / fd00::1 port 1000 to .2 / ::2 port 2000, every
/// checksum right.
#[cfg(test)]
pub mod build {
    use super::*;

    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ACK: u8 = 0x10;

    /// An IPv4 (identification `id`) or IPv6 packet carrying `l4` of protocol `proto`.
    pub fn ip(v6: bool, proto: u8, id: u16, l4: &[u8]) -> Vec<u8> {
        let mut p = if v6 {
            let mut h = vec![0x60, 0, 0, 0, 0, 0, proto, 64];
            h.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            h.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
            put16(&mut h, 4, l4.len() as u16);
            h
        } else {
            let mut h = vec![
                0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
            ];
            put16(&mut h, 2, (20 + l4.len()) as u16);
            put16(&mut h, 4, id);
            ipv4_checksum(&mut h);
            h
        };
        p.extend_from_slice(l4);
        l4_checksum(&mut p);
        p
    }

    /// Fills in the TCP or UDP checksum of packet `p` (no IP options or extension headers).
    pub fn l4_checksum(p: &mut [u8]) {
        let (v6, at, proto) = match p[0] >> 4 {
            6 => (true, 40, p[6]),
            _ => (false, 20, p[9]),
        };
        let off = at + if proto == UDP { 6 } else { 16 };
        put16(p, off, 0);
        let c = !fold(sum(&p[at..], pseudo(p, v6, proto, p.len() - at)));
        put16(p, off, c);
    }

    /// A TCP segment with Linux's options (NOP NOP timestamps): a 32-byte header.
    pub fn tcp(v6: bool, seq: u32, id: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut l4 = vec![
            0x03, 0xe8, 0x07, 0xd0, 0, 0, 0, 0, 0, 0, 0, 7, 0x80, flags, 1, 0,
        ];
        l4[4..8].copy_from_slice(&seq.to_be_bytes());
        l4.extend_from_slice(&[0, 0, 0, 0]);
        l4.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 8]);
        l4.extend_from_slice(payload);
        ip(v6, TCP, id, &l4)
    }

    pub fn udp(v6: bool, id: u16, payload: &[u8]) -> Vec<u8> {
        let mut l4 = vec![0x03, 0xe8, 0x07, 0xd0, 0, 0, 0, 0];
        put16(&mut l4, 4, (8 + payload.len()) as u16);
        l4.extend_from_slice(payload);
        ip(v6, UDP, id, &l4)
    }
}
