//! Fixtures shared by the tests of the health plan, the policy and the
//! engine: the service they all check and real servers of it.

use crate::ipvs::dest::Dest;
use crate::ipvs::sched::SchedFlags;
use crate::ipvs::service::{Service, ServiceKey};
use crate::ipvs::{FwdMethod, Proto};

/// The tests' service: TCP 10.0.0.100:`port`.
pub fn key(port: u16) -> ServiceKey {
    ServiceKey::Addr {
        proto: Proto::Tcp,
        addr: "10.0.0.100".parse().unwrap(),
        port,
    }
}

/// A real server `addr:port` with `weight` and `fwd`, no thresholds.
pub fn dest(addr: &str, port: u16, weight: u32, fwd: FwdMethod) -> Dest {
    Dest {
        addr: addr.parse().unwrap(),
        port,
        weight,
        fwd,
        u_threshold: 0,
        l_threshold: 0,
        proxy: None,
    }
}

/// Service [`key`]`(port)`, scheduled by wrr, with `dests`.
pub fn service(port: u16, dests: Vec<Dest>) -> Service {
    Service {
        key: key(port),
        sched: "wrr".into(),
        sched_flags: SchedFlags::default(),
        persistence: None,
        dests,
        laddrs: vec![],
        synproxy: false,
    }
}
