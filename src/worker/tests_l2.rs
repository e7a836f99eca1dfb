//! Worker tests of what the kernel in front of IPVS decides before IPVS
//! sees a packet (frames for another host, unknown VLANs, martian sources,
//! impossible SYNs, port 0, TTL exhausted: none makes state), and of
//! egress by route and link (VLAN tags put in, changed, taken out; a real
//! server behind a static route; next hops of established connections
//! following neighbour and route changes).

use super::*;
use crate::ctl::model::{Model, Neighbour, NetConf, PortConf, RouteConf, RouteHop, SubIfConf};
use crate::gen::packet::*;
use crate::io::mem::Batch;
use crate::ipvs::dest::Dest;
use crate::ipvs::sched::SchedFlags;
use crate::ipvs::service::{Persistence, Service, ServiceKey};
use crate::ipvs::Proto;
use crate::wire::tcp_flags::*;
use crate::wire::{be16, dst_mac, ETHERTYPE_VLAN};

const SEC: u64 = 1_000_000_000;
/// The director's MAC on eth1 (real-server side).
const D1_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0x10];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
const GW2_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfd];
const ROUTER_MAC: [u8; 6] = [2, 0, 0, 0, 1, 7];
const RS_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const RS20_MAC: [u8; 6] = [2, 0, 0, 0, 20, 5];
const C10_MAC: [u8; 6] = [2, 0, 0, 0, 10, 2];
/// A client behind the gateway, one on VLAN 10 of eth0.
const CIP: [u8; 4] = [192, 0, 2, 1];
const C10: [u8; 4] = [10, 0, 10, 2];
const VIP: [u8; 4] = [10, 0, 0, 100];
const RS: [u8; 4] = [10, 0, 1, 1];
const RS20: [u8; 4] = [10, 0, 20, 5];
const RS_ROUTED: [u8; 4] = [10, 9, 1, 1];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn n(addr: &str, mac: [u8; 6]) -> Neighbour {
    Neighbour { addr: ip(addr), mac, dev: None }
}

/// eth0 (port 0, clients; VLAN 10 on it as eth0.10), eth1 (port 1, real
/// servers; VLAN 20 as eth1.20), a router 10.0.1.7 on eth1 to 10.9.0.0/16,
/// a management address elsewhere.
fn net() -> NetConf {
    NetConf {
        ports: vec![
            PortConf {
                name: "eth0".into(),
                mac: MAC_DIRECTOR,
                mtu: 1500,
                addrs: vec![(ip("10.0.0.1"), 24), (ip("2001:db8::fd"), 64)],
                gateways: vec![ip("10.0.0.254")],
            },
            PortConf { name: "eth1".into(), mac: D1_MAC, mtu: 1500, addrs: vec![(ip("10.0.1.254"), 24)], gateways: vec![] },
        ],
        subifs: vec![
            SubIfConf { name: "eth0.10".into(), port: 0, vid: 10, mac: MAC_DIRECTOR, mtu: 1500, addrs: vec![(ip("10.0.10.1"), 24)] },
            SubIfConf { name: "eth1.20".into(), port: 1, vid: 20, mac: D1_MAC, mtu: 1500, addrs: vec![(ip("10.0.20.254"), 24)] },
        ],
        routes: vec![RouteConf {
            dst: ip("10.9.0.0"),
            len: 16,
            metric: 0,
            hops: vec![RouteHop { dev: "eth1".into(), via: Some(ip("10.0.1.7")) }],
        }],
        neighbours: vec![
            n("10.0.0.254", GW_MAC),
            n("10.0.0.253", GW2_MAC),
            n("10.0.1.7", ROUTER_MAC),
            n("10.0.1.1", RS_MAC),
            n("10.0.20.5", RS20_MAC),
            n("10.0.10.2", C10_MAC),
        ],
        local_addrs: vec![ip("192.168.9.1")],
    }
}

fn svc(port: u16, dest: &str, rport: u16, fwd: FwdMethod) -> Service {
    Service {
        key: ServiceKey::Addr { proto: Proto::Tcp, addr: ip("10.0.0.100"), port },
        sched: "rr".into(),
        sched_flags: SchedFlags::default(),
        persistence: None,
        dests: vec![Dest { addr: ip(dest), port: rport, weight: 1, fwd, u_threshold: 0, l_threshold: 0, proxy: None }],
        laddrs: if fwd == FwdMethod::FullNat { vec![ip("10.0.20.200")] } else { vec![] },
        synproxy: false,
    }
}

