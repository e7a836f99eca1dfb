//! The kernel's view of the director's links, over rtnetlink.
//!
//! # Contract
//!
//! - [`Rtnl`] dumps the kernel's links, addresses, default routes and
//!   neighbours ([`Rtnl::tables`]) in the calling thread's network
//!   namespace, and asks the kernel to resolve a neighbour
//!   ([`Rtnl::prompt`]).
//! - [`Monitor`] is subscribed to the kernel's link, address, route and
//!   neighbour notifications; [`Monitor::wait`] says whether any arrived.
//!   The daemon does not interpret notifications: any of them (or a timer)
//!   triggers a fresh dump, so a lost notification (ENOBUFS) costs nothing
//!   but a delay.
//! - [`net_conf`] turns the dumps into the model's [`NetConf`] for the
//!   director's interfaces, merged with the static configuration (the
//!   kernel wins, see the function), and lists the next hops nobody has
//!   resolved yet. It is a pure function: tested without a kernel.
//! - Control plane only: everything here allocates and blocks.
//!
//! Why `NTF_USE` to resolve a neighbour: an `RTM_NEWNEIGH` request with
//! `NTF_USE` (and `NLM_F_CREATE`) makes the kernel create the entry if
//! needed and run its normal resolution (`neigh_event_send`: ARP request or
//! neighbour solicitation, retries, failure), exactly as if the kernel
//! itself had a packet for that address — without sending any packet to the
//! host, without binding a socket or picking a port, and without guessing
//! a MAC. (`ip neigh replace ADDR dev IF use` does the same.)

use crate::ctl::model::{Mac, Neighbour, NetConf, PortConf};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Errors talking to the kernel over rtnetlink, and missing interfaces.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("rtnetlink {op}: {source}")]
    Netlink { op: &'static str, source: io::Error },
    #[error("interface '{0}' does not exist (in this network namespace)")]
    NoInterface(String),
    #[error("interface '{0}' has no Ethernet address (xvs needs an Ethernet-like device)")]
    NotEthernet(String),
}

fn nl(op: &'static str) -> impl FnOnce(io::Error) -> NetError {
    move |source| NetError::Netlink { op, source }
}

/// A link as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `None` for devices without an Ethernet address (lo has all zeros,
    /// tun devices none).
    pub mac: Option<Mac>,
    pub mtu: u32,
    pub up: bool,
}

/// An address on a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addr {
    pub index: u32,
    pub addr: IpAddr,
    pub prefix: u8,
}

/// A default route of the main table through a gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultRoute {
    pub oif: u32,
    pub gateway: IpAddr,
    /// Lower wins.
    pub metric: u32,
}

/// A neighbour entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neigh {
    pub index: u32,
    pub addr: IpAddr,
    pub mac: Option<Mac>,
    pub state: NeighState,
}

/// The states of a neighbour entry that matter here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeighState {
    /// REACHABLE, STALE, DELAY, PROBE, PERMANENT, NOARP: the MAC is the
    /// kernel's current belief (a STALE one is re-verified by the kernel
    /// when it is next used — [`Rtnl::prompt`] uses it).
    Valid,
    /// STALE (valid, but not confirmed lately).
    Stale,
    /// INCOMPLETE: resolution in progress.
    Incomplete,
    /// FAILED, NONE and anything else: no usable MAC.
    Unusable,
}

impl NeighState {
    fn from_kernel(s: NeighbourState) -> NeighState {
        match s {
            NeighbourState::Reachable
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
            | NeighbourState::Noarp => NeighState::Valid,
            NeighbourState::Stale => NeighState::Stale,
            NeighbourState::Incomplete => NeighState::Incomplete,
            _ => NeighState::Unusable,
        }
    }

    /// The entry's MAC may be used.
    pub fn usable(self) -> bool {
        matches!(self, NeighState::Valid | NeighState::Stale)
    }
}

/// One dump of everything [`net_conf`] needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tables {
    pub links: Vec<Link>,
    pub addrs: Vec<Addr>,
    pub defaults: Vec<DefaultRoute>,
    pub neighs: Vec<Neigh>,
}

/// A request/response rtnetlink socket.
pub struct Rtnl {
    sock: Socket,
    seq: u32,
}

