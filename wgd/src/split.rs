//! Segmentation offload from a TUN device, what a NIC's TSO and USO do for its driver. wgd
//! turns the device's offloads on ([`crate::tun`]), so the kernel hands over
//! - a TCP connection's data in packets of up to 64 KiB (TSO), and UDP datagrams that a sender
//!   (`UDP_SEGMENT`) or the kernel's GRO merged (USO, Linux 6.2), each standing for several
//!   packets of `gso_size` bytes of payload;
//! - packets whose TCP or UDP checksum holds only the pseudo-header's sum (`NEEDS_CSUM`): the
//!   local stack leaves the rest to the device.
//!
//! [`packets`] gives the packets one read stands for, whole and with their checksums, as the
//! kernel's own segmentation would have made them: each one's lengths, the IPv4 identification
//! counting up, the TCP sequence number, FIN and PSH on the last only, CWR on the first only.
//! They are then sealed one by one, and leave together again ([`crate::gso`]).

use crate::vnet::{
    be16, be32, fold, ipv4_checksum, pseudo, put16, sum, Header, GSO_ECN, GSO_NONE, GSO_TCPV4,
    GSO_TCPV6, GSO_UDP_L4, NEEDS_CSUM,
};

const TCP: u8 = 6;
const UDP: u8 = 17;
const FIN: u8 = 0x01;
const PSH: u8 = 0x08;
const CWR: u8 = 0x80;

/// Why a read cannot be opened: the kernel gave what it never gives. The read is dropped.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// Hands each packet that `packet` (read after `header`) stands for to `each`, in order.
/// `scratch` holds the split ones.
pub fn packets(
    header: Header,
    packet: &mut [u8],
    scratch: &mut Vec<u8>,
    mut each: impl FnMut(&[u8]),
) -> Result<(), Malformed> {
    match header.gso_type & !GSO_ECN {
        GSO_NONE => {
            if header.flags & NEEDS_CSUM != 0 {
                complete(packet, header)?;
            }
            each(packet);
            Ok(())
        }
        gso @ (GSO_TCPV4 | GSO_TCPV6 | GSO_UDP_L4) => {
            let at = Layout::read(packet, header, gso)?;
            at.split(packet, scratch, each);
            Ok(())
        }
        _ => Err(Malformed("a GSO type wgd did not offer")),
    }
}

/// Completes the checksum at `csum_start + csum_offset`, which holds the pseudo-header's sum,
/// with the sum of everything from `csum_start` on.
fn complete(packet: &mut [u8], header: Header) -> Result<(), Malformed> {
    let start = usize::from(header.csum_start);
    let field = start + usize::from(header.csum_offset);
    if field + 2 > packet.len() {
        return Err(Malformed("a checksum beyond the packet"));
    }
    let c = !fold(sum(&packet[start..], 0));
    // (0 is "no checksum" to UDP; in one's complement 0xffff is the same number.)
    put16(packet, field, if c == 0 { 0xffff } else { c });
    Ok(())
}

/// Where a packet to split keeps what its splitting changes.
struct Layout {
    v6: bool,
    udp: bool,
    /// Where the TCP or UDP header starts, and the payload.
    l4: usize,
    payload: usize,
    size: usize,
}

impl Layout {
    fn read(p: &[u8], header: Header, gso: u8) -> Result<Layout, Malformed> {
        let v6 = match p.first().map(|b| b >> 4) {
            Some(4) if gso != GSO_TCPV6 && p.len() >= 20 && p[0] & 0x0f >= 5 => false,
            Some(6) if gso != GSO_TCPV4 && p.len() >= 40 => true,
            _ => return Err(Malformed("a GSO type of another IP version")),
        };
        let ip_len = if v6 { 40 } else { usize::from(p[0] & 0x0f) * 4 };
        let l4 = usize::from(header.csum_start);
        let udp = gso == GSO_UDP_L4;
        if l4 < ip_len || l4 + if udp { 8 } else { 20 } > p.len() {
            return Err(Malformed("a transport header outside the packet"));
        }
        let l4_len = if udp {
            8
        } else {
            usize::from(p[l4 + 12] >> 4) * 4
        };
        let payload = l4 + l4_len;
        if (!udp && l4_len < 20) || payload > p.len() {
            return Err(Malformed(
                "a TCP header shorter than 20 bytes or longer than the packet",
            ));
        }
        let size = usize::from(header.gso_size);
        if size == 0 {
            return Err(Malformed("a GSO packet of segments of 0 bytes"));
        }
        Ok(Layout {
            v6,
            udp,
            l4,
            payload,
            size,
        })
    }

