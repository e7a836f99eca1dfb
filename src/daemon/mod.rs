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
//!   addresses, the main routing table and neighbours (on every rtnetlink
//!   notification and every second) and prompts the kernel to resolve the
//!   next hops nobody knows yet.

/// What the daemon logs once every next hop its snapshot names has a
/// MAC (the labs, the demo and the line-rate harness wait for it).
pub const LOG_HOPS_RESOLVED: &str = "all next hops resolved";
/// What the daemon logs, after the worker count, when every worker has
/// forwarded its first burst loop (and it tells systemd READY=1).
pub const LOG_READY: &str = "worker(s) forwarding";

pub mod announce;
pub mod conns;
pub mod control;
pub mod director;
pub mod fault;
pub mod health;
pub mod kernel;
pub mod report;
pub mod rss;
pub mod run;
pub mod notify;
pub mod privs;
pub mod signals;
pub mod stats;

pub use director::{DestTotal, Director, Published, RuleSink};

/// Test support: the daemon tests' director: eth0 10.0.0.1/24, the
/// neighbour 10.0.0.2, and the TCP service 10.0.0.100:80 (rr) with that
/// neighbour as its one DR real server.
#[cfg(test)]
pub(crate) const DR_CONF: &str = r#"
[[interface]]
name = "eth0"
mac = "02:00:00:00:00:10"
addresses = ["10.0.0.1/24"]
[[neighbour]]
ip = "10.0.0.2"
mac = "02:00:00:00:00:02"
[[service]]
proto = "tcp"
vip = "10.0.0.100"
port = 80
scheduler = "rr"
  [[service.real_server]]
  ip = "10.0.0.2"
  mode = "dr"
"#;

/// Test support: runs a SYN to the daemon tests' VIP, 10.0.0.100:80,
/// from `client` on each of `ports` through `w` at t = 1 s (new
/// connections made the honest way, by the worker itself).
#[cfg(test)]
pub(crate) fn syns(w: &mut crate::worker::Worker, client: [u8; 4], ports: std::ops::Range<u16>) {
    use crate::wire::frame::{Frame, HEADROOM};
    let mut buf = vec![0u8; 2048];
    for p in ports {
        let pkt = crate::gen::packet::tcp4(client, p, [10, 0, 0, 100], 80, crate::wire::tcp_flags::SYN, b"");
        buf[HEADROOM..HEADROOM + pkt.len()].copy_from_slice(&pkt);
        let mut fr = Frame::new(&mut buf, HEADROOM, pkt.len());
        w.set_clock(1_000_000_000);
        let _ = w.process(&mut fr);
    }
}
