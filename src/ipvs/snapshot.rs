//! The immutable snapshot the workers forward with: the compiled
//! configuration as the data path reads it.
//!
//! A `Snapshot` holds flat arrays of services and dests, a service lookup
//! map (with port-0 and service-group entries), scheduler tables, links,
//! routes ([`Routes`]) and neighbours. Workers read the current snapshot
//! once per burst and never write it. This module defines it and its
//! lookups; the control plane builds it (`ctl::snapshot`: `Snapshot::build`
//! validates a model whole and fills these fields), so the data path
//! imports nothing above it.
//!
//! Every service and dest carries a `uid` that stays the same across
//! snapshots for the same service key / (service, address, port), so a
//! worker can carry its counters and its connections' dest bindings over a
//! change; uids are never reused.

use super::dest::{DestEntry, Hop};
use super::netif::{Links, Netif};
use super::proto::Timeouts;
use super::route::Routes;
use super::sched::{SchedFlags, SchedKind, SchedTable};
use super::service::{Persistence, ServiceKey};
use crate::wire::Mac;
use hashbrown::{HashMap, HashSet};
use std::net::IpAddr;
use std::ops::Range;

/// A virtual service, compiled.
#[derive(Debug)]
pub struct SvcEntry {
    pub uid: u32,
    pub key: ServiceKey,
    pub sched: SchedKind,
    pub table: SchedTable,
    pub flags: SchedFlags,
    pub persistence: Option<Persistence>,
    /// Its dests: a range of [`Snapshot::dests`].
    pub dests: Range<usize>,
    /// FULLNAT local addresses.
    pub laddrs: Vec<IpAddr>,
    /// The SYN proxy is on (`ipvs::synproxy`).
    pub synproxy: bool,
}

/// Lookup key of the service map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SvcMapKey {
    pub(crate) proto: u8,
    pub(crate) addr: IpAddr,
    pub(crate) port: u16,
}

/// Identity of a service or dest across snapshots.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum UidKey {
    Svc(ServiceKey),
    Dest(ServiceKey, IpAddr, u16),
}

/// The compiled configuration. See the module docs. `Default` is the
/// blank one (no services, no interfaces): a worker's placeholder before
/// its first snapshot.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases by one with every published snapshot.
    pub generation: u64,
    pub services: Vec<SvcEntry>,
    pub dests: Vec<DestEntry>,
    pub timeouts: Timeouts,
    pub expire_nodest_conn: bool,
    /// IPVS `conn_reuse_mode` ([`Model::conn_reuse_mode`]).
    pub conn_reuse_mode: u8,
    /// IPVS's `drop_entry` defense ([`Model::drop_entry`]).
    pub drop_entry: bool,
    /// FULLNAT TOA ([`Model::toa`]).
    pub toa: bool,
    /// The ICMP error rate limit for the whole director: (messages a
    /// second, burst); 0 a second = none ([`Model::icmp_msgs_per_sec`]).
    pub icmp_limit: (u32, u32),
    pub ports: Vec<Netif>,
    /// Ports, then sub-interfaces ([`Links`]); [`Hop::link`] indexes it.
    pub links: Links,
    pub max_conns: usize,
    /// IPVS `expire_quiescent_template`.
    pub expire_quiescent_template: bool,
    /// IPVS `sloppy_tcp` ([`Model::sloppy_tcp`]).
    pub sloppy_tcp: bool,
    /// Prefix lengths (IPv4, IPv6) of the client address that decide which
    /// worker owns a flow: the model's `shard_prefix`, made coarser where a
    /// service's persistence netmask is, so a persistent client (subnet)
    /// always meets the same worker and template.
    pub shard_prefix: (u8, u8),
    /// The NIC's RSS, when workers own flows the way the NIC spreads them
    /// (`daemon::rss`): a flow to a VIP that is not [`client_owned`] is
    /// owned by the worker of the queue the NIC delivers it to. Set by the
    /// director on every snapshot it publishes; `None`: the client
    /// address's hash decides, as for client-owned VIPs.
    ///
    /// [`client_owned`]: Snapshot::client_owned
    pub rss: Option<std::sync::Arc<super::rss::RssMap>>,
    pub(crate) svc_map: HashMap<SvcMapKey, u32>,
    pub(crate) vips: HashSet<IpAddr>,
    /// VIPs with a service whose flows must be owned by their client
    /// address whatever the NIC does: persistent services (a template
    /// serves every connection of a client subnet, to any port) and
    /// services with NAT real servers (a reply names the client, not the
    /// VIP, so only the client can name the owner). Sticky: a VIP stays in
    /// the set while it is a VIP (its NAT connections and templates may
    /// outlive the last NAT server or the persistence, and must keep
    /// meeting their worker).
    pub(crate) client_owned: HashSet<IpAddr>,
    pub(crate) laddrs: HashSet<IpAddr>,
    /// Neighbours by (link, address) — the kernel's — and by address on
    /// any link (the config's).
    pub(crate) neigh: HashMap<(u8, IpAddr), Mac>,
    pub(crate) neigh_any: HashMap<IpAddr, Mac>,
    pub(crate) routes: Routes,
    /// The MACs of every link: a unicast frame to another MAC is not ours.
    pub(crate) own_macs: Vec<Mac>,
    /// Per port, the VLAN ids with a link (bit per id).
    pub(crate) vids: Vec<[u64; 64]>,
    /// Addresses of the director (links, other devices, VIPs, local
    /// addresses): a packet from outside with one as its source is a martian.
    pub(crate) own_addrs: HashSet<IpAddr>,
    /// A one-hash Bloom filter of `own_addrs`: most sources miss it, and
    /// the set is not looked up.
    pub(crate) own_filter: [u64; 16],
    pub(crate) dest_uid: HashMap<u32, u32>,
    pub(crate) svc_uid: HashMap<u32, u32>,
    pub(crate) uids: HashMap<UidKey, u32>,
    pub(crate) next_uid: u32,
}

