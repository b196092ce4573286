//! A worker thread: one epoll loop over the interfaces it was given (their TUN devices, UDP
//! sockets, UAPI sockets and the connections on them) and one timer tick for all of them.
//! An interface belongs to one worker for its whole life, so nothing of it is shared or
//! locked; the control thread hands interfaces over through [`Order`]s.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::daemon::Registry;
use crate::gro::Batch;
use crate::gso::Sends;
use crate::iface::Iface;
use crate::split;
use crate::uapi::{self, Request};
use crate::udp;

/// The timer tick (boringtun's own device ticks as often): handshake retries, keepalives and
/// expiry are decided on it, so it is the only wake-up of an idle hub.
pub const TICK: Duration = Duration::from_millis(250);

/// Packets or datagrams taken from one descriptor before the others get their turn.
const BATCH: usize = 64;

/// A UAPI request larger than this is refused (a `set` of thousands of peers fits).
const MAX_REQUEST: usize = 16 << 20;

/// The largest packet a TUN device or a socket gives, and the room over it for a datagram's
/// overhead (and for the virtio-net header before a packet read).
const BUFFER: usize = 65_536;
const OVERHEAD: usize = 256;

/// What the control thread asks of a worker.
pub enum Order {
    Add {
        id: u32,
        name: String,
        tun: OwnedFd,
        netns: OwnedFd,
        port: u16,
        reply: Sender<Result<Opened, String>>,
    },
    Del {
        id: u32,
        reply: Sender<bool>,
    },
    Stop,
}

/// An interface a worker opened: the port it bound and its UAPI socket file (device, inode).
pub struct Opened {
    pub port: u16,
    pub uapi_file: (u64, u64),
}

/// The control thread's side of a worker.
pub struct Handle {
    orders: Sender<Order>,
    wake: Arc<EventFd>,
    thread: std::thread::JoinHandle<()>,
}

impl Handle {
    pub fn send(&self, order: Order) {
        if self.orders.send(order).is_ok() {
            let _ = self.wake.write(1);
        }
    }

    pub fn join(self) {
        self.send(Order::Stop);
        let _ = self.thread.join();
    }
}

/// Token kinds in the low byte of an epoll token; the rest is the interface's or the
/// connection's id.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Wake = 0,
    Tun = 1,
    Udp4 = 2,
    Udp6 = 3,
    Uapi = 4,
    Conn = 5,
}

fn token(id: u64, kind: Kind) -> u64 {
    id << 8 | kind as u64
}

fn split(token: u64) -> (u64, Option<Kind>) {
    let kind = match token & 0xff {
        0 => Kind::Wake,
        1 => Kind::Tun,
        2 => Kind::Udp4,
        3 => Kind::Udp6,
        4 => Kind::Uapi,
        5 => Kind::Conn,
        _ => return (token >> 8, None),
    };
    (token >> 8, Some(kind))
}

/// A connection on an interface's UAPI socket, until its request is whole.
struct Conn {
    stream: UnixStream,
    iface: u32,
    request: Vec<u8>,
}

struct Worker {
    index: usize,
    epoll: Epoll,
    wake: Arc<EventFd>,
    orders: Receiver<Order>,
    registry: Registry,
    ifaces: HashMap<u32, Iface>,
    conns: HashMap<u64, Conn>,
    next_conn: u64,
    rx: Vec<u8>,
    /// One packet of what a TUN device handed over merged ([`split`]).
    segment: Vec<u8>,
    tx: Vec<u8>,
    cmsg: Vec<u8>,
    /// What one turn of an interface's UDP sockets opened, for its TUN device.
    batch: Batch,
    /// What one turn of an interface's TUN device sealed, for the network.
    sends: Sends,
}

/// Starts worker `index`.
pub fn spawn(index: usize, registry: Registry) -> std::io::Result<Handle> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    let wake = Arc::new(EventFd::from_value_and_flags(
        0,
        EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
    )?);
    epoll.add(
        wake.as_fd(),
        EpollEvent::new(EpollFlags::EPOLLIN, token(0, Kind::Wake)),
    )?;
    let (orders, inbox) = std::sync::mpsc::channel();
    let mut worker = Worker {
        index,
        epoll,
        wake: Arc::clone(&wake),
        orders: inbox,
        registry,
        ifaces: HashMap::new(),
        conns: HashMap::new(),
        next_conn: 1,
        rx: vec![0; BUFFER + OVERHEAD],
        segment: Vec::with_capacity(BUFFER),
        tx: vec![0; BUFFER + OVERHEAD],
        cmsg: udp::cmsg_buffer(),
        batch: Batch::default(),
        sends: Sends::default(),
    };
    let thread = std::thread::Builder::new()
        .name(format!("wgd-worker-{index}"))
        .spawn(move || worker.run())?;
    Ok(Handle {
        orders,
        wake,
        thread,
    })
}

