//! Building the snapshot the workers forward with.
//!
//! The control plane validates a [`Model`] whole and compiles it into a
//! [`Snapshot`] (defined with its lookups in `ipvs::snapshot`, below the
//! worker): flat arrays of services and dests, a service lookup map (with
//! port-0 and service-group entries), scheduler tables, next hops.
//! `Snapshot::build` and `Snapshot::empty` are defined here, on the
//! control plane's side.
//!
//! Every service and dest carries a `uid` that stays the same across
//! snapshots for the same service key / (service, address, port), so a
//! worker can carry its counters and its connections' dest bindings over a
//! change; uids are never reused.

use super::model::Model;
pub use crate::ipvs::dest::{DestEntry, Hop};
pub use crate::ipvs::netif::{Link, Netif};
use crate::ipvs::dest::MAX_WEIGHT;
use crate::ipvs::route::Routes;
use crate::ipvs::sched::SchedKind;
use crate::ipvs::service::ServiceKey;
pub use crate::ipvs::snapshot::{Snapshot, SvcEntry};
use crate::ipvs::snapshot::{own_bit, SvcMapKey, UidKey};
use crate::ipvs::timer::MAX_TIMEOUT;
use crate::ipvs::{FwdMethod, Proto};
use hashbrown::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

/// Why a model cannot be compiled: which object, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {why}")]
pub struct ModelError {
    /// The object at fault, e.g. `service TCP 10.0.0.1:80, real server 10.0.1.1:80`.
    pub what: String,
    pub why: String,
}

fn err(what: impl fmt::Display, why: impl Into<String>) -> ModelError {
    ModelError { what: what.to_string(), why: why.into() }
}

impl Snapshot {
    /// An empty snapshot (no services): everything is passed to the kernel.
    pub fn empty() -> Snapshot {
        Snapshot::build(&Model::default(), None).expect("the empty model is valid")
    }

    /// Validates `model` whole and compiles it. `prev` (the snapshot now in
    /// use) keeps uids stable; the generation is `prev`'s + 1.
    ///
    /// # Errors
    /// The first problem found, naming the service / real server / address.
    pub fn build(model: &Model, prev: Option<&Snapshot>) -> Result<Snapshot, ModelError> {
        let mut s = Snapshot {
            generation: prev.map_or(1, |p| p.generation + 1),
            services: Vec::with_capacity(model.services.len()),
            dests: Vec::new(),
            timeouts: model.timeouts,
            expire_nodest_conn: model.expire_nodest_conn,
            conn_reuse_mode: model.conn_reuse_mode,
            drop_entry: model.drop_entry,
            toa: model.toa,
            icmp_limit: (model.icmp_msgs_per_sec, model.icmp_msgs_burst),
            ports: Vec::new(),
            links: Default::default(),
            max_conns: model.max_conns.max(1),
            expire_quiescent_template: model.expire_quiescent_template,
            sloppy_tcp: model.sloppy_tcp,
            shard_prefix: model.shard_prefix,
            rss: None,
            svc_map: HashMap::new(),
            vips: HashSet::new(),
            client_owned: HashSet::new(),
            laddrs: HashSet::new(),
            neigh: HashMap::new(),
            neigh_any: HashMap::new(),
            routes: Routes::default(),
            own_macs: Vec::new(),
            vids: Vec::new(),
            own_addrs: HashSet::new(),
            own_filter: [0; 16],
            dest_uid: HashMap::new(),
            svc_uid: HashMap::new(),
            uids: HashMap::new(),
            next_uid: prev.map_or(1, |p| p.next_uid),
        };
        model.timeouts.check().map_err(|why| err("timeouts", why))?;
        s.build_net(model)?;
        for g in &model.groups {
            if g.members.is_empty() {
                return Err(err(format!("group {}", g.id), "has no members"));
            }
        }
        for svc in &model.services {
            s.add_service(model, svc, prev)?;
        }
        if let Some(p) = prev {
            let kept: Vec<IpAddr> = p.client_owned.iter().filter(|v| s.vips.contains(*v)).copied().collect();
            s.client_owned.extend(kept);
        }
        for a in &s.own_addrs {
            let b = own_bit(*a);
            s.own_filter[b / 64] |= 1 << (b % 64);
        }
        Ok(s)
    }

