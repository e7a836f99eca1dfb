//! The validated model: services, real servers, local addresses, groups,
//! timeouts and (for replay) the L2 neighbourhood. Both the config file and
//! the ipvsadm command forms produce one; [`crate::ctl::snapshot`] compiles
//! it for the workers.

use crate::ipvs::proto::Timeouts;
use crate::ipvs::service::{Group, Service};
use std::net::IpAddr;

/// A MAC address.
pub use crate::wire::Mac;

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn fmt_mac(m: &Mac) -> String {
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}

/// Parses `aa:bb:cc:dd:ee:ff` (or with `-`).
///
/// # Errors
/// A message saying what is wrong with the text.
pub fn parse_mac(s: &str) -> Result<Mac, String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(format!("'{s}' is not a MAC address (want six hex bytes like 02:00:00:00:00:01)"));
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return Err(format!("'{s}' is not a MAC address (byte '{p}' is not two hex digits)"));
        }
        m[i] = u8::from_str_radix(p, 16).map_err(|_| format!("'{s}' is not a MAC address (byte '{p}' is not hex)"))?;
    }
    Ok(m)
}

/// A network interface of the director ("port", as DPDK names them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortConf {
    pub name: String,
    pub mac: Mac,
    pub mtu: u16,
    /// Connected prefixes: address of the director on this link + length.
    pub addrs: Vec<(IpAddr, u8)>,
    /// Default gateways (one per family) reachable on this port.
    pub gateways: Vec<IpAddr>,
}

/// A sub-interface of a port: an 802.1Q VLAN (`eth1.20`: frames to and
/// from it carry tag `vid` on the port), or with `vid` 0 an untagged one
/// with a MAC of its own (a macvlan, as keepalived's `use_vmac` makes).
/// xvs binds the port and tags or untags itself; see docs/modes.md.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubIfConf {
    pub name: String,
    /// Index of its port in [`NetConf::ports`].
    pub port: u8,
    /// VLAN id 1-4094; 0: untagged.
    pub vid: u16,
    pub mac: Mac,
    pub mtu: u16,
    /// Connected prefixes, as [`PortConf::addrs`].
    pub addrs: Vec<(IpAddr, u8)>,
}

/// One way out of a route: the interface (a port, a sub-interface, or a
/// device xvs does not send on) and the gateway, `None` for a destination
/// on the link itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteHop {
    pub dev: String,
    pub via: Option<IpAddr>,
}

/// A route of the main table: `dst/len` through `hops` (several: ECMP;
/// none: the destination is unreachable — blackhole, unreachable,
/// prohibit). The lowest `metric` of a prefix wins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteConf {
    pub dst: IpAddr,
    pub len: u8,
    pub metric: u32,
    pub hops: Vec<RouteHop>,
}

/// A neighbour: an IP on a connected link and its MAC; on interface
/// `dev` only (the kernel's entries), or on any (`None`: the config's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub addr: IpAddr,
    pub mac: Mac,
    pub dev: Option<String>,
}

/// The director's links. In replay they come from the config; the live
/// driver fills them from the kernel (netlink).
///
/// Links are numbered ports first, then sub-interfaces ([`NetConf::links`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetConf {
    pub ports: Vec<PortConf>,
    pub subifs: Vec<SubIfConf>,
    /// Routes besides the connected prefixes and the ports' gateways,
    /// which count as routes too (see [`crate::ctl::route`]).
    pub routes: Vec<RouteConf>,
    pub neighbours: Vec<Neighbour>,
    /// The director's addresses on other devices than its links (lo, a
    /// management interface): with the links' addresses, the sources a
    /// packet from outside may not have (martians).
    pub local_addrs: Vec<IpAddr>,
}

/// One link (a port or a sub-interface) as [`NetConf::links`] lists them.
#[derive(Clone, Copy, Debug)]
pub struct LinkRef<'a> {
    pub name: &'a str,
    pub port: u8,
    pub vid: u16,
    pub mac: Mac,
    pub mtu: u16,
    pub addrs: &'a [(IpAddr, u8)],
}

impl NetConf {
    /// The links: every port (index = port index), then every
    /// sub-interface.
    pub fn links(&self) -> impl Iterator<Item = LinkRef<'_>> {
        let ports = self.ports.iter().enumerate().map(|(i, p)| LinkRef {
            name: &p.name,
            port: i as u8,
            vid: 0,
            mac: p.mac,
            mtu: p.mtu,
            addrs: &p.addrs,
        });
        let subs = self.subifs.iter().map(|s| LinkRef {
            name: &s.name,
            port: s.port,
            vid: s.vid,
            mac: s.mac,
            mtu: s.mtu,
            addrs: &s.addrs,
        });
        ports.chain(subs)
    }

    /// Index of the link named `name`.
    pub fn link_index(&self, name: &str) -> Option<usize> {
        self.links().position(|l| l.name == name)
    }
}

/// Default bound on connections per worker.
pub const DEFAULT_MAX_CONNS: usize = 4 << 20;

