//! grantsvc's `log`: the `log` crate's API, with macros whose call sites store only the level and the message (issue 10's image size).

// grantsvc depends on this crate under the name `log`, so `log::warn!(...)` and the logger's
// types read as before. `log`'s own macros store, at every call site, the target and module
// path (two string slices) and a `Location` (file, line, column): about 60 bytes of code and
// read-only data a line, for 174 lines. grantsvc's console logger prints none of them
// (`[level] message`), so these macros hand `log` only the level and the message, through one
// function out of line. That function checks the level for `error!`, `warn!` and `info!`
// (shown unless `loglevel=` says otherwise: 1.8 KB fewer than a check at each call site);
// `debug!` and `trace!` lines, filtered out in a normal run, are checked where they are, so
// they cost a comparison there. A line filtered out is never formatted either way (its
// arguments are formatted only when the logger writes them).
#![no_std]

pub use log::{
    logger, max_level, set_logger, set_max_level, Level, LevelFilter, Log, Metadata, Record,
};

/// Hands one line to the installed logger if the filter lets it through; the macros' one call.
/// Cold: LLVM then lays each call site's block out of its function's straight path and builds
/// its arguments for size (568 bytes fewer over the image; the pmap's map and remove paths keep
/// their instructions, with the log blocks moved after them).
#[doc(hidden)]
#[inline(never)]
#[cold]
pub fn emit(level: Level, message: core::fmt::Arguments<'_>) {
    if level <= max_level() {
        logger().log(&Record::builder().level(level).args(message).build());
    }
}

/// A line at `level` if the filter lets it through (`log::log!` without target), checked
/// before the call.
#[macro_export]
macro_rules! log {
    ($level:expr, $($message:tt)+) => {{
        let level: $crate::Level = $level;
        if level <= $crate::max_level() {
            $crate::emit(level, format_args!($($message)+));
        }
    }};
}

/// An error line (`log::error!`).
#[macro_export]
macro_rules! error {
    ($($message:tt)+) => { $crate::emit($crate::Level::Error, format_args!($($message)+)) };
}

/// A warning line (`log::warn!`).
#[macro_export]
macro_rules! warn {
    ($($message:tt)+) => { $crate::emit($crate::Level::Warn, format_args!($($message)+)) };
}

/// An info line (`log::info!`).
#[macro_export]
macro_rules! info {
    ($($message:tt)+) => { $crate::emit($crate::Level::Info, format_args!($($message)+)) };
}

/// A debug line (`log::debug!`), checked against the level before the call.
#[macro_export]
macro_rules! debug {
    ($($message:tt)+) => { $crate::log!($crate::Level::Debug, $($message)+) };
}

/// A trace line (`log::trace!`), checked against the level before the call.
#[macro_export]
macro_rules! trace {
    ($($message:tt)+) => { $crate::log!($crate::Level::Trace, $($message)+) };
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::{Level, LevelFilter, Log, Metadata, Record};
    use core::fmt;
    use core::sync::atomic::{AtomicUsize, Ordering};
    use std::string::{String, ToString};
    use std::sync::Mutex;
    use std::vec::Vec;

    /// Every line the macros hand over: (level, message).
    static LINES: Mutex<Vec<(Level, String)>> = Mutex::new(Vec::new());

    struct Recorder;

    impl Log for Recorder {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &Record<'_>) {
            let line = (record.level(), record.args().to_string());
            LINES.lock().unwrap().push(line);
        }
        fn flush(&self) {}
    }

    /// Counts its formatting: a line filtered out must not format its arguments.
    struct Counted<'a>(&'a AtomicUsize);

    impl fmt::Display for Counted<'_> {
        fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.fetch_add(1, Ordering::Relaxed);
            formatter.write_str("counted")
        }
    }

    // One test: the logger and the level are global to the process.
    #[test]
    fn lines_reach_the_logger_with_their_level_and_filtered_ones_are_not_formatted() {
        super::set_logger(&Recorder).unwrap();
        super::set_max_level(LevelFilter::Info);
        let formatted = AtomicUsize::new(0);
        let peer = 7;
        crate::error!("d{peer}: {}", Counted(&formatted));
        crate::warn!("two {} {}", 1, "args",);
        crate::info!("plain");
        crate::debug!("filtered {}", Counted(&formatted));
        crate::trace!("filtered too");
        super::set_max_level(LevelFilter::Error);
        crate::warn!("filtered at the call {}", Counted(&formatted));
        crate::info!("filtered at the call too");
        crate::error!("shown");
        let lines = LINES.lock().unwrap().clone();
        assert_eq!(
            lines,
            [
                (Level::Error, "d7: counted".to_string()),
                (Level::Warn, "two 1 args".to_string()),
                (Level::Info, "plain".to_string()),
                (Level::Error, "shown".to_string()),
            ]
        );
        assert_eq!(formatted.load(Ordering::Relaxed), 1);
    }
}