/// NAT to the VLAN real server on :80, to the routed one on :81, to the
/// untagged one on :82; DR, TUN and FULLNAT to the VLAN one on :83-85; a
/// UDP service on :53 and a port-0 service on another VIP.
fn model() -> Model {
    let mut udp = svc(53, "10.0.1.1", 53, FwdMethod::Nat);
    udp.key = ServiceKey::Addr { proto: Proto::Udp, addr: ip("10.0.0.100"), port: 53 };
    let mut any = svc(0, "10.0.1.1", 0, FwdMethod::Nat);
    any.key = ServiceKey::Addr { proto: Proto::Tcp, addr: ip("10.0.0.101"), port: 0 };
    Model {
        services: vec![
            svc(80, "10.0.20.5", 8080, FwdMethod::Nat),
            svc(81, "10.9.1.1", 8080, FwdMethod::Nat),
            svc(82, "10.0.1.1", 8080, FwdMethod::Nat),
            svc(83, "10.0.20.5", 0, FwdMethod::Dr),
            svc(84, "10.0.20.5", 0, FwdMethod::Tun),
            svc(85, "10.0.20.5", 8080, FwdMethod::FullNat),
            udp,
            any,
        ],
        net: net(),
        ..Model::default()
    }
}

fn worker_of(m: &Model) -> Worker {
    Worker::new(0, 1, Arc::new(Snapshot::build(m, None).unwrap()), SEC)
}

/// Runs one frame arriving on `port`: its verdict and bytes.
fn on(w: &mut Worker, port: u8, f: Vec<u8>) -> (Verdict, Vec<u8>) {
    let mut out = None;
    let mut b = Batch::new();
    b.push(&f, port).unwrap();
    b.process(w, SEC, |v, d| out = Some((v, d.to_vec())));
    out.unwrap()
}

fn addr4(f: &[u8], off: usize) -> [u8; 4] {
    [f[off], f[off + 1], f[off + 2], f[off + 3]]
}

/// The frame's VLAN id, `None` when untagged.
fn tag(f: &[u8]) -> Option<u16> {
    (be16(f, 12) == ETHERTYPE_VLAN).then(|| be16(f, 14) & 0x0fff)
}

/// A frame from the VLAN-10 client, tagged, to our MAC.
fn from_c10(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut f = vlan(tcp4(C10, sport, VIP, dport, flags, b""), 10);
    f[6..12].copy_from_slice(&C10_MAC);
    f
}

/// The real server's reply on eth1 (tagged `vid` unless 0) to our MAC there.
fn reply(src: [u8; 4], dst: [u8; 4], dport: u16, vid: u16) -> Vec<u8> {
    let mut f = tcp4(src, 8080, dst, dport, SYN | ACK, b"");
    f[0..6].copy_from_slice(&D1_MAC);
    if vid == 0 {
        f
    } else {
        vlan(f, vid)
    }
}

fn nothing_made(w: &Worker) {
    assert_eq!(w.conns(), 0);
    assert_eq!(w.counters().new_conns, 0);
    assert_eq!(w.counters().templates_created, 0);
    assert!(w.dest_stats().iter().all(|s| s.conns == 0 && s.inpkts == 0), "{:?}", w.dest_stats());
    assert!(w.loads().iter().all(|l| l.conns() == 0 && l.persist == 0));
}

