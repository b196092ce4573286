//! `-v` logging to stderr. Level 0 prints nothing; each `-v` shows one level more.

use std::sync::atomic::{AtomicU8, Ordering};

static LEVEL: AtomicU8 = AtomicU8::new(0);

pub fn set_level(level: u8) {
    LEVEL.store(level, Ordering::Relaxed);
}

pub fn enabled(level: u8) -> bool {
    LEVEL.load(Ordering::Relaxed) >= level
}

/// `vlog!(1, "adding {name}")` writes `[#] adding ...` to stderr when `-v` (or more) was given.
#[macro_export]
macro_rules! vlog {
    ($level:expr, $($arg:tt)*) => {
        if $crate::log::enabled($level) {
            eprintln!("[#] {}", format_args!($($arg)*));
        }
    };
}
