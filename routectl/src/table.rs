//! Routing table ids as the user writes them (`100`, `main`) and as `ip` prints them.

use std::fmt;
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
}