impl Rtnl {
    /// Opens a socket in the calling thread's network namespace.
    ///
    /// # Errors
    /// The socket could not be created or bound.
    pub fn open() -> Result<Rtnl, NetError> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(nl("socket"))?;
        sock.bind_auto().map_err(nl("bind"))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(nl("connect"))?;
        Ok(Rtnl { sock, seq: 1 })
    }

    /// Sends `msg` with `flags` and collects the replies up to the end of
    /// the dump (or the ACK). Messages that do not parse are skipped: a
    /// newer kernel's attribute must not stop the daemon.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: &'static str,
    ) -> Result<Vec<RouteNetlinkMessage>, NetError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut hdr = NetlinkHeader::default();
        hdr.flags = flags;
        hdr.sequence_number = seq;
        let mut req = NetlinkMessage::new(hdr, NetlinkPayload::from(msg));
        req.finalize();
        let mut buf = vec![0u8; req.buffer_len()];
        req.serialize(&mut buf);
        self.sock.send(&buf, 0).map_err(nl(op))?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.sock.recv_from_full().map_err(nl(op))?;
            let mut off = 0;
            while off + 16 <= data.len() {
                let len =
                    u32::from_ne_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]])
                        as usize;
                if len < 16 || off + len > data.len() {
                    break;
                }
                let part = &data[off..off + len];
                off += (len + 3) & !3;
                let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(part) else {
                    continue;
                };
                if m.header.sequence_number != seq {
                    continue;
                }
                match m.payload {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(c) => Err(NetError::Netlink {
                                op,
                                source: io::Error::from_raw_os_error(-c.get()),
                            }),
                        };
                    }
                    NetlinkPayload::InnerMessage(i) => {
                        out.push(i);
                        if !dump {
                            return Ok(out);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
        op: &'static str,
    ) -> Result<Vec<RouteNetlinkMessage>, NetError> {
        self.request(msg, NLM_F_REQUEST | NLM_F_DUMP, op)
    }

    /// Every link.
    ///
    /// # Errors
    /// The dump failed.
    pub fn links(&mut self) -> Result<Vec<Link>, NetError> {
        let msgs = self.dump(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            "dump links",
        )?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(parse_link(&l)),
                _ => None,
            })
            .collect())
    }

    /// Every IPv4 and IPv6 address.
    ///
    /// # Errors
    /// The dump failed.
    pub fn addrs(&mut self) -> Result<Vec<Addr>, NetError> {
        let msgs = self.dump(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            "dump addresses",
        )?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => parse_addr(&a),
                _ => None,
            })
            .collect())
    }

    /// The default routes of the main table that go through a gateway.
    ///
    /// # Errors
    /// The dump failed.
    pub fn default_routes(&mut self) -> Result<Vec<DefaultRoute>, NetError> {
        let msgs = self.dump(
            RouteNetlinkMessage::GetRoute(RouteMessage::default()),
            "dump routes",
        )?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => parse_default_route(&r),
                _ => None,
            })
            .collect())
    }

    /// Every IPv4 and IPv6 neighbour entry.
    ///
    /// # Errors
    /// The dump failed.
    pub fn neighbours(&mut self) -> Result<Vec<Neigh>, NetError> {
        let msgs = self.dump(
            RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
            "dump neighbours",
        )?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) => parse_neigh(&n),
                _ => None,
            })
            .collect())
    }

    /// Links, addresses, default routes and neighbours.
    ///
    /// # Errors
    /// A dump failed.
    pub fn tables(&mut self) -> Result<Tables, NetError> {
        Ok(Tables {
            links: self.links()?,
            addrs: self.addrs()?,
            defaults: self.default_routes()?,
            neighs: self.neighbours()?,
        })
    }

    /// The source address the kernel would give a packet of its own to
    /// `dst` (`ip route get DST` → `src`), if it has a route.
    ///
    /// # Errors
    /// The request failed for another reason than "no route".
    pub fn route_source(&mut self, dst: IpAddr) -> Result<Option<IpAddr>, NetError> {
        let mut m = RouteMessage::default();
        m.header.address_family = family(dst);
        m.header.destination_prefix_length = if dst.is_ipv4() { 32 } else { 128 };
        m.attributes.push(RouteAttribute::Destination(match dst {
            IpAddr::V4(a) => RouteAddress::Inet(a),
            IpAddr::V6(a) => RouteAddress::Inet6(a),
        }));
        let replies = match self.request(RouteNetlinkMessage::GetRoute(m), NLM_F_REQUEST, "route lookup") {
            Ok(r) => r,
            Err(NetError::Netlink { source, .. })
                if matches!(source.raw_os_error(), Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH)) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        Ok(replies.iter().find_map(|r| match r {
            RouteNetlinkMessage::NewRoute(r) => r.attributes.iter().find_map(|a| match a {
                RouteAttribute::PrefSource(s) => route_ip(s),
                _ => None,
            }),
            _ => None,
        }))
    }

    /// Asks the kernel to resolve (or re-verify) neighbour `addr` on link
    /// `index` — `ip neigh replace ADDR dev IF use`. See the module docs.
    ///
    /// # Errors
    /// The kernel refused (e.g. the link is down).
    pub fn prompt(&mut self, index: u32, addr: IpAddr) -> Result<(), NetError> {
        let mut m = NeighbourMessage::default();
        m.header.family = family(addr);
        m.header.ifindex = index;
        m.header.flags = NeighbourFlags::Use;
        m.attributes
            .push(NeighbourAttribute::Destination(match addr {
                IpAddr::V4(a) => NeighbourAddress::Inet(a),
                IpAddr::V6(a) => NeighbourAddress::Inet6(a),
            }));
        self.request(
            RouteNetlinkMessage::NewNeighbour(m),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            "resolve neighbour",
        )
        .map(drop)
    }
}

