//! A minimal logger for the `log` facade: one line per record on stderr,
//! `<unix time> <LEVEL> <target>: <message>`. The health checker logs every
//! transition through `log`; a daemon that has no logger of its own calls
//! [`init`] once.

use log::{LevelFilter, Log, Metadata, Record};
use std::io::Write;

/// Writes records at or above its level to stderr.
#[derive(Debug)]
pub struct StderrLogger {
    level: LevelFilter,
}

impl Log for StderrLogger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        // One write per line so concurrent lines do not interleave.
        let line = format!(
            "{}.{:03} {:<5} {}: {}\n",
            t.as_secs(),
            t.subsec_millis(),
            r.level(),
            r.target(),
            r.args()
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Installs a [`StderrLogger`] at `level` as the process's logger.
///
/// # Errors
/// A logger is already installed.
pub fn init(level: LevelFilter) -> Result<(), log::SetLoggerError> {
    let logger = Box::leak(Box::new(StderrLogger { level }));
    log::set_logger(logger)?;
    log::set_max_level(level);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_by_level() {
        let l = StderrLogger {
            level: LevelFilter::Info,
        };
        assert!(l.enabled(&Metadata::builder().level(log::Level::Warn).build()));
        assert!(!l.enabled(&Metadata::builder().level(log::Level::Debug).build()));
    }
}
