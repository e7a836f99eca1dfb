//! A real server ("destination" in IPVS) as the control plane describes it.

use super::FwdMethod;
use crate::wire::Mac;
use std::net::IpAddr;

/// Largest weight ipvsadm accepts.
pub const MAX_WEIGHT: u32 = 65535;

/// A real server of a service: address, port, weight, forwarding method and
/// the connection thresholds of ipvsadm `-x` / `-y`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dest {
    pub addr: IpAddr,
    /// Real server port. For DR and TUN it must equal the virtual port (the
    /// packet is not rewritten); 0 on a port-0 service keeps the client's
    /// destination port.
    pub port: u16,
    /// 0 quiesces the server: no new connections, established ones go on.
    pub weight: u32,
    pub fwd: FwdMethod,
    /// Upper connection threshold (0 = none): above it the server takes no
    /// new connections (IPVS's overloaded flag).
    pub u_threshold: u32,
    /// Lower threshold: the overloaded flag clears below it (0 = 3/4 of the
    /// upper threshold, as IPVS).
    pub l_threshold: u32,
}

/// One worker's accounting of a real server: what lc/wlc/sed/nq read and
/// what the thresholds act on. A connection is active in ESTABLISHED and
/// inactive otherwise (IPVS); templates are counted apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestLoad {
    pub active: u32,
    pub inactive: u32,
    /// Persistence templates pointing at this server.
    pub persist: u32,
    /// Above the upper threshold and not yet back under the lower one.
    pub overloaded: bool,
}

impl DestLoad {
    /// Connections counted against the thresholds.
    #[inline]
    pub fn conns(&self) -> u32 {
        self.active + self.inactive
    }

    /// Re-evaluates the overloaded flag as IPVS does after a connection is
    /// bound or unbound: set at `conns >= upper`, cleared below `lower`
    /// (or `4 * conns < 3 * upper` when `lower` is 0). No thresholds: never set.
    #[inline]
    pub fn update_overload(&mut self, upper: u32, lower: u32) {
        if upper == 0 {
            self.overloaded = false;
            return;
        }
        let c = self.conns();
        if c >= upper {
            self.overloaded = true;
        } else if self.overloaded {
            let clear = if lower > 0 { c < lower } else { (c as u64) * 4 < (upper as u64) * 3 };
            if clear {
                self.overloaded = false;
            }
        }
    }
}

// What the data path reads of a real server and its next hop: compiled
// by the control plane (`ctl::snapshot`), defined here so that the data
// path depends on nothing above it.

/// Where to send a frame for a neighbour: the egress link (index in
/// `Snapshot::links`: a port, or a VLAN on one) and the neighbour's MAC.
/// Seven bytes: a connection holds two and an IPv4 connection fits one
/// cache line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop {
    pub link: u8,
    pub mac: Mac,
}

/// A real server, compiled.
#[derive(Clone, Debug)]
pub struct DestEntry {
    pub uid: u32,
    /// Index of its service in `Snapshot::services`.
    pub svc: u32,
    pub addr: IpAddr,
    /// 0 = the packet's destination port.
    pub port: u16,
    pub weight: i32,
    pub fwd: FwdMethod,
    pub u_threshold: u32,
    pub l_threshold: u32,
    /// Next hop towards it (`None`: no neighbour known yet).
    pub hop: Option<Hop>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_hysteresis() {
        let mut l = DestLoad { inactive: 3, ..DestLoad::default() };
        l.update_overload(4, 0);
        assert!(!l.overloaded);
        l.active = 1;
        l.update_overload(4, 0);
        assert!(l.overloaded, "at the upper threshold");
        l.active = 0; // 3 conns: 3/4 of 4 is 3, not below it
        l.update_overload(4, 0);
        assert!(l.overloaded);
        l.inactive = 2;
        l.update_overload(4, 0);
        assert!(!l.overloaded, "below the lower threshold");
        l.inactive = 10;
        l.update_overload(0, 0);
        assert!(!l.overloaded, "no threshold, no overload");
    }
}
