//! The director's network interfaces as the data path sees them.

use crate::wire::Mac;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A network interface of the director (a netif, as DPVS says; the
/// configuration calls it a port), compiled.
#[derive(Clone, Debug)]
pub struct Netif {
    pub name: String,
    pub mac: Mac,
    pub mtu: u16,
    /// The director's first address of each family on this port (the
    /// source of tunnels and of ICMP errors we originate).
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
    /// Connected prefixes (which neighbours are on this interface).
    pub(crate) prefixes: Vec<(IpAddr, u8)>,
    /// Gateways reachable through it.
    pub(crate) gateways: Vec<IpAddr>,
}
