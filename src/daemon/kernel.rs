//! The kernel's view of the director's links, over rtnetlink.
//!
//! # Contract
//!
//! - [`Rtnl`] dumps the kernel's links, addresses, main-table routes and
//!   neighbours ([`Rtnl::tables`]) in the calling thread's network
//!   namespace, and asks the kernel to resolve a neighbour
//!   ([`Rtnl::prompt`]).
//! - [`Monitor`] is subscribed to the kernel's link, address, route and
//!   neighbour notifications; [`Monitor::wait`] says whether any arrived.
//!   The daemon does not interpret notifications: any of them (or a timer)
//!   triggers a fresh dump, so a lost notification (ENOBUFS) costs nothing
//!   but a delay.
//! - [`net_conf`] turns the dumps into the model's [`NetConf`] for the
//!   director's interfaces — their VLAN (and macvlan) sub-interfaces, the
//!   routes, the neighbours — merged with the static configuration (the
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

use crate::ctl::model::{Mac, Neighbour, NetConf, PortConf, RouteConf, RouteHop, SubIfConf};
use crate::ctl::route::Routes;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, VlanProtocol,
};
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
    #[error("interface '{name}' is a sub-interface (VLAN or macvlan) of '{port}': run xvs on '{port}' (-i {port}); it serves the sub-interfaces of its ports itself")]
    SubInterface { name: String, port: String },
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
    /// For a VLAN (802.1Q) or macvlan device: the link it sits on.
    pub upper: Option<Upper>,
    /// A device its driver made (no IFLA_LINKINFO kind: a NIC, physical
    /// or paravirtual), not one made with `ip link add` (veth, tun, VLAN,
    /// bond, ...), which may deliver frames with partial checksums
    /// (`daemon::run::full_checksums`, `Worker::set_nic_port`).
    pub nic: bool,
}

/// What makes a link a sub-interface of another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upper {
    /// Index of the lower link (IFLA_LINK).
    pub lower: u32,
    /// VLAN id (IFLA_VLAN_ID); 0 for a macvlan.
    pub vid: u16,
}

/// An address on a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addr {
    pub index: u32,
    pub addr: IpAddr,
    pub prefix: u8,
}

/// A route of the main table: unicast through `hops` (output link index,
/// gateway), or with no hops a blackhole / unreachable / prohibit one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub dst: IpAddr,
    pub len: u8,
    /// Lower wins.
    pub metric: u32,
    pub hops: Vec<(u32, Option<IpAddr>)>,
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
    pub routes: Vec<Route>,
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

    /// The main table's unicast and unreachable routes, both families.
    ///
    /// # Errors
    /// The dump failed.
    pub fn routes(&mut self) -> Result<Vec<Route>, NetError> {
        let msgs = self.dump(
            RouteNetlinkMessage::GetRoute(RouteMessage::default()),
            "dump routes",
        )?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => parse_route(&r),
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

    /// Links, addresses, routes and neighbours.
    ///
    /// # Errors
    /// A dump failed.
    pub fn tables(&mut self) -> Result<Tables, NetError> {
        Ok(Tables {
            links: self.links()?,
            addrs: self.addrs()?,
            routes: self.routes()?,
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

impl Rtnl {
    /// Sets link `index` up (`ip link set IF up`).
    ///
    /// # Errors
    /// The kernel refused.
    pub fn link_up(&mut self, index: u32) -> Result<(), NetError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(m), NLM_F_REQUEST | NLM_F_ACK, "set link up").map(drop)
    }

    /// Adds (`add`) or deletes the host route `addr/32` (`/128`) out of
    /// link `index` in routing table `table`, protocol `static` — `ip
    /// route replace|del ADDR dev IF table T proto static`. What an
    /// announcement is (`daemon::announce`).
    ///
    /// # Errors
    /// The kernel refused; deleting a route that is not there is no error.
    pub fn host_route(&mut self, table: u32, addr: IpAddr, index: u32, add: bool) -> Result<(), NetError> {
        use netlink_packet_route::route::{RouteHeader, RouteProtocol, RouteScope};
        let mut m = RouteMessage::default();
        m.header.address_family = family(addr);
        m.header.destination_prefix_length = if addr.is_ipv4() { 32 } else { 128 };
        m.header.table = if table < 256 { table as u8 } else { RouteHeader::RT_TABLE_UNSPEC };
        m.header.protocol = RouteProtocol::Static;
        m.header.scope = if add { RouteScope::Link } else { RouteScope::NoWhere };
        m.header.kind = RouteType::Unicast;
        m.attributes.push(RouteAttribute::Table(table));
        m.attributes.push(RouteAttribute::Destination(match addr {
            IpAddr::V4(a) => RouteAddress::Inet(a),
            IpAddr::V6(a) => RouteAddress::Inet6(a),
        }));
        m.attributes.push(RouteAttribute::Oif(index));
        if add {
            self.request(RouteNetlinkMessage::NewRoute(m), NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, "add route")
                .map(drop)
        } else {
            match self.request(RouteNetlinkMessage::DelRoute(m), NLM_F_REQUEST | NLM_F_ACK, "delete route") {
                Err(NetError::Netlink { source, .. }) if source.raw_os_error() == Some(libc::ESRCH) => Ok(()),
                r => r.map(drop),
            }
        }
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
        upper: None,
        nic: false,
    };
    let (mut lower, mut kind, mut other_ns, mut made) = (None, None, false, false);
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Address(b) => link.mac = mac_of(b),
            LinkAttribute::Mtu(m) => link.mtu = *m,
            LinkAttribute::Link(i) => lower = Some(*i),
            // The lower link is in another namespace (a veth's peer, a
            // macvlan moved away): not one of ours.
            LinkAttribute::LinkNetNsId(_) => other_ns = true,
            LinkAttribute::LinkInfo(infos) => {
                kind = upper_kind(infos);
                made = infos.iter().any(|i| matches!(i, LinkInfo::Kind(_)));
            }
            _ => {}
        }
    }
    if let (Some(lower), Some(vid), false) = (lower, kind, other_ns) {
        link.upper = Some(Upper { lower, vid });
    }
    link.nic = !made;
    link
}

