//! The audit log: every change tried through the monitor (and every login
//! and logout), who, when, from where, what and how it ended.
//!
//! Each entry goes to the log (target `xvs::audit`), to the audit file
//! when one is configured (one line each, appended), and to a ring of the
//! last [`KEEP`] entries that the page shows. A file that cannot be
//! written is reported in the log once and does not block the change.

use serde::Serialize;
use std::collections::VecDeque;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Entries kept for the page.
pub const KEEP: usize = 200;

/// One audited action.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Entry {
    /// Unix time, milliseconds.
    pub t: u64,
    pub user: String,
    pub from: IpAddr,
    /// What was asked: the equivalent xvsadm command, or `login`/`logout`.
    pub what: String,
    /// `ok`, `refused: <message>` or `forbidden: ...`.
    pub result: String,
}

impl Entry {
    /// `2024-05-01T12:00:00.123Z user=alice from=10.0.0.5 what="..." result="..."`.
    pub fn line(&self) -> String {
        format!(
            "{} user={} from={} what={:?} result={:?}",
            rfc3339_ms(self.t),
            self.user,
            self.from,
            self.what,
            self.result
        )
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of Unix milliseconds (UTC), as the log
/// writes its times.
pub fn rfc3339_ms(ms: u64) -> String {
    crate::health::logger::rfc3339(UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

/// The audit log. See the module docs.
#[derive(Debug)]
pub struct Audit {
    file: Option<PathBuf>,
    ring: Mutex<VecDeque<Entry>>,
    warned: std::sync::atomic::AtomicBool,
}

impl Audit {
    pub fn new(file: Option<PathBuf>) -> Audit {
        Audit { file, ring: Mutex::new(VecDeque::new()), warned: false.into() }
    }

    /// Records `e`.
    pub fn record(&self, e: Entry) {
        let line = e.line();
        log::info!(target: "xvs::audit", "{line}");
        if let Some(p) = &self.file {
            let w = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
            if let Err(err) = w {
                if !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    log::error!(target: "xvs::audit", "audit file {}: {err}; entries go to the log only", p.display());
                }
            }
        }
        let mut r = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if r.len() == KEEP {
            r.pop_front();
        }
        r.push_back(e);
    }

    /// The last entries, newest first.
    pub fn recent(&self) -> Vec<Entry> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner()).iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_rfc3339() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_ms(1_714_564_800_000), "2024-05-01T12:00:00.000Z");
    }

    #[test]
    fn entries_reach_the_file_and_the_ring() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("audit.log");
        let a = Audit::new(Some(f.clone()));
        for i in 0..(KEEP + 3) {
            a.record(Entry { t: 0, user: "alice".into(), from: "192.0.2.1".parse().unwrap(), what: format!("change {i}"), result: "ok".into() });
        }
        let text = std::fs::read_to_string(&f).unwrap();
        assert_eq!(text.lines().count(), KEEP + 3);
        assert_eq!(text.lines().next().unwrap(), "1970-01-01T00:00:00.000Z user=alice from=192.0.2.1 what=\"change 0\" result=\"ok\"");
        let r = a.recent();
        assert_eq!(r.len(), KEEP);
        assert_eq!(r[0].what, format!("change {}", KEEP + 2), "newest first");
    }
}
