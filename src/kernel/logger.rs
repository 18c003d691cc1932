//! The `log` backend: every record as one console line, `[level] message`, filtered by `loglevel=`.

use super::console;
use log::{LevelFilter, Log, Metadata, Record};

struct ConsoleLogger;

static LOGGER: ConsoleLogger = ConsoleLogger;

impl Log for ConsoleLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let level = record.level().as_str();
            console::write_fmt(format_args!("[{}] {}\n", LevelName(level), record.args()));
        }
    }

    fn flush(&self) {}
}

/// A level name in lower case ("info"), as the console log shows it.
struct LevelName(&'static str);

impl core::fmt::Display for LevelName {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for character in self.0.chars() {
            core::fmt::Write::write_char(formatter, character.to_ascii_lowercase())?;
        }
        Ok(())
    }
}

/// Installs the logger with `level` as the most verbose level shown.
pub fn initialise(level: LevelFilter) {
    // Only the first call installs; the level can still change later.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