#[test]
fn a_unicast_frame_for_another_mac_is_dropped_and_group_frames_go_to_the_kernel() {
    let mut w = worker_of(&model());
    let mut other = tcp4(CIP, 40000, VIP, 80, SYN, b"");
    other[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 0x99]);
    assert_eq!(on(&mut w, 0, other).0, Verdict::Drop(DropReason::OtherHost));
    // A VRRP backup's case: flooded to the master's (virtual) MAC.
    let mut vrrp = tcp4(CIP, 40000, VIP, 80, SYN, b"");
    vrrp[0..6].copy_from_slice(&[0, 0, 0x5e, 0, 1, 51]);
    assert_eq!(on(&mut w, 0, vrrp).0, Verdict::Drop(DropReason::OtherHost));
    for group in [[0xff; 6], [0x01, 0, 0x5e, 0, 0, 1], [0x33, 0x33, 0, 0, 0, 1]] {
        let mut f = tcp4(CIP, 40000, VIP, 80, SYN, b"");
        f[0..6].copy_from_slice(&group);
        assert_eq!(on(&mut w, 0, f).0, Verdict::Pass(PassReason::NotHost));
    }
    nothing_made(&w);
    assert_eq!(w.counters().drops[DropReason::OtherHost as usize], 2);
    assert_eq!(w.counters().passes[PassReason::NotHost as usize], 3);
    // Our own MAC is taken on any port (the other port's too).
    assert_eq!(on(&mut w, 0, tcp4(CIP, 40000, VIP, 80, SYN, b"")).0, Verdict::Tx { port: 1 });
    let mut d1 = tcp4(CIP, 40001, VIP, 80, SYN, b"");
    d1[0..6].copy_from_slice(&D1_MAC);
    assert_eq!(on(&mut w, 0, d1).0, Verdict::Tx { port: 1 });
}

#[test]
fn a_vlan_no_sub_interface_has_is_dropped_and_a_priority_tag_is_the_port() {
    let mut w = worker_of(&model());
    let f = vlan(tcp4(CIP, 40000, VIP, 82, SYN, b""), 30);
    assert_eq!(on(&mut w, 0, f).0, Verdict::Drop(DropReason::UnknownVlan));
    // VLAN 20 exists, but on eth1, not on eth0.
    let f = vlan(tcp4(CIP, 40000, VIP, 82, SYN, b""), 20);
    assert_eq!(on(&mut w, 0, f).0, Verdict::Drop(DropReason::UnknownVlan));
    nothing_made(&w);
    // VLAN 0 (priority only) is the untagged port; the egress link (eth1,
    // untagged) takes the tag out.
    let f = vlan(tcp4(CIP, 40000, VIP, 82, SYN, b""), 0);
    let (v, out) = on(&mut w, 0, f.clone());
    assert_eq!(v, Verdict::Tx { port: 1 });
    assert_eq!((tag(&out), out.len()), (None, f.len() - 4));
    assert!(verify(&out));
}

#[test]
fn egress_tags_follow_the_route_not_the_ingress() {
    let mut w = worker_of(&model());
    // Added: an untagged client to the real server on eth1.20.
    let syn = tcp4(CIP, 40000, VIP, 80, SYN, b"hello");
    let (v, out) = on(&mut w, 0, syn.clone());
    assert_eq!(v, Verdict::Tx { port: 1 });
    assert_eq!(tag(&out), Some(20));
    assert_eq!(out.len(), syn.len() + 4, "four bytes longer");
    assert_eq!((dst_mac(&out), src_mac(&out)), (RS20_MAC, D1_MAC));
    assert!(verify(&out));
    let m = parse(&out).unwrap();
    assert_eq!((m.l3, addr4(&out, 18 + 16), m.dport), (18, RS20, 8080));
    // Removed: its tagged reply goes to the untagged client side.
    let (v, back) = on(&mut w, 1, reply(RS20, CIP, 40000, 20));
    assert_eq!(v, Verdict::Tx { port: 0 });
    assert_eq!(tag(&back), None);
    assert_eq!((dst_mac(&back), src_mac(&back)), (GW_MAC, MAC_DIRECTOR));
    assert!(verify(&back));
    assert_eq!((addr4(&back, 14 + 12), parse(&back).unwrap().sport), (VIP, 80));
    // Changed: the VLAN-10 client to the VLAN-20 server, and back.
    let (v, out) = on(&mut w, 0, from_c10(40001, 80, SYN));
    assert_eq!((v, tag(&out), dst_mac(&out)), (Verdict::Tx { port: 1 }, Some(20), RS20_MAC));
    assert!(verify(&out));
    let (v, back) = on(&mut w, 1, reply(RS20, C10, 40001, 20));
    assert_eq!((v, tag(&back), dst_mac(&back)), (Verdict::Tx { port: 0 }, Some(10), C10_MAC), "the reply goes to the client's VLAN");
    assert!(verify(&back));
    // Removed: the VLAN-10 client to the untagged server.
    let (v, out) = on(&mut w, 0, from_c10(40002, 82, SYN));
    assert_eq!((v, tag(&out), dst_mac(&out)), (Verdict::Tx { port: 1 }, None, RS_MAC));
    assert!(verify(&out));
    let (_, back) = on(&mut w, 1, reply(RS, C10, 40002, 0));
    assert_eq!((tag(&back), dst_mac(&back)), (Some(10), C10_MAC), "added on the way back");
}

