//! `natctl connmark --iif IFACE --set N`: marks each connection that IFACE opens (its first
//! packet arrived on IFACE) with N, drops every packet arriving on IFACE as the reply of a
//! connection not marked N, and puts the mark onto the connection's replies as their fwmark, so
//! a policy-routing rule `fwmark N lookup T` sends replies back the way the connection came.
//!
//! Why only the first packet, and why the drop: conntrack zones for overlapping networks are
//! set for the original direction only (`zone --dir original`), so the reply tuple of every
//! connection is looked up in the default zone, from any interface. A device behind IFACE can
//! therefore send a packet that conntrack takes for a reply of another device's connection
//! (from that connection's server address and port to its translated address and port). If
//! every packet on IFACE set the connection mark, that packet would re-mark the other device's
//! connection N, and policy routing would then send the other device's downstream to IFACE.
//! With `ct state new ct direction original` only a connection IFACE itself opens is marked,
//! and a reply-direction packet on IFACE is dropped unless its connection is marked N (one IFACE
//! opened: none, since a device's own connections never have IFACE on the reply side, unless a
//! connection to the device was marked N some other way).

use clap::Args;
use common::types::IfName;
use common::{Error, Result};

use super::mark::parse_mark;
use crate::nft::Stage;
use crate::rule::{Action, Arg, Match, Part, Rule, Verdict};

#[derive(Args, Debug, Clone)]
pub struct Connmark {
    /// Connections whose first packet arrives on this interface (nft `iifname IFACE ct state
    /// new ct direction original`); a packet arriving on it as the reply of a connection not
    /// marked N is dropped (`iifname IFACE ct direction reply ct mark != N drop`)
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
        let iif = Match::Iif(self.iif.to_string());
        // All in the connmarks chain, after conntrack has found or made the connection (the
        // marking needs it to exist, the guard its direction and mark) and before the routing
        // decision (which the restored fwmark steers).
        let mark_connection = Part {
            stage: Stage::Connmarks,
            matches: vec![iif.clone(), Match::CtNew, Match::CtOriginal],
            action: Action::CtMark(self.mark),
        };
        let drop_foreign_replies = Part {
            stage: Stage::Connmarks,
            matches: vec![iif, Match::CtReply, Match::CtMarkNot(self.mark)],
            action: Action::Verdict {
                verdict: Verdict::Drop,
                at_head: false,
            },
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
            parts: vec![
                mark_connection,
                drop_foreign_replies,
                restore_on_replies,
                restore_on_own_replies,
            ],
            args: vec![
                ("iif", Some(Arg::text(&self.iif))),
                ("set", Some(Arg::Number(self.mark.into()))),
            ],
        })
    }
}