/// Everything the data path is configured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    pub services: Vec<Service>,
    pub groups: Vec<Group>,
    pub timeouts: Timeouts,
    /// IPVS `expire_nodest_conn`: drop packets of (and expire) connections
    /// whose real server was removed, instead of forwarding them on.
    pub expire_nodest_conn: bool,
    /// IPVS `conn_reuse_mode` (0-3): how a SYN that reuses the ports of an
    /// existing connection is handled. Bit 1 (the default, 1): when that
    /// connection is over (TIME_WAIT or CLOSE), it is expired and the SYN
    /// scheduled afresh, instead of going to the old real server. Bit 2
    /// also treats a DR/TUN connection in FIN_WAIT as over (the director
    /// sees only the client's side of a DR/TUN close). 0 sends the SYN to
    /// the old real server, as IPVS did before the sysctl existed.
    pub conn_reuse_mode: u8,
    /// IPVS's `drop_entry` defense, always armed: when a worker's table is
    /// full, a new TCP connection ends the embryonic connection (SYN_RECV:
    /// a SYN and nothing since) due to expire soonest, so a SYN flood
    /// cannot lock clients out. Off: a full table drops new connections.
    pub drop_entry: bool,
    /// The rate limit of the ICMP errors xvs builds itself (port
    /// unreachable when a service has no real server, ...), as the
    /// kernel's `net.ipv4.icmp_msgs_per_sec` / `icmp_msgs_burst`: a token
    /// bucket of `icmp_msgs_burst` tokens refilled at `icmp_msgs_per_sec`
    /// a second, shared out among the workers. 0 per second: no limit.
    /// Fragmentation needed / packet too big are never limited (path MTU
    /// discovery depends on them), as in the kernel.
    pub icmp_msgs_per_sec: u32,
    pub icmp_msgs_burst: u32,
    /// FULLNAT: add the client's address and port to the client's
    /// handshake ACK in a TOA option (TCP option 254), as Alibaba's LVS
    /// and DPVS do, so real servers can learn who the client is.
    pub toa: bool,
    pub net: NetConf,
    /// Connection table bound per worker.
    pub max_conns: usize,
    /// IPVS `expire_quiescent_template`: a persistence template whose real
    /// server has weight 0 is dropped (the client is scheduled afresh)
    /// instead of still sending the client there.
    pub expire_quiescent_template: bool,
    /// Workers shard flows by the client address masked to a prefix
    /// (IPv4, IPv6): every connection of one client subnet lives on one
    /// worker, which is what lets per-worker persistence templates behave
    /// like IPVS's. The snapshot uses the smaller of this and every
    /// persistence netmask ([`crate::ctl::snapshot::Snapshot::shard_prefix`]).
    pub shard_prefix: (u8, u8),
    /// IPVS `sloppy_tcp`: a TCP packet of a flow no connection knows (an
    /// ACK in mid-connection: ECMP moved the flow here from another
    /// director, or this director restarted) is scheduled like a SYN
    /// instead of dropped; its connection starts in the state IPVS's state
    /// table gives that packet (an ACK: ESTABLISHED). RST is never
    /// scheduled. With `mh`, every director picks the same real server, so
    /// a DR/TUN flow carries on across directors (docs/scale-out.md).
    /// IPVS has no `sloppy_udp`: a UDP datagram of an unknown flow is
    /// always scheduled, by IPVS and by xvs.
    pub sloppy_tcp: bool,
}

/// The kernel's defaults of `net.ipv4.icmp_msgs_per_sec` and
/// `icmp_msgs_burst`.
pub const DEFAULT_ICMP_MSGS_PER_SEC: u32 = 1000;
pub const DEFAULT_ICMP_MSGS_BURST: u32 = 50;

/// Default sharding prefixes: the whole client address.
pub const DEFAULT_SHARD_PREFIX: (u8, u8) = (32, 128);

impl Default for Model {
    fn default() -> Self {
        Model {
            services: Vec::new(),
            groups: Vec::new(),
            timeouts: Timeouts::default(),
            expire_nodest_conn: false,
            conn_reuse_mode: 1,
            drop_entry: true,
            icmp_msgs_per_sec: DEFAULT_ICMP_MSGS_PER_SEC,
            icmp_msgs_burst: DEFAULT_ICMP_MSGS_BURST,
            toa: true,
            net: NetConf::default(),
            max_conns: DEFAULT_MAX_CONNS,
            expire_quiescent_template: false,
            shard_prefix: DEFAULT_SHARD_PREFIX,
            sloppy_tcp: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_roundtrip_and_errors() {
        let m = parse_mac("02:aB:00:00:00:ff").unwrap();
        assert_eq!(fmt_mac(&m), "02:ab:00:00:00:ff");
        assert!(parse_mac("02:00:00:00:00").unwrap_err().contains("six hex bytes"));
        assert!(parse_mac("02:00:00:00:00:zz").unwrap_err().contains("'zz'"));
        assert!(parse_mac("02:00:00:00:00:0").unwrap_err().contains("two hex digits"));
    }
}
