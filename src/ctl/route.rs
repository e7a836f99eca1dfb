//! Building the route table ([`Routes`], defined with its lookup in
//! `ipvs::route`, which the data path reads) from a [`NetConf`]. The
//! contract is in `ipvs::route`.

use super::model::NetConf;
pub use crate::ipvs::route::{NextHop, Routes};
use crate::ipvs::route::Way;
use std::net::IpAddr;

impl Routes {
    /// Compiles the routes of `net` (see `ipvs::route`'s contract). Malformed
    /// entries (a prefix length beyond the family's width, a gateway of
    /// the other family) are skipped: the config loader and the kernel
    /// never produce them.
    pub fn build(net: &NetConf) -> Routes {
        let mut r = Routes::default();
        let link_of = |dev: &str| net.link_index(dev).and_then(|i| u8::try_from(i).ok());
        for (i, l) in net.links().enumerate() {
            for (a, len) in l.addrs {
                r.add(*a, *len, 0, vec![Way { link: u8::try_from(i).ok(), via: None }]);
            }
        }
        for (i, p) in net.ports.iter().enumerate() {
            for gw in &p.gateways {
                let any = if gw.is_ipv4() { IpAddr::from([0u8; 4]) } else { IpAddr::from([0u8; 16]) };
                r.add(any, 0, 0, vec![Way { link: u8::try_from(i).ok(), via: Some(*gw) }]);
            }
        }
        for rt in &net.routes {
            let ways = rt
                .hops
                .iter()
                .filter(|h| h.via.map_or(true, |v| v.is_ipv4() == rt.dst.is_ipv4()))
                .map(|h| Way { link: link_of(&h.dev), via: h.via })
                .collect();
            r.add(rt.dst, rt.len, rt.metric, ways);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::model::{PortConf, RouteConf, RouteHop, SubIfConf};
    use crate::ipvs::route::masked;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn port(name: &str, addrs: &[(&str, u8)], gateways: &[&str]) -> PortConf {
        PortConf {
            name: name.into(),
            mac: [2, 0, 0, 0, 0, 1],
            mtu: 1500,
            addrs: addrs.iter().map(|(a, l)| (ip(a), *l)).collect(),
            gateways: gateways.iter().map(|g| ip(g)).collect(),
        }
    }

    fn route(dst: &str, len: u8, metric: u32, hops: &[(&str, Option<&str>)]) -> RouteConf {
        RouteConf {
            dst: ip(dst),
            len,
            metric,
            hops: hops.iter().map(|(d, v)| RouteHop { dev: d.to_string(), via: v.map(ip) }).collect(),
        }
    }

    fn net() -> NetConf {
        NetConf {
            ports: vec![
                port("eth0", &[("10.0.0.1", 24), ("2001:db8::1", 64)], &[]),
                port("eth1", &[("10.0.1.254", 24)], &[]),
            ],
            subifs: vec![SubIfConf {
                name: "eth1.20".into(),
                port: 1,
                vid: 20,
                mac: [2, 0, 0, 0, 0, 2],
                mtu: 1500,
                addrs: vec![(ip("10.0.20.1"), 24)],
            }],
            routes: vec![
                route("0.0.0.0", 0, 100, &[("eth0", Some("10.0.0.253"))]),
                route("0.0.0.0", 0, 10, &[("eth0", Some("10.0.0.254"))]),
                route("0.0.0.0", 0, 10, &[("eth0", Some("10.0.0.252"))]),
                route("10.9.0.0", 16, 0, &[("eth1", Some("10.0.1.7"))]),
                route("10.9.9.0", 24, 0, &[("eth1.20", Some("10.0.20.9"))]),
                route("10.9.9.128", 25, 0, &[]),
                route("198.51.100.0", 24, 0, &[("mgmt", Some("192.168.9.254"))]),
                route("203.0.113.0", 24, 0, &[("eth0", Some("10.0.0.11")), ("eth1", Some("10.0.1.11"))]),
                route("::", 0, 1024, &[("eth0", Some("fe80::1"))]),
            ],
            ..NetConf::default()
        }
    }

    fn hop(link: u8, addr: &str) -> Option<NextHop> {
        Some(NextHop { link, addr: ip(addr) })
    }

    #[test]
    fn longest_prefix_then_lowest_metric_wins() {
        let r = Routes::build(&net());
        assert_eq!(r.next_hop(ip("10.0.0.7")), hop(0, "10.0.0.7"), "connected: the address itself");
        assert_eq!(r.next_hop(ip("10.0.20.5")), hop(2, "10.0.20.5"), "connected on the VLAN");
        assert_eq!(r.next_hop(ip("192.0.2.1")), hop(0, "10.0.0.254"), "default: metric 10, first of equals");
        assert_eq!(r.next_hop(ip("10.9.1.1")), hop(1, "10.0.1.7"), "static /16");
        assert_eq!(r.next_hop(ip("10.9.9.1")), hop(2, "10.0.20.9"), "the /24 inside it, via the VLAN");
        assert_eq!(r.next_hop(ip("10.9.9.200")), None, "the unreachable /25 inside that");
        assert_eq!(r.next_hop(ip("198.51.100.1")), None, "out a device xvs does not send on");
        assert_eq!(r.next_hop(ip("2001:db8::9")), hop(0, "2001:db8::9"));
        assert_eq!(r.next_hop(ip("2001:db8:5::9")), hop(0, "fe80::1"));
        assert_eq!(r.lengths(), (4, 2), "/25 /24 /16 /0; /64 /0");
    }

    #[test]
    fn a_ports_gateway_is_a_default_route_and_no_route_is_none() {
        let n = NetConf { ports: vec![port("eth0", &[("10.0.0.1", 24)], &["10.0.0.254"])], ..NetConf::default() };
        let r = Routes::build(&n);
        assert_eq!(r.next_hop(ip("192.0.2.1")), hop(0, "10.0.0.254"));
        assert_eq!(r.next_hop(ip("2001:db8::1")), None);
        assert_eq!(Routes::build(&NetConf::default()).next_hop(ip("10.0.0.1")), None);
    }

    #[test]
    fn ecmp_spreads_destinations_and_keeps_each_on_one_path() {
        let r = Routes::build(&net());
        let mut seen = [0; 2];
        for i in 0..=255u8 {
            let d = IpAddr::from([203, 0, 113, i]);
            let h = r.next_hop(d).unwrap();
            assert_eq!(r.next_hop(d), Some(h), "stable");
            assert_eq!(h.addr, ip(["10.0.0.11", "10.0.1.11"][h.link as usize]));
            seen[h.link as usize] += 1;
        }
        assert!(seen[0] > 64 && seen[1] > 64, "{seen:?}");
    }

    #[test]
    fn malformed_entries_are_skipped() {
        let mut n = net();
        n.routes = vec![route("10.0.0.0", 33, 0, &[("eth0", None)]), route("10.8.0.0", 16, 0, &[("eth0", Some("fe80::1"))])];
        let r = Routes::build(&n);
        assert_eq!(r.next_hop(ip("10.8.0.1")), None, "a gateway of the other family is no way out");
    }

    /// An IPv4 address in a /16 no other prefix reaches into takes the
    /// default route without a probe; one in a /16 another prefix reaches
    /// into is looked up by its prefixes, down to the default one. A
    /// better default added later replaces the first.
    #[test]
    fn the_default_route_without_a_probe_and_the_prefixes_it_must_not_hide() {
        let mut n = NetConf { ports: vec![port("eth0", &[("10.0.0.1", 24)], &[]), port("eth1", &[], &[])], ..NetConf::default() };
        n.routes = vec![
            route("0.0.0.0", 0, 20, &[("eth0", Some("10.0.0.254"))]),
            route("172.16.0.0", 12, 0, &[("eth1", Some("10.0.1.1"))]),
            route("192.0.2.128", 25, 0, &[("eth1", Some("10.0.1.2"))]),
            route("0.0.0.0", 0, 10, &[("eth0", Some("10.0.0.253")), ("eth1", Some("10.0.1.253"))]),
        ];
        let r = Routes::build(&n);
        let via = |h: Option<NextHop>| h.map(|h| h.addr);
        // no other prefix in 198.51/16: the default, metric 10's ECMP pair
        let d = via(r.next_hop(ip("198.51.100.7"))).unwrap();
        assert!(d == ip("10.0.0.253") || d == ip("10.0.1.253"), "{d}");
        assert_eq!(via(r.next_hop(ip("172.20.1.1"))), Some(ip("10.0.1.1")), "inside the /12 (16 /16s)");
        assert_eq!(via(r.next_hop(ip("172.31.255.255"))), Some(ip("10.0.1.1")), "its last /16");
        let d = via(r.next_hop(ip("172.32.0.1"))).unwrap();
        assert!(d == ip("10.0.0.253") || d == ip("10.0.1.253"), "just past it: the default, {d}");
        assert_eq!(via(r.next_hop(ip("192.0.2.200"))), Some(ip("10.0.1.2")), "inside the /25");
        let d = via(r.next_hop(ip("192.0.2.1"))).unwrap();
        assert!(d == ip("10.0.0.253") || d == ip("10.0.1.253"), "same /16 as the /25, outside it: the default, {d}");
        assert_eq!(r.next_hop(ip("10.0.0.9")), hop(0, "10.0.0.9"), "connected");
        // without a default route, an address no prefix covers has no hop
        n.routes.retain(|r| r.len > 0);
        let r = Routes::build(&n);
        assert_eq!(r.next_hop(ip("198.51.100.7")), None);
        assert_eq!(via(r.next_hop(ip("172.20.1.1"))), Some(ip("10.0.1.1")));
    }

    proptest::proptest! {
        /// The table agrees with a plain scan: the longest matching
        /// prefix, then the lowest metric, then the first listed.
        #[test]
        fn agrees_with_a_linear_scan(
            routes in proptest::collection::vec((proptest::prelude::any::<u32>(), 0u8..=32, 0u32..4, 0u8..3), 0..40),
            probes in proptest::collection::vec(proptest::prelude::any::<u32>(), 50),
        ) {
            let n = NetConf {
                ports: vec![port("eth0", &[], &[]), port("eth1", &[], &[])],
                routes: routes
                    .iter()
                    .map(|(d, len, metric, gw)| RouteConf {
                        dst: IpAddr::from(d.to_be_bytes()),
                        len: *len,
                        metric: *metric,
                        hops: vec![RouteHop { dev: "eth0".into(), via: Some(IpAddr::from([10, 0, 0, *gw])) }],
                    })
                    .collect(),
                ..NetConf::default()
            };
            let r = Routes::build(&n);
            // Mix in addresses inside the routes' prefixes.
            let mut all: Vec<u32> = probes.clone();
            all.extend(routes.iter().map(|(d, ..)| *d));
            // and addresses in the routes' /16s outside their prefixes
            all.extend(routes.iter().zip(&probes).map(|((d, ..), p)| (d & 0xffff_0000) | (p & 0xffff)));
            for p in all {
                let best = routes
                    .iter()
                    .enumerate()
                    .filter(|(_, (d, len, ..))| masked(p as u128, 32, *len) == masked(*d as u128, 32, *len))
                    .min_by_key(|(i, (_, len, metric, _))| (std::cmp::Reverse(*len), *metric, *i))
                    .map(|(_, (.., gw))| NextHop { link: 0, addr: IpAddr::from([10, 0, 0, *gw]) });
                proptest::prop_assert_eq!(r.next_hop(IpAddr::from(p.to_be_bytes())), best);
            }
        }
    }
}