/// The VLAN id of an 802.1Q VLAN device, 0 for a macvlan / macvtap;
/// `None` for any other kind (an 802.1ad VLAN included: xvs tags 802.1Q).
fn upper_kind(infos: &[LinkInfo]) -> Option<u16> {
    let mut kind = None;
    let mut vlan = None;
    for i in infos {
        match i {
            LinkInfo::Kind(k) => kind = Some(k.clone()),
            LinkInfo::Data(InfoData::Vlan(v)) => {
                let mut id = None;
                let mut dot1q = true;
                for x in v {
                    match x {
                        InfoVlan::Id(n) => id = Some(*n),
                        InfoVlan::Protocol(p) => dot1q = *p == VlanProtocol::Ieee8021Q,
                        _ => {}
                    }
                }
                vlan = id.filter(|n| dot1q && (1..=4094).contains(n));
            }
            _ => {}
        }
    }
    match kind? {
        InfoKind::Vlan => vlan,
        InfoKind::MacVlan | InfoKind::MacVtap => Some(0),
        _ => None,
    }
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

fn parse_route(r: &RouteMessage) -> Option<Route> {
    let unicast = match r.header.kind {
        RouteType::Unicast => true,
        RouteType::BlackHole | RouteType::Unreachable | RouteType::Prohibit => false,
        // local, broadcast, throw, multicast...: not where xvs sends.
        _ => return None,
    };
    let mut table = r.header.table as u32;
    let (mut dst, mut oif, mut gw, mut metric, mut multi) = (None, None, None, 0, Vec::new());
    for a in &r.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => dst = route_ip(d),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Gateway(g) => gw = route_ip(g),
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::MultiPath(hops) => {
                for h in hops {
                    let via = h.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Gateway(g) => route_ip(g),
                        _ => None,
                    });
                    multi.push((h.interface_index, via));
                }
            }
            _ => {}
        }
    }
    if table != RT_TABLE_MAIN {
        return None;
    }
    let dst = match (dst, r.header.address_family) {
        (Some(d), _) => d,
        (None, AddressFamily::Inet) => IpAddr::from([0u8; 4]),
        (None, AddressFamily::Inet6) => IpAddr::from([0u8; 16]),
        _ => return None,
    };
    let hops = match (unicast, oif) {
        (false, _) => Vec::new(),
        (true, Some(o)) => vec![(o, gw)],
        (true, None) if !multi.is_empty() => multi,
        (true, None) => return None,
    };
    Some(Route { dst, len: r.header.destination_prefix_length, metric, hops })
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
    /// Kernel link index of each link (ports, then sub-interfaces; 0 for
    /// a configured sub-interface the kernel has no device for).
    pub indexes: Vec<u32>,
    /// Next hops of `wanted` with no usable MAC (prompt the kernel).
    pub unresolved: Vec<Unresolved>,
    /// Next hops whose entry is STALE (prompting re-verifies them).
    pub stale: Vec<Unresolved>,
}