    fn build_net(&mut self, model: &Model) -> Result<(), ModelError> {
        let net = &model.net;
        if net.ports.len() + net.subifs.len() > u8::MAX as usize {
            return Err(err("interfaces", "more than 255 (ports and sub-interfaces)"));
        }
        let first = |addrs: &[(IpAddr, u8)]| {
            let v4 = addrs.iter().find_map(|(a, _)| match a {
                IpAddr::V4(x) => Some(*x),
                _ => None,
            });
            let v6 = addrs.iter().find_map(|(a, _)| match a {
                IpAddr::V6(x) => Some(*x),
                _ => None,
            });
            (v4, v6)
        };
        for p in &net.ports {
            let (v4, v6) = first(&p.addrs);
            self.ports.push(Netif { name: p.name.clone(), mac: p.mac, mtu: p.mtu, v4, v6 });
        }
        self.vids = vec![[0; 64]; net.ports.len()];
        for l in net.links() {
            let what = || format!("interface {}", l.name);
            if l.mtu < 576 {
                return Err(err(what(), format!("mtu {} is below 576", l.mtu)));
            }
            for (a, len) in l.addrs {
                let max = if a.is_ipv4() { 32 } else { 128 };
                if *len > max {
                    return Err(err(format!("{} address {a}", what()), format!("prefix length {len} exceeds {max}")));
                }
                self.own_addrs.insert(*a);
            }
            let Some(port) = self.ports.get(l.port as usize) else {
                return Err(err(what(), format!("port {} does not exist", l.port)));
            };
            if l.vid > 4094 {
                return Err(err(what(), format!("VLAN id {} is not 1-4094", l.vid)));
            }
            let (v4, v6) = first(l.addrs);
            self.links.push(Link { port: l.port, vid: l.vid, mac: l.mac, mtu: l.mtu, v4: v4.or(port.v4), v6: v6.or(port.v6) });
            if !self.own_macs.contains(&l.mac) {
                self.own_macs.push(l.mac);
            }
            if l.vid != 0 {
                self.vids[l.port as usize][l.vid as usize / 64] |= 1 << (l.vid % 64);
            }
        }
        self.own_addrs.extend(net.local_addrs.iter().copied());
        for n in &net.neighbours {
            let dup = match &n.dev {
                None => self.neigh_any.insert(n.addr, n.mac).is_some(),
                Some(d) => match net.link_index(d) {
                    Some(i) => self.neigh.insert((i as u8, n.addr), n.mac).is_some(),
                    // On a device that is no link: of no use.
                    None => false,
                },
            };
            if dup {
                return Err(err(format!("neighbour {}", n.addr), "listed twice"));
            }
        }
        self.routes = Routes::build(net);
        Ok(())
    }

    fn uid(&mut self, key: UidKey, prev: Option<&Snapshot>) -> u32 {
        if let Some(u) = prev.and_then(|p| p.uids.get(&key)) {
            self.uids.insert(key, *u);
            return *u;
        }
        let u = self.next_uid;
        self.next_uid = self.next_uid.wrapping_add(1).max(1);
        self.uids.insert(key, u);
        u
    }

