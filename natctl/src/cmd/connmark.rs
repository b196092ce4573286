//! `natctl connmark --iif IFACE --set N`: marks each connection by the interface its first
//! packet came in on, and puts that mark onto the connection's replies as their fwmark, so a
//! policy-routing rule `fwmark N lookup T` sends replies back the way the connection came.

use clap::Args;
use common::types::IfName;
use common::{Error, Result};

use super::mark::parse_mark;
use crate::nft::Stage;
use crate::rule::{Action, Arg, Match, Part, Rule};

#[derive(Args, Debug, Clone)]
pub struct Connmark {
    /// Connections whose packets arrive on this interface (nft `iifname IFACE`)
    #[arg(long, value_name = "IFACE", add = common::complete::links(&[]))]
    pub iif: IfName,
    /// The connection mark, 1-4294967295, decimal or 0x-hex (nft `ct mark set N`); replies get
    /// it as their packet mark (`meta mark set ct mark`), for `ip rule add fwmark N`
    #[arg(long = "set", value_name = "N", value_parser = parse_mark)]
    pub mark: u32,
}

impl Connmark {
    pub fn rule(&self) -> Result<Rule> {
        if self.mark == 0 {
            return Err(Error::invalid(
                "connmark: --set 0 is the mark of an unmarked connection; use 1 to 4294967295",
            ));
        }
        // Both in the connmarks chain, after conntrack has found or made the connection (the
        // first rule needs it to exist) and before the routing decision (which the second
        // one's fwmark steers).
        let mark_connection = Part {
            stage: Stage::Connmarks,
            matches: vec![Match::Iif(self.iif.to_string())],
            action: Action::CtMark(self.mark),
        };
        let restore_on_replies = Part {
            stage: Stage::Connmarks,
            matches: vec![Match::CtReply, Match::CtMark(self.mark)],
            action: Action::MarkFromCt,
        };
        // The same for the replies this namespace sends itself (to a ping of its own address),
        // which take the output hook instead.
        let restore_on_own_replies = Part {
            stage: Stage::LocalMarks,
            ..restore_on_replies.clone()
        };
        Ok(Rule {
            kind: "connmark",
            family: None,
            parts: vec![mark_connection, restore_on_replies, restore_on_own_replies],
            args: vec![
                ("iif", Some(Arg::text(&self.iif))),
                ("set", Some(Arg::Number(self.mark.into()))),
            ],
        })
    }
}