fn family(a: IpAddr) -> AddressFamily {
    if a.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

fn mac_of(b: &[u8]) -> Option<Mac> {
    let m: Mac = b.try_into().ok()?;
    (m != [0; 6]).then_some(m)
}

fn parse_link(l: &LinkMessage) -> Link {
    let mut link = Link {
        index: l.header.index,
        name: String::new(),
        mac: None,
        mtu: 0,
        up: l.header.flags.contains(LinkFlags::Up),
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Address(b) => link.mac = mac_of(b),
            LinkAttribute::Mtu(m) => link.mtu = *m,
            _ => {}
        }
    }
    link
}

fn parse_addr(a: &AddressMessage) -> Option<Addr> {
    // IFA_LOCAL is our address on point-to-point links, IFA_ADDRESS the
    // peer's there; on broadcast links both are ours.
    let mut local = None;
    let mut address = None;
    for at in &a.attributes {
        match at {
            AddressAttribute::Local(x) => local = Some(*x),
            AddressAttribute::Address(x) => address = Some(*x),
            _ => {}
        }
    }
    Some(Addr {
        index: a.header.index,
        addr: local.or(address)?,
        prefix: a.header.prefix_len,
    })
}

fn route_ip(r: &RouteAddress) -> Option<IpAddr> {
    match r {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// The main table's id (RT_TABLE_MAIN).
const RT_TABLE_MAIN: u32 = 254;

fn parse_default_route(r: &RouteMessage) -> Option<DefaultRoute> {
    if r.header.destination_prefix_length != 0 || r.header.kind != RouteType::Unicast {
        return None;
    }
    let mut table = r.header.table as u32;
    let (mut oif, mut gw, mut metric) = (None, None, 0);
    for a in &r.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Gateway(g) => gw = route_ip(g),
            RouteAttribute::Priority(p) => metric = *p,
            _ => {}
        }
    }
    if table != RT_TABLE_MAIN {
        return None;
    }
    Some(DefaultRoute {
        oif: oif?,
        gateway: gw?,
        metric,
    })
}

fn parse_neigh(n: &NeighbourMessage) -> Option<Neigh> {
    let mut addr = None;
    let mut mac = None;
    for a in &n.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(x)) => {
                addr = Some(IpAddr::V4(*x))
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(x)) => {
                addr = Some(IpAddr::V6(*x))
            }
            NeighbourAttribute::LinkLayerAddress(b) => mac = mac_of(b),
            _ => {}
        }
    }
    Some(Neigh {
        index: n.header.ifindex,
        addr: addr?,
        mac,
        state: NeighState::from_kernel(n.header.state),
    })
}

/// rtnetlink multicast groups (RTNLGRP_*): links, neighbours, IPv4 and
/// IPv6 addresses and routes.
const GROUPS: [u32; 6] = [1, 3, 5, 7, 9, 11];

/// A socket subscribed to link, address, route and neighbour changes.
pub struct Monitor {
    sock: Socket,
}

