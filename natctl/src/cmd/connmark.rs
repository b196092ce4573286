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
//!
//! `natctl connmark --dst CIDR --set N [--iif IFACE | --local]` marks the connections opened *to*
//! CIDR instead: their first packet (`ip daddr CIDR ct state new ct direction original ct mark
//! set N`), from any interface, from IFACE only, or (`--local`) those this namespace opens itself
//! (chain `localmarks`, in the output hook after conntrack), and restores the mark onto their
//! replies with the same two restore parts. It has no guard: the guard protects a tunnel's own
//! connections, and marking a connection to a device's address with the device's mark N is what
//! lets the device's replies to it (a port forward into the device) pass that device's guard.

use clap::Args;
use common::{Error, Result};

use super::mark::parse_mark_setting;
use crate::nft::Stage;
use crate::rule::{
    dst_arg, keyed_family, number_arg, Action, Arg, FamilyArg, Match, Part, Rule, Verdict,
};
use crate::set::{Dst, Iif, OrSet};

#[derive(Args, Debug, Clone)]
pub struct Connmark {
    /// Connections whose first packet arrives on this interface (nft `iifname IFACE ct state
    /// new ct direction original`); without --dst a packet arriving on it as the reply of a
    /// connection not marked N is dropped (`iifname IFACE ct direction reply ct mark != N drop`)
    #[arg(long, value_name = "IFACE", add = common::complete::links(&[]))]
    pub iif: Option<Iif>,
    /// The connection mark, 1-4294967295, decimal or 0x-hex (nft `ct mark set N`); replies get
    /// it as their packet mark (`meta mark set ct mark`), for `ip rule add fwmark N`. Or @MAP,
    /// a map of connection marks (`--value ctmark`) that the rule's key names too (`--iif
    /// @MAP`): each key's connections get its mark (`ct mark set iifname map @MAP`)
    #[arg(long = "set", value_name = "N|@MAP", value_parser = parse_mark_setting)]
    pub mark: OrSet<u32>,
    /// Connections opened to this network (nft `ip daddr CIDR ct state new ct direction
    /// original`), or to an address of set @SET, from any interface, only from --iif IFACE,
    /// or with --local from this namespace; no drop of foreign replies then
    #[arg(long, value_name = "CIDR|@SET")]
    pub dst: Option<Dst>,
    /// The connections to --dst that this namespace itself opens (chain `localmarks`: the output
    /// hook, after conntrack); not with --iif
    #[arg(long, conflicts_with = "iif")]
    pub local: bool,
    /// The family of the addresses in the sets the rule names (natctl reads it from them)
    #[arg(long, value_enum)]
    pub family: Option<FamilyArg>,
}

impl Connmark {
    pub fn rule(&self) -> Result<Rule> {
        if self.mark == OrSet::Given(0) {
            return Err(Error::invalid(
                "connmark: --set 0 is the mark of an unmarked connection; use 1 to 4294967295",
            ));
        }
        if let (Some(iif), true) = (&self.iif, self.local) {
            return Err(Error::invalid(format!(
                "connmark: --local (connections this namespace opens) cannot be used with --iif {iif} (they arrive on no interface)"
            )));
        }
        if self.local && self.dst.is_none() {
            return Err(Error::invalid(
                "connmark --local needs --dst CIDR (the connections this namespace opens to CIDR)",
            ));
        }
        if self.iif.is_none() && self.dst.is_none() {
            return Err(Error::invalid(
                "connmark needs --iif IFACE (connections IFACE opens) or --dst CIDR (connections opened to CIDR)",
            ));
        }
        let family = keyed_family(
            "connmark",
            (self.iif.as_ref(), self.dst.as_ref()),
            ("--set", &self.mark),
            &[],
            self.family,
        )?;
        let iif = self.iif.as_ref().map(|i| i.to_match());
        // All in the connmarks chain, after conntrack has found or made the connection (the
        // marking needs it to exist, the guard its direction and mark) and before the routing
        // decision (which the restored fwmark steers); `--local` marks in the output hook's
        // `localmarks`, likewise after conntrack.
        let mut marking: Vec<Match> = iif.iter().cloned().collect();
        marking.extend(self.dst.as_ref().map(Dst::to_match));
        marking.extend([Match::CtNew, Match::CtOriginal]);
        let mark_connection = Part {
            stage: if self.local {
                Stage::LocalMarks
            } else {
                Stage::Connmarks
            },
            matches: marking,
            action: Action::CtMark(self.mark.clone()),
        };
        // A connection's mark, and the one that is not its own: N, or (from map M) M's mark for
        // the interface, which natctl keeps beside M as a pair (`M.pairs`), and the marks M
        // gives (`M.values`).
        let (is_marked, not_own_mark) = match &self.mark {
            OrSet::Given(mark) => (Match::CtMark(*mark), Match::CtMarkNot(*mark)),
            OrSet::Set(map) => (
                Match::CtMarkIn(map.values()),
                Match::IifMarkNotIn(map.pairs()),
            ),
        };
        // The guard, for a tunnel's own connections only (without --dst).
        let drop_foreign_replies = match (&iif, &self.dst) {
            (Some(iif), None) => Some(Part {
                stage: Stage::Connmarks,
                matches: vec![
                    // (the map's keys, which natctl keeps beside it as a set: kernels before
                    // 6.4 refuse a map as a set)
                    match (iif, &self.mark) {
                        (Match::IifIn(set), OrSet::Set(map)) if set == map.as_str() => {
                            Match::IifIn(map.keys())
                        }
                        _ => iif.clone(),
                    },
                    Match::CtReply,
                    not_own_mark,
                ],
                action: Action::Verdict {
                    verdict: Verdict::Drop,
                    at_head: false,
                },
            }),
            _ => None,
        };
        let restore_on_replies = Part {
            stage: Stage::Connmarks,
            matches: vec![Match::CtReply, is_marked],
            action: Action::MarkFromCt,
        };
        // The same for the replies this namespace sends itself (to a ping of its own address),
        // which take the output hook instead.
        let restore_on_own_replies = Part {
            stage: Stage::LocalMarks,
            ..restore_on_replies.clone()
        };
        // Parts in the order of their chains (`connmarks` before `localmarks`), which is the
        // order `list` shows them in and numbers them by (`missing`).
        let parts = if self.local {
            vec![restore_on_replies, mark_connection, restore_on_own_replies]
        } else {
            let mut parts = vec![mark_connection];
            parts.extend(drop_foreign_replies);
            parts.extend([restore_on_replies, restore_on_own_replies]);
            parts
        };
        Ok(Rule {
            kind: "connmark",
            family,
            parts,
            // New arguments go last, so rules made before them keep their ids.
            args: vec![
                ("iif", self.iif.as_ref().map(Arg::text)),
                ("set", Some(number_arg(&self.mark))),
                ("dst", self.dst.as_ref().map(dst_arg)),
                ("local", Some(Arg::Flag(self.local))),
                ("family", self.family.map(Arg::text)),
            ],
        })
    }
}