#[test]
fn every_method_tags_for_the_real_servers_vlan() {
    let mut w = worker_of(&model());
    // DR: only L2 changes, the tag with it.
    let syn = tcp4(CIP, 40000, VIP, 83, SYN, b"");
    let (v, out) = on(&mut w, 0, syn.clone());
    assert_eq!((v, tag(&out), dst_mac(&out)), (Verdict::Tx { port: 1 }, Some(20), RS20_MAC));
    assert_eq!(&out[18..], &syn[14..], "nothing above L2 changes");
    // TUN: the outer header, behind the tag; the tunnel's source is the
    // VLAN's address.
    let (v, out) = on(&mut w, 0, tcp4(CIP, 40000, VIP, 84, SYN, b""));
    assert_eq!((v, tag(&out)), (Verdict::Tx { port: 1 }, Some(20)));
    assert!(verify(&out));
    let m = parse(&out).unwrap();
    assert_eq!((m.proto, addr4(&out, 18 + 12), addr4(&out, 18 + 16)), (crate::wire::proto::IPIP, [10, 0, 20, 254], RS20));
    // TUN from the tagged client: the ingress tag is replaced.
    let (_, out) = on(&mut w, 0, from_c10(40000, 84, SYN));
    assert_eq!(tag(&out), Some(20));
    assert!(verify(&out));
    // FULLNAT, both ways.
    let (v, out) = on(&mut w, 0, from_c10(40003, 85, SYN));
    assert_eq!((v, tag(&out)), (Verdict::Tx { port: 1 }, Some(20)));
    assert!(verify(&out));
    let m = parse(&out).unwrap();
    let (v, back) = on(&mut w, 1, reply(RS20, [10, 0, 20, 200], m.sport, 20));
    assert_eq!((v, tag(&back), dst_mac(&back)), (Verdict::Tx { port: 0 }, Some(10), C10_MAC));
    assert!(verify(&back));
}

#[test]
fn a_real_server_behind_a_static_route_is_reached_through_its_gateway() {
    let mut w = worker_of(&model());
    let (v, out) = on(&mut w, 0, tcp4(CIP, 40000, VIP, 81, SYN, b""));
    assert_eq!(v, Verdict::Tx { port: 1 });
    assert_eq!((dst_mac(&out), tag(&out)), (ROUTER_MAC, None));
    assert_eq!(addr4(&out, 14 + 16), RS_ROUTED);
    let (v, back) = on(&mut w, 1, reply(RS_ROUTED, CIP, 40000, 0));
    assert_eq!((v, dst_mac(&back)), (Verdict::Tx { port: 0 }, GW_MAC));
}