impl Monitor {
    /// Subscribes in the calling thread's network namespace.
    ///
    /// # Errors
    /// The socket could not be created or subscribed.
    pub fn open() -> Result<Monitor, NetError> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(nl("socket"))?;
        sock.bind_auto().map_err(nl("bind"))?;
        for g in GROUPS {
            sock.add_membership(g).map_err(nl("subscribe"))?;
        }
        sock.set_non_blocking(true)
            .map_err(nl("set non-blocking"))?;
        Ok(Monitor { sock })
    }

    /// Waits up to `timeout` for notifications and drains them. True when
    /// at least one arrived (or some were lost: the socket overflowed).
    pub fn wait(&mut self, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for the duration of the call.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r <= 0 {
            return false;
        }
        let mut buf = vec![0u8; 65536];
        let mut any = false;
        loop {
            buf.clear();
            match self.sock.recv(&mut buf, 0) {
                Ok(_) => any = true,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => any = true,
                Err(_) => return any,
            }
        }
    }
}

/// A next hop the data path needs but the kernel has no MAC for yet.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unresolved {
    pub index: u32,
    pub iface: String,
    pub addr: IpAddr,
}

/// The outcome of [`net_conf`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetView {
    /// The model's network: one port per interface, in order.
    pub net: NetConf,
    /// Kernel link index of each port.
    pub indexes: Vec<u32>,
    /// Next hops of `wanted` with no usable MAC (prompt the kernel).
    pub unresolved: Vec<Unresolved>,
    /// Next hops whose entry is STALE (prompting re-verifies them).
    pub stale: Vec<Unresolved>,
}

fn in_prefix(a: IpAddr, net: IpAddr, len: u8) -> bool {
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - len.min(32))
            };
            u32::from(a) & m == u32::from(n) & m
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len.min(128))
            };
            u128::from(a) & m == u128::from(n) & m
        }
        _ => false,
    }
}

/// Builds the model's network for the interfaces `ifaces` (the director's
/// ports, in port order) from the kernel's `tables`, merged with the
/// static configuration `statics`:
///
/// - ports: name from `ifaces`; MAC, MTU, addresses and gateways from the
///   kernel (the kernel wins — a config `[[interface]]` only names it).
///   Global addresses come before link-local ones, so the first address of
///   a family (the source of tunnels and ICMP errors) is a routable one.
///   Gateways: the best default route of each family whose output link is
///   the port; a family's default through a link that is not a port is
///   ignored (xvs cannot send there).
/// - neighbours: every usable kernel entry on a port; a static
///   `[[neighbour]]` fills in only an address the kernel has no usable
///   entry for (the kernel wins again: it re-verifies its entries, a file
///   does not).
/// - `wanted` are the addresses the data path must reach (real servers);
///   each one's next hop (itself on a connected prefix, else its family's
///   gateway) without a usable MAC is listed in `unresolved` (STALE ones
///   in `stale`).
///
/// # Errors
/// An interface that does not exist or has no Ethernet address.
pub fn net_conf(
    tables: &Tables,
    ifaces: &[String],
    statics: &NetConf,
    wanted: &[IpAddr],
) -> Result<NetView, NetError> {
    let mut view = NetView::default();
    for name in ifaces {
        let link = tables
            .links
            .iter()
            .find(|l| &l.name == name)
            .ok_or_else(|| NetError::NoInterface(name.clone()))?;
        let mac = link
            .mac
            .ok_or_else(|| NetError::NotEthernet(name.clone()))?;
        let mut addrs: Vec<(IpAddr, u8)> = tables
            .addrs
            .iter()
            .filter(|a| a.index == link.index)
            .map(|a| (a.addr, a.prefix))
            .collect();
        addrs.sort_by_key(|(a, _)| is_link_local(*a));
        let mut gateways = Vec::new();
        for v4 in [true, false] {
            let best = tables
                .defaults
                .iter()
                .filter(|d| d.gateway.is_ipv4() == v4)
                .min_by_key(|d| d.metric);
            if let Some(d) = best.filter(|d| d.oif == link.index) {
                gateways.push(d.gateway);
            }
        }
        view.net.ports.push(PortConf {
            name: name.clone(),
            mac,
            mtu: link.mtu.min(u16::MAX as u32) as u16,
            addrs,
            gateways,
        });
        view.indexes.push(link.index);
    }
    let mut seen = BTreeSet::new();
    for n in &tables.neighs {
        if !view.indexes.contains(&n.index) || !n.state.usable() {
            continue;
        }
        if let Some(mac) = n.mac {
            if seen.insert(n.addr) {
                view.net.neighbours.push(Neighbour { addr: n.addr, mac });
            }
        }
    }
    for s in &statics.neighbours {
        if seen.insert(s.addr) {
            view.net.neighbours.push(s.clone());
        }
    }

    let mut hops = BTreeSet::new();
    for &w in wanted {
        if let Some(h) = next_hop_of(&view, w) {
            hops.insert(h);
        }
    }
    for (port, addr) in hops {
        let index = view.indexes[port];
        let u = Unresolved {
            index,
            iface: view.net.ports[port].name.clone(),
            addr,
        };
        let k = tables
            .neighs
            .iter()
            .find(|n| n.index == index && n.addr == addr);
        let statik = statics.neighbours.iter().any(|s| s.addr == addr);
        match k {
            Some(n) if n.state == NeighState::Stale => view.stale.push(u),
            Some(n) if n.state.usable() && n.mac.is_some() => {}
            _ if statik => {}
            _ => view.unresolved.push(u),
        }
    }
    Ok(view)
}