    fn add_service(&mut self, model: &Model, svc: &crate::ipvs::service::Service, prev: Option<&Snapshot>) -> Result<(), ModelError> {
        let name = format!("service {}", svc.key);
        let sched = SchedKind::from_name(&svc.sched).ok_or_else(|| {
            err(&name, format!("unknown scheduler '{}' (known: {})", svc.sched, crate::ipvs::sched::names().join(", ")))
        })?;
        // The (proto, addr, port) entries this service answers for.
        let members: Vec<SvcMapKey> = match &svc.key {
            ServiceKey::Addr { proto, addr, port } => vec![SvcMapKey { proto: proto.number(), addr: *addr, port: *port }],
            ServiceKey::Group(id) => {
                let g = model
                    .groups
                    .iter()
                    .find(|g| g.id == *id)
                    .ok_or_else(|| err(&name, format!("group {id} is not defined")))?;
                g.members.iter().map(|m| SvcMapKey { proto: m.proto.number(), addr: m.addr, port: m.port }).collect()
            }
        };
        let family_v4 = members[0].addr.is_ipv4();
        if members.iter().any(|m| m.addr.is_ipv4() != family_v4) {
            return Err(err(&name, "mixes IPv4 and IPv6 addresses"));
        }
        if let Some(p) = svc.persistence {
            if !(1..=MAX_TIMEOUT).contains(&p.timeout) {
                return Err(err(&name, format!("persistence timeout {} s is out of range 1 ..= {MAX_TIMEOUT} s (31 days)", p.timeout)));
            }
            let max = if family_v4 { 32 } else { 128 };
            if p.netmask > max {
                return Err(err(&name, format!("persistence netmask /{} exceeds /{max}", p.netmask)));
            }
            if family_v4 {
                self.shard_prefix.0 = self.shard_prefix.0.min(p.netmask);
            } else {
                self.shard_prefix.1 = self.shard_prefix.1.min(p.netmask);
            }
        }
        let idx = self.services.len() as u32;
        for m in &members {
            if self.svc_map.insert(*m, idx).is_some() {
                let proto = Proto::from_number(m.proto).map_or("?", |p| p.name());
                return Err(err(&name, format!("{proto} {}:{} is already a service", m.addr, m.port)));
            }
            self.vips.insert(m.addr);
            self.own_addrs.insert(m.addr);
            if svc.persistence.is_some() || svc.dests.iter().any(|d| d.fwd == FwdMethod::Nat) {
                self.client_owned.insert(m.addr);
            }
        }
        for l in &svc.laddrs {
            if l.is_ipv4() != family_v4 {
                return Err(err(&name, format!("local address {l} is not of the service's address family")));
            }
            self.laddrs.insert(*l);
            self.own_addrs.insert(*l);
        }
        if svc.synproxy && members.iter().any(|m| m.proto != Proto::Tcp.number()) {
            return Err(err(&name, "synproxy is for TCP services only"));
        }
        let start = self.dests.len();
        let svc_port = match &svc.key {
            ServiceKey::Addr { port, .. } => *port,
            ServiceKey::Group(_) => 0,
        };
        let mut seen = HashSet::new();
        for d in &svc.dests {
            let dname = format!("{name}, real server {}", fmt_sock(d.addr, d.port));
            if !seen.insert((d.addr, d.port)) {
                return Err(err(&dname, "listed twice"));
            }
            if d.weight > MAX_WEIGHT {
                return Err(err(&dname, format!("weight {} exceeds {MAX_WEIGHT}", d.weight)));
            }
            if d.addr.is_ipv4() != family_v4 {
                return Err(err(&dname, "is not of the service's address family"));
            }
            if d.l_threshold > 0 && d.u_threshold > 0 && d.l_threshold > d.u_threshold {
                return Err(err(&dname, format!("lower threshold {} is above upper threshold {}", d.l_threshold, d.u_threshold)));
            }
            match d.fwd {
                FwdMethod::Dr | FwdMethod::Tun if d.port != 0 && d.port != svc_port => {
                    return Err(err(
                        &dname,
                        format!("{} forwarding cannot change the port ({} -> {}); use nat or fullnat", d.fwd, svc_port, d.port),
                    ));
                }
                FwdMethod::FullNat if svc.laddrs.is_empty() => {
                    return Err(err(&dname, "fullnat needs local addresses on the service (laddrs)"));
                }
                FwdMethod::Dr | FwdMethod::Tun if svc.synproxy => {
                    return Err(err(&dname, format!("{} cannot serve a synproxy service (its replies bypass the director); use nat or fullnat", d.fwd)));
                }
                _ => {}
            }
            let key = UidKey::Dest(svc.key.clone(), d.addr, d.port);
            let uid = self.uid(key, prev);
            let hop = self.next_hop(d.addr);
            // The counts outlive snapshots: connections opened under the
            // previous one close under this one.
            let shared = prev
                .and_then(|p| p.dest_index(uid).map(|i| p.dests[i as usize].shared.clone()))
                .unwrap_or_default();
            // New thresholds take effect at once (IPVS clears the flag
            // when the upper threshold is removed or raised).
            shared.thresholds_changed(d.u_threshold, d.l_threshold);
            self.dest_uid.insert(uid, self.dests.len() as u32);
            self.dests.push(DestEntry {
                uid,
                svc: idx,
                addr: d.addr,
                port: if matches!(d.fwd, FwdMethod::Dr | FwdMethod::Tun) { 0 } else { d.port },
                weight: d.weight as i32,
                fwd: d.fwd,
                u_threshold: d.u_threshold,
                l_threshold: d.l_threshold,
                proxy: d.proxy,
                hop,
                shared,
            });
        }
        let dests = start..self.dests.len();
        let table = sched.build(&self.dests[dests.clone()], svc.sched_flags);
        let uid = self.uid(UidKey::Svc(svc.key.clone()), prev);
        self.svc_uid.insert(uid, idx);
        self.services.push(SvcEntry {
            uid,
            key: svc.key.clone(),
            sched,
            table,
            flags: svc.sched_flags,
            persistence: svc.persistence,
            dests,
            laddrs: svc.laddrs.clone(),
            synproxy: svc.synproxy,
        });
        Ok(())
    }
}

