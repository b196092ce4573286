//! wgd: one process serving every userspace WireGuard interface of the machine, built on
//! boringtun's `noise` module (handshakes, sessions and timers of one peer, without I/O).
//!
//! Each interface keeps the shape the other userspace implementations give it under wgctl: a
//! link wherever wgctl puts it (its TUN device opened there when that is a named namespace,
//! [`homes`]; else made in the birthplace and moved), UDP sockets bound in the birthplace, and
//! a UAPI socket `/var/run/wireguard/NAME.sock` that `wg`,
//! wgctl and wireguard-control read and write. What it saves is the process, the threads and
//! the timers per interface: a few worker threads serve every interface, each with one epoll
//! loop and one timer tick for all of its interfaces.
//!
//! Without the `daemon` feature the crate is [`proto`], the control protocol wgctl speaks.

pub mod proto;

#[cfg(feature = "daemon")]
pub mod allowed;
#[cfg(feature = "daemon")]
pub mod daemon;
#[cfg(feature = "daemon")]
pub mod gate;
#[cfg(feature = "daemon")]
pub mod gro;
#[cfg(feature = "daemon")]
pub mod gso;
#[cfg(feature = "daemon")]
pub mod homes;
#[cfg(feature = "daemon")]
pub mod iface;
#[cfg(feature = "daemon")]
pub mod peer;
#[cfg(feature = "daemon")]
pub mod split;
#[cfg(feature = "daemon")]
pub mod tun;
#[cfg(feature = "daemon")]
pub mod uapi;
#[cfg(feature = "daemon")]
pub mod udp;
#[cfg(feature = "daemon")]
pub mod vnet;
#[cfg(feature = "daemon")]
pub mod worker;
