//! Numbers as iproute2, nft and wg read them: decimal or `0x` hex.

/// A 32-bit number, decimal or `0x`/`0X` hex (marks, masks, table ids). `None` when it is not
/// one; callers say what the number was for.
pub fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_u32;

    #[test]
    fn decimal_and_hex() {
        assert_eq!(parse_u32("0"), Some(0));
        assert_eq!(parse_u32("100"), Some(100));
        assert_eq!(parse_u32("0x64"), Some(100));
        assert_eq!(parse_u32("0X64"), Some(100));
        assert_eq!(parse_u32("0xffffffff"), Some(u32::MAX));
        assert_eq!(parse_u32("4294967295"), Some(u32::MAX));
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "0x",
            "-1",
            "+0x1",
            "4294967296",
            "0x100000000",
            "0xzz",
            "1.0",
            " 1",
        ] {
            assert_eq!(parse_u32(bad), None, "{bad:?}");
        }
    }
}