/// `addr:port` with brackets for IPv6.
pub fn fmt_sock(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V6(a) => format!("[{a}]:{port}"),
        IpAddr::V4(a) => format!("{a}:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::model::{Neighbour, NetConf, PortConf};
    use crate::ipvs::dest::Dest;
    use crate::ipvs::sched::SchedFlags;
    use crate::ipvs::service::{Group, GroupMember, Persistence, Service};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn svc(addr: &str, port: u16, dests: &[(&str, u16, FwdMethod)]) -> Service {
        Service {
            key: ServiceKey::Addr { proto: Proto::Tcp, addr: ip(addr), port },
            sched: "wrr".into(),
            sched_flags: SchedFlags::default(),
            persistence: None,
            dests: dests
                .iter()
                .map(|(a, p, f)| Dest { addr: ip(a), port: *p, weight: 1, fwd: *f, u_threshold: 0, l_threshold: 0, proxy: None })
                .collect(),
            laddrs: vec![],
            synproxy: false,
        }
    }

    fn model(services: Vec<Service>) -> Model {
        Model {
            services,
            net: NetConf {
                ports: vec![PortConf {
                    name: "eth0".into(),
                    mac: [2, 0, 0, 0, 0, 0x10],
                    mtu: 1500,
                    addrs: vec![(ip("10.0.0.1"), 24)],
                    gateways: vec![ip("10.0.0.254")],
                }],
                neighbours: vec![
                    Neighbour { dev: None, addr: ip("10.0.0.2"), mac: [2, 0, 0, 0, 0, 2] },
                    Neighbour { dev: None, addr: ip("10.0.0.254"), mac: [2, 0, 0, 0, 0, 0xfe] },
                ],
                ..NetConf::default()
            },
            ..Model::default()
        }
    }

    #[test]
    fn lookup_exact_then_port_zero() {
        let m = model(vec![
            svc("10.0.0.100", 80, &[("10.0.0.2", 80, FwdMethod::Dr)]),
            svc("10.0.0.100", 0, &[("10.0.0.2", 0, FwdMethod::Nat)]),
        ]);
        let s = Snapshot::build(&m, None).unwrap();
        assert_eq!(s.lookup(6, ip("10.0.0.100"), 80), Some(0));
        assert_eq!(s.lookup(6, ip("10.0.0.100"), 443), Some(1));
        assert_eq!(s.lookup(17, ip("10.0.0.100"), 80), None);
        assert!(s.is_vip(ip("10.0.0.100")) && !s.is_vip(ip("10.0.0.2")));
    }

    #[test]
    fn next_hop_neighbour_then_gateway() {
        let s = Snapshot::build(&model(vec![]), None).unwrap();
        assert_eq!(s.next_hop(ip("10.0.0.2")).unwrap().mac, [2, 0, 0, 0, 0, 2]);
        assert_eq!(s.next_hop(ip("192.0.2.7")).unwrap().mac, [2, 0, 0, 0, 0, 0xfe]);
        assert_eq!(s.next_hop(ip("2001:db8::1")), None);
        assert_eq!(s.next_hop(ip("10.0.0.3")), None, "connected but unknown: never the gateway's MAC");
        assert_eq!(s.next_hop(ip("10.0.0.2")).unwrap().link, 0);
    }

    #[test]
    fn links_are_ports_then_sub_interfaces_with_their_tags_macs_and_sources() {
        use crate::ctl::model::SubIfConf;
        let mut m = model(vec![svc("10.0.0.100", 80, &[("10.0.0.2", 80, FwdMethod::Dr)])]);
        m.net.subifs = vec![
            SubIfConf { name: "eth0.20".into(), port: 0, vid: 20, mac: [2, 0, 0, 0, 0, 0x10], mtu: 1496, addrs: vec![(ip("10.0.20.1"), 24)] },
            SubIfConf { name: "vmac".into(), port: 0, vid: 0, mac: [0, 0, 0x5e, 0, 1, 1], mtu: 1500, addrs: vec![] },
        ];
        // The same link-local router on two links, each with its own MAC.
        m.net.neighbours.push(Neighbour { addr: ip("fe80::1"), mac: [2, 0, 0, 0, 0, 0xa1], dev: Some("eth0".into()) });
        m.net.neighbours.push(Neighbour { addr: ip("fe80::1"), mac: [2, 0, 0, 0, 0, 0xa2], dev: Some("eth0.20".into()) });
        m.net.routes.push(crate::ctl::model::RouteConf {
            dst: ip("2001:db8:9::"),
            len: 48,
            metric: 0,
            hops: vec![crate::ctl::model::RouteHop { dev: "eth0.20".into(), via: Some(ip("fe80::1")) }],
        });
        let s = Snapshot::build(&m, None).unwrap();
        assert_eq!(s.links.len(), 3);
        assert_eq!((s.links[1].port, s.links[1].vid, s.links[1].mtu), (0, 20, 1496));
        assert_eq!(s.links[1].v4, Some("10.0.20.1".parse().unwrap()), "its own address for tunnels");
        assert_eq!(s.links[2].v4, Some("10.0.0.1".parse().unwrap()), "none: its port's");
        assert_eq!((s.link_of(0, 0), s.link_of(0, 20), s.link_of(0, 21), s.link_of(1, 0)), (Some(0), Some(1), None, None));
        assert!(s.has_vid(0, 20) && !s.has_vid(0, 21) && !s.has_vid(0, 0) && !s.has_vid(1, 20) && !s.has_vid(7, 20));
        assert!(s.is_own_mac(0, &[2, 0, 0, 0, 0, 0x10]) && s.is_own_mac(0, &[0, 0, 0x5e, 0, 1, 1]) && s.is_own_mac(9, &[0, 0, 0x5e, 0, 1, 1]));
        assert!(!s.is_own_mac(0, &[2, 0, 0, 0, 0, 2]));
        assert_eq!(s.next_hop(ip("2001:db8:9::5")), Some(Hop { link: 1, mac: [2, 0, 0, 0, 0, 0xa2] }), "the neighbour on the route's link");
        assert!(s.is_own_addr(ip("10.0.20.1")) && s.is_own_addr(ip("10.0.0.100")) && !s.is_own_addr(ip("10.0.0.2")));
    }

    proptest::proptest! {
        /// The filter in front of the own-address set never hides one.
        #[test]
        fn own_addresses_are_found_and_others_not(own in proptest::collection::vec(proptest::prelude::any::<u32>(), 1..40),
                                                  other in proptest::collection::vec(proptest::prelude::any::<u128>(), 1..40)) {
            let mut m = model(vec![]);
            m.net.local_addrs = own.iter().map(|a| IpAddr::from(a.to_be_bytes())).collect();
            m.net.local_addrs.extend(other.iter().take(5).map(|a| IpAddr::from(a.to_be_bytes())));
            let s = Snapshot::build(&m, None).unwrap();
            for a in &m.net.local_addrs {
                proptest::prop_assert!(s.is_own_addr(*a));
            }
            for a in other.iter().skip(5) {
                let a = IpAddr::from(a.to_be_bytes());
                proptest::prop_assert_eq!(s.is_own_addr(a), m.net.local_addrs.contains(&a));
            }
        }
    }

    #[test]
    fn bad_links_name_the_interface() {
        use crate::ctl::model::SubIfConf;
        let sub = |port, vid| SubIfConf { name: "eth0.x".into(), port, vid, mac: [2; 6], mtu: 1500, addrs: vec![] };
        for (s, want) in [(sub(3, 20), "interface eth0.x: port 3 does not exist"), (sub(0, 4095), "interface eth0.x: VLAN id 4095 is not 1-4094")] {
            let mut m = model(vec![]);
            m.net.subifs.push(s);
            assert_eq!(Snapshot::build(&m, None).unwrap_err().to_string(), want);
        }
        let mut m = model(vec![]);
        m.net.subifs = (0..255).map(|i| SubIfConf { vid: i + 1, ..sub(0, 1) }).collect();
        assert!(Snapshot::build(&m, None).unwrap_err().to_string().contains("more than 255"));
    }

    #[test]
    fn uids_survive_rebuilds_and_new_ones_are_fresh() {
        let m1 = model(vec![svc("10.0.0.100", 80, &[("10.0.0.2", 80, FwdMethod::Dr), ("10.0.0.3", 80, FwdMethod::Dr)])]);
        let s1 = Snapshot::build(&m1, None).unwrap();
        let m2 = model(vec![svc("10.0.0.100", 80, &[("10.0.0.3", 80, FwdMethod::Dr), ("10.0.0.4", 80, FwdMethod::Dr)])]);
        let s2 = Snapshot::build(&m2, Some(&s1)).unwrap();
        assert_eq!(s2.generation, 2);
        assert_eq!(s2.dests[0].uid, s1.dests[1].uid, "10.0.0.3 keeps its uid");
        assert!(s2.dests[1].uid > s1.dests[1].uid.max(s1.services[0].uid), "10.0.0.4 is new");
        assert_eq!(s2.services[0].uid, s1.services[0].uid);
        assert_eq!(s2.dest_index(s1.dests[0].uid), None, "10.0.0.2 is gone");
    }

    #[test]
    fn groups_map_every_member() {
        let mut m = model(vec![]);
        m.groups.push(Group {
            id: 7,
            members: vec![
                GroupMember { proto: Proto::Tcp, addr: ip("10.0.0.100"), port: 80 },
                GroupMember { proto: Proto::Tcp, addr: ip("10.0.0.100"), port: 443 },
            ],
        });
        let mut g = svc("10.0.0.100", 80, &[("10.0.0.2", 0, FwdMethod::Dr)]);
        g.key = ServiceKey::Group(7);
        m.services.push(g);
        let s = Snapshot::build(&m, None).unwrap();
        assert_eq!(s.lookup(6, ip("10.0.0.100"), 443), Some(0));
        assert_eq!(s.lookup(6, ip("10.0.0.100"), 80), Some(0));
        assert_eq!(s.lookup(6, ip("10.0.0.100"), 22), None);
    }

    #[test]
    fn nat_and_persistent_vips_are_client_owned_while_they_exist() {
        let mut m = model(vec![
            svc("10.0.0.1", 80, &[("10.1.0.1", 80, FwdMethod::Dr)]),
            svc("10.0.0.2", 80, &[("10.1.0.2", 80, FwdMethod::Nat)]),
            svc("10.0.0.3", 80, &[("10.1.0.3", 80, FwdMethod::Dr)]),
        ]);
        m.services[2].persistence = Some(Persistence { timeout: 60, netmask: 32 });
        let s = Snapshot::build(&m, None).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(!s.client_owned(ip("10.0.0.1")), "DR only: the NIC may own its flows");
        assert!(s.client_owned(ip("10.0.0.2")), "NAT: replies name only the client");
        assert!(s.client_owned(ip("10.0.0.3")), "persistence: one template per client");
        // The NAT server turns DR: the VIP stays client-owned (its NAT
        // connections still run); gone, it is forgotten.
        let mut m2 = m.clone();
        m2.services[1].dests[0].fwd = FwdMethod::Dr;
        let s2 = Snapshot::build(&m2, Some(&s)).unwrap();
        assert!(s2.client_owned(ip("10.0.0.2")));
        m2.services.remove(1);
        let s3 = Snapshot::build(&m2, Some(&s2)).unwrap();
        assert!(!s3.client_owned(ip("10.0.0.2")));
        let s4 = Snapshot::build(&m, Some(&s3)).unwrap();
        assert!(s4.client_owned(ip("10.0.0.2")), "back with its NAT server");
    }

    #[test]
    fn persistence_coarsens_the_shard_prefix() {
        let mut m = model(vec![svc("10.0.0.100", 80, &[("10.0.0.2", 80, FwdMethod::Dr)])]);
        assert_eq!(Snapshot::build(&m, None).unwrap().shard_prefix, (32, 128));
        m.services[0].persistence = Some(Persistence { timeout: 300, netmask: 24 });
        assert_eq!(Snapshot::build(&m, None).unwrap().shard_prefix, (24, 128));
        m.shard_prefix = (16, 64);
        assert_eq!(Snapshot::build(&m, None).unwrap().shard_prefix, (16, 64));
    }

    #[test]
    fn invalid_models_name_the_culprit() {
        let cases: Vec<(Model, &str)> = vec![
            (
                {
                    let mut s = svc("10.0.0.100", 80, &[]);
                    s.sched = "bogus".into();
                    model(vec![s])
                },
                "unknown scheduler 'bogus'",
            ),
            (model(vec![svc("10.0.0.100", 80, &[]), svc("10.0.0.100", 80, &[])]), "already a service"),
            (model(vec![svc("10.0.0.100", 80, &[("10.0.0.2", 8080, FwdMethod::Dr)])]), "cannot change the port"),
            (model(vec![svc("10.0.0.100", 80, &[("10.0.0.2", 80, FwdMethod::FullNat)])]), "needs local addresses"),
            (model(vec![svc("10.0.0.100", 80, &[("2001:db8::2", 80, FwdMethod::Nat)])]), "address family"),
            (
                model(vec![svc("10.0.0.100", 80, &[("10.0.0.2", 80, FwdMethod::Nat), ("10.0.0.2", 80, FwdMethod::Nat)])]),
                "listed twice",
            ),
            (
                {
                    let mut s = svc("10.0.0.100", 80, &[]);
                    s.key = ServiceKey::Group(3);
                    model(vec![s])
                },
                "group 3 is not defined",
            ),
        ];
        for (m, want) in cases {
            let e = Snapshot::build(&m, None).unwrap_err();
            assert!(e.to_string().contains(want), "{e} should contain {want}");
            assert!(e.to_string().starts_with("service "), "{e} should name the service");
        }
    }

    /// The mh configuration of the cross-process test: 40 real servers of
    /// mixed weights (every `skip`-th left out), in a TOML file as an
    /// operator writes it.
    fn mh_config(skip: Option<usize>) -> String {
        let mut t = String::from("[[service]]\nproto = \"tcp\"\nvip = \"10.0.0.100\"\nport = 80\nscheduler = \"mh\"\n");
        for i in 0..40usize {
            if Some(i) == skip {
                continue;
            }
            t += &format!("[[service.real_server]]\nip = \"10.0.{}.{}\"\nweight = {}\nmode = \"dr\"\n", 1 + i / 200, 1 + i % 200, 1 + i % 3);
        }
        t
    }

    /// The mh table of `config`'s only service, as the addresses of the
    /// real servers at each position (what a director sends there).
    fn mh_positions(config: &str) -> Vec<String> {
        let m = crate::ctl::config::load_str(config, "mh.toml").unwrap();
        let s = Snapshot::build(&m, None).unwrap();
        let svc = &s.services[0];
        let crate::ipvs::sched::SchedTable::Mh(t) = &svc.table else { panic!("not an mh table") };
        let dests = &s.dests[svc.dests.clone()];
        t.positions().map(|p| p.map_or("-".to_string(), |i| dests[i].addr.to_string())).collect()
    }

    /// The child half of `mh_tables_agree_across_processes`: with
    /// `XVS_MH_DUMP` set, writes the full table and the table without
    /// real server 17 to that file; otherwise nothing.
    #[test]
    fn mh_table_dump_child() {
        let Ok(path) = std::env::var("XVS_MH_DUMP") else { return };
        let out = format!("{}\n{}\n", mh_positions(&mh_config(None)).join(","), mh_positions(&mh_config(Some(17))).join(","));
        std::fs::write(path, out).unwrap();
    }

    /// Scale-out behind ECMP rests on this (docs/scale-out.md): two
    /// directors — here two processes, each with its own hash seeds,
    /// address layout and allocation order — build the same mh table from
    /// the same configuration, position for position; and removing one
    /// real server moves its share and under 1 % of the table besides.
    #[test]
    fn mh_tables_agree_across_processes() {
        if std::env::var("XVS_MH_DUMP").is_ok() {
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let dump = |n: usize| {
            let path = std::env::temp_dir().join(format!("xvs-mh-{}-{n}.txt", std::process::id()));
            let st = std::process::Command::new(&exe)
                .args(["--exact", "ctl::snapshot::tests::mh_table_dump_child", "--test-threads=1", "--quiet"])
                .env("XVS_MH_DUMP", &path)
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(st.success(), "child {n}: {st}");
            let text = std::fs::read_to_string(&path).unwrap();
            let _ = std::fs::remove_file(&path);
            let mut lines = text.lines().map(|l| l.split(',').map(str::to_string).collect::<Vec<_>>());
            (lines.next().unwrap(), lines.next().unwrap())
        };
        let (full_a, less_a) = dump(1);
        let (full_b, less_b) = dump(2);
        assert_eq!(full_a.len(), crate::ipvs::sched::mh::MH_TAB_SIZE);
        assert!(full_a == full_b, "the two processes' tables differ");
        assert!(less_a == less_b, "the two processes' tables without one server differ");
        // And this process agrees with both.
        assert!(mh_positions(&mh_config(None)) == full_a);
        let removed = "10.0.1.18";
        let on_removed = full_a.iter().filter(|a| *a == removed).count();
        let others = full_a.iter().zip(&less_b).filter(|(a, b)| *a != removed && a != b).count();
        assert!(on_removed > 0 && less_b.iter().all(|b| b != removed && b != "-"));
        assert!(others * 100 < full_a.len(), "{others} positions of other servers moved");
    }
}
