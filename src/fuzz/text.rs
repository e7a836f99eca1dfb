//! The configuration loader (TOML or ipvsadm-save rules), then
//! `Snapshot::build`, the director and a worker on what it loaded.
//!
//! Beyond "no panic": a configuration the loader accepts compiles (the
//! loader promises it), compiles the same way a second time on top of
//! itself (a reload of the same file), and a director and a worker start
//! on it; a refused one says where: an error's line is within the text.

use crate::ctl::config::{self, ConfigError};
use crate::ctl::snapshot::Snapshot;
use crate::daemon::Director;
use crate::worker::Worker;
use std::sync::Arc;

/// Runs a configuration text through the loader. Panics when an
/// invariant breaks (see the module docs).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match config::load_config_str(text, "fuzz.toml") {
        Ok(c) => {
            let a = Snapshot::build(&c.model, None).unwrap_or_else(|e| panic!("the loader accepted a model that does not compile: {e}"));
            let b = Snapshot::build(&c.model, Some(&a)).unwrap_or_else(|e| panic!("the same model does not compile over itself: {e}"));
            assert_eq!(a.services.len(), b.services.len());
            assert_eq!(a.dests.len(), b.dests.len());
            assert!(a.services.iter().zip(&b.services).all(|(x, y)| x.uid == y.uid), "a reload of the same model changed service uids");
            assert!(a.dests.iter().zip(&b.dests).all(|(x, y)| x.uid == y.uid), "a reload of the same model changed real server uids");
            // The table is bounded by max_conns but must not be allocated up front.
            let w = Worker::new(0, 1, Arc::new(b), 1);
            assert!(w.conn_memory() < 64 << 20, "an empty worker holds {} bytes", w.conn_memory());
            Director::new(c.model, 2).unwrap_or_else(|e| panic!("a director refuses a model the loader accepted: {e}"));
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.len() > "fuzz.toml: ".len(), "an error that says nothing: {msg:?}");
            if let Some(at) = e.location() {
                let lines = text.lines().count().max(1) + 1;
                assert!(at.line >= 1 && at.line <= lines, "error at line {} of a {}-line text: {msg}", at.line, lines - 1);
            }
            if let ConfigError::Read { .. } = e {
                panic!("a text was read as a file: {msg}");
            }
        }
    }
}
