//! Talking to nf_tables over netlink: one atomic batch per command, every ACK checked, and
//! plain request/response exchanges for dumps, all over one socket per namespace.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::rc::Rc;

use mnl::{CbResult, NlMessages};
use nftnl::FinalizedBatch;
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

/// Netlink receive buffer, aligned for `nlmsghdr` (dumps come in messages of up to ~32 KiB).
pub struct RecvBuf(Vec<u64>);

impl RecvBuf {
    pub fn new() -> RecvBuf {
        RecvBuf(vec![0u64; 128 * 1024 / 8])
    }

    fn bytes(&mut self) -> &mut [u8] {
        let len = std::mem::size_of_val(self.0.as_slice());
        // SAFETY: the pointer and length cover exactly the initialised u64s of the Vec, which
        // `&mut self` borrows exclusively for the returned lifetime; u8 has alignment 1 and
        // every bit pattern is a valid u8 (and any bytes written back are valid u64s).
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<u8>(), len) }
    }
}

impl Default for RecvBuf {
    fn default() -> Self {
        RecvBuf::new()
    }
}

/// A netfilter netlink socket in the current namespace, with a receive timeout so a missing
/// answer becomes an error instead of a hang, and a receive buffer that holds the
/// acknowledgements of a whole transaction.
fn socket() -> io::Result<mnl::Socket> {
    let sock = mnl::Socket::new(mnl::Bus::Netfilter)?;
    // SAFETY: `sock` owns the descriptor and closes it only when dropped; `fd` is used on the
    // next lines only, while `sock` is still alive.
    let fd = unsafe { BorrowedFd::borrow_raw(sock.as_raw_fd()) };
    setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(10, 0))?;
    // The kernel acknowledges every message of a transaction before we read any: a batch's
    // adds committed together (`pending`), with the table's structure, are several hundred
    // messages, whose acknowledgements (~1 KiB of buffer each) overflow the default 208 KiB
    // (ENOBUFS, and the answers are lost). As nft does: a bigger buffer, forced where we may
    // (CAP_NET_ADMIN), else as big as net.core.rmem_max allows.
    if setsockopt(&fd, sockopt::RcvBufForce, &RECV_BUFFER).is_err() {
        let _ = setsockopt(&fd, sockopt::RcvBuf, &RECV_BUFFER);
    }
    Ok(sock)
}

/// The receive buffer asked for (the kernel doubles it for its bookkeeping).
const RECV_BUFFER: usize = 4 << 20;

thread_local! {
    /// This thread's socket per namespace (by nsfs identity; the socket holds its namespace, so
    /// the identity cannot be reused while it is here).
    static SOCKETS: RefCell<HashMap<(u64, u64), Rc<mnl::Socket>>> = RefCell::new(HashMap::new());
}

/// Runs one exchange on the socket for the namespace the calling thread is in, opened on first
/// use and kept until the process exits. Closing a netfilter socket shortly after a commit
/// waits for that commit's RCU grace period (nf_tables flushes its pending releases when a
/// socket goes, NETLINK_URELEASE), measured at 7-17 ms on a busy machine; with a socket per
/// exchange, a rule add paid it up to twice and a batch once per line. Now a process pays it
/// once, when it exits. A socket an exchange failed on is dropped: it may still hold answers.
fn with_socket<T>(exchange: impl FnOnce(&mnl::Socket) -> io::Result<T>) -> io::Result<T> {
    let ns = common::netns::current_id().map_err(io::Error::other)?;
    let sock = match SOCKETS.with(|s| s.borrow().get(&ns).cloned()) {
        Some(sock) => sock,
        None => {
            let sock = Rc::new(socket()?);
            SOCKETS.with(|s| s.borrow_mut().insert(ns, Rc::clone(&sock)));
            sock
        }
    };
    let result = exchange(&sock);
    if result.is_err() {
        SOCKETS.with(|s| s.borrow_mut().remove(&ns));
    }
    result
}

fn timeout(e: io::Error) -> io::Error {
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "no answer from nf_tables within 10 s",
        )
    } else {
        e
    }
}

fn seq_of(msg: &[u8]) -> u32 {
    // nlmsghdr: len u32, type u16, flags u16, seq u32, pid u32.
    u32::from_ne_bytes([msg[8], msg[9], msg[10], msg[11]])
}

/// Sends one transaction and waits for the ACK of every message in it. The kernel applies a
/// batch entirely or not at all; the first error ACK is returned (its errno in the io::Error).
pub fn send(batch: &FinalizedBatch) -> io::Result<()> {
    with_socket(|sock| send_on(sock, batch))
}

fn send_on(sock: &mnl::Socket, batch: &FinalizedBatch) -> io::Result<()> {
    sock.send_all(batch)?;
    let portid = sock.portid();
    let mut pending: BTreeSet<u32> = batch.sequence_numbers().collect();
    let mut buf = RecvBuf::new();
    while !pending.is_empty() {
        let n = sock.recv_raw(buf.bytes()).map_err(timeout)?;
        for msg in NlMessages::new(&buf.bytes()[..n]) {
            let msg = msg?;
            // seq 0: do not let libmnl insist on one order; we track the set ourselves.
            mnl::cb_run(msg, 0, portid)?;
            pending.remove(&seq_of(msg));
        }
    }
    Ok(())
}

/// Sends one request and feeds every answer message to `each` until the kernel says done
/// (NLMSG_DONE for dumps, the ACK for a request sent with NLM_F_ACK).
pub fn request<T>(msg: &[u8], seq: u32, each: mnl::Callback<T>, data: &mut T) -> io::Result<()> {
    with_socket(|sock| request_on(sock, msg, seq, each, data))
}

fn request_on<T>(
    sock: &mnl::Socket,
    msg: &[u8],
    seq: u32,
    each: mnl::Callback<T>,
    data: &mut T,
) -> io::Result<()> {
    sock.send(msg)?;
    let portid = sock.portid();
    let mut buf = RecvBuf::new();
    loop {
        let n = sock.recv_raw(buf.bytes()).map_err(timeout)?;
        if let CbResult::Stop = mnl::cb_run2(&buf.bytes()[..n], seq, portid, each, data)? {
            return Ok(());
        }
    }
}