#[test]
fn established_connections_follow_neighbour_and_route_changes() {
    let m1 = model();
    let s1 = Arc::new(Snapshot::build(&m1, None).unwrap());
    let mut w = Worker::new(0, 1, s1.clone(), SEC);
    on(&mut w, 0, tcp4(CIP, 40000, VIP, 80, SYN, b""));
    let (_, back) = on(&mut w, 1, reply(RS20, CIP, 40000, 20));
    assert_eq!(dst_mac(&back), GW_MAC);
    // The gateway's MAC changes (a new router answers for its address).
    let mut m2 = m1.clone();
    m2.net.neighbours[0].mac = [2, 0, 0, 0, 0, 0xee];
    let s2 = Arc::new(Snapshot::build(&m2, Some(&s1)).unwrap());
    w.set_snapshot(s2.clone());
    let (_, back) = on(&mut w, 1, reply(RS20, CIP, 40000, 20));
    assert_eq!(dst_mac(&back), [2, 0, 0, 0, 0, 0xee], "client_hop follows the neighbour");
    // The route changes: a better default through another gateway.
    let mut m3 = m2.clone();
    m3.net.routes.push(RouteConf { dst: ip("192.0.2.0"), len: 24, metric: 0, hops: vec![RouteHop { dev: "eth0".into(), via: Some(ip("10.0.0.253")) }] });
    let s3 = Arc::new(Snapshot::build(&m3, Some(&s2)).unwrap());
    w.set_snapshot(s3.clone());
    let (_, back) = on(&mut w, 1, reply(RS20, CIP, 40000, 20));
    assert_eq!(dst_mac(&back), GW2_MAC, "client_hop follows the route");
    // The real server moves off the VLAN (its address now on eth1 itself).
    let mut m4 = m3.clone();
    m4.net.subifs.retain(|s| s.vid != 20);
    m4.net.ports[1].addrs.push((ip("10.0.20.254"), 24));
    w.set_snapshot(Arc::new(Snapshot::build(&m4, Some(&s3)).unwrap()));
    let (v, out) = on(&mut w, 0, tcp4(CIP, 40000, VIP, 80, ACK, b""));
    assert_eq!((v, tag(&out), dst_mac(&out)), (Verdict::Tx { port: 1 }, None, RS20_MAC), "dest_hop follows the link");
    // No route at all any more: the last known hop stays.
    let mut m5 = m4.clone();
    m5.net.ports[0].gateways.clear();
    m5.net.routes.clear();
    let s4 = w.snapshot().clone();
    w.set_snapshot(Arc::new(Snapshot::build(&m5, Some(&s4)).unwrap()));
    let (_, back) = on(&mut w, 1, reply(RS20, CIP, 40000, 0));
    assert_eq!(dst_mac(&back), GW2_MAC);
}

#[test]
fn without_a_route_replies_go_back_to_the_previous_hop_on_its_link() {
    let mut m = model();
    m.net.ports[0].gateways.clear();
    let mut w = worker_of(&m);
    let mut syn = vlan(tcp4(CIP, 40000, VIP, 82, SYN, b""), 10);
    syn[6..12].copy_from_slice(&[2, 0, 0, 0, 10, 0x77]);
    assert_eq!(on(&mut w, 0, syn).0, Verdict::Tx { port: 1 });
    let (v, back) = on(&mut w, 1, reply(RS, CIP, 40000, 0));
    assert_eq!((v, tag(&back), dst_mac(&back)), (Verdict::Tx { port: 0 }, Some(10), [2, 0, 0, 0, 10, 0x77]));
}

#[test]
fn martian_sources_make_no_state() {
    let mut w = worker_of(&model());
    let v4: [[u8; 4]; 12] = [
        [0, 0, 0, 0],
        [0, 1, 2, 3],
        [127, 0, 0, 1],
        [127, 9, 9, 9],
        [224, 0, 0, 1],
        [239, 255, 255, 250],
        [240, 0, 0, 1],
        [255, 255, 255, 255],
        [10, 0, 0, 1],     // the director's on eth0
        [10, 0, 20, 254],  // on a VLAN
        [10, 0, 0, 100],   // the VIP
        [192, 168, 9, 1],  // on another device
    ];
    for src in v4 {
        assert_eq!(on(&mut w, 0, tcp4(src, 40000, VIP, 80, SYN, b"")).0, Verdict::Drop(DropReason::Martian), "{src:?}");
        assert_eq!(on(&mut w, 0, udp4(src, 5353, VIP, 53, b"q")).0, Verdict::Drop(DropReason::Martian), "{src:?}");
    }
    // FULLNAT's local address too.
    assert_eq!(on(&mut w, 0, tcp4([10, 0, 20, 200], 40000, VIP, 85, SYN, b"")).0, Verdict::Drop(DropReason::Martian));
    nothing_made(&w);
    assert_eq!(w.counters().drops[DropReason::Martian as usize], 25);
    // Close to them, not martians.
    for src in [[1, 0, 0, 0], [126, 255, 255, 255], [128, 0, 0, 1], [223, 255, 255, 255], [10, 0, 0, 2]] {
        assert_eq!(on(&mut w, 0, tcp4(src, 40000, VIP, 82, SYN, b"")).0, Verdict::Tx { port: 1 }, "{src:?}");
    }
}