/// Builds the model's network for the interfaces `ifaces` (the director's
/// ports, in port order) from the kernel's `tables`, merged with the
/// static configuration `statics`:
///
/// - ports: name from `ifaces`; MAC, MTU and addresses from the kernel
///   (the kernel wins — a config `[[interface]]` only names it). Global
///   addresses come before link-local ones, so the first address of a
///   family (the source of tunnels and ICMP errors) is a routable one.
///   An interface that is itself a VLAN or macvlan device is refused:
///   xvs binds the port underneath and serves its sub-interfaces.
/// - sub-interfaces: the kernel's 802.1Q VLAN devices on a port (from
///   IFLA_LINK and IFLA_VLAN_ID) and macvlans on a port or on one of
///   those, with their MAC, MTU and addresses; then the config's
///   sub-interfaces that the kernel has no device of that name for, as
///   configured (their neighbours must be static: the kernel cannot
///   resolve on a link it does not have).
/// - routes: the kernel's main table, all of it (a route through a device
///   that is not a link of ours hides less specific ones but gives no
///   next hop); the config's routes and gateways are not used live.
/// - neighbours: every usable kernel entry on a link, on that link; a
///   static `[[neighbour]]` fills in only an address the kernel has no
///   usable entry for (the kernel wins again: it re-verifies its entries,
///   a file does not).
/// - local addresses: the kernel's addresses on other devices.
/// - `wanted` are the addresses the data path must reach (real servers);
///   each one's next hop (by [`Routes`]) without a usable MAC is listed in
///   `unresolved` (STALE ones in `stale`).
///
/// # Errors
/// An interface that does not exist, has no Ethernet address, or is a
/// sub-interface.
pub fn net_conf(
    tables: &Tables,
    ifaces: &[String],
    statics: &NetConf,
    wanted: &[IpAddr],
) -> Result<NetView, NetError> {
    let mut view = NetView::default();
    let addrs_of = |index: u32| {
        let mut a: Vec<(IpAddr, u8)> = tables
            .addrs
            .iter()
            .filter(|a| a.index == index)
            .map(|a| (a.addr, a.prefix))
            .collect();
        a.sort_by_key(|(a, _)| is_link_local(*a));
        a
    };
    let mtu16 = |m: u32| m.min(u16::MAX as u32) as u16;
    for name in ifaces {
        let link = tables
            .links
            .iter()
            .find(|l| &l.name == name)
            .ok_or_else(|| NetError::NoInterface(name.clone()))?;
        if let Some(u) = link.upper {
            let port = tables.links.iter().find(|l| l.index == u.lower).map_or_else(|| u.lower.to_string(), |l| l.name.clone());
            return Err(NetError::SubInterface { name: name.clone(), port });
        }
        let mac = link
            .mac
            .ok_or_else(|| NetError::NotEthernet(name.clone()))?;
        view.net.ports.push(PortConf {
            name: name.clone(),
            mac,
            mtu: mtu16(link.mtu),
            addrs: addrs_of(link.index),
            gateways: Vec::new(),
        });
        view.indexes.push(link.index);
    }
    // Sub-interfaces: on a port, then macvlans on those VLANs.
    for pass in 0..2 {
        for l in &tables.links {
            let Some(u) = l.upper else { continue };
            if view.indexes.contains(&l.index) {
                continue;
            }
            let Some(lower) = view.indexes.iter().position(|i| *i == u.lower) else { continue };
            let n = view.net.ports.len();
            let (port, vid) = if lower < n {
                if pass == 1 {
                    continue;
                }
                (lower as u8, u.vid)
            } else {
                let s = &view.net.subifs[lower - n];
                // Only a macvlan on a VLAN; no VLAN in a VLAN (802.1ad
                // stacking is not 802.1Q).
                if pass == 0 || u.vid != 0 || s.vid == 0 {
                    continue;
                }
                (s.port, s.vid)
            };
            let parent_mac = view.net.ports[port as usize].mac;
            view.net.subifs.push(SubIfConf {
                name: l.name.clone(),
                port,
                vid,
                mac: l.mac.unwrap_or(parent_mac),
                mtu: mtu16(l.mtu),
                addrs: addrs_of(l.index),
            });
            view.indexes.push(l.index);
        }
    }
    for s in &statics.subifs {
        if tables.links.iter().any(|l| l.name == s.name) {
            continue;
        }
        let Some(port) = statics.ports.get(s.port as usize).and_then(|p| view.net.ports.iter().position(|q| q.name == p.name)) else {
            continue;
        };
        let mac = if s.mac == crate::ctl::config::NO_MAC { view.net.ports[port].mac } else { s.mac };
        view.net.subifs.push(SubIfConf { port: port as u8, mac, ..s.clone() });
        // No kernel device: nothing to prompt on it.
        view.indexes.push(0);
    }
    let name_of = |index: u32| tables.links.iter().find(|l| l.index == index).map_or_else(String::new, |l| l.name.clone());
    view.net.routes = tables
        .routes
        .iter()
        .map(|r| RouteConf {
            dst: r.dst,
            len: r.len,
            metric: r.metric,
            hops: r.hops.iter().map(|(oif, via)| RouteHop { dev: name_of(*oif), via: *via }).collect(),
        })
        .collect();
    let mut seen = BTreeSet::new();
    for n in &tables.neighs {
        let Some(li) = view.indexes.iter().position(|i| *i == n.index && *i != 0) else { continue };
        if !n.state.usable() {
            continue;
        }
        if let Some(mac) = n.mac {
            let dev = view.net.links().nth(li).map(|l| l.name.to_string());
            seen.insert(n.addr);
            view.net.neighbours.push(Neighbour { addr: n.addr, mac, dev });
        }
    }
    for s in &statics.neighbours {
        if seen.insert(s.addr) {
            view.net.neighbours.push(Neighbour { dev: None, ..s.clone() });
        }
    }
    view.net.local_addrs = tables
        .addrs
        .iter()
        .filter(|a| !view.indexes.contains(&a.index))
        .map(|a| a.addr)
        .collect();

    let routes = Routes::build(&view.net);
    let hops: BTreeSet<_> = wanted.iter().filter_map(|w| routes.next_hop(*w)).collect();
    for h in hops {
        let index = view.indexes[h.link as usize];
        if index == 0 {
            continue;
        }
        let u = Unresolved {
            index,
            iface: view.net.links().nth(h.link as usize).map_or_else(String::new, |l| l.name.to_string()),
            addr: h.addr,
        };
        let k = tables
            .neighs
            .iter()
            .find(|n| n.index == index && n.addr == h.addr);
        let statik = statics.neighbours.iter().any(|s| s.addr == h.addr);
        match k {
            Some(n) if n.state == NeighState::Stale => view.stale.push(u),
            Some(n) if n.state.usable() && n.mac.is_some() => {}
            _ if statik => {}
            _ => view.unresolved.push(u),
        }
    }
    Ok(view)
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

    fn route(dst: &str, len: u8, metric: u32, hops: &[(u32, Option<&str>)]) -> Route {
        Route {
            dst: ip(dst),
            len,
            metric,
            hops: hops.iter().map(|(o, v)| (*o, v.map(ip))).collect(),
        }
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
                    upper: None,
                    nic: false,
                },
                Link {
                    index: 2,
                    name: "eth0".into(),
                    mac: Some([2, 0, 0, 0, 0, 0x10]),
                    mtu: 1500,
                    up: true,
                    upper: None,
                    nic: false,
                },
                Link {
                    index: 3,
                    name: "eth1".into(),
                    mac: Some([2, 0, 0, 0, 1, 0x10]),
                    mtu: 9000,
                    up: true,
                    upper: None,
                    nic: false,
                },
                Link {
                    index: 4,
                    name: "mgmt".into(),
                    mac: Some([2, 0, 0, 0, 9, 9]),
                    mtu: 1500,
                    up: true,
                    upper: None,
                    nic: false,
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
            routes: vec![
                route("0.0.0.0", 0, 100, &[(4, Some("192.168.9.254"))]),
                route("0.0.0.0", 0, 10, &[(2, Some("10.0.0.254"))]),
                route("::", 0, 1, &[(4, Some("fe80::1"))]),
                route("10.0.0.0", 24, 0, &[(2, None)]),
                route("10.0.1.0", 24, 0, &[(3, None)]),
                route("192.168.9.0", 24, 0, &[(4, None)]),
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
        assert!(p.gateways.is_empty(), "gateways are routes now");
        assert_eq!(v.net.ports[0].mtu, 9000);
        // The whole main table, output links by name (mgmt is no link of
        // ours: its routes give no next hop, but they still count).
        assert_eq!(v.net.routes.len(), 6);
        assert_eq!(
            v.net.routes[1],
            RouteConf { dst: ip("0.0.0.0"), len: 0, metric: 10, hops: vec![RouteHop { dev: "eth0".into(), via: Some(ip("10.0.0.254")) }] }
        );
        assert_eq!(v.net.routes[2].hops[0].dev, "mgmt");
        // lo's and mgmt's addresses are the director's too (martians).
        assert_eq!(v.net.local_addrs, vec![ip("127.0.0.1"), ip("192.168.9.1")]);
    }

    /// eth1.20 (VLAN 20 on eth1), vrrp.51 (a macvlan on eth0, keepalived's
    /// use_vmac), vrrp.52 (a macvlan on eth1.20), mgmt.7 (a VLAN on a
    /// device that is no port), and what lives on them.
    fn tables_with_subifs() -> Tables {
        let mut t = tables();
        let link = |index, name: &str, mac, upper| Link { index, name: name.into(), mac: Some(mac), mtu: 1500, up: true, upper, nic: false };
        t.links.push(link(5, "eth1.20", [2, 0, 0, 0, 1, 0x10], Some(Upper { lower: 3, vid: 20 })));
        t.links.push(link(6, "vrrp.51", [0, 0, 0x5e, 0, 1, 51], Some(Upper { lower: 2, vid: 0 })));
        t.links.push(link(7, "vrrp.52", [0, 0, 0x5e, 0, 1, 52], Some(Upper { lower: 5, vid: 0 })));
        t.links.push(link(8, "mgmt.7", [2, 0, 0, 0, 9, 9], Some(Upper { lower: 4, vid: 7 })));
        t.addrs.push(Addr { index: 5, addr: ip("10.0.20.1"), prefix: 24 });
        t.addrs.push(Addr { index: 6, addr: ip("10.0.0.100"), prefix: 32 });
        t.routes.push(route("10.0.20.0", 24, 0, &[(5, None)]));
        t.routes.push(route("10.9.0.0", 16, 0, &[(3, Some("10.0.1.7"))]));
        t.neighs.push(Neigh { index: 5, addr: ip("10.0.20.5"), mac: Some([2, 0, 0, 0, 20, 5]), state: NeighState::Valid });
        t
    }

    #[test]
    fn vlan_and_macvlan_sub_interfaces_of_ports_are_links() {
        let v = net_conf(&tables_with_subifs(), &names(&["eth0", "eth1"]), &NetConf::default(), &[]).unwrap();
        let subs: Vec<(&str, u8, u16, Mac)> = v.net.subifs.iter().map(|s| (s.name.as_str(), s.port, s.vid, s.mac)).collect();
        assert_eq!(
            subs,
            vec![
                ("eth1.20", 1, 20, [2, 0, 0, 0, 1, 0x10]),
                ("vrrp.51", 0, 0, [0, 0, 0x5e, 0, 1, 51]),
                ("vrrp.52", 1, 20, [0, 0, 0x5e, 0, 1, 52]),
            ],
            "mgmt.7 is on no port"
        );
        assert_eq!(v.indexes, vec![2, 3, 5, 6, 7]);
        assert_eq!(v.net.subifs[0].addrs, vec![(ip("10.0.20.1"), 24)]);
        let n = v.net.neighbours.iter().find(|n| n.addr == ip("10.0.20.5")).unwrap();
        assert_eq!(n.dev.as_deref(), Some("eth1.20"), "a kernel entry is on its link");
        assert!(!v.net.local_addrs.contains(&ip("10.0.20.1")) && v.net.local_addrs.contains(&ip("192.168.9.1")));
    }

    #[test]
    fn a_sub_interface_is_not_a_port() {
        let e = net_conf(&tables_with_subifs(), &names(&["eth1.20"]), &NetConf::default(), &[]).unwrap_err();
        assert!(e.to_string().contains("'eth1.20' is a sub-interface (VLAN or macvlan) of 'eth1': run xvs on 'eth1' (-i eth1)"), "{e}");
    }

    #[test]
    fn next_hops_follow_the_routes_and_links() {
        let wanted = [ip("10.9.1.1"), ip("10.9.2.2"), ip("10.0.20.5"), ip("10.0.20.6")];
        let v = net_conf(&tables_with_subifs(), &names(&["eth0", "eth1"]), &NetConf::default(), &wanted).unwrap();
        let un: Vec<(u32, &str, IpAddr)> = v.unresolved.iter().map(|u| (u.index, u.iface.as_str(), u.addr)).collect();
        // Both behind the static route share its gateway; 10.0.20.5 is known.
        assert_eq!(un, vec![(3, "eth1", ip("10.0.1.7")), (5, "eth1.20", ip("10.0.20.6"))]);
    }

    #[test]
    fn a_configured_vlan_the_kernel_lacks_is_taken_as_configured() {
        let statics = NetConf {
            ports: vec![PortConf { name: "eth1".into(), mac: [0; 6], mtu: 1500, addrs: vec![], gateways: vec![] }],
            subifs: vec![
                SubIfConf { name: "eth1.30".into(), port: 0, vid: 30, mac: [0; 6], mtu: 1500, addrs: vec![(ip("10.0.30.1"), 24)] },
                // The kernel's own eth1.20 wins over this one.
                SubIfConf { name: "eth1.20".into(), port: 0, vid: 99, mac: [0; 6], mtu: 1500, addrs: vec![] },
            ],
            ..NetConf::default()
        };
        let wanted = [ip("10.0.30.7")];
        let v = net_conf(&tables_with_subifs(), &names(&["eth0", "eth1"]), &statics, &wanted).unwrap();
        let s = v.net.subifs.iter().find(|s| s.name == "eth1.30").unwrap();
        assert_eq!((s.port, s.vid, s.mac), (1, 30, [2, 0, 0, 0, 1, 0x10]), "on eth1, with its MAC");
        assert_eq!(v.net.subifs.iter().find(|s| s.name == "eth1.20").unwrap().vid, 20);
        assert!(v.unresolved.is_empty(), "no kernel device to resolve on: {:?}", v.unresolved);
    }

    #[test]
    fn neighbours_are_the_usable_kernel_entries_on_ports_then_statics() {
        let statics = NetConf {
            ports: vec![],
            neighbours: vec![
                Neighbour {
                    dev: None,
                    addr: ip("10.0.0.254"),
                    mac: [6; 6],
                },
                Neighbour {
                    dev: None,
                    addr: ip("10.0.1.2"),
                    mac: [7; 6],
                },
            ],
            ..NetConf::default()
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

    fn link_msg(name: &str, lower: Option<u32>, info: Vec<LinkInfo>, netns: bool) -> LinkMessage {
        let mut l = LinkMessage::default();
        l.header.index = 9;
        l.attributes.push(LinkAttribute::IfName(name.into()));
        l.attributes.push(LinkAttribute::Address(vec![2, 0, 0, 0, 0, 9]));
        l.attributes.push(LinkAttribute::Mtu(1500));
        if let Some(i) = lower {
            l.attributes.push(LinkAttribute::Link(i));
        }
        if netns {
            l.attributes.push(LinkAttribute::LinkNetNsId(1));
        }
        if !info.is_empty() {
            l.attributes.push(LinkAttribute::LinkInfo(info));
        }
        l
    }

    fn vlan_info(id: u16, proto: VlanProtocol) -> Vec<LinkInfo> {
        vec![LinkInfo::Kind(InfoKind::Vlan), LinkInfo::Data(InfoData::Vlan(vec![InfoVlan::Id(id), InfoVlan::Protocol(proto)]))]
    }

    #[test]
    fn vlan_and_macvlan_links_name_their_lower_link() {
        let up = |m: LinkMessage| parse_link(&m).upper;
        assert_eq!(up(link_msg("eth1.20", Some(3), vlan_info(20, VlanProtocol::Ieee8021Q), false)), Some(Upper { lower: 3, vid: 20 }));
        assert_eq!(up(link_msg("vrrp.51", Some(2), vec![LinkInfo::Kind(InfoKind::MacVlan)], false)), Some(Upper { lower: 2, vid: 0 }));
        assert_eq!(up(link_msg("eth1.20", Some(3), vlan_info(20, VlanProtocol::Ieee8021Ad), false)), None, "802.1ad");
        assert_eq!(up(link_msg("veth0", Some(3), vec![LinkInfo::Kind(InfoKind::Veth)], true)), None, "a veth's peer");
        assert_eq!(up(link_msg("mv", Some(3), vec![LinkInfo::Kind(InfoKind::MacVlan)], true)), None, "lower in another namespace");
        assert_eq!(up(link_msg("eth0", None, vec![], false)), None);
        let l = parse_link(&link_msg("eth1.20", Some(3), vlan_info(20, VlanProtocol::Ieee8021Q), false));
        assert_eq!((l.name.as_str(), l.mac, l.mtu), ("eth1.20", Some([2, 0, 0, 0, 0, 9]), 1500));
    }

    /// A link without a kind (its driver made it) is a NIC; a veth, VLAN,
    /// macvlan or tun (made with `ip link add`, named by their kind) is not.
    #[test]
    fn links_without_a_kind_are_nics() {
        let nic = |m: LinkMessage| parse_link(&m).nic;
        assert!(nic(link_msg("eth0", None, vec![], false)));
        assert!(!nic(link_msg("veth0", Some(3), vec![LinkInfo::Kind(InfoKind::Veth)], true)));
        assert!(!nic(link_msg("eth1.20", Some(3), vlan_info(20, VlanProtocol::Ieee8021Q), false)));
        assert!(!nic(link_msg("vrrp.51", Some(2), vec![LinkInfo::Kind(InfoKind::MacVlan)], false)));
        assert!(!nic(link_msg("tun0", None, vec![LinkInfo::Kind(InfoKind::Tun)], false)));
    }

    fn route_msg(kind: RouteType, table: u8, len: u8, attrs: Vec<RouteAttribute>) -> RouteMessage {
        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet;
        r.header.destination_prefix_length = len;
        r.header.table = table;
        r.header.kind = kind;
        r.attributes = attrs;
        r
    }

    #[test]
    fn main_table_routes_are_parsed_with_their_kind_and_hops() {
        use std::net::Ipv4Addr;
        let v4 = |s: &str| RouteAddress::Inet(s.parse::<Ipv4Addr>().unwrap());
        let r = parse_route(&route_msg(RouteType::Unicast, 254, 16, vec![
            RouteAttribute::Destination(v4("10.9.0.0")),
            RouteAttribute::Gateway(v4("10.0.1.7")),
            RouteAttribute::Oif(3),
            RouteAttribute::Priority(20),
        ]));
        assert_eq!(r, Some(route("10.9.0.0", 16, 20, &[(3, Some("10.0.1.7"))])));
        // The default route has no destination attribute.
        let r = parse_route(&route_msg(RouteType::Unicast, 254, 0, vec![RouteAttribute::Gateway(v4("10.0.0.254")), RouteAttribute::Oif(2)]));
        assert_eq!(r, Some(route("0.0.0.0", 0, 0, &[(2, Some("10.0.0.254"))])));
        // ECMP: RTA_MULTIPATH.
        let hop = |oif, gw: &str| {
            let mut h = netlink_packet_route::route::RouteNextHop::default();
            h.interface_index = oif;
            h.attributes.push(RouteAttribute::Gateway(v4(gw)));
            h
        };
        let r = parse_route(&route_msg(RouteType::Unicast, 254, 24, vec![
            RouteAttribute::Destination(v4("203.0.113.0")),
            RouteAttribute::MultiPath(vec![hop(2, "10.0.0.11"), hop(3, "10.0.1.11")]),
        ]));
        assert_eq!(r, Some(route("203.0.113.0", 24, 0, &[(2, Some("10.0.0.11")), (3, Some("10.0.1.11"))])));
        // Unreachable kinds have no hops; other tables and kinds are not ours.
        let r = parse_route(&route_msg(RouteType::BlackHole, 254, 8, vec![RouteAttribute::Destination(v4("10.0.0.0"))]));
        assert_eq!(r, Some(route("10.0.0.0", 8, 0, &[])));
        assert_eq!(parse_route(&route_msg(RouteType::Unicast, 100, 0, vec![RouteAttribute::Oif(2)])), None);
        assert_eq!(parse_route(&route_msg(RouteType::Unicast, 0, 0, vec![RouteAttribute::Table(100), RouteAttribute::Oif(2)])), None);
        assert_eq!(parse_route(&route_msg(RouteType::Local, 254, 32, vec![RouteAttribute::Destination(v4("10.0.0.1")), RouteAttribute::Oif(2)])), None);
        assert_eq!(parse_route(&route_msg(RouteType::Unicast, 254, 0, vec![])), None, "unicast without a way out");
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
