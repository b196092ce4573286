//! The named namespaces that wgd's TUN devices hold alive.
//!
//! wgctl opens a TUN device in the namespace its link belongs in (`--into-ns NAME`) when wgd
//! serves it, so that the link never has to move there: a move makes the kernel wait for RCU
//! grace periods, most of what a hub peer's `iface add` cost. But a TUN device's descriptor
//! holds the namespace it was opened in, and wgd keeps the descriptor: `ip netns del NAME`,
//! which only removes the name, would no longer end the namespace, nor the link, the veths and
//! the routes in it. So wgd watches `/run/netns` and closes an interface whose home lost its
//! name (or whose name now stands for another namespace): the namespace then goes, with
//! everything in it, as it does with a kernel link or a moved one. A namespace wgd did not
//! open a device in is none of its business.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use nix::sys::inotify::{AddWatchFlags, Inotify, WatchDescriptor};

/// Where `ip netns` names namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// The namespace an interface's TUN device was opened in: its name, and the namespace's
/// identity (device, inode) when it was handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    pub name: String,
    id: (u64, u64),
}

impl Home {
    /// Namespace `netns`, which `/run/netns/NAME` must name now.
    pub fn new(name: &str, netns: &OwnedFd) -> Result<Home, String> {
        let st = nix::sys::stat::fstat(netns.as_fd())
            .map_err(|e| format!("inspecting namespace {name}: {}", e.desc()))?;
        let home = Home {
            name: name.to_string(),
            id: (st.st_dev, st.st_ino),
        };
        if !home.is_named() {
            return Err(format!(
                "{} is not the namespace the TUN device was opened in (deleted meanwhile?)",
                home.path().display()
            ));
        }
        Ok(home)
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.name)
    }

    /// Whether its name still stands for it.
    pub fn is_named(&self) -> bool {
        crate::iface::path_is(&self.path(), self.id)
    }
}

/// Every served interface's home, by interface name, and the watch on `/run/netns`.
#[derive(Default)]
pub struct Homes {
    by_iface: HashMap<String, Home>,
    watch: Option<WatchDescriptor>,
}

impl Homes {
    /// Watches `/run/netns` for removed names, unless it is watched already (the watch goes
    /// when the directory does: [`Homes::lost_watch`]).
    pub fn watch(&mut self, inotify: &Inotify) -> Result<(), String> {
        if self.watch.is_none() {
            let flags = AddWatchFlags::IN_DELETE
                | AddWatchFlags::IN_MOVED_FROM
                | AddWatchFlags::IN_MOVED_TO;
            let wd = inotify
                .add_watch(NETNS_DIR, flags)
                .map_err(|e| format!("watching {NETNS_DIR}: {}", e.desc()))?;
            self.watch = Some(wd);
        }
        Ok(())
    }

    /// Whether `wd` is the watch on `/run/netns`.
    pub fn is_watch(&self, wd: WatchDescriptor) -> bool {
        self.watch == Some(wd)
    }

    /// The directory's watch ended (it was removed): watched again at the next sweep.
    pub fn lost_watch(&mut self) {
        self.watch = None;
    }

    pub fn insert(&mut self, iface: &str, home: Home) {
        self.by_iface.insert(iface.to_string(), home);
    }

    pub fn remove(&mut self, iface: &str) {
        self.by_iface.remove(iface);
    }

    pub fn is_empty(&self) -> bool {
        self.by_iface.is_empty()
    }

    /// Forgets the interfaces `served` says are gone.
    pub fn retain(&mut self, served: impl Fn(&str) -> bool) {
        self.by_iface.retain(|iface, _| served(iface));
    }

    /// The interfaces whose home lost its name: of those at home in namespace `name` (a name
    /// that just went), or of all (`None`).
    pub fn homeless(&self, name: Option<&str>) -> Vec<String> {
        self.by_iface
            .iter()
            .filter(|(_, home)| name.is_none_or(|n| home.name == n) && !home.is_named())
            .map(|(iface, _)| iface.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_home_is_named_while_its_name_is_its_namespace() {
        // (any file stands in for the namespace: the name is compared by device and inode)
        let file = std::fs::File::open("/proc/self/ns/net").unwrap();
        let netns = OwnedFd::from(file);
        assert!(Home::new("wgd-no-such-namespace", &netns)
            .unwrap_err()
            .contains("/run/netns/wgd-no-such-namespace is not the namespace"));
        let mut homes = Homes::default();
        let home = Home {
            name: "wgd-gone".into(),
            id: (1, 1),
        };
        assert!(!home.is_named());
        homes.insert("wg0", home);
        assert_eq!(homes.homeless(Some("other")), Vec::<String>::new());
        assert_eq!(homes.homeless(Some("wgd-gone")), vec!["wg0".to_string()]);
        assert_eq!(homes.homeless(None), vec!["wg0".to_string()]);
        homes.retain(|iface| iface != "wg0");
        assert!(homes.is_empty());
    }
}
