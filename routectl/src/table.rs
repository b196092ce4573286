//! Routing table ids as the user writes them (`100`, `main`, a name from rt_tables) and as
//! the listings print them.

use std::fmt;
use std::str::FromStr;

use crate::iproute2::{self, Named};

/// `RT_TABLE_DEFAULT`, `RT_TABLE_MAIN`, `RT_TABLE_LOCAL`.
pub const DEFAULT: u32 = 253;
pub const MAIN: u32 = 254;
pub const LOCAL: u32 = 255;

/// Largest usable table id (`RT_TABLE_MAX` minus one: 0xffffffff is reserved).
const MAX: u32 = 0xffff_fffe;

/// A routing table: 1–4294967294, `main`, `local`, `default`, or a name defined in
/// /etc/iproute2/rt_tables, rt_tables.d/*.conf or /usr/share/iproute2/rt_tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table(pub u32);

impl FromStr for Table {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let id = match s.parse::<u64>() {
            Ok(n) => u32::try_from(n).ok(),
            Err(_) => iproute2::tables().id(s),
        };
        match id {
            Some(n) if (1..=MAX).contains(&n) => Ok(Table(n)),
            _ => Err(format!(
                "table '{s}' is invalid: use a number from 1 to {MAX}, main, local, default, or a \
                 name from /etc/iproute2/rt_tables or rt_tables.d/*.conf"
            )),
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&name(self.0))
    }
}

/// The table as `ip` prints it: its name (`main`, `wan` from rt_tables), else the number.
pub fn name(id: u32) -> String {
    iproute2::tables().label(id)
}

/// The table as a listing's `table` member prints it: its name, else the number.
pub fn named(id: u32) -> Named {
    iproute2::tables().named(id)
}

/// The table names this machine defines, for completion: `main`, `local`, `default`, then the
/// names in the rt_tables files, sorted (never `unspec`, table 0, which cannot be used).
pub fn names() -> Vec<String> {
    let mut defined: Vec<String> = iproute2::tables()
        .all()
        .filter(|(id, _)| (1..=MAX).contains(id))
        .map(|(_, n)| n.to_owned())
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
        assert!("unspec".parse::<Table>().unwrap_err().contains("'unspec'"));
        assert!("4294967295".parse::<Table>().is_err());
        assert!("-1".parse::<Table>().is_err());
        assert!("nosuchtable"
            .parse::<Table>()
            .unwrap_err()
            .contains("'nosuchtable'"));
        assert_eq!("all".parse::<TableSel>().unwrap(), TableSel::All);
    }

    #[test]
    fn completion_names() {
        let names = names();
        assert_eq!(names[..3], ["main", "local", "default"]);
        assert!(!names.contains(&"unspec".to_owned()));
    }
}
