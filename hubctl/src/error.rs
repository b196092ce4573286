//! The hub's one error: what was attempted on which object, and the exit code it means
//! (2: invalid input, nothing changed; 1: an operation failed).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail {
    pub code: u8,
    pub msg: String,
}

pub type Result<T> = std::result::Result<T, Fail>;

/// Bad input, refused before anything changed: exit 2.
pub fn invalid(msg: impl fmt::Display) -> Fail {
    Fail {
        code: 2,
        msg: msg.to_string(),
    }
}

/// An operation failed (or the state forbids it): exit 1.
pub fn failed(msg: impl fmt::Display) -> Fail {
    Fail {
        code: 1,
        msg: msg.to_string(),
    }
}

impl Fail {
    /// The same failure, said of where the input was read (`line 3: ...`).
    pub fn at(self, place: &str) -> Fail {
        Fail {
            msg: format!("{place}{}", self.msg),
            ..self
        }
    }

    /// `PROG: error: MESSAGE`, every quoted value cut to its first 80 bytes: an error names the
    /// value, it does not echo a whole input line (a key file given by mistake would be).
    pub fn report(&self, prog: &str) {
        eprintln!("{prog}: error: {}", clip_quoted(&self.msg));
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

/// Every `'...'` in MSG with more than 80 bytes inside is cut to 80 and `...`.
pub fn clip_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(open) = rest.find('\'') {
        let Some(len) = rest[open + 1..].find('\'') else {
            break;
        };
        let inner = &rest[open + 1..open + 1 + len];
        out.push_str(&rest[..=open]);
        if inner.len() > 80 {
            let mut cut = 80;
            while !inner.is_char_boundary(cut) {
                cut -= 1;
            }
            out.push_str(&inner[..cut]);
            out.push_str("...");
        } else {
            out.push_str(inner);
        }
        out.push('\'');
        rest = &rest[open + len + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_quoted_values_are_clipped() {
        let long = "x".repeat(100);
        let got = clip_quoted(&format!("key '{long}' and 'short' and 'open"));
        assert_eq!(
            got,
            format!("key '{}...' and 'short' and 'open", "x".repeat(80))
        );
    }
}