#[test]
fn martian_ipv6_sources_make_no_state() {
    let mut m = model();
    m.services = vec![Service {
        key: ServiceKey::Addr { proto: Proto::Tcp, addr: ip("2001:db8::100"), port: 80 },
        sched: "rr".into(),
        sched_flags: SchedFlags::default(),
        persistence: None,
        dests: vec![Dest { addr: ip("2001:db8::5"), port: 0, weight: 1, fwd: FwdMethod::Dr, u_threshold: 0, l_threshold: 0, proxy: None }],
        laddrs: vec![],
        synproxy: false,
    }];
    m.net.neighbours.push(n("2001:db8::5", RS_MAC));
    let mut w = worker_of(&m);
    let vip: Ipv6Addr = "2001:db8::100".parse().unwrap();
    for src in ["::", "::1", "ff02::1", "ff0e::1", "::ffff:192.0.2.1", "2001:db8::fd", "2001:db8::100"] {
        let s: Ipv6Addr = src.parse().unwrap();
        assert_eq!(on(&mut w, 0, tcp6(s.octets(), 40000, vip.octets(), 80, SYN, b"")).0, Verdict::Drop(DropReason::Martian), "{src}");
    }
    nothing_made(&w);
    let ok: Ipv6Addr = "2001:db8:7::1".parse().unwrap();
    assert_eq!(on(&mut w, 0, tcp6(ok.octets(), 40000, vip.octets(), 80, SYN, b"")).0, Verdict::Tx { port: 0 });
}

#[test]
fn an_icmp_error_from_a_martian_source_is_not_relayed() {
    let mut w = worker_of(&model());
    let (_, out) = on(&mut w, 0, tcp4(CIP, 40000, VIP, 82, SYN, b""));
    // The real server's side says the packet was unreachable, from a
    // spoofed loopback source.
    let mut b = vec![0u8; 64 + out.len() + 64];
    b[64..64 + out.len()].copy_from_slice(&out);
    let mut fr = Frame::new(&mut b, 64, out.len());
    let m = parse(fr.data()).unwrap();
    icmp::build_error::<Ipv4Addr>(&mut fr, &m, icmp::ErrorKind::PortUnreachable).unwrap();
    let mut err = fr.data().to_vec();
    err[0..6].copy_from_slice(&D1_MAC);
    let e = parse(&err).unwrap();
    err[e.l3 as usize + 12..e.l3 as usize + 16].copy_from_slice(&[127, 0, 0, 1]);
    refresh_ipv4_checksum(&mut err, e.l3 as usize);
    assert_eq!(on(&mut w, 1, err).0, Verdict::Drop(DropReason::Martian));
    assert_eq!(w.counters().icmp_relayed, 0);
}

#[test]
fn a_syn_with_fin_or_rst_is_dropped_new_or_established() {
    let mut w = worker_of(&model());
    for flags in [SYN | FIN, SYN | RST, SYN | FIN | RST, SYN | FIN | ACK, SYN | FIN | PSH] {
        assert_eq!(on(&mut w, 0, tcp4(CIP, 40000, VIP, 82, flags, b"")).0, Verdict::Drop(DropReason::BadSyn), "{flags:#x}");
    }
    nothing_made(&w);
    on(&mut w, 0, tcp4(CIP, 40000, VIP, 82, SYN, b""));
    on(&mut w, 1, reply(RS, CIP, 40000, 0));
    assert_eq!(on(&mut w, 0, tcp4(CIP, 40000, VIP, 82, SYN | FIN, b"")).0, Verdict::Drop(DropReason::BadSyn));
    // The connection is untouched: still in SYN_RECV's successor, forwarding.
    assert_eq!(w.conns(), 1);
    assert_eq!(on(&mut w, 0, tcp4(CIP, 40000, VIP, 82, ACK, b"")).0, Verdict::Tx { port: 1 });
    assert_eq!(w.counters().drops[DropReason::BadSyn as usize], 6);
}

