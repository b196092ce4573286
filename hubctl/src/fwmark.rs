//! HUB_MODE=zones: the center's fwmark rules, laid out so that a packet walks a bounded number of
//! them however many peers there are.
//!
//! Every peer's replies are routed by its connection mark M through its own table (`fwmark M
//! lookup M`). The kernel walks policy rules one by one, so with those rules side by side a
//! packet would test a thousand of them at 1,000 peers (measured: 1,000 fwmark rules halve a
//! forwarding namespace's packet rate). Instead (docs/hub.md):
//!
//! ```text
//!  998  not fwmark 0x4e580000/0xffff0000 goto 2024    what is not the hub's skips it all
//!  999  fwmark 0x4e58c340/0xffffffc0 goto 1781         one per block of 64 ports in use
//! 1781  fwmark 0x4e58c350 lookup 1314440016           the peers of block 781 (ports 49984-50047)
//! 2024  lookup 1314439999                             where the skip goes on: a table with no route
//! ```
//! A marked packet tests the blocks' gates, then at most the 64 rules of its block; any other
//! packet, one rule. The skip and the end are the center's (made by `up`, gone with `down`); a
//! gate comes with the first peer of its block and goes with its last.

use crate::conf::ZONE_MARK_BASE;

/// What is not marked by the hub skips its rules: `not fwmark BASE/0xffff0000 goto END`.
pub const SKIP_PRIORITY: u32 = 998;
/// One gate per block in use: `fwmark BASE+BLOCK*64/0xffffffc0 goto FIRST+BLOCK`.
pub const GATE_PRIORITY: u32 = 999;
/// A peer's rule `fwmark M lookup M` has priority FIRST + its port's block.
pub const FIRST_PRIORITY: u32 = 1000;
/// Where the skip goes on, after every block (65536 ports / 64): a lookup in a table that never
/// holds a route, which passes the packet on.
pub const END_PRIORITY: u32 = FIRST_PRIORITY + (1 << (16 - BLOCK_BITS));
/// That table: just below the peers' (each is the base plus a port).
pub const END_TABLE: u32 = ZONE_MARK_BASE - 1;
/// A block holds the ports that share all but their low 6 bits.
const BLOCK_BITS: u32 = 6;
/// The fwmark mask of a block's gate.
pub const GATE_MASK: u32 = u32::MAX << BLOCK_BITS;

/// PORT's block.
pub fn block(port: u16) -> u32 {
    u32::from(port) >> BLOCK_BITS
}

/// The priority of the rule of the peer with PORT.
pub fn priority(port: u16) -> u32 {
    FIRST_PRIORITY + block(port)
}

/// The ports of PORT's block.
pub fn block_ports(port: u16) -> std::ops::RangeInclusive<u16> {
    let first = port & (GATE_MASK as u16);
    first..=first | !(GATE_MASK as u16)
}

/// The mark the gate of PORT's block matches (with [`GATE_MASK`]).
pub fn gate_mark(port: u16) -> u32 {
    ZONE_MARK_BASE + (block(port) << BLOCK_BITS)
}

/// `-6 ` for IPv6 rules, nothing for IPv4.
fn fam(v6: bool) -> &'static str {
    if v6 {
        "-6 "
    } else {
        ""
    }
}

/// The center's two rules (routectl `rule add`/`rule del` arguments) of one family: the end
/// first, so that the skip resolves as soon as it is made.
pub fn center_rules(v6: bool) -> [String; 2] {
    let f = fam(v6);
    [
        format!("{f}--table {END_TABLE} --priority {END_PRIORITY}"),
        format!(
            "{f}--not --fwmark {ZONE_MARK_BASE:#x}/0xffff0000 --goto {END_PRIORITY} --priority {SKIP_PRIORITY}"
        ),
    ]
}

/// The rule of the peer with PORT and mark MARK (its table), of one family.
pub fn peer_rule(v6: bool, port: u16, mark: u32) -> String {
    format!(
        "{}--fwmark {mark} --table {mark} --priority {}",
        fam(v6),
        priority(port)
    )
}

/// The gate of PORT's block, of one family.
pub fn gate(v6: bool, port: u16) -> String {
    format!(
        "{}--fwmark {:#x}/{GATE_MASK:#x} --goto {} --priority {GATE_PRIORITY}",
        fam(v6),
        gate_mark(port),
        priority(port)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_of_64_ports_between_the_gates_and_the_end() {
        assert_eq!((block(50000), priority(50000)), (781, 1781));
        assert_eq!(gate_mark(50000), 0x4e58_c340);
        assert_eq!(gate_mark(50000) & GATE_MASK, gate_mark(50047) & GATE_MASK);
        assert_ne!(block(50047), block(50048));
        assert_eq!(block_ports(50001), 49984..=50047);
        assert_eq!(block_ports(u16::MAX), 65472..=65535);
        assert_eq!(priority(u16::MAX), END_PRIORITY - 1);
        assert!(SKIP_PRIORITY < GATE_PRIORITY && GATE_PRIORITY < priority(0));
        assert_eq!(
            gate(false, 50001),
            "--fwmark 0x4e58c340/0xffffffc0 --goto 1781 --priority 999"
        );
        assert_eq!(
            center_rules(true)[1],
            "-6 --not --fwmark 0x4e580000/0xffff0000 --goto 2024 --priority 998"
        );
    }
}