fn watch(epoll: &Epoll, fd: impl AsFd, token: u64) -> nix::Result<()> {
    epoll.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, token))
}

impl Worker {
    fn run(&mut self) {
        let mut events = vec![EpollEvent::empty(); 256];
        let mut next_tick = Instant::now() + TICK;
        let mut ticks: u64 = 0;
        loop {
            // Rounded up: a wait of 0 ms before the tick is due would spin.
            let wait = next_tick.saturating_duration_since(Instant::now());
            let wait_ms = wait.as_micros().div_ceil(1000) as u16;
            let n = match self.epoll.wait(&mut events, wait_ms) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => panic!("epoll_wait in worker {}: {e}", self.index),
            };
            for event in &events[..n] {
                let hangup = event
                    .events()
                    .intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP);
                match split(event.data()) {
                    (_, Some(Kind::Wake)) => {
                        if !self.take_orders() {
                            return self.stop();
                        }
                    }
                    (id, Some(Kind::Tun)) => self.on_tun(id as u32, hangup),
                    (id, Some(Kind::Udp4)) => self.on_udp(id as u32, false),
                    (id, Some(Kind::Udp6)) => self.on_udp(id as u32, true),
                    (id, Some(Kind::Uapi)) => self.on_uapi(id as u32),
                    (id, Some(Kind::Conn)) => self.on_conn(id),
                    (_, None) => {}
                }
            }
            if Instant::now() >= next_tick {
                let second = ticks % 4 == 0;
                for iface in self.ifaces.values_mut() {
                    iface.tick(&mut self.tx, second);
                }
                ticks += 1;
                next_tick += TICK;
                // A worker held up for several ticks catches up once, not once per tick.
                if next_tick < Instant::now() {
                    next_tick = Instant::now() + TICK;
                }
            }
        }
    }

    /// Carries out what the control thread sent; false on Stop.
    fn take_orders(&mut self) -> bool {
        let _ = self.wake.read();
        while let Ok(order) = self.orders.try_recv() {
            match order {
                Order::Add {
                    id,
                    name,
                    tun,
                    netns,
                    port,
                    reply,
                } => {
                    let _ = reply.send(self.add(id, &name, tun, netns, port));
                }
                Order::Del { id, reply } => {
                    let _ = reply.send(self.remove(id));
                }
                Order::Stop => return false,
            }
        }
        true
    }

    fn add(
        &mut self,
        id: u32,
        name: &str,
        tun: OwnedFd,
        netns: OwnedFd,
        port: u16,
    ) -> Result<Opened, String> {
        let iface = Iface::open(name, tun, netns, port)?;
        let id64 = u64::from(id);
        let watched = watch(&self.epoll, &iface.tun, token(id64, Kind::Tun))
            .and_then(|()| watch(&self.epoll, &iface.uapi, token(id64, Kind::Uapi)))
            .and_then(|()| self.watch_udp(id, &iface));
        if let Err(e) = watched {
            iface.close();
            return Err(format!("watching {name}: {}", e.desc()));
        }
        let opened = Opened {
            port: iface.udp.port,
            uapi_file: iface.uapi_file,
        };
        self.ifaces.insert(id, iface);
        Ok(opened)
    }

    fn watch_udp(&self, id: u32, iface: &Iface) -> nix::Result<()> {
        let id = u64::from(id);
        watch(&self.epoll, &iface.udp.v4, token(id, Kind::Udp4))?;
        if let Some(v6) = &iface.udp.v6 {
            watch(&self.epoll, v6, token(id, Kind::Udp6))?;
        }
        Ok(())
    }

    /// Closes interface `id` (its descriptors leave the epoll set as they close) and the
    /// connections on its UAPI socket. Returns whether it was there.
    fn remove(&mut self, id: u32) -> bool {
        self.conns.retain(|_, c| c.iface != id);
        match self.ifaces.remove(&id) {
            Some(iface) => {
                iface.close();
                true
            }
            None => false,
        }
    }

    /// An interface whose TUN device is gone (its link deleted, or its namespace): closed, and
    /// struck from the registry, so the name can be served again.
    fn drop_dead(&mut self, id: u32) {
        if let Some(iface) = self.ifaces.get(&id) {
            let mut registry = self.registry.lock().expect("registry lock");
            if registry.get(&iface.name).map(|e| e.id) == Some(id) {
                registry.remove(&iface.name);
            }
        }
        self.remove(id);
    }

    fn on_tun(&mut self, id: u32, hangup: bool) {
        let Some(iface) = self.ifaces.get_mut(&id) else {
            return;
        };
        if hangup {
            return self.drop_dead(id);
        }
        let mut dead = false;
        let (tx, sends) = (&mut self.tx, &mut self.sends);
        // (A turn ends after BATCH reads or BATCH packets, whichever comes first: one read of
        // 64 KiB stands for ~45.)
        let mut sealed = 0;
        for _ in 0..BATCH {
            if sealed >= BATCH {
                break;
            }
            match iface.tun.read(&mut self.rx) {
                Ok(Some((header, read))) => {
                    // (What does not split is dropped, as a NIC drops a descriptor it cannot read.)
                    let _ = split::packets(header, read, &mut self.segment, |packet| {
                        sealed += 1;
                        iface.outbound(packet, tx, sends)
                    });
                }
                Ok(None) => break,
                Err(_) => {
                    dead = true;
                    break;
                }
            }
        }
        iface.send_waiting(sends);
        if dead {
            self.drop_dead(id);
        }
    }

    fn on_udp(&mut self, id: u32, v6: bool) {
        let Some(iface) = self.ifaces.get_mut(&id) else {
            return;
        };
        self.batch.start(iface.tun.offload());
        for _ in 0..BATCH {
            let fd = match (v6, &iface.udp.v6) {
                (false, _) => &iface.udp.v4,
                (true, Some(fd)) => fd,
                (true, None) => break,
            };
            match udp::receive(fd, &mut self.rx, &mut self.cmsg) {
                Ok(got) => {
                    let size = got.segment.unwrap_or(got.len).max(1);
                    for datagram in self.rx[..got.len].chunks(size) {
                        iface.inbound(
                            datagram,
                            got.from,
                            got.source,
                            &mut self.tx,
                            &mut self.batch,
                        );
                    }
                }
                Err(Errno::EAGAIN) => break,
                // ICMP errors surface here (ECONNREFUSED ...): nothing to do but go on.
                Err(_) => {}
            }
        }
        iface.tun.write(&mut self.batch);
    }

    fn on_uapi(&mut self, id: u32) {
        let Some(iface) = self.ifaces.get(&id) else {
            return;
        };
        while let Ok((stream, _)) = iface.uapi.accept() {
            let conn = self.next_conn;
            self.next_conn += 1;
            if stream.set_nonblocking(true).is_err()
                || watch(&self.epoll, &stream, token(conn, Kind::Conn)).is_err()
            {
                continue;
            }
            self.conns.insert(
                conn,
                Conn {
                    stream,
                    iface: id,
                    request: Vec::new(),
                },
            );
        }
    }

    /// Reads what a UAPI connection sent; once its request is whole (a blank line ends it),
    /// answers and closes it.
    fn on_conn(&mut self, conn: u64) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let mut chunk = [0u8; 4096];
        loop {
            match c.stream.read(&mut chunk) {
                Ok(0) => {
                    self.conns.remove(&conn);
                    return;
                }
                Ok(n) => c.request.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.conns.remove(&conn);
                    return;
                }
            }
            if c.request.len() > MAX_REQUEST {
                self.conns.remove(&conn);
                return;
            }
        }
        let Some(end) = c.request.windows(2).position(|w| w == b"\n\n") else {
            return;
        };
        let c = self.conns.remove(&conn).expect("looked up above");
        let text = String::from_utf8_lossy(&c.request[..end]).into_owned();
        let answer = self.answer(c.iface, &text);
        let mut stream = c.stream;
        // The answer is small; a client that does not read it within a second loses it.
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
        let _ = stream.write_all(answer.as_bytes());
    }

    fn answer(&mut self, id: u32, text: &str) -> String {
        let Some(iface) = self.ifaces.get_mut(&id) else {
            return uapi::format_errno(libc::ENODEV);
        };
        match uapi::parse(text) {
            Ok(Request::Get) => uapi::format_get(&iface.view()),
            Ok(Request::Set(set)) => match iface.apply(set, &mut self.tx) {
                Ok(rebound) => {
                    if rebound {
                        let iface = &self.ifaces[&id];
                        if self.watch_udp(id, iface).is_err() {
                            return uapi::format_errno(libc::EIO);
                        }
                    }
                    uapi::format_errno(0)
                }
                Err(errno) => uapi::format_errno(errno),
            },
            Err(_) => uapi::format_errno(uapi::EINVAL),
        }
    }

    /// Closes every interface (their UAPI sockets are removed, their links go with their TUN
    /// devices).
    fn stop(&mut self) {
        self.conns.clear();
        for (_, iface) in self.ifaces.drain() {
            iface.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_id_and_kind() {
        for kind in [
            Kind::Wake,
            Kind::Tun,
            Kind::Udp4,
            Kind::Udp6,
            Kind::Uapi,
            Kind::Conn,
        ] {
            assert_eq!(
                split(token(0xff_ffff_ffff, kind)),
                (0xff_ffff_ffff, Some(kind))
            );
        }
        assert_eq!(split(0x1ff), (1, None));
    }
}