#[test]
fn port_zero_makes_no_connection() {
    let mut w = worker_of(&model());
    assert_eq!(on(&mut w, 0, tcp4(CIP, 0, VIP, 82, SYN, b"")).0, Verdict::Drop(DropReason::ZeroPort));
    assert_eq!(on(&mut w, 0, udp4(CIP, 0, VIP, 53, b"q")).0, Verdict::Drop(DropReason::ZeroPort));
    // To port 0 of a VIP whose port-0 service takes every port.
    assert_eq!(on(&mut w, 0, tcp4(CIP, 40000, [10, 0, 0, 101], 0, SYN, b"")).0, Verdict::Drop(DropReason::ZeroPort));
    nothing_made(&w);
    assert_eq!(on(&mut w, 0, tcp4(CIP, 40000, [10, 0, 0, 101], 1, SYN, b"")).0, Verdict::Tx { port: 1 });
}

fn with_ttl(mut f: Vec<u8>, ttl: u8) -> Vec<u8> {
    f[22] = ttl;
    refresh_ipv4_checksum(&mut f, 14);
    f
}

#[test]
fn a_packet_nat_would_drop_for_its_ttl_makes_no_connection_or_template() {
    let mut m = model();
    m.services[2].persistence = Some(Persistence { timeout: 300, netmask: 32 });
    let mut w = worker_of(&m);
    for ttl in [0, 1] {
        assert_eq!(on(&mut w, 0, with_ttl(tcp4(CIP, 40000, VIP, 82, SYN, b""), ttl)).0, Verdict::Drop(DropReason::TtlExceeded));
        assert_eq!(on(&mut w, 0, with_ttl(tcp4(CIP, 40000, VIP, 80, SYN, b""), ttl)).0, Verdict::Drop(DropReason::TtlExceeded));
    }
    let mut h1 = tcp6([0x20, 1, 0xd, 0xb8, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 40000, [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0], 80, SYN, b"");
    h1[14 + 7] = 1;
    m.services.push(Service {
        key: ServiceKey::Addr { proto: Proto::Tcp, addr: ip("2001:db8::100"), port: 80 },
        dests: vec![Dest { addr: ip("2001:db8::5"), port: 8080, weight: 1, fwd: FwdMethod::Nat, u_threshold: 0, l_threshold: 0, proxy: None }],
        ..svc(80, "10.0.20.5", 8080, FwdMethod::Nat)
    });
    m.net.neighbours.push(n("2001:db8::5", RS_MAC));
    let mut w6 = worker_of(&m);
    assert_eq!(on(&mut w6, 0, h1).0, Verdict::Drop(DropReason::TtlExceeded), "hop limit 1");
    nothing_made(&w);
    nothing_made(&w6);
    // TTL 2 goes out with 1; DR keeps the TTL, so TTL 1 passes through.
    let (v, out) = on(&mut w, 0, with_ttl(tcp4(CIP, 40000, VIP, 82, SYN, b""), 2));
    assert_eq!((v, parse(&out).unwrap().ttl), (Verdict::Tx { port: 1 }, 1));
    let (v, out) = on(&mut w, 0, with_ttl(tcp4(CIP, 40001, VIP, 83, SYN, b""), 1));
    assert_eq!((v, parse(&out).unwrap().ttl), (Verdict::Tx { port: 1 }, 1));
}

#[test]
fn an_icmp_error_for_a_client_on_a_vlan_goes_back_on_that_vlan_from_our_mac_there() {
    let mut m = model();
    m.net.subifs[0].mac = [2, 0, 0, 0, 10, 0x10];
    let mut w = worker_of(&m);
    // No real server available: port unreachable, to the sender.
    m.services[0].dests[0].weight = 0;
    let mut w0 = worker_of(&m);
    let mut syn = from_c10(40000, 80, SYN);
    syn[0..6].copy_from_slice(&[2, 0, 0, 0, 10, 0x10]);
    let (v, err) = on(&mut w0, 0, syn.clone());
    assert_eq!(v, Verdict::Tx { port: 0 });
    assert_eq!((tag(&err), dst_mac(&err), src_mac(&err)), (Some(10), C10_MAC, [2, 0, 0, 0, 10, 0x10]));
    assert!(verify(&err));
    // The same frame where a server is available goes out as usual.
    assert_eq!(on(&mut w, 0, syn).0, Verdict::Tx { port: 1 });
}
