//! A virtual service as the control plane describes it.

use super::dest::Dest;
use super::sched::SchedFlags;
use super::Proto;
use std::fmt;
use std::net::IpAddr;

/// What a service matches.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKey {
    /// protocol + VIP + port; port 0 matches every port of the VIP.
    Addr { proto: Proto, addr: IpAddr, port: u16 },
    /// A service group: the ports/protocols of [`Group`] `id` (LVS's
    /// firewall-mark service, `ipvsadm -f id`).
    Group(u32),
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceKey::Addr { proto, addr: IpAddr::V6(a), port } => write!(f, "{proto} [{a}]:{port}"),
            ServiceKey::Addr { proto, addr, port } => write!(f, "{proto} {addr}:{port}"),
            ServiceKey::Group(id) => write!(f, "FWM {id}"),
        }
    }
}

/// One member of a service group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupMember {
    pub proto: Proto,
    pub addr: IpAddr,
    /// 0 = every port.
    pub port: u16,
}

/// A service group: what LVS expresses with an iptables mark, defined here
/// in the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub id: u32,
    pub members: Vec<GroupMember>,
}

/// Persistence (`ipvsadm -p timeout -M netmask`): a client (masked by the
/// netmask) sticks to one real server for `timeout` seconds after its last
/// connection ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Persistence {
    pub timeout: u32,
    /// Prefix length applied to the client address (32 / 128 = the client).
    pub netmask: u8,
}

/// Default persistence timeout of ipvsadm `-p` without a value.
pub const DEFAULT_PERSISTENCE: u32 = 300;

/// A virtual service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub key: ServiceKey,
    /// Scheduler name, as ipvsadm `-s` (validated against the registry).
    pub sched: String,
    /// Scheduler flags (ipvsadm `-b`).
    pub sched_flags: SchedFlags,
    pub persistence: Option<Persistence>,
    pub dests: Vec<Dest>,
    /// FULLNAT local addresses (DPVS `--add-laddr`).
    pub laddrs: Vec<IpAddr>,
    /// The director answers clients' SYNs itself with SYN cookies and
    /// opens a connection only on a valid ACK (`ipvs::synproxy`; NAT and
    /// FULLNAT; xvsadm `--synproxy`, DPVS's `-j`).
    pub synproxy: bool,
}
