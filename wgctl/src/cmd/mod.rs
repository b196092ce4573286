//! One module per object: keys, interfaces, peers, and the `show` listing.

pub mod iface;
pub mod key;
pub mod peer;
pub mod show;