impl Snapshot {
    /// The service for a packet to `addr:port` over `proto` (an exact
    /// match first, then the VIP's port-0 service).
    #[inline]
    pub fn lookup(&self, proto: u8, addr: IpAddr, port: u16) -> Option<u32> {
        if self.svc_map.is_empty() {
            return None;
        }
        self.svc_map
            .get(&SvcMapKey { proto, addr, port })
            .or_else(|| self.svc_map.get(&SvcMapKey { proto, addr, port: 0 }))
            .copied()
    }

    /// The addresses of service `svc` (one, or a group's members').
    pub fn vips_of(&self, svc: u32) -> impl Iterator<Item = IpAddr> + '_ {
        self.svc_map.iter().filter(move |(_, &s)| s == svc).map(|(k, _)| k.addr)
    }

    /// `addr` is the address of some service.
    #[inline]
    pub fn is_vip(&self, addr: IpAddr) -> bool {
        self.vips.contains(&addr)
    }

    /// `addr` is a VIP whose flows the client address owns in every
    /// ownership mode (see the field `client_owned`).
    #[inline]
    pub fn client_owned(&self, addr: IpAddr) -> bool {
        self.client_owned.contains(&addr)
    }

    /// The VIPs of [`Snapshot::client_owned`].
    pub fn client_owned_vips(&self) -> impl Iterator<Item = &IpAddr> {
        self.client_owned.iter()
    }

    /// `addr` is a FULLNAT local address.
    #[inline]
    pub fn is_laddr(&self, addr: IpAddr) -> bool {
        !self.laddrs.is_empty() && self.laddrs.contains(&addr)
    }

    /// The dests of service `svc`.
    #[inline]
    pub fn svc_dests(&self, svc: u32) -> &[DestEntry] {
        &self.dests[self.services[svc as usize].dests.clone()]
    }

    /// Index of the dest with `uid` in this snapshot.
    #[inline]
    pub fn dest_index(&self, uid: u32) -> Option<u32> {
        self.dest_uid.get(&uid).copied()
    }

    /// Index of the service with `uid` in this snapshot.
    pub fn svc_index(&self, uid: u32) -> Option<u32> {
        self.svc_uid.get(&uid).copied()
    }

    /// Next hop for `ip`: the route to it ([`Routes::next_hop`]: the link
    /// and the gateway, or `ip` itself on a connected prefix) and that
    /// neighbour's MAC on the link — `None` without a route or a MAC (never
    /// another neighbour's MAC).
    pub fn next_hop(&self, ip: IpAddr) -> Option<Hop> {
        let nh = self.routes.next_hop(ip)?;
        let mac = self.neigh.get(&(nh.link, nh.addr)).or_else(|| self.neigh_any.get(&nh.addr))?;
        Some(Hop { link: nh.link, mac: *mac })
    }

    /// The link a frame arrived on: port `port`, VLAN `vid` (0: untagged
    /// or priority-tagged).
    pub fn link_of(&self, port: u8, vid: u16) -> Option<u8> {
        if vid == 0 {
            return ((port as usize) < self.ports.len()).then_some(port);
        }
        self.links.iter().position(|l| l.port == port && l.vid == vid).map(|i| i as u8)
    }

    /// Port `port` has a link with VLAN id `vid` (1-4095).
    #[inline]
    pub fn has_vid(&self, port: u8, vid: u16) -> bool {
        self.vids.get(port as usize).is_some_and(|b| b[(vid as usize / 64) & 63] & (1 << (vid % 64)) != 0)
    }

    /// `mac` is the MAC of port `port` (the common case, one compare) or of
    /// another link of the director.
    #[inline]
    pub fn is_own_mac(&self, port: u8, mac: &Mac) -> bool {
        match self.links.get(port as usize) {
            Some(l) if l.mac == *mac => true,
            _ => self.is_other_own_mac(mac),
        }
    }

    #[cold]
    #[inline(never)]
    fn is_other_own_mac(&self, mac: &Mac) -> bool {
        self.own_macs.contains(mac)
    }

    /// `addr` is one of the director's own (see [`Snapshot`]'s field).
    #[inline]
    pub fn is_own_addr(&self, addr: IpAddr) -> bool {
        let b = own_bit(addr);
        self.own_filter[b / 64] & (1 << (b % 64)) != 0 && self.own_addrs.contains(&addr)
    }
}

/// The bit of `a` in [`Snapshot`]'s `own_filter` (0-1023).
#[inline]
pub(crate) fn own_bit(a: IpAddr) -> usize {
    let x = match a {
        IpAddr::V4(v) => u32::from(v) as u64,
        IpAddr::V6(v) => {
            let n = u128::from(v);
            (n as u64) ^ ((n >> 64) as u64).rotate_left(29)
        }
    };
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54) as usize
}
