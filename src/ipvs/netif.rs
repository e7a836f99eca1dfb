//! The director's network interfaces as the data path sees them.

use crate::wire::Mac;
use std::net::{Ipv4Addr, Ipv6Addr};

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
}

/// A link of the director, compiled: what a frame sent on it needs. The
/// first `ports.len()` links are the ports themselves (untagged); the
/// rest are their sub-interfaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The port (AF_XDP interface) it is on.
    pub port: u8,
    /// The 802.1Q VLAN id frames carry on the port; 0: untagged.
    pub vid: u16,
    /// Our MAC on it: the source of every frame sent on it.
    pub mac: Mac,
    pub mtu: u16,
    /// The source of tunnels and of ICMP errors sent on it: its first
    /// address of the family, else its port's.
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
}
