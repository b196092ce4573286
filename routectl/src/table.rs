//! Routing table ids as the user writes them (`100`, `main`) and as `ip` prints them.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Serialize;

/// `RT_TABLE_DEFAULT`, `RT_TABLE_MAIN`, `RT_TABLE_LOCAL`.
pub const DEFAULT: u32 = 253;
pub const MAIN: u32 = 254;
pub const LOCAL: u32 = 255;

/// Largest usable table id (`RT_TABLE_MAX` minus one: 0xffffffff is reserved).
const MAX: u32 = 0xffff_fffe;

/// A routing table: 1–4294967294 or `main`, `local`, `default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table(pub u32);

impl FromStr for Table {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "main" => return Ok(Table(MAIN)),
            "local" => return Ok(Table(LOCAL)),
            "default" => return Ok(Table(DEFAULT)),
            _ => {}
        }
        match s.parse::<u64>() {
            Ok(n) if (1..=u64::from(MAX)).contains(&n) => Ok(Table(n as u32)),
            _ => Err(format!(
                "table '{s}' is invalid: use a number from 1 to {MAX} or main, local, default"
            )),
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&name(self.0))
    }
}

impl Serialize for Table {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The table as `ip` prints it: `main`, `local`, `default`, `unspec` or the number.
pub fn name(id: u32) -> String {
    match id {
        0 => "unspec".into(),
        DEFAULT => "default".into(),
        MAIN => "main".into(),
        LOCAL => "local".into(),
        n => n.to_string(),
    }
}

/// Where `ip` reads table names: the first file of the two that exists, then the `*.conf` files
/// of both `rt_tables.d` directories (iproute2's `rtnl_rttable_initialize`).
const RT_TABLES: [&str; 2] = ["/etc/iproute2/rt_tables", "/usr/share/iproute2/rt_tables"];
const RT_TABLES_D: [&str; 2] = [
    "/etc/iproute2/rt_tables.d",
    "/usr/share/iproute2/rt_tables.d",
];

/// The table names this machine defines, for completion: `main`, `local`, `default`, then the
/// names in the rt_tables files, sorted (never `unspec`, table 0, which cannot be used).
pub fn names() -> Vec<String> {
    let mut files: Vec<PathBuf> = RT_TABLES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .into_iter()
        .collect();
    for dir in RT_TABLES_D {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut confs: Vec<PathBuf> = entries
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        confs.sort();
        files.extend(confs);
    }
    let mut defined: Vec<String> = files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| parse_rt_tables(&text))
        .filter(|(id, _)| *id != 0)
        .map(|(_, name)| name)
        .collect();
    defined.sort();
    let mut all: Vec<String> = ["main", "local", "default"].map(String::from).into();
    for name in defined {
        if !all.contains(&name) {
            all.push(name);
        }
    }
    all
}

/// [`names`] and `all`, what `route list --table` takes.
pub fn selections() -> Vec<String> {
    let mut all = names();
    all.push("all".into());
    all
}

/// The `ID NAME` lines of an rt_tables file (`#` comments; the id decimal or 0x-hex).
fn parse_rt_tables(text: &str) -> Vec<(u32, String)> {
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

/// `route list --table`: one table or every table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableSel {
    One(Table),
    All,
}

impl FromStr for TableSel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "all" {
            Ok(TableSel::All)
        } else {
            s.parse().map(TableSel::One)
        }
    }
}

impl TableSel {
    pub fn contains(&self, id: u32) -> bool {
        match self {
            TableSel::All => true,
            TableSel::One(t) => t.0 == id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_numbers() {
        assert_eq!("main".parse::<Table>().unwrap(), Table(254));
        assert_eq!("4294967294".parse::<Table>().unwrap(), Table(MAX));
        assert!("0".parse::<Table>().unwrap_err().contains("'0'"));
        assert!("4294967295".parse::<Table>().is_err());
        assert!("-1".parse::<Table>().is_err());
        assert_eq!(Table(1000).to_string(), "1000");
        assert_eq!("all".parse::<TableSel>().unwrap(), TableSel::All);
    }

    #[test]
    fn reads_rt_tables_like_ip() {
        let text = "#\n# reserved values\n255\tlocal\n0\tunspec\n10 wan # the uplink\n0x20\tvpn\nbad line\n";
        assert_eq!(
            parse_rt_tables(text),
            [
                (255, "local".to_owned()),
                (0, "unspec".to_owned()),
                (10, "wan".to_owned()),
                (32, "vpn".to_owned()),
            ]
        );
        let names = names();
        assert_eq!(names[..3], ["main", "local", "default"]);
        assert!(!names.contains(&"unspec".to_owned()));
    }
}
