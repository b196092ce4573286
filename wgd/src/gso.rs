//! Segmentation offload toward the network: the datagrams that one turn of an interface's TUN
//! device sealed for one peer, one after another and of one size (the last may be shorter),
//! leave in one system call (`UDP_SEGMENT`). The kernel carries them through the stack as one
//! packet and splits them where it must: at a link that cannot carry it whole, or at a
//! receiving socket that does not ask for them whole (`UDP_GRO`, as wgd's do).

/// The most datagrams one send carries (the kernel's `UDP_MAX_SEGMENTS` is 64 before 6.9).
const MAX_SEGMENTS: usize = 64;
/// The most bytes one send carries: a UDP payload's limit, with room for either IP header.
const MAX_BYTES: usize = 65_000;

/// The datagrams waiting to go to one peer.
#[derive(Default)]
pub struct Sends {
    bytes: Vec<u8>,
    peer: u32,
    size: usize,
    count: usize,
    /// A shorter one came: nothing may follow it.
    closed: bool,
}

impl Sends {
    /// Whether a datagram of `len` bytes for `peer` may go with the waiting ones (if none
    /// wait, it may).
    pub fn takes(&self, peer: u32, len: usize) -> bool {
        self.count == 0
            || (self.peer == peer
                && !self.closed
                && len <= self.size
                && self.count < MAX_SEGMENTS
                && self.bytes.len() + len <= MAX_BYTES)
    }

    /// Adds `datagram` for `peer` (which [`Sends::takes`] it).
    pub fn push(&mut self, peer: u32, datagram: &[u8]) {
        debug_assert!(self.takes(peer, datagram.len()));
        if self.count == 0 {
            self.peer = peer;
            self.size = datagram.len();
        } else if datagram.len() < self.size {
            self.closed = true;
        }
        self.bytes.extend_from_slice(datagram);
        self.count += 1;
    }

    /// Hands the waiting datagrams to `send` (peer, bytes, and the size of each when more than
    /// one), and forgets them.
    pub fn flush(&mut self, send: impl FnOnce(u32, &[u8], Option<u16>)) {
        if self.count == 0 {
            return;
        }
        let segment = (self.count > 1).then_some(self.size as u16);
        send(self.peer, &self.bytes, segment);
        self.bytes.clear();
        self.count = 0;
        self.closed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(sends: &mut Sends) -> Option<(u32, usize, Option<u16>)> {
        let mut out = None;
        sends.flush(|peer, bytes, segment| out = Some((peer, bytes.len(), segment)));
        out
    }

    #[test]
    fn one_peers_datagrams_of_one_size_go_together_and_a_shorter_one_ends_them() {
        let mut s = Sends::default();
        assert_eq!(sent(&mut s), None, "nothing waits");
        for len in [100, 100, 60] {
            assert!(s.takes(7, len));
            s.push(7, &vec![0; len]);
        }
        assert!(!s.takes(7, 60), "after a shorter one");
        assert_eq!(sent(&mut s), Some((7, 260, Some(100))));
        s.push(7, &[0; 100]);
        assert!(!s.takes(8, 100), "another peer");
        assert!(!s.takes(7, 101), "a longer one");
        assert_eq!(
            sent(&mut s),
            Some((7, 100, None)),
            "one alone has no segment size"
        );
    }

    #[test]
    fn a_send_stays_within_the_kernels_limits() {
        let mut s = Sends::default();
        let mut n = 0;
        while s.takes(1, 1452) {
            s.push(1, &[0; 1452]);
            n += 1;
        }
        assert_eq!(n, MAX_BYTES / 1452);
        let mut s = Sends::default();
        while s.takes(1, 32) {
            s.push(1, &[0; 32]);
        }
        assert_eq!(sent(&mut s), Some((1, 32 * MAX_SEGMENTS, Some(32))));
    }
}
