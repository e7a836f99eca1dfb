//! The control socket's request decoder and the daemon's handler behind
//! it, on a director running the fuzz configuration. The input is what a
//! client writes: request lines, newline-delimited.
//!
//! Beyond "no panic": a request that decodes encodes back to the same
//! request; every answer encodes; an error answer says something.

use super::frames::CONFIG;
use crate::ctl::config;
use crate::ctl::control::{ControlHandler, Request, Response};
use crate::daemon::control::{DaemonHandler, Reloader};
use crate::daemon::stats::StatsHub;
use crate::daemon::Director;
use std::path::Path;
use std::sync::Arc;

/// A fresh daemon handler over the fuzz director (no workers, no kernel),
/// with the director and its figures.
pub fn handler() -> (Arc<Director>, Arc<StatsHub>, DaemonHandler) {
    let model = config::load_str(CONFIG, "fuzz/director.toml").expect("the fuzz director's configuration loads");
    let d = Arc::new(Director::new(model, 1).expect("the director starts"));
    let hub = Arc::new(StatsHub::new(d.clone()));
    let reload: Reloader = Box::new(|| Err("no reload while fuzzing".into()));
    let h = DaemonHandler::new(d.clone(), hub.clone(), Path::new("fuzz/director.toml"), reload);
    (d, hub, h)
}

/// Runs request lines through the decoder and the handler. Panics when
/// an invariant breaks (see the module docs).
pub fn run(data: &[u8]) {
    let (_d, _hub, h) = handler();
    for line in data.split(|&b| b == b'\n').take(32) {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(req) = serde_json::from_slice::<Request>(line) else { continue };
        let again = serde_json::to_vec(&req).expect("a request encodes");
        let back: Request = serde_json::from_slice(&again).unwrap_or_else(|e| panic!("a request does not decode from its own encoding: {e}"));
        assert_eq!(back, req, "a request changed through encode / decode");
        let resp: Response = h.handle(req);
        serde_json::to_vec(&resp).expect("a response encodes");
        if let Some(e) = &resp.error {
            assert!(!e.message.is_empty(), "an error answer without a message");
        }
    }
}