    fn split(&self, p: &[u8], scratch: &mut Vec<u8>, mut each: impl FnMut(&[u8])) {
        let (l4, headers) = (self.l4, &p[..self.payload]);
        let data = &p[self.payload..];
        let count = data.len().div_ceil(self.size).max(1);
        let (id, seq) = (be16(p, 4), be32(p, l4 + 4));
        let (proto, check) = if self.udp {
            (UDP, l4 + 6)
        } else {
            (TCP, l4 + 16)
        };
        for i in 0..count {
            let chunk =
                &data[(i * self.size).min(data.len())..((i + 1) * self.size).min(data.len())];
            scratch.clear();
            scratch.extend_from_slice(headers);
            scratch.extend_from_slice(chunk);
            let q = &mut scratch[..];
            let len = q.len();
            if self.v6 {
                put16(q, 4, (len - 40) as u16);
            } else {
                put16(q, 2, len as u16);
                put16(q, 4, id.wrapping_add(i as u16));
                let ihl = usize::from(q[0] & 0x0f) * 4;
                ipv4_checksum(&mut q[..ihl]);
            }
            if self.udp {
                put16(q, l4 + 4, (len - l4) as u16);
            } else {
                let sent = (i * self.size) as u32;
                q[l4 + 4..l4 + 8].copy_from_slice(&seq.wrapping_add(sent).to_be_bytes());
                if i + 1 < count {
                    q[l4 + 13] &= !(FIN | PSH);
                }
                if i > 0 {
                    q[l4 + 13] &= !CWR;
                }
            }
            put16(q, check, 0);
            let c = !fold(sum(&q[l4..], pseudo(q, self.v6, proto, len - l4)));
            put16(q, check, if c == 0 && self.udp { 0xffff } else { c });
            each(q);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vnet::build::{tcp, udp, ACK};

    fn all(header: Header, packet: &[u8]) -> Result<Vec<Vec<u8>>, Malformed> {
        let mut out = Vec::new();
        packets(header, &mut packet.to_vec(), &mut Vec::new(), |p| {
            out.push(p.to_vec())
        })?;
        Ok(out)
    }

    /// What the local stack hands a device with offloads: `segs` as one packet, its
    /// checksum field holding the pseudo-header's sum over the whole.
    fn merged(segs: &[Vec<u8>], v6: bool, udp: bool) -> (Header, Vec<u8>) {
        let (ip_len, l4_len) = (if v6 { 40 } else { 20 }, if udp { 8 } else { 32 });
        let headers = ip_len + l4_len;
        let mut p = segs[0].clone();
        for s in &segs[1..] {
            p.extend_from_slice(&s[headers..]);
        }
        let len = p.len();
        if v6 {
            put16(&mut p, 4, (len - 40) as u16);
        } else {
            put16(&mut p, 2, len as u16);
            ipv4_checksum(&mut p[..20]);
        }
        let (proto, offset) = if udp { (UDP, 6) } else { (TCP, 16) };
        if udp {
            put16(&mut p, ip_len + 4, (len - ip_len) as u16);
        }
        let partial = fold(pseudo(&p, v6, proto, len - ip_len));
        put16(&mut p, ip_len + offset, partial);
        let header = Header {
            flags: NEEDS_CSUM,
            gso_type: match (udp, v6) {
                (true, _) => GSO_UDP_L4,
                (false, false) => GSO_TCPV4,
                (false, true) => GSO_TCPV6,
            },
            hdr_len: headers as u16,
            gso_size: (segs[0].len() - headers) as u16,
            csum_start: ip_len as u16,
            csum_offset: offset as u16,
        };
        (header, p)
    }

    #[test]
    fn a_tso_packet_splits_into_the_segments_it_stands_for_in_both_families() {
        for v6 in [false, true] {
            let segs = vec![
                tcp(v6, 100, 7, ACK | CWR, &[1; 1000]),
                tcp(v6, 1100, 8, ACK, &[2; 1000]),
                tcp(v6, 2100, 9, ACK | PSH | FIN, &[3; 400]),
            ];
            // What the stack merged carries its flags on the first header: CWR, PSH, FIN.
            let mut first = segs[0].clone();
            first[if v6 { 40 } else { 20 } + 13] |= PSH | FIN;
            let (header, p) = merged(&[first, segs[1].clone(), segs[2].clone()], v6, false);
            assert_eq!(all(header, &p).unwrap(), segs, "v6 {v6}");
        }
    }

    #[test]
    fn a_uso_packet_splits_into_its_datagrams_in_both_families() {
        for v6 in [false, true] {
            let grams: Vec<Vec<u8>> = (0..5)
                .map(|i| udp(v6, 40 + i, &[i as u8; 64][..if i == 4 { 20 } else { 64 }]))
                .collect();
            let (header, p) = merged(&grams, v6, true);
            assert_eq!(all(header, &p).unwrap(), grams, "v6 {v6}");
        }
    }

    #[test]
    fn a_packet_alone_gets_its_checksum_completed_or_goes_as_it_is() {
        for (v6, udp_) in [(false, false), (true, false), (false, true), (true, true)] {
            let whole = if udp_ {
                udp(v6, 3, &[9; 333])
            } else {
                tcp(v6, 5, 3, ACK, &[9; 333])
            };
            let (mut header, p) = merged(std::slice::from_ref(&whole), v6, udp_);
            header.gso_type = GSO_NONE;
            assert_eq!(all(header, &p).unwrap(), vec![whole.clone()]);
            assert_eq!(all(Header::default(), &whole).unwrap(), vec![whole.clone()]);
        }
    }

    #[test]
    fn what_the_kernel_never_gives_is_refused_without_a_packet() {
        let (header, p) = merged(&[tcp(false, 1, 1, ACK, &[1; 100])], false, false);
        let cases: Vec<(&str, Header, Vec<u8>)> = vec![
            (
                "type",
                Header {
                    gso_type: 3,
                    ..header
                },
                p.clone(),
            ),
            (
                "size 0",
                Header {
                    gso_size: 0,
                    ..header
                },
                p.clone(),
            ),
            (
                "family",
                Header {
                    gso_type: GSO_TCPV6,
                    ..header
                },
                p.clone(),
            ),
            (
                "start",
                Header {
                    csum_start: 200,
                    ..header
                },
                p.clone(),
            ),
            (
                "start before IP's end",
                Header {
                    csum_start: 8,
                    ..header
                },
                p.clone(),
            ),
            (
                "field",
                Header {
                    gso_type: GSO_NONE,
                    csum_offset: 500,
                    ..header
                },
                p.clone(),
            ),
            ("short TCP header", header, {
                let mut q = p.clone();
                q[32] = 0x40;
                q
            }),
            ("long TCP header", header, p[..50].to_vec()),
            ("empty", header, Vec::new()),
        ];
        for (what, header, p) in cases {
            assert!(all(header, &p).is_err(), "{what}");
        }
    }

    #[test]
    fn any_header_on_any_bytes_splits_or_is_refused_without_panicking() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let base = tcp(true, 1, 0, ACK, &[4; 300]);
        for _ in 0..20_000 {
            let r = next();
            let bytes = [r.to_le_bytes(), next().to_le_bytes()].concat();
            let mut header = Header::read(bytes[..crate::vnet::LEN].try_into().unwrap());
            header.gso_type = [GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4][(r >> 60) as usize & 3];
            header.csum_start %= 400;
            header.csum_offset %= 64;
            let mut p = base.clone();
            p.truncate((next() % 400) as usize);
            if let Some(b) = p.first_mut() {
                *b = [0x45, 0x60, 0x4f, 0x41][(r >> 40) as usize & 3];
            }
            let _ = all(header, &p);
        }
    }
}
