//! The `ID NAME` files iproute2 reads to name numbers the kernel keeps: routing tables
//! (`rt_tables`) and routing protocols (`rt_protos`), read the way `ip` reads them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use serde::Serialize;

/// A number iproute2 may have a name for, as the listings print it: the name when it has one,
/// else the number (`"main"`, `"wan"`, `100`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Named {
    Name(String),
    Number(u32),
}

/// The names one kind of number has on this machine: built-in names, then the files in the
/// order `ip` reads them (a later definition of an id or a name wins, as in iproute2).
#[derive(Debug, Default)]
pub struct Names {
    by_id: BTreeMap<u32, String>,
}

impl Names {
    /// `builtin`, then the first of `files` that exists, then the `*.conf` files of each of
    /// `dirs`, sorted (iproute2's `rtnl_tab_initialize` over `rt_tables` and `rt_tables.d`).
    fn load(builtin: &[(u32, &str)], files: &[&str], dirs: &[&str]) -> Names {
        let mut paths: Vec<PathBuf> = files
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .into_iter()
            .collect();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut confs: Vec<PathBuf> = entries
                .filter_map(|e| Some(e.ok()?.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                .collect();
            confs.sort();
            paths.extend(confs);
        }
        let mut names = Names::default();
        for (id, name) in builtin {
            names.by_id.insert(*id, (*name).to_owned());
        }
        for text in paths.iter().filter_map(|p| std::fs::read_to_string(p).ok()) {
            for (id, name) in parse(&text) {
                names.by_id.insert(id, name);
            }
        }
        names
    }

    /// The name of `id`, if it has one.
    pub fn name(&self, id: u32) -> Option<&str> {
        self.by_id.get(&id).map(String::as_str)
    }

    /// The id a name stands for.
    pub fn id(&self, name: &str) -> Option<u32> {
        self.by_id
            .iter()
            .find_map(|(id, n)| (n == name).then_some(*id))
    }

    /// `id` as a listing prints it: its name, else the number.
    pub fn named(&self, id: u32) -> Named {
        self.name(id)
            .map_or(Named::Number(id), |n| Named::Name(n.to_owned()))
    }

    /// `id` as a message writes it: its name, else the number.
    pub fn label(&self, id: u32) -> String {
        self.name(id).map_or_else(|| id.to_string(), str::to_owned)
    }

    /// Every (id, name), by id.
    pub fn all(&self) -> impl Iterator<Item = (u32, &str)> {
        self.by_id.iter().map(|(id, n)| (*id, n.as_str()))
    }
}

/// The routing table names: `unspec`, `default`, `main`, `local`, then `rt_tables` and
/// `rt_tables.d/*.conf`.
pub fn tables() -> &'static Names {
    static TABLES: OnceLock<Names> = OnceLock::new();
    TABLES.get_or_init(|| {
        Names::load(
            &[
                (0, "unspec"),
                (253, "default"),
                (254, "main"),
                (255, "local"),
            ],
            &["/etc/iproute2/rt_tables", "/usr/share/iproute2/rt_tables"],
            &[
                "/etc/iproute2/rt_tables.d",
                "/usr/share/iproute2/rt_tables.d",
            ],
        )
    })
}

/// The routing protocol names: iproute2's built-in list, then `rt_protos` and
/// `rt_protos.d/*.conf`.
pub fn protocols() -> &'static Names {
    static PROTOCOLS: OnceLock<Names> = OnceLock::new();
    PROTOCOLS.get_or_init(|| {
        Names::load(
            &[
                (0, "unspec"),
                (1, "redirect"),
                (2, "kernel"),
                (3, "boot"),
                (4, "static"),
                (8, "gated"),
                (9, "ra"),
                (10, "mrt"),
                (11, "zebra"),
                (12, "bird"),
                (13, "dnrouted"),
                (14, "xorp"),
                (15, "ntk"),
                (16, "dhcp"),
                (18, "keepalived"),
                (42, "babel"),
                (99, "openr"),
                (186, "bgp"),
                (187, "isis"),
                (188, "ospf"),
                (189, "rip"),
                (192, "eigrp"),
            ],
            &["/etc/iproute2/rt_protos", "/usr/share/iproute2/rt_protos"],
            &[
                "/etc/iproute2/rt_protos.d",
                "/usr/share/iproute2/rt_protos.d",
            ],
        )
    })
}

/// The `ID NAME` lines of such a file (`#` comments; the id decimal or 0x-hex).
fn parse(text: &str) -> Vec<(u32, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next()?;
            let mut words = line.split_whitespace();
            let (id, name) = (words.next()?, words.next()?);
            let id = common::num::parse_u32(id)?;
            Some((id, name.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_id_name_files_like_ip() {
        let text = "#\n# reserved values\n255\tlocal\n0\tunspec\n10 wan # the uplink\n0x20\tvpn\nbad line\n";
        assert_eq!(
            parse(text),
            [
                (255, "local".to_owned()),
                (0, "unspec".to_owned()),
                (10, "wan".to_owned()),
                (32, "vpn".to_owned()),
            ]
        );
    }

    #[test]
    fn names_and_numbers() {
        let t = tables();
        assert_eq!(t.id("main"), Some(254));
        assert_eq!(t.named(254), Named::Name("main".into()));
        assert_eq!(
            serde_json::to_string(&t.named(4_000_000_001)).unwrap(),
            "4000000001"
        );
        assert_eq!(protocols().label(4), "static");
        assert_eq!(protocols().label(250), "250");
    }
}