/// (port, address) of the next hop towards `ip`: itself when a port's
/// prefix holds it, else the first port's gateway of its family.
fn next_hop_of(view: &NetView, ip: IpAddr) -> Option<(usize, IpAddr)> {
    for (i, p) in view.net.ports.iter().enumerate() {
        if p.addrs.iter().any(|(a, l)| in_prefix(ip, *a, *l)) {
            return Some((i, ip));
        }
    }
    for (i, p) in view.net.ports.iter().enumerate() {
        if let Some(g) = p.gateways.iter().find(|g| g.is_ipv4() == ip.is_ipv4()) {
            return Some((i, *g));
        }
    }
    None
}

fn is_link_local(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn tables() -> Tables {
        Tables {
            links: vec![
                Link {
                    index: 1,
                    name: "lo".into(),
                    mac: None,
                    mtu: 65536,
                    up: true,
                },
                Link {
                    index: 2,
                    name: "eth0".into(),
                    mac: Some([2, 0, 0, 0, 0, 0x10]),
                    mtu: 1500,
                    up: true,
                },
                Link {
                    index: 3,
                    name: "eth1".into(),
                    mac: Some([2, 0, 0, 0, 1, 0x10]),
                    mtu: 9000,
                    up: true,
                },
                Link {
                    index: 4,
                    name: "mgmt".into(),
                    mac: Some([2, 0, 0, 0, 9, 9]),
                    mtu: 1500,
                    up: true,
                },
            ],
            addrs: vec![
                Addr {
                    index: 1,
                    addr: ip("127.0.0.1"),
                    prefix: 8,
                },
                Addr {
                    index: 2,
                    addr: ip("fe80::10"),
                    prefix: 64,
                },
                Addr {
                    index: 2,
                    addr: ip("10.0.0.1"),
                    prefix: 24,
                },
                Addr {
                    index: 2,
                    addr: ip("2001:db8::1"),
                    prefix: 64,
                },
                Addr {
                    index: 3,
                    addr: ip("10.0.1.254"),
                    prefix: 24,
                },
                Addr {
                    index: 4,
                    addr: ip("192.168.9.1"),
                    prefix: 24,
                },
            ],
            defaults: vec![
                DefaultRoute {
                    oif: 4,
                    gateway: ip("192.168.9.254"),
                    metric: 100,
                },
                DefaultRoute {
                    oif: 2,
                    gateway: ip("10.0.0.254"),
                    metric: 10,
                },
                DefaultRoute {
                    oif: 4,
                    gateway: ip("fe80::1"),
                    metric: 1,
                },
            ],
            neighs: vec![
                Neigh {
                    index: 2,
                    addr: ip("10.0.0.254"),
                    mac: Some([2, 0, 0, 0, 0, 0xfe]),
                    state: NeighState::Valid,
                },
                Neigh {
                    index: 3,
                    addr: ip("10.0.1.1"),
                    mac: Some([2, 0, 0, 0, 1, 1]),
                    state: NeighState::Stale,
                },
                Neigh {
                    index: 3,
                    addr: ip("10.0.1.2"),
                    mac: None,
                    state: NeighState::Incomplete,
                },
                Neigh {
                    index: 3,
                    addr: ip("10.0.1.3"),
                    mac: Some([2, 0, 0, 0, 1, 3]),
                    state: NeighState::Unusable,
                },
                Neigh {
                    index: 4,
                    addr: ip("192.168.9.254"),
                    mac: Some([2, 0, 0, 0, 9, 0xfe]),
                    state: NeighState::Valid,
                },
            ],
        }
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ports_come_from_the_kernel_in_the_given_order() {
        let v = net_conf(
            &tables(),
            &names(&["eth1", "eth0"]),
            &NetConf::default(),
            &[],
        )
        .unwrap();
        assert_eq!(v.indexes, vec![3, 2]);
        let p = &v.net.ports[1];
        assert_eq!(
            (p.name.as_str(), p.mac, p.mtu),
            ("eth0", [2, 0, 0, 0, 0, 0x10], 1500)
        );
        assert_eq!(p.addrs[0], (ip("10.0.0.1"), 24), "global addresses first");
        assert_eq!(p.addrs.last().unwrap().0, ip("fe80::10"));
        assert_eq!(
            p.gateways,
            vec![ip("10.0.0.254")],
            "the best IPv4 default; the IPv6 one is on mgmt"
        );
        assert!(v.net.ports[0].gateways.is_empty());
        assert_eq!(v.net.ports[0].mtu, 9000);
    }

    #[test]
    fn neighbours_are_the_usable_kernel_entries_on_ports_then_statics() {
        let statics = NetConf {
            ports: vec![],
            neighbours: vec![
                Neighbour {
                    addr: ip("10.0.0.254"),
                    mac: [6; 6],
                },
                Neighbour {
                    addr: ip("10.0.1.2"),
                    mac: [7; 6],
                },
            ],
        };
        let v = net_conf(&tables(), &names(&["eth0", "eth1"]), &statics, &[]).unwrap();
        let got: Vec<(IpAddr, Mac)> = v.net.neighbours.iter().map(|n| (n.addr, n.mac)).collect();
        assert_eq!(
            got,
            vec![
                (ip("10.0.0.254"), [2, 0, 0, 0, 0, 0xfe]), // the kernel wins over the static [6; 6]
                (ip("10.0.1.1"), [2, 0, 0, 0, 1, 1]),      // stale is still usable
                (ip("10.0.1.2"), [7; 6]),                  // static fills the kernel's gap
            ]
        );
        assert!(
            !got.iter().any(|(a, _)| *a == ip("192.168.9.254")),
            "not on a port"
        );
    }

    #[test]
    fn wanted_next_hops_without_a_mac_are_listed() {
        let wanted = [
            ip("10.0.1.1"),
            ip("10.0.1.2"),
            ip("10.0.1.3"),
            ip("10.0.1.4"),
            ip("198.51.100.7"),
            ip("2001:db8:5::1"),
        ];
        let v = net_conf(
            &tables(),
            &names(&["eth0", "eth1"]),
            &NetConf::default(),
            &wanted,
        )
        .unwrap();
        let un: Vec<IpAddr> = v.unresolved.iter().map(|u| u.addr).collect();
        assert_eq!(un, vec![ip("10.0.1.2"), ip("10.0.1.3"), ip("10.0.1.4")]);
        assert!(v
            .unresolved
            .iter()
            .all(|u| u.iface == "eth1" && u.index == 3));
        assert_eq!(
            v.stale.iter().map(|u| u.addr).collect::<Vec<_>>(),
            vec![ip("10.0.1.1")]
        );
        // 198.51.100.7 goes through the resolved gateway; the IPv6 one has
        // no route at all on a port: nothing to prompt.
    }

    #[test]
    fn missing_and_non_ethernet_interfaces_are_errors() {
        let e = net_conf(&tables(), &names(&["eth9"]), &NetConf::default(), &[]).unwrap_err();
        assert!(e.to_string().contains("'eth9' does not exist"), "{e}");
        let e = net_conf(&tables(), &names(&["lo"]), &NetConf::default(), &[]).unwrap_err();
        assert!(e.to_string().contains("no Ethernet address"), "{e}");
    }

    #[test]
    fn prefixes() {
        assert!(in_prefix(ip("10.0.1.7"), ip("10.0.1.254"), 24));
        assert!(!in_prefix(ip("10.0.2.7"), ip("10.0.1.254"), 24));
        assert!(in_prefix(ip("1.2.3.4"), ip("10.0.1.254"), 0));
        assert!(in_prefix(ip("2001:db8::5"), ip("2001:db8::1"), 64));
        assert!(!in_prefix(ip("2001:db8::5"), ip("10.0.0.1"), 0));
    }

    /// Needs root only for the neighbour prompt's namespace; the dumps work
    /// for everyone in the current namespace.
    #[test]
    fn dumps_the_current_namespace() {
        let mut r = Rtnl::open().unwrap();
        let t = r.tables().unwrap();
        assert!(t.links.iter().any(|l| l.name == "lo"), "{t:?}");
        assert!(t.addrs.iter().any(|a| a.addr == ip("127.0.0.1")), "{t:?}");
    }
}
