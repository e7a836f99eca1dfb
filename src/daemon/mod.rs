//! The daemon behind `xvs run`: the [`Director`] that owns the running
//! configuration, the kernel's view of the links ([`kernel`]), the worker
//! threads ([`run`]) and the counters they publish ([`report`]).
//!
//! # Contract
//!
//! - One [`Director`] per process. Everything that changes the
//!   configuration (config reloads, the control socket, health checks)
//!   calls [`Director::apply`] with a whole new model; the director
//!   validates it, updates the XDP steering rules and publishes a new
//!   snapshot, or changes nothing.
//! - Workers never lock: they read the snapshot generation once per burst
//!   and publish copies of their counters every
//!   [`report::REPORT_INTERVAL`].
//! - Next hops come from the kernel: [`run::NetWatcher`] dumps links,
//!   addresses, default routes and neighbours (on every rtnetlink
//!   notification and every second) and prompts the kernel to resolve the
//!   next hops nobody knows yet.

pub mod director;
pub mod kernel;
pub mod report;
pub mod run;
pub mod signals;

pub use director::{DestTotal, Director, Published, RuleSink};
