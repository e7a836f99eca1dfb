//! Worker tests: every forwarding method in both directions, checked field
//! by field and by a from-scratch checksum verification; state, load,
//! expiry, snapshot changes, ownership and bad input.

use super::*;
use crate::ctl::model::{Model, Neighbour, NetConf, PortConf};
use crate::gen::packet::*;
use crate::io::mem::Batch;
use crate::ipvs::dest::Dest;
use crate::ipvs::sched::SchedFlags;
use crate::ipvs::service::{Persistence, Service, ServiceKey};
use crate::ipvs::Proto;
use crate::wire::tcp_flags::*;
use crate::wire::{be16, dst_mac};

pub(super) const RS1_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
pub(super) const RS2_MAC: [u8; 6] = [2, 0, 0, 0, 1, 2];
pub(super) const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
pub(super) const VIP: [u8; 4] = [10, 0, 0, 100];
pub(super) const LIP: [u8; 4] = [10, 0, 0, 200];
pub(super) const CIP: [u8; 4] = [192, 0, 2, 1];
pub(super) const RS1: [u8; 4] = [10, 0, 1, 1];
pub(super) const RS2: [u8; 4] = [10, 0, 1, 2];
pub(super) const SEC: u64 = 1_000_000_000;

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(super) fn net() -> NetConf {
    NetConf {
        ports: vec![PortConf {
            name: "eth0".into(),
            mac: MAC_DIRECTOR,
            mtu: 1500,
            addrs: vec![(ip("10.0.0.1"), 24), (ip("10.0.1.254"), 24), (ip("2001:db8::fd"), 64), (ip("2001:db8:1::fd"), 64)],
            gateways: vec![ip("10.0.0.254"), ip("2001:db8::fe")],
        }],
        neighbours: vec![
            Neighbour { dev: None, addr: ip("10.0.1.1"), mac: RS1_MAC },
            Neighbour { dev: None, addr: ip("10.0.1.2"), mac: RS2_MAC },
            Neighbour { dev: None, addr: ip("10.0.0.254"), mac: GW_MAC },
            Neighbour { dev: None, addr: ip("2001:db8:1::1"), mac: RS1_MAC },
            Neighbour { dev: None, addr: ip("2001:db8::fe"), mac: GW_MAC },
        ],
        ..NetConf::default()
    }
}

/// TCP and UDP services on VIP:80 (port 53 for UDP), two real servers with
/// weights 1 and 2, the given method and scheduler.
pub(super) fn model(fwd: FwdMethod, sched: &str) -> Model {
    let rport = if matches!(fwd, FwdMethod::Nat | FwdMethod::FullNat) { 8080 } else { 0 };
    let svc = |proto, port| Service {
        key: ServiceKey::Addr { proto, addr: ip("10.0.0.100"), port },
        sched: sched.into(),
        sched_flags: SchedFlags::default(),
        persistence: None,
        dests: vec![
            Dest { addr: ip("10.0.1.1"), port: rport, weight: 1, fwd, u_threshold: 0, l_threshold: 0, proxy: None },
            Dest { addr: ip("10.0.1.2"), port: rport, weight: 2, fwd, u_threshold: 0, l_threshold: 0, proxy: None },
        ],
        laddrs: if fwd == FwdMethod::FullNat { vec![ip("10.0.0.200")] } else { vec![] },
        synproxy: false,
    };
    Model { services: vec![svc(Proto::Tcp, 80), svc(Proto::Udp, 53)], net: net(), ..Model::default() }
}

pub(super) fn worker(m: &Model) -> Worker {
    Worker::new(0, 1, Arc::new(Snapshot::build(m, None).unwrap()), SEC)
}

/// Runs frames through `w` at `now` (ns), returning verdicts and bytes.
pub(super) fn run(w: &mut Worker, now: u64, frames: &[Vec<u8>]) -> Vec<(Verdict, Vec<u8>)> {
    let mut out = Vec::new();
    let mut b = Batch::new();
    for f in frames {
        if b.is_full() {
            b.process(w, now, |v, d| out.push((v, d.to_vec())));
        }
        b.push(f, 0).unwrap();
    }
    b.process(w, now, |v, d| out.push((v, d.to_vec())));
    out
}

pub(super) fn one(w: &mut Worker, now: u64, f: Vec<u8>) -> (Verdict, Vec<u8>) {
    run(w, now, &[f]).pop().unwrap()
}

pub(super) const TX: Verdict = Verdict::Tx { port: 0 };

pub(super) fn addr4(f: &[u8], off: usize) -> [u8; 4] {
    [f[off], f[off + 1], f[off + 2], f[off + 3]]
}

#[test]
fn dr_rewrites_macs_only_and_follows_wrr() {
    let mut w = worker(&model(FwdMethod::Dr, "wrr"));
    let syn = tcp4(CIP, 40000, VIP, 80, SYN, b"");
    let (v, out) = one(&mut w, SEC, syn.clone());
    assert_eq!(v, TX);
    assert_eq!(dst_mac(&out), RS2_MAC, "wrr 1:2 picks the weight-2 server first");
    assert_eq!(src_mac(&out), MAC_DIRECTOR);
    assert_eq!(&out[12..], &syn[12..], "nothing above L2 changes");
    // the rest of the flow sticks to it
    let (v, out) = one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, ACK, b"GET /"));
    assert_eq!((v, dst_mac(&out)), (TX, RS2_MAC));
    // the next connection goes to rs1 (wrr: rs2, rs1, rs2, rs2, rs1, rs2)
    let (_, out) = one(&mut w, SEC, tcp4(CIP, 40001, VIP, 80, SYN, b""));
    assert_eq!(dst_mac(&out), RS1_MAC);
    assert_eq!(w.counters().new_conns, 2);
    assert_eq!(w.counters().fwd[FwdMethod::Dr.idx()][0], 3);
    assert_eq!(w.conns(), 2);
}

#[test]
fn nat_both_directions() {
    let mut w = worker(&model(FwdMethod::Nat, "rr"));
    let (v, out) = one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, SYN, b""));
    assert_eq!(v, TX);
    assert!(verify(&out));
    let m = parse(&out).unwrap();
    assert_eq!(addr4(&out, 14 + 16), RS1, "rr starts with the first server");
    assert_eq!(m.dport, 8080);
    assert_eq!((addr4(&out, 14 + 12), m.sport), (CIP, 40000), "the client address is kept");
    assert_eq!(m.ttl, 63);
    assert_eq!(dst_mac(&out), RS1_MAC);
    // the real server answers the client
    let (v, out) = one(&mut w, SEC, tcp4(RS1, 8080, CIP, 40000, SYN | ACK, b""));
    assert_eq!(v, TX);
    assert!(verify(&out));
    let m = parse(&out).unwrap();
    assert_eq!((addr4(&out, 14 + 12), m.sport), (VIP, 80));
    assert_eq!((addr4(&out, 14 + 16), m.dport), (CIP, 40000));
    assert_eq!(dst_mac(&out), GW_MAC, "the client is behind the gateway");
    assert_eq!(w.counters().fwd[FwdMethod::Nat.idx()], [1, 1]);
    let s = w.dest_stats()[0];
    assert_eq!((s.conns, s.inpkts, s.outpkts), (1, 1, 1));
}

#[test]
fn fullnat_both_directions_and_port_release() {
    let mut w = worker(&model(FwdMethod::FullNat, "rr"));
    let (v, out) = one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, SYN, b"hi"));
    assert_eq!(v, TX);
    assert!(verify(&out));
    let m = parse(&out).unwrap();
    assert_eq!(addr4(&out, 14 + 12), LIP, "source is the local address");
    let lport = m.sport;
    assert!(lport >= crate::ipvs::laddr::PORT_MIN);
    assert_eq!((addr4(&out, 14 + 16), m.dport), (RS1, 8080));
    let (v, back) = one(&mut w, SEC, tcp4(RS1, 8080, LIP, lport, SYN | ACK, b""));
    assert_eq!(v, TX);
    assert!(verify(&back));
    let m = parse(&back).unwrap();
    assert_eq!((addr4(&back, 14 + 12), m.sport, addr4(&back, 14 + 16), m.dport), (VIP, 80, CIP, 40000));
    // a reply to a local port nobody holds is a counted drop
    let (v, _) = one(&mut w, SEC, tcp4(RS1, 8080, LIP, lport.wrapping_add(1), ACK, b""));
    assert_eq!(v, Verdict::Drop(DropReason::NoConn));
    // after the SYN_RECV timeout the connection and its port are gone
    let (v, _) = one(&mut w, 200 * SEC, tcp4(CIP, 1, [10, 0, 0, 9], 1, ACK, b""));
    assert_eq!(v, Verdict::Pass(PassReason::NotService));
    assert_eq!(w.conns(), 0);
    assert_eq!(w.lports.in_use(ip("10.0.0.200")), 0);
}

#[test]
fn tun_encapsulates_and_answers_too_big() {
    let mut w = worker(&model(FwdMethod::Tun, "rr"));
    let syn = tcp4(CIP, 40000, VIP, 80, SYN, b"");
    let (v, out) = one(&mut w, SEC, syn.clone());
    assert_eq!(v, TX);
    assert!(verify(&out), "outer and inner checksums");
    assert_eq!(out.len(), syn.len() + 20);
    assert_eq!(dst_mac(&out), RS1_MAC);
    let outer = parse(&out).unwrap();
    assert_eq!(outer.proto, crate::wire::proto::IPIP);
    assert_eq!(addr4(&out, 14 + 16), RS1);
    assert_eq!(addr4(&out, 14 + 12), [10, 0, 0, 1], "tunnel source is the port's address");
    assert_eq!(&out[34..], &syn[14..], "inner packet untouched");
    // 1481 bytes of IP with DF do not fit in 1500 after 20 more
    let fits = tcp4(CIP, 40000, VIP, 80, ACK, &[0u8; 1440]);
    assert_eq!(one(&mut w, SEC, fits).0, TX, "1480 + 20 fits exactly");
    let big = tcp4(CIP, 40000, VIP, 80, ACK, &[0u8; 1441]);
    assert_eq!(big.len() - 14, 1481);
    let (v, err) = one(&mut w, SEC, big);
    assert_eq!(v, TX, "an ICMP error goes back");
    assert!(verify(&err));
    let e = parse(&err).unwrap();
    assert_eq!((e.icmp_type, e.icmp_code), (3, 4));
    assert_eq!(be16(&err, e.l4 as usize + 6), 1480, "next-hop MTU = 1500 - 20");
    assert_eq!(addr4(&err, 14 + 16), CIP);
    assert_eq!(dst_mac(&err), MAC_CLIENT);
    assert_eq!(w.counters().drops[DropReason::TooBig as usize], 1);
    assert_eq!(w.counters().icmp_sent, 1);
    // without DF the outer datagram is fragmented (as IPVS leaves to
    // ip_fragment): two frames, the first as long as the MTU allows
    let mut big = tcp4(CIP, 40000, VIP, 80, ACK, &[5u8; 1441]);
    big[20] &= !0x40;
    refresh_ipv4_checksum(&mut big, 14);
    let before = w.counters().clone();
    let out = run(&mut w, SEC, std::slice::from_ref(&big));
    assert_eq!(out.len(), 2, "the frame and one more fragment");
    assert!(out.iter().all(|(v, _)| *v == TX));
    assert_eq!((out[0].1.len(), out[1].1.len()), (14 + 1500, 14 + 20 + 1));
    let frags: Vec<Vec<u8>> = out.iter().map(|(_, f)| f.clone()).collect();
    let whole = reassemble(&frags).expect("the fragments make the datagram");
    assert!(verify(&whole), "outer and inner checksums of the reassembled datagram");
    assert_eq!(&whole[34..], &big[14..], "inner packet untouched");
    assert_eq!(dst_mac(&out[1].1), RS1_MAC, "the second goes to the real server too");
    let id = be16(&out[0].1, 18);
    assert!(out.iter().all(|(_, f)| be16(f, 18) == id && id != 0), "one id, not 0");
    let c = w.counters();
    assert_eq!(c.frags_made - before.frags_made, 1);
    assert_eq!(c.tx_packets - before.tx_packets, 2);
    assert_eq!(c.drops[DropReason::TooBig as usize], 1, "no new too_big drop");
    assert!(c.balance().holds(), "{}", c.balance());
}

/// An ICMP error of `kind` about the frame `f` we sent, as a router at
/// `router` behind `mac` sends it back to us.
fn error_from<A: Ip>(router: A, mac: [u8; 6], f: &[u8], kind: ErrorKind) -> Vec<u8> {
    let mut b = vec![0u8; 64 + f.len()];
    b[64..].copy_from_slice(f);
    let mut fr = Frame::new(&mut b, 64, f.len());
    let m = parse(fr.data()).unwrap();
    icmp::build_error::<A>(&mut fr, &m, kind).unwrap();
    let mut e = fr.data().to_vec();
    let em = parse(&e).unwrap();
    crate::wire::ip::set_src(&mut e, &em, router);
    // (ICMPv6's checksum covers the addresses; ICMPv4's is unchanged.)
    icmp::refresh_checksum(&mut e, &em);
    e[0..6].copy_from_slice(&MAC_DIRECTOR);
    e[6..12].copy_from_slice(&mac);
    e
}

/// An ICMP error of `kind` about the frame `f` we sent, as the router at
/// 10.0.1.253 (behind RS2's MAC) sends it back to us.
fn error_about(f: &[u8], kind: ErrorKind) -> Vec<u8> {
    error_from(Ipv4Addr::new(10, 0, 1, 253), RS2_MAC, f, kind)
}

/// An ICMP error quoting one of our IPIP packets: a router in the tunnel's
/// path with a smaller MTU. The client gets fragmentation needed about its
/// own packet with that MTU less the tunnel header (ip_vs_in_icmp); other
/// errors reach it with their type and code; one about a packet without
/// DF, or about a tunnel we do not know, is the kernel's.
#[test]
fn errors_quoting_our_tunnel_become_the_clients() {
    let mut w = worker(&model(FwdMethod::Tun, "rr"));
    let pkt = tcp4(CIP, 40000, VIP, 80, SYN, &[3u8; 1200]);
    let (_, tunnelled) = one(&mut w, SEC, pkt.clone());
    assert_eq!(addr4(&tunnelled, 14 + 12), [10, 0, 0, 1], "our tunnel source");
    // A router at 10.0.1.253 answers the tunnelled packet.
    let err = error_about(&tunnelled, ErrorKind::TooBig { mtu: 1400 });
    let (v, out) = one(&mut w, SEC, err);
    assert_eq!(v, TX);
    assert!(verify(&out));
    let e = parse(&out).unwrap();
    assert_eq!((e.icmp_type, e.icmp_code), (3, 4));
    assert_eq!(be16(&out, e.l4 as usize + 6), 1380, "the tunnel path's 1400 less 20");
    assert_eq!((addr4(&out, 14 + 12), addr4(&out, 14 + 16)), (VIP, CIP), "from the VIP to the client");
    let q = icmp::quoted(&out, &e).unwrap();
    assert_eq!(q.addrs::<Ipv4Addr>(&out), (Ipv4Addr::from(CIP), Ipv4Addr::from(VIP)), "quotes the client's packet");
    assert_eq!((q.sport, q.dport), (40000, 80));
    assert_eq!(&out[e.l4 as usize + 8..e.l4 as usize + 28], &pkt[14..34], "its header as the client sent it");
    assert_eq!(dst_mac(&out), GW_MAC, "towards the client's next hop");
    assert_eq!(w.counters().icmp_relayed, 1);
    // An MTU above the egress link's: the link's, less 20.
    let (v, out) = one(&mut w, SEC, error_about(&tunnelled, ErrorKind::TooBig { mtu: 9000 }));
    assert_eq!(v, TX);
    assert_eq!(be16(&out, parse(&out).unwrap().l4 as usize + 6), 1480);
    // Host unreachable (type 3 code 1) keeps its type and code.
    let (v, out) = one(&mut w, SEC, error_about(&tunnelled, ErrorKind::V4 { t: 3, code: 1, rest: 0 }));
    assert_eq!(v, TX);
    let e = parse(&out).unwrap();
    assert_eq!((e.icmp_type, e.icmp_code, addr4(&out, 14 + 16)), (3, 1, CIP));
    // The client's packet without DF: no PMTU discovery to serve.
    let mut nodf = tcp4(CIP, 40001, VIP, 80, SYN, &[3u8; 100]);
    nodf[20] &= !0x40;
    refresh_ipv4_checksum(&mut nodf, 14);
    let (_, t2) = one(&mut w, SEC, nodf);
    assert_eq!(one(&mut w, SEC, error_about(&t2, ErrorKind::TooBig { mtu: 1400 })).0, Verdict::Pass(PassReason::Icmp));
    // A tunnel to another real server than the connection's is not ours.
    let mut other = tunnelled.clone();
    other[30..34].copy_from_slice(&[10, 0, 1, 9]);
    refresh_ipv4_checksum(&mut other, 14);
    assert_eq!(one(&mut w, SEC, error_about(&other, ErrorKind::TooBig { mtu: 1400 })).0, Verdict::Pass(PassReason::Icmp));
    // A quote cut short inside the inner header is bad.
    let mut short = error_about(&tunnelled, ErrorKind::TooBig { mtu: 1400 });
    let keep = 14 + 20 + 8 + 20 + 10;
    short.truncate(keep);
    short[16..18].copy_from_slice(&((keep - 14) as u16).to_be_bytes());
    refresh_ipv4_checksum(&mut short, 14);
    let sm = parse(&short).unwrap();
    icmp::refresh_checksum(&mut short, &sm);
    assert_eq!(one(&mut w, SEC, short).0, Verdict::Drop(DropReason::BadIcmp));
    assert!(w.counters().balance().holds(), "{}", w.counters().balance());
}

/// The IPv6 counterpart: an ICMPv6 Packet Too Big about one of our IPv6-in-IPv6
/// packets becomes a Packet Too Big to the client about its own packet,
/// with the path's MTU less 40 and never below 1280; other errors about
/// our tunnel, and errors about tunnels that are not the connection's,
/// are the kernel's.
#[test]
fn ipv6_packet_too_big_quoting_our_tunnel_becomes_the_clients() {
    let mut w = worker(&model6(FwdMethod::Tun));
    let a6 = |s: &str| s.parse::<Ipv6Addr>().unwrap().octets();
    let (cip, vip) = (a6("2001:db8:5::7"), a6("2001:db8::100"));
    let pkt = tcp6(cip, 40000, vip, 80, SYN, &[3u8; 1200]);
    let (v, tunnelled) = one(&mut w, SEC, pkt.clone());
    assert_eq!(v, TX);
    assert_eq!((tunnelled[20], &tunnelled[22..38]), (proto::IPV6, &a6("2001:db8::fd")[..]), "IPv6 in IPv6 from our address");
    // A router at 2001:db8:1::253 answers the tunnelled packet.
    let error_about = |tunnelled: &[u8], kind| error_from(Ipv6Addr::from(a6("2001:db8:1::253")), RS1_MAC, tunnelled, kind);
    let mtu_of = |out: &[u8]| {
        let l4 = parse(out).unwrap().l4 as usize;
        u32::from_be_bytes([out[l4 + 4], out[l4 + 5], out[l4 + 6], out[l4 + 7]])
    };
    let (v, out) = one(&mut w, SEC, error_about(&tunnelled, ErrorKind::TooBig { mtu: 1400 }));
    assert_eq!(v, TX);
    assert!(verify(&out));
    let e = parse(&out).unwrap();
    assert_eq!((e.proto, e.icmp_type, e.icmp_code), (proto::ICMPV6, 2, 0));
    assert_eq!(mtu_of(&out), 1360, "the tunnel path's 1400 less 40");
    assert_eq!((&out[22..38], &out[38..54]), (&vip[..], &cip[..]), "from the VIP to the client");
    let q = icmp::quoted(&out, &e).unwrap();
    assert_eq!(q.addrs::<Ipv6Addr>(&out), (Ipv6Addr::from(cip), Ipv6Addr::from(vip)), "quotes the client's packet");
    assert_eq!((q.sport, q.dport), (40000, 80));
    assert_eq!(&out[e.l4 as usize + 8..e.l4 as usize + 48], &pkt[14..54], "its header as the client sent it");
    assert_eq!(dst_mac(&out), GW_MAC, "towards the client's next hop");
    assert_eq!(w.counters().icmp_relayed, 1);
    // An MTU above the egress link's: the link's, less 40; a path of 1300
    // would ask for 1260: IPv6's minimum, 1280, instead.
    for (said, want) in [(9000, 1460), (1300, 1280), (0, 1460)] {
        let (v, out) = one(&mut w, SEC, error_about(&tunnelled, ErrorKind::TooBig { mtu: said }));
        assert_eq!((v, mtu_of(&out)), (TX, want), "said {said}");
        assert!(verify(&out));
    }
    assert_eq!(w.counters().icmp_relayed, 4);
    // Destination unreachable about our tunnel: the kernel's.
    assert_eq!(one(&mut w, SEC, error_about(&tunnelled, ErrorKind::PortUnreachable)).0, Verdict::Pass(PassReason::Icmp));
    // A tunnel to another real server than the connection's is not ours.
    let mut other = tunnelled.clone();
    other[38..54].copy_from_slice(&a6("2001:db8:1::9"));
    assert_eq!(one(&mut w, SEC, error_about(&other, ErrorKind::TooBig { mtu: 1400 })).0, Verdict::Pass(PassReason::Icmp));
    // Nor one from another source than ours.
    let mut spoofed = tunnelled.clone();
    spoofed[22..38].copy_from_slice(&a6("2001:db8:1::77"));
    assert_eq!(one(&mut w, SEC, error_about(&spoofed, ErrorKind::TooBig { mtu: 1400 })).0, Verdict::Pass(PassReason::Icmp));
    // A quote cut short inside the inner header is bad.
    let mut short = error_about(&tunnelled, ErrorKind::TooBig { mtu: 1400 });
    let keep = 14 + 40 + 8 + 40 + 30;
    short.truncate(keep);
    short[18..20].copy_from_slice(&((keep - 54) as u16).to_be_bytes());
    let sm = parse(&short).unwrap();
    icmp::refresh_checksum(&mut short, &sm);
    assert_eq!(one(&mut w, SEC, short).0, Verdict::Drop(DropReason::BadIcmp));
    assert_eq!(w.counters().icmp_relayed, 4);
    assert!(w.counters().balance().holds(), "{}", w.counters().balance());
}

#[test]
fn udp_nat_and_inactive_accounting() {
    let mut w = worker(&model(FwdMethod::Nat, "rr"));
    let (v, out) = one(&mut w, SEC, udp4(CIP, 5353, VIP, 53, b"q"));
    assert_eq!(v, TX);
    assert!(verify(&out));
    let (v, back) = one(&mut w, SEC, udp4(RS1, 8080, CIP, 5353, b"a"));
    assert_eq!(v, TX);
    assert!(verify(&back));
    assert_eq!(parse(&back).unwrap().sport, 53);
    // UDP services are dests 2 and 3 of the snapshot
    assert_eq!(w.loads()[2], DestLoad { active: 0, inactive: 1, persist: 0, overloaded: false });
    // UDP timeout 300 s
    one(&mut w, 299 * SEC, tcp4(CIP, 1, [10, 0, 0, 9], 1, ACK, b""));
    assert_eq!(w.conns(), 1);
    one(&mut w, 302 * SEC, tcp4(CIP, 1, [10, 0, 0, 9], 1, ACK, b""));
    assert_eq!(w.conns(), 0);
    assert_eq!(w.loads()[2].inactive, 0);
}

#[test]
fn tcp_state_drives_active_inactive_and_timeouts() {
    let mut w = worker(&model(FwdMethod::Nat, "rr"));
    one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, SYN, b""));
    assert_eq!((w.loads()[0].active, w.loads()[0].inactive), (0, 1), "SYN_RECV is inactive");
    one(&mut w, SEC, tcp4(RS1, 8080, CIP, 40000, SYN | ACK, b""));
    one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, ACK, b""));
    assert_eq!((w.loads()[0].active, w.loads()[0].inactive), (1, 0), "ESTABLISHED is active");
    // established lives 900 s
    one(&mut w, 800 * SEC, tcp4(CIP, 1, [10, 0, 0, 9], 1, ACK, b""));
    assert_eq!(w.conns(), 1);
    one(&mut w, 800 * SEC, tcp4(CIP, 40000, VIP, 80, FIN | ACK, b""));
    assert_eq!((w.loads()[0].active, w.loads()[0].inactive), (0, 1));
    one(&mut w, 800 * SEC, tcp4(RS1, 8080, CIP, 40000, FIN | ACK, b""));
    // TIME_WAIT 120 s
    one(&mut w, 915 * SEC, tcp4(CIP, 1, [10, 0, 0, 9], 1, ACK, b""));
    assert_eq!(w.conns(), 1);
    one(&mut w, 925 * SEC, tcp4(CIP, 1, [10, 0, 0, 9], 1, ACK, b""));
    assert_eq!(w.conns(), 0);
    assert_eq!(w.loads()[0], DestLoad::default());
    assert_eq!(w.counters().expired_conns, 1);
}

/// A connection made by its first packet (`new_conn`'s lean path, which
/// makes it in its next state instead of passing it through `forward`'s
/// state machine) is where the state machine would have put it: the
/// state IPVS's table gives from NONE, the client packet counted, the
/// expiry of that state, and its dest's load (this worker's and the
/// shared one) active or inactive as that state says. Every forwarding
/// method, a SYN, sloppy_tcp's mid-flow ACK and FIN, and UDP.
#[test]
fn a_first_packet_makes_its_connection_in_the_state_the_state_machine_gives() {
    for fwd in [FwdMethod::Dr, FwdMethod::Tun, FwdMethod::Nat, FwdMethod::FullNat] {
        for (what, flags) in [("SYN", SYN), ("ACK", ACK), ("FIN", FIN | ACK), ("UDP", 0)] {
            let mut m = model(fwd, "rr");
            m.sloppy_tcp = true;
            let snap = Arc::new(Snapshot::build(&m, None).unwrap());
            let mut w = Worker::new(0, 1, snap.clone(), SEC);
            let now = 3 * SEC;
            let f = if what == "UDP" { udp4(CIP, 5353, VIP, 53, b"q") } else { tcp4(CIP, 40000, VIP, 80, flags, b"") };
            assert_eq!(one(&mut w, now, f).0, TX, "{fwd:?} {what}");
            let mut made = Vec::new();
            w.for_each_conn(|c| made.push(*c), |_| ());
            let [c] = made[..] else { panic!("{fwd:?} {what}: {} connections", made.len()) };
            let (proto, state) = if what == "UDP" {
                (proto::UDP, TcpState::None)
            } else {
                let dir = if fwd.sees_replies() { TcpDir::Input } else { TcpDir::InputOnly };
                (proto::TCP, tcp_next(TcpState::None, dir, flags))
            };
            assert_eq!(c.state, state as u8, "{fwd:?} {what}: state");
            assert_eq!(c.in_pkts & seqadj::IN_PKTS, 1, "{fwd:?} {what}: the client's packet counted");
            assert_eq!(c.expires, timer::ticks(now).wrapping_add(Worker::timeout(&w.ticks, proto, state as u8)), "{fwd:?} {what}: expiry");
            let inactive = proto == proto::UDP || state != TcpState::Established;
            assert_eq!(c.flags & flags::INACTIVE != 0, inactive, "{fwd:?} {what}: flag");
            let di = c.dest as usize;
            let want = if inactive { (0, 1) } else { (1, 0) };
            assert_eq!((w.loads()[di].active, w.loads()[di].inactive), want, "{fwd:?} {what}: this worker's load");
            let shared = snap.dests[di].shared.get();
            assert_eq!((shared.active, shared.inactive), want, "{fwd:?} {what}: the shared load");
        }
    }
}

#[test]
fn changed_timeouts_apply_from_the_next_packet() {
    // The worker keeps the timeouts in ticks: a snapshot switch converts them.
    let m1 = model(FwdMethod::Nat, "rr");
    let s1 = Arc::new(Snapshot::build(&m1, None).unwrap());
    let mut w = Worker::new(0, 1, s1.clone(), SEC);
    one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, SYN, b""));
    one(&mut w, SEC, tcp4(RS1, 8080, CIP, 40000, SYN | ACK, b""));
    one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, ACK, b"")); // ESTABLISHED: 900 s
    let mut m2 = m1.clone();
    m2.timeouts.tcp[TcpState::Established as usize] = 2000;
    w.set_snapshot(Arc::new(Snapshot::build(&m2, Some(&s1)).unwrap()));
    one(&mut w, 2 * SEC, tcp4(CIP, 40000, VIP, 80, ACK, b"")); // now until 2002 s
    one(&mut w, 1500 * SEC, tcp4(CIP, 1, [10, 0, 0, 9], 1, ACK, b""));
    assert_eq!(w.conns(), 1, "the new, longer timeout");
    one(&mut w, 2010 * SEC, tcp4(CIP, 1, [10, 0, 0, 9], 1, ACK, b""));
    assert_eq!(w.conns(), 0);
}

#[test]
fn no_dest_answers_port_unreachable() {
    let mut m = model(FwdMethod::Dr, "wrr");
    for d in &mut m.services[0].dests {
        d.weight = 0;
    }
    let mut w = worker(&m);
    let syn = tcp4(CIP, 40000, VIP, 80, SYN, b"");
    let (v, out) = one(&mut w, SEC, syn);
    assert_eq!(v, TX);
    assert!(verify(&out));
    let e = parse(&out).unwrap();
    assert_eq!((e.proto, e.icmp_type, e.icmp_code), (1, 3, 3));
    assert_eq!(addr4(&out, 14 + 12), VIP);
    assert_eq!(addr4(&out, 14 + 16), CIP);
    assert_eq!(w.counters().drops[DropReason::NoDest as usize], 1);
    assert_eq!(w.conns(), 0);
}

#[test]
fn misses_and_ttl() {
    let mut w = worker(&model(FwdMethod::Nat, "rr"));
    assert_eq!(one(&mut w, SEC, tcp4(CIP, 1, VIP, 80, ACK, b"")).0, Verdict::Drop(DropReason::NoConn));
    assert_eq!(one(&mut w, SEC, tcp4(CIP, 1, VIP, 80, SYN | RST, b"")).0, Verdict::Drop(DropReason::BadSyn));
    assert_eq!(one(&mut w, SEC, tcp4(CIP, 1, VIP, 22, SYN, b"")).0, Verdict::Pass(PassReason::NotService));
    assert_eq!(one(&mut w, SEC, icmp4_echo(CIP, VIP)).0, Verdict::Pass(PassReason::Icmp));
    let mut t1 = tcp4(CIP, 2, VIP, 80, SYN, b"");
    t1[22] = 1;
    refresh_ipv4_checksum(&mut t1, 14);
    assert_eq!(one(&mut w, SEC, t1.clone()).0, Verdict::Drop(DropReason::TtlExceeded));
    // DR does not route: TTL 1 goes through unchanged
    let mut d = worker(&model(FwdMethod::Dr, "rr"));
    let (v, out) = one(&mut d, SEC, t1.clone());
    assert_eq!(v, TX);
    assert_eq!(&out[12..], &t1[12..]);
}

#[test]
fn bad_corpus_is_counted_and_never_sent() {
    let mut w = worker(&model(FwdMethod::Nat, "rr"));
    let corpus = bad_corpus();
    let frames: Vec<Vec<u8>> = corpus.iter().map(|c| c.1.clone()).collect();
    let out = run(&mut w, SEC, &frames);
    for ((name, _, want), (v, _)) in corpus.iter().zip(out) {
        match want {
            Reject::Drop(r) => assert_eq!(v, Verdict::Drop(*r), "{name}"),
            Reject::Pass(r) => assert_eq!(v, Verdict::Pass(*r), "{name}"),
        }
    }
    assert_eq!(w.counters().tx_packets, 0);
    assert_eq!(w.counters().total_drops() + w.counters().total_passes(), corpus.len() as u64);
}

#[test]
fn icmp_errors_are_relayed_nat() {
    let mut w = worker(&model(FwdMethod::Nat, "rr"));
    let (_, fwd) = one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, ACK | SYN, &[1u8; 100]));
    // A router between us and rs1 says the forwarded packet is too big.
    let mut b = vec![0u8; 64 + fwd.len()];
    b[64..].copy_from_slice(&fwd);
    let n = fwd.len();
    let mut fr = Frame::new(&mut b, 64, n);
    let m = parse(fr.data()).unwrap();
    icmp::build_error::<Ipv4Addr>(&mut fr, &m, ErrorKind::TooBig { mtu: 1400 }).unwrap();
    let mut err = fr.data().to_vec();
    // it comes from the router 10.0.1.254, addressed to the client
    let em = parse(&err).unwrap();
    crate::wire::ip::set_src(&mut err, &em, Ipv4Addr::new(10, 0, 1, 253));
    let (v, out) = one(&mut w, SEC, err);
    assert_eq!(v, TX);
    assert!(verify(&out));
    let e = parse(&out).unwrap();
    assert_eq!(addr4(&out, 14 + 12), VIP, "outer source becomes the VIP");
    assert_eq!(addr4(&out, 14 + 16), CIP);
    let q = icmp::quoted(&out, &e).unwrap();
    assert_eq!(q.addrs::<Ipv4Addr>(&out), (Ipv4Addr::from(CIP), Ipv4Addr::from(VIP)));
    assert_eq!((q.sport, q.dport), (40000, 80));
    assert_eq!(dst_mac(&out), GW_MAC);
    assert_eq!(w.counters().icmp_relayed, 1);
    // an error about nothing we track goes to the kernel
    let mut b = vec![0u8; 64 + fwd.len()];
    let stray = tcp4([1, 1, 1, 1], 1, [2, 2, 2, 2], 2, ACK, b"");
    b[64..64 + stray.len()].copy_from_slice(&stray);
    let mut fr = Frame::new(&mut b, 64, stray.len());
    let m = parse(fr.data()).unwrap();
    icmp::build_error::<Ipv4Addr>(&mut fr, &m, ErrorKind::PortUnreachable).unwrap();
    // (an error built in place goes back to the sender's MAC; this one
    // arrives at ours)
    fr.data_mut()[0..6].copy_from_slice(&MAC_DIRECTOR);
    assert_eq!(one(&mut w, SEC, fr.data().to_vec()).0, Verdict::Pass(PassReason::Icmp));
}

#[test]
fn icmp_errors_are_relayed_fullnat_towards_the_real_server() {
    let mut w = worker(&model(FwdMethod::FullNat, "rr"));
    let (_, f1) = one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, SYN, b""));
    let lport = parse(&f1).unwrap().sport;
    let (_, reply) = one(&mut w, SEC, tcp4(RS1, 8080, LIP, lport, SYN | ACK, &[2u8; 50]));
    // the client's side says our reply (VIP:80 -> CIP:40000) was too big
    let mut b = vec![0u8; 64 + reply.len()];
    b[64..].copy_from_slice(&reply);
    let n = reply.len();
    let mut fr = Frame::new(&mut b, 64, n);
    let m = parse(fr.data()).unwrap();
    icmp::build_error::<Ipv4Addr>(&mut fr, &m, ErrorKind::TooBig { mtu: 1280 }).unwrap();
    let err = fr.data().to_vec();
    assert_eq!(addr4(&err, 14 + 16), VIP, "sent to the reply's source, the VIP");
    let (v, out) = one(&mut w, SEC, err);
    assert_eq!(v, TX);
    assert!(verify(&out));
    let e = parse(&out).unwrap();
    assert_eq!((addr4(&out, 14 + 12), addr4(&out, 14 + 16)), (LIP, RS1));
    let q = icmp::quoted(&out, &e).unwrap();
    assert_eq!(q.addrs::<Ipv4Addr>(&out), (Ipv4Addr::from(RS1), Ipv4Addr::from(LIP)));
    assert_eq!((q.sport, q.dport), (8080, lport));
    assert_eq!(dst_mac(&out), RS1_MAC);
}

/// With several workers an ICMP error goes to the worker that owns the
/// connection it is about (only that one holds it), whichever worker it
/// arrives at: an error about a NAT connection's packet (relayed) and one
/// about a tunnelled packet (turned into the client's) alike.
#[test]
fn icmp_errors_are_handed_to_the_owner_of_their_connection() {
    for fwd in [FwdMethod::Nat, FwdMethod::Tun] {
        let snap = Arc::new(Snapshot::build(&model(fwd, "rr"), None).unwrap());
        let mut ws: Vec<Worker> = (0..2).map(|i| Worker::new(i, 2, snap.clone(), SEC)).collect();
        let mut owners = [0; 2];
        for host in 1..=8u8 {
            let cip = [192, 0, 2, host];
            let syn = tcp4(cip, 40000, VIP, 80, SYN, &[3u8; 100]);
            let (owner, v, out) = at_owner(&mut ws, syn);
            assert_eq!(v, TX, "{fwd}");
            owners[owner] += 1;
            let err = error_about(&out, ErrorKind::TooBig { mtu: 1400 });
            let (v, _) = one(&mut ws[1 - owner], SEC, err.clone());
            assert_eq!(v, Verdict::Handoff { worker: owner as u16 }, "{fwd}: the other worker hands it on");
            let (v, _) = one(&mut ws[owner], SEC, err);
            assert_eq!(v, TX, "{fwd}: the owner relays it");
        }
        assert!(owners.iter().all(|&n| n > 0), "{fwd}: both workers own flows: {owners:?}");
        assert_eq!(ws.iter().map(|w| w.counters().icmp_relayed).sum::<u64>(), 8, "{fwd}");
    }
}

#[test]
fn ipv6_nat_both_directions() {
    let mut m = model(FwdMethod::Nat, "rr");
    m.services = vec![Service {
        key: ServiceKey::Addr { proto: Proto::Tcp, addr: ip("2001:db8::100"), port: 80 },
        sched: "rr".into(),
        sched_flags: SchedFlags::default(),
        persistence: None,
        dests: vec![Dest { addr: ip("2001:db8:1::1"), port: 8080, weight: 1, fwd: FwdMethod::Nat, u_threshold: 0, l_threshold: 0, proxy: None }],
        laddrs: vec![],
        synproxy: false,
    }];
    let mut w = worker(&m);
    let vip6 = ip("2001:db8::100");
    let IpAddr::V6(v6) = vip6 else { unreachable!() };
    let (v, out) = one(&mut w, SEC, tcp6(V6A, 40000, v6.octets(), 80, SYN, b"x"));
    assert_eq!(v, TX);
    assert!(verify(&out));
    let pm = parse(&out).unwrap();
    assert_eq!(Ipv6Addr::dst(&out, &pm), "2001:db8:1::1".parse::<Ipv6Addr>().unwrap());
    assert_eq!((pm.dport, pm.ttl), (8080, 63));
    let rs: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
    let (v, back) = one(&mut w, SEC, tcp6(rs.octets(), 8080, V6A, 40000, SYN | ACK, b""));
    assert_eq!(v, TX);
    assert!(verify(&back));
    let pb = parse(&back).unwrap();
    assert_eq!((Ipv6Addr::src(&back, &pb), pb.sport), (v6, 80));
}

#[test]
fn snapshot_changes_keep_connections() {
    let m1 = model(FwdMethod::Nat, "rr");
    let s1 = Arc::new(Snapshot::build(&m1, None).unwrap());
    let mut w = Worker::new(0, 1, s1.clone(), SEC);
    one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, SYN, b""));
    one(&mut w, SEC, tcp4(CIP, 40001, VIP, 80, SYN, b"")); // rs2
    // weights change and a server is added: both connections go on
    let mut m2 = m1.clone();
    m2.services[0].dests[0].weight = 5;
    m2.services[0].dests.push(Dest { addr: ip("10.0.1.3"), port: 8080, weight: 1, fwd: FwdMethod::Nat, u_threshold: 0, l_threshold: 0, proxy: None });
    m2.net.neighbours.push(Neighbour { dev: None, addr: ip("10.0.1.3"), mac: [2, 0, 0, 0, 1, 3] });
    let s2 = Arc::new(Snapshot::build(&m2, Some(&s1)).unwrap());
    w.set_snapshot(s2.clone());
    let (v, out) = one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, ACK, b""));
    assert_eq!((v, addr4(&out, 30)), (TX, RS1));
    assert_eq!(w.loads()[0].conns(), 1, "load follows the dest by uid");
    // rs2 removed: its connection's packets are dropped (expire_nodest_conn
    // off, as IPVS), the others go on
    let mut m3 = m2.clone();
    m3.services[0].dests.remove(1);
    let s3 = Arc::new(Snapshot::build(&m3, Some(&s2)).unwrap());
    w.set_snapshot(s3.clone());
    assert_eq!(one(&mut w, SEC, tcp4(CIP, 40001, VIP, 80, ACK, b"")).0, Verdict::Drop(DropReason::DestGone));
    assert_eq!(one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, ACK, b"")).0, TX);
    // ...and with expire_nodest_conn the connection ends at its next
    // packet, which finds none (a TCP segment other than SYN)
    let mut m4 = m3.clone();
    m4.expire_nodest_conn = true;
    w.set_snapshot(Arc::new(Snapshot::build(&m4, Some(&s3)).unwrap()));
    assert_eq!(one(&mut w, SEC, tcp4(CIP, 40001, VIP, 80, ACK, b"")).0, Verdict::Drop(DropReason::NoConn));
    assert_eq!(w.conns(), 1);
    assert_eq!(one(&mut w, SEC, tcp4(CIP, 40001, VIP, 80, ACK, b"")).0, Verdict::Drop(DropReason::NoConn));
    assert_eq!(one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, ACK, b"")).0, TX);
}

/// Opens, through FULLNAT worker `w`, an established TCP connection and a
/// UDP flow from client port `cport`; returns their local ports.
fn open_fullnat_pair(w: &mut Worker, cport: u16) -> (u16, u16) {
    let (v, out) = one(w, SEC, tcp4(CIP, cport, VIP, 80, SYN, b""));
    assert_eq!(v, TX);
    let tport = parse(&out).unwrap().sport;
    let rs = addr4(&out, 30);
    assert_eq!(one(w, SEC, tcp4(rs, 8080, LIP, tport, SYN | ACK, b"")).0, TX);
    assert_eq!(one(w, SEC, tcp4(CIP, cport, VIP, 80, ACK, b"")).0, TX);
    let (v, out) = one(w, SEC, udp4(CIP, cport, VIP, 53, b"q"));
    assert_eq!(v, TX);
    (tport, parse(&out).unwrap().sport)
}

#[test]
fn without_expire_nodest_conn_a_removed_servers_connections_are_dropped_until_they_expire() {
    let mut m = model(FwdMethod::FullNat, "rr");
    m.services[0].dests.remove(0); // TCP: rs2 alone
    m.services[1].dests.remove(0); // UDP: rs2 alone
    let s1 = Arc::new(Snapshot::build(&m, None).unwrap());
    let mut w = Worker::new(0, 1, s1.clone(), SEC);
    let (tport, uport) = open_fullnat_pair(&mut w, 40000);
    let lip = ip("10.0.0.200");
    assert_eq!((w.conns(), w.lports.in_use(lip)), (2, 2));
    // rs2 leaves both services (rs1 comes in its place)
    let mut m2 = model(FwdMethod::FullNat, "rr");
    m2.services[0].dests.remove(1);
    m2.services[1].dests.remove(1);
    w.set_snapshot(Arc::new(Snapshot::build(&m2, Some(&s1)).unwrap()));
    // Every client packet is dropped, for as long as the connections last
    // (their timers are not restarted by them); the real server's replies
    // still reach the client (IPVS checks only the client's direction).
    for t in [1, 100, 250] {
        assert_eq!(one(&mut w, t * SEC, tcp4(CIP, 40000, VIP, 80, ACK, b"x")).0, Verdict::Drop(DropReason::DestGone), "{t} s");
        assert_eq!(one(&mut w, t * SEC, udp4(CIP, 40000, VIP, 53, b"q")).0, Verdict::Drop(DropReason::DestGone), "{t} s");
        assert_eq!(w.conns(), 2, "{t} s");
    }
    assert_eq!(one(&mut w, 250 * SEC, tcp4(RS2, 8080, LIP, tport, ACK, b"")).0, TX);
    assert_eq!(w.counters().drops[DropReason::DestGone as usize], 6);
    // UDP (300 s) expires when its last forwarded packet says, not later
    let (v, _) = one(&mut w, 302 * SEC, tcp4(RS2, 8080, LIP, tport, ACK, b""));
    assert_eq!(v, TX);
    assert_eq!((w.conns(), w.lports.in_use(lip)), (1, 1), "the UDP flow ended at its time");
    assert_eq!(one(&mut w, 303 * SEC, udp4(RS2, 8080, LIP, uport, b"a")).0, Verdict::Drop(DropReason::NoConn));
    assert_eq!(w.loads()[0], DestLoad::default(), "rs1 has nothing of rs2's");
}

#[test]
fn with_expire_nodest_conn_a_removed_servers_connection_ends_at_once_and_the_packet_is_scheduled() {
    let mut m = model(FwdMethod::FullNat, "rr");
    m.max_conns = 2;
    m.expire_nodest_conn = true;
    m.services[0].dests.remove(0);
    m.services[1].dests.remove(0);
    let s1 = Arc::new(Snapshot::build(&m, None).unwrap());
    let mut w = Worker::new(0, 1, s1.clone(), SEC);
    let (tport, uport) = open_fullnat_pair(&mut w, 40000);
    let lip = ip("10.0.0.200");
    assert_eq!(one(&mut w, SEC, udp4(CIP, 40001, VIP, 53, b"q")).0, Verdict::Drop(DropReason::TableFull));
    let mut m2 = model(FwdMethod::FullNat, "rr");
    m2.max_conns = 2;
    m2.expire_nodest_conn = true;
    m2.services[0].dests.remove(1);
    m2.services[1].dests.remove(1);
    w.set_snapshot(Arc::new(Snapshot::build(&m2, Some(&s1)).unwrap()));
    // The UDP flow's next datagram ends it and is scheduled: to rs1, with
    // a new local port; the old one is free at once, and so is the old
    // connection's place in the (full) table.
    let (v, out) = one(&mut w, 2 * SEC, udp4(CIP, 40000, VIP, 53, b"q"));
    assert_eq!(v, TX);
    assert_eq!(addr4(&out, 30), RS1);
    assert_eq!((w.conns(), w.lports.in_use(lip)), (2, 2));
    assert_eq!(w.counters().new_conns, 3);
    assert_eq!(w.counters().expired_conns, 1);
    // The TCP connection's next segment ends it; not a SYN, it is no
    // connection's. Its port and place are free now.
    assert_eq!(one(&mut w, 2 * SEC, tcp4(CIP, 40000, VIP, 80, ACK, b"x")).0, Verdict::Drop(DropReason::NoConn));
    assert_eq!((w.conns(), w.lports.in_use(lip)), (1, 1));
    assert_eq!(one(&mut w, 2 * SEC, tcp4(RS2, 8080, LIP, tport, ACK, b"")).0, Verdict::Drop(DropReason::NoConn));
    assert_eq!(one(&mut w, 2 * SEC, udp4(RS2, 8080, LIP, uport, b"a")).0, Verdict::Drop(DropReason::NoConn));
    // A new connection takes the freed place at once.
    assert_eq!(one(&mut w, 2 * SEC, tcp4(CIP, 40002, VIP, 80, SYN, b"")).0, TX);
    assert_eq!(w.counters().drops[DropReason::DestGone as usize], 0);
    assert_eq!((w.loads()[0].conns(), w.loads()[1].conns()), (1, 1), "rs1 holds the two new connections (TCP, UDP)");
    // When the wheel comes round to the ended entries it frees their
    // slots without counting them twice.
    one(&mut w, 400 * SEC, tcp4(CIP, 40003, VIP, 80, SYN, b""));
    assert_eq!(w.counters().expired_conns, 4, "two ended early, then the UDP flow and the SYN_RECV one at their time");
    assert_eq!(w.conns(), 1);
}

/// `f` given to worker 0 first and, when it hands it off, to the worker
/// it names: that worker (the flow's owner), its verdict and output.
fn at_owner(ws: &mut [Worker], f: Vec<u8>) -> (usize, Verdict, Vec<u8>) {
    let (v, out) = one(&mut ws[0], SEC, f.clone());
    match v {
        Verdict::Handoff { worker } => {
            let (v, out) = one(&mut ws[worker as usize], SEC, f);
            (worker as usize, v, out)
        }
        _ => (0, v, out),
    }
}

#[test]
fn ownership_is_the_same_for_both_directions() {
    for fwd in [FwdMethod::Nat, FwdMethod::FullNat] {
        let snap = Arc::new(Snapshot::build(&model(fwd, "rr"), None).unwrap());
        let mut ws: Vec<Worker> = (0..3).map(|i| Worker::new(i, 3, snap.clone(), SEC)).collect();
        for host in 1..=30u8 {
            let (cip, cport) = ([192, 0, 2, host], 40000 + host as u16);
            let syn = tcp4(cip, cport, VIP, 80, SYN, b"");
            let (owner, v, out) = at_owner(&mut ws, syn);
            assert_eq!(v, TX, "{fwd}");
            let m = parse(&out).unwrap();
            let reply = if fwd == FwdMethod::Nat {
                tcp4(addr4(&out, 30), 8080, cip, cport, SYN | ACK, b"")
            } else {
                tcp4(addr4(&out, 30), m.dport, LIP, m.sport, SYN | ACK, b"")
            };
            for (i, wk) in ws.iter_mut().enumerate() {
                let (v, _) = one(wk, SEC, reply.clone());
                if i == owner {
                    assert_eq!(v, TX, "{fwd}: the owner forwards the reply");
                } else {
                    assert_eq!(v, Verdict::Handoff { worker: owner as u16 }, "{fwd}");
                }
            }
        }
        let total: u64 = ws.iter().map(|w| w.counters().new_conns).sum();
        assert_eq!(total, 30);
        assert!(ws.iter().all(|w| w.counters().new_conns > 0), "{fwd}: flows spread over every worker");
    }
}

#[test]
fn with_rss_ownership_a_flow_is_owned_where_the_nic_delivers_it() {
    use crate::ipvs::rss::{RssConfig, RssMap, DEFAULT_KEY};
    let map = RssMap::new(RssConfig { key: DEFAULT_KEY.to_vec(), indir: (0..128).map(|b| b % 4).collect() }, 4).unwrap();
    for fwd in [FwdMethod::Dr, FwdMethod::Tun, FwdMethod::FullNat, FwdMethod::Nat] {
        let mut snap = Snapshot::build(&model(fwd, "rr"), None).unwrap();
        snap.rss = Some(Arc::new(map.clone()));
        let snap = Arc::new(snap);
        let mut ws: Vec<Worker> = (0..4).map(|i| Worker::new(i, 4, snap.clone(), SEC)).collect();
        let mut queues = [0; 4];
        for host in 1..=40u8 {
            let (cip, cport) = ([192, 0, 2, host], 40000 + host as u16);
            let syn = tcp4(cip, cport, VIP, 80, SYN, b"");
            // The NIC delivers it to the queue of its address pair.
            let q = map.owner(&cip, &VIP) as usize;
            queues[q] += 1;
            let (v, out) = one(&mut ws[q], SEC, syn.clone());
            let owner = if fwd == FwdMethod::Nat {
                // A NAT VIP is client-owned: its replies name only the client.
                let h = (shard_hash(&cip) % 4) as usize;
                if h != q {
                    assert_eq!(v, Verdict::Handoff { worker: h as u16 }, "NAT: to the client's hash");
                }
                let (v, _) = one(&mut ws[h], SEC, syn.clone());
                assert_eq!(v, TX);
                h
            } else {
                assert_eq!(v, TX, "{fwd}: served where the NIC put it, no hand-off");
                q
            };
            // Whoever else sees its next packet hands it to the owner.
            let ack = tcp4(cip, cport, VIP, 80, ACK, b"");
            for (i, wk) in ws.iter_mut().enumerate() {
                let (v, _) = one(wk, SEC, ack.clone());
                assert_eq!(v, if i == owner { TX } else { Verdict::Handoff { worker: owner as u16 } }, "{fwd}");
            }
            if fwd == FwdMethod::FullNat {
                // The reply to the local port goes to the port's owner: the
                // worker the NIC gave the flow to.
                let m = parse(&out).unwrap();
                let reply = tcp4(addr4(&out, 30), m.dport, LIP, m.sport, SYN | ACK, b"");
                assert_eq!(crate::ipvs::laddr::port_owner(m.sport, 4) as usize, q);
                let (v, _) = one(&mut ws[(q + 1) % 4], SEC, reply);
                assert_eq!(v, Verdict::Handoff { worker: q as u16 });
            }
        }
        assert!(queues.iter().all(|&n| n > 0), "the pairs spread over every queue: {queues:?}");
        let handoffs: u64 = ws.iter().map(|w| w.counters().new_conns).sum();
        assert_eq!(handoffs, 40, "{fwd}: one connection a flow");
    }
}

#[test]
fn frame_too_long_is_refused_by_the_batch() {
    let mut b = Batch::new();
    assert_eq!(b.push(&vec![0u8; crate::io::mem::MAX_FRAME + 1], 0), Err(DropReason::FrameTooLong));
    assert!(b.is_empty());
}

#[test]
fn shard_hash_is_stable() {
    assert_eq!(shard_hash(&[192, 0, 2, 1]), shard_hash(&[192, 0, 2, 1]));
    assert_ne!(shard_hash(&[192, 0, 2, 1]), shard_hash(&[192, 0, 2, 2]));
    // Pinned: changing the hash would re-shard every flow of a running
    // cluster on upgrade.
    assert_eq!(shard_hash(&[192, 0, 2, 1]), 1_291_677_996);
}

pub(super) fn persistent(fwd: FwdMethod, timeout: u32, netmask: u8) -> Model {
    let mut m = model(fwd, "rr");
    m.services[0].persistence = Some(Persistence { timeout, netmask });
    m
}

/// The real server a connection went to (destination MAC).
pub(super) fn rs_of(out: &[u8]) -> [u8; 6] {
    dst_mac(out)
}

#[test]
fn persistence_keeps_a_client_on_one_server() {
    let mut w = worker(&persistent(FwdMethod::Dr, 300, 32));
    let first = rs_of(&one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, SYN, b"")).1);
    // rr alone would alternate; the template keeps the client on `first`
    for p in 40001..40010 {
        assert_eq!(rs_of(&one(&mut w, SEC, tcp4(CIP, p, VIP, 80, SYN, b"")).1), first);
    }
    // another client is scheduled by rr: the other server
    let other = rs_of(&one(&mut w, SEC, tcp4([192, 0, 2, 2], 1, VIP, 80, SYN, b"")).1);
    assert_ne!(other, first);
    assert_eq!(w.counters().templates_created, 2);
    let persist: u32 = w.loads().iter().map(|l| l.persist).sum();
    assert_eq!(persist, 2);
}

#[test]
fn persistence_ends_after_the_timeout_and_connections() {
    let mut w = worker(&persistent(FwdMethod::Dr, 100, 32));
    let first = rs_of(&one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, SYN, b"")).1);
    // The connection (SYN_RECV, 60 s) goes first; the template lives 100 s
    // from its last use.
    let idle = |w: &mut Worker, t: u64| {
        one(w, t * SEC, tcp4([198, 51, 100, 9], 1, [10, 0, 0, 9], 1, ACK, b""));
    };
    idle(&mut w, 90);
    assert_eq!(w.conns(), 1, "template only");
    assert_eq!(rs_of(&one(&mut w, 95 * SEC, tcp4(CIP, 40001, VIP, 80, SYN, b"")).1), first, "within the timeout");
    // that use re-armed it: 95 + 100; its connection expires at 155
    idle(&mut w, 190);
    assert_eq!(w.conns(), 1);
    idle(&mut w, 200);
    assert_eq!(w.conns(), 0);
    assert_eq!(w.counters().templates_expired, 1);
    assert!(w.loads().iter().all(|l| *l == DestLoad::default()));
    // afterwards the client may move: rr's next pick is the other server
    let again = rs_of(&one(&mut w, 201 * SEC, tcp4(CIP, 40002, VIP, 80, SYN, b"")).1);
    assert_ne!(again, first);
}

#[test]
fn template_outlives_its_timeout_while_connections_last() {
    let mut w = worker(&persistent(FwdMethod::Nat, 60, 32));
    let (_, out) = one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, SYN, b""));
    let rs = addr4(&out, 30);
    one(&mut w, SEC, tcp4(rs, 8080, CIP, 40000, SYN | ACK, b""));
    one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, ACK, b""));
    // established (900 s) keeps the template past its 60 s
    one(&mut w, 500 * SEC, tcp4([198, 51, 100, 9], 1, [10, 0, 0, 9], 1, ACK, b""));
    assert_eq!(w.conns(), 2);
    let (_, out) = one(&mut w, 500 * SEC, tcp4(CIP, 40001, VIP, 80, SYN, b""));
    assert_eq!(addr4(&out, 30), rs);
}

#[test]
fn port_zero_and_netmask_affinity() {
    let mut m = persistent(FwdMethod::Dr, 300, 24);
    if let ServiceKey::Addr { port, .. } = &mut m.services[0].key {
        *port = 0;
    }
    let mut w = worker(&m);
    let first = rs_of(&one(&mut w, SEC, tcp4(CIP, 1000, VIP, 80, SYN, b"")).1);
    // any port of the VIP, any client of the /24: the same server
    assert_eq!(rs_of(&one(&mut w, SEC, tcp4(CIP, 1001, VIP, 443, SYN, b"")).1), first);
    assert_eq!(rs_of(&one(&mut w, SEC, tcp4([192, 0, 2, 77], 1002, VIP, 22, SYN, b"")).1), first);
    // another /24 is scheduled on its own
    assert_ne!(rs_of(&one(&mut w, SEC, tcp4([192, 0, 3, 1], 1003, VIP, 80, SYN, b"")).1), first);
    assert_eq!(w.counters().templates_created, 2);
}

#[test]
fn templates_and_quiesced_or_removed_servers() {
    let m1 = persistent(FwdMethod::Dr, 300, 32);
    let s1 = Arc::new(Snapshot::build(&m1, None).unwrap());
    let mut w = Worker::new(0, 1, s1.clone(), SEC);
    let first = rs_of(&one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, SYN, b"")).1);
    let i = if first == RS1_MAC { 0 } else { 1 };
    // quiesced: IPVS still honours the template by default...
    let mut m2 = m1.clone();
    m2.services[0].dests[i].weight = 0;
    let s2 = Arc::new(Snapshot::build(&m2, Some(&s1)).unwrap());
    w.set_snapshot(s2.clone());
    assert_eq!(rs_of(&one(&mut w, SEC, tcp4(CIP, 40001, VIP, 80, SYN, b"")).1), first);
    // ...and not with expire_quiescent_template
    let mut m3 = m2.clone();
    m3.expire_quiescent_template = true;
    let s3 = Arc::new(Snapshot::build(&m3, Some(&s2)).unwrap());
    w.set_snapshot(s3.clone());
    let moved = rs_of(&one(&mut w, SEC, tcp4(CIP, 40002, VIP, 80, SYN, b"")).1);
    assert_ne!(moved, first);
    // removing the new server invalidates the new template too
    let mut m4 = m3.clone();
    m4.expire_quiescent_template = false;
    m4.services[0].dests[i].weight = 1;
    m4.services[0].dests.remove(1 - i);
    w.set_snapshot(Arc::new(Snapshot::build(&m4, Some(&s3)).unwrap()));
    assert_eq!(rs_of(&one(&mut w, SEC, tcp4(CIP, 40003, VIP, 80, SYN, b"")).1), first);
}

#[test]
fn persistent_subnets_shard_to_one_worker() {
    let snap = Arc::new(Snapshot::build(&persistent(FwdMethod::Nat, 300, 24), None).unwrap());
    assert_eq!(snap.shard_prefix.0, 24);
    let ws: Vec<Worker> = (0..4).map(|i| Worker::new(i, 4, snap.clone(), SEC)).collect();
    let owner = |c: [u8; 4], p: u16| {
        let k = Key { saddr: Ipv4Addr::from(c), daddr: Ipv4Addr::from(VIP), sport: p, dport: 80, proto: 6 };
        ws[0].owner(&k)
    };
    let o = owner([192, 0, 2, 1], 1);
    for host in 2..=254u8 {
        assert_eq!(owner([192, 0, 2, host], host as u16), o);
    }
    // replies (NAT: the client is the destination) agree
    let back = Key { saddr: Ipv4Addr::from(RS1), daddr: Ipv4Addr::from([192, 0, 2, 9]), sport: 8080, dport: 9, proto: 6 };
    assert_eq!(ws[0].owner(&back), o);
}

#[test]
fn upper_threshold_overloads_a_server_until_it_drains_below_the_lower() {
    let mut m = model(FwdMethod::Dr, "wrr");
    // rs2 (weight 2, wrr's first choice) takes at most 2 connections and
    // is back below 1.
    m.services[0].dests[1].u_threshold = 2;
    m.services[0].dests[1].l_threshold = 1;
    let mut w = worker(&m);
    let picks: Vec<[u8; 6]> = (0..6u16).map(|p| dst_mac(&one(&mut w, SEC, tcp4(CIP, 1000 + p, VIP, 80, SYN, b"")).1)).collect();
    // wrr would give rs2 rs1 rs2 rs2 rs1 rs2; rs2 is overloaded at 2.
    assert_eq!(picks, vec![RS2_MAC, RS1_MAC, RS2_MAC, RS1_MAC, RS1_MAC, RS1_MAC]);
    assert!(w.loads()[1].overloaded);
    // its connections expire (SYN_RECV, 60 s): below the lower threshold
    one(&mut w, 70 * SEC, tcp4([198, 51, 100, 9], 1, [10, 0, 0, 9], 1, ACK, b""));
    assert!(!w.loads()[1].overloaded);
    assert_eq!(dst_mac(&one(&mut w, 70 * SEC, tcp4(CIP, 2000, VIP, 80, SYN, b"")).1), RS2_MAC);
}

/// The state of the connection with client port `cport` (ipvsadm name).
fn state_of(w: &Worker, cport: u16) -> Option<&'static str> {
    let mut st = None;
    w.for_each_conn(|c| if c.cport == cport && !c.is_template() { st = Some(TcpState::from_u8(c.state).name()) }, |_| ());
    st
}

/// Opens and closes a NAT connection from CIP:`cport`: it ends in
/// TIME_WAIT. Returns the real server it went to.
fn nat_open_close(w: &mut Worker, now: u64, cport: u16) -> [u8; 4] {
    let (v, out) = one(w, now, tcp4(CIP, cport, VIP, 80, SYN, b""));
    assert_eq!(v, TX);
    let rs = addr4(&out, 30);
    for f in [
        tcp4(rs, 8080, CIP, cport, SYN | ACK, b""),
        tcp4(CIP, cport, VIP, 80, ACK, b""),
        tcp4(CIP, cport, VIP, 80, FIN | ACK, b""),
        tcp4(rs, 8080, CIP, cport, FIN | ACK, b""),
        tcp4(CIP, cport, VIP, 80, ACK, b""),
    ] {
        assert_eq!(one(w, now, f).0, TX);
    }
    rs
}

#[test]
fn a_syn_reusing_the_ports_of_a_closed_connection_is_scheduled_afresh() {
    let mut w = worker(&model(FwdMethod::Nat, "rr"));
    assert_eq!(nat_open_close(&mut w, SEC, 40000), RS1);
    assert_eq!(state_of(&w, 40000), Some("TIME_WAIT"));
    assert_eq!(w.loads()[0], DestLoad { active: 0, inactive: 1, persist: 0, overloaded: false });
    // The client reuses its port: IPVS (conn_reuse_mode 1) ends the old
    // connection and schedules the SYN; rr's next pick is rs2.
    let (v, out) = one(&mut w, 2 * SEC, tcp4(CIP, 40000, VIP, 80, SYN, b""));
    assert_eq!(v, TX);
    assert!(verify(&out));
    assert_eq!(addr4(&out, 30), RS2);
    assert_eq!(state_of(&w, 40000), Some("SYN_RECV"));
    assert_eq!((w.counters().reused_conns, w.counters().expired_conns, w.counters().new_conns), (1, 1, 2));
    assert_eq!(w.loads()[0], DestLoad::default(), "the old connection's load is given back at once");
    assert_eq!(w.loads()[1].inactive, 1);
    // A retransmitted SYN follows the new connection, it does not reschedule.
    let (_, out) = one(&mut w, 3 * SEC, tcp4(CIP, 40000, VIP, 80, SYN, b""));
    assert_eq!(addr4(&out, 30), RS2);
    assert_eq!(w.counters().reused_conns, 1);
    // Replies: rs2's are the connection's, rs1's belong to nobody now.
    let (v, back) = one(&mut w, 3 * SEC, tcp4(RS2, 8080, CIP, 40000, SYN | ACK, b""));
    assert_eq!((v, addr4(&back, 26)), (TX, VIP));
    assert_eq!(one(&mut w, 3 * SEC, tcp4(RS1, 8080, CIP, 40000, ACK, b"")).0, Verdict::Pass(PassReason::NotService));
    one(&mut w, 3 * SEC, tcp4(CIP, 40000, VIP, 80, ACK, b""));
    assert_eq!(state_of(&w, 40000), Some("ESTABLISHED"));
    // When the wheel reaches the old entry (its TIME_WAIT, 120 s) it is
    // freed without being counted or released twice.
    one(&mut w, 200 * SEC, tcp4([198, 51, 100, 9], 1, [10, 0, 0, 9], 1, ACK, b""));
    assert_eq!(w.conns(), 1);
    assert_eq!((w.counters().expired_conns, w.loads()[0], w.loads()[1].active), (1, DestLoad::default(), 1));
    // An established connection is not over: a SYN on it is forwarded.
    let (_, out) = one(&mut w, 201 * SEC, tcp4(CIP, 40000, VIP, 80, SYN, b""));
    assert_eq!(addr4(&out, 30), RS2);
    assert_eq!(w.counters().reused_conns, 1);
}

#[test]
fn conn_reuse_mode_zero_keeps_the_old_server() {
    let mut m = model(FwdMethod::Nat, "rr");
    m.conn_reuse_mode = 0;
    let mut w = worker(&m);
    assert_eq!(nat_open_close(&mut w, SEC, 40000), RS1);
    let (_, out) = one(&mut w, 2 * SEC, tcp4(CIP, 40000, VIP, 80, SYN, b""));
    assert_eq!(addr4(&out, 30), RS1);
    assert_eq!((w.counters().reused_conns, w.counters().new_conns), (0, 1));
}

#[test]
fn conn_reuse_mode_bit_two_ends_dr_connections_in_fin_wait() {
    for (mode, rescheduled) in [(1u8, false), (3, true)] {
        let mut m = model(FwdMethod::Dr, "rr");
        m.conn_reuse_mode = mode;
        let mut w = worker(&m);
        assert_eq!(dst_mac(&one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, SYN, b"")).1), RS1_MAC);
        one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, ACK, b""));
        one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, FIN | ACK, b""));
        // DR sees only the client's side: its close ends in FIN_WAIT.
        assert_eq!(state_of(&w, 40000), Some("FIN_WAIT"), "mode {mode}");
        let to = dst_mac(&one(&mut w, 2 * SEC, tcp4(CIP, 40000, VIP, 80, SYN, b"")).1);
        assert_eq!(to == RS2_MAC, rescheduled, "mode {mode}");
        assert_eq!(w.counters().reused_conns, rescheduled as u64, "mode {mode}");
    }
}

#[test]
fn with_expire_nodest_conn_a_syn_leaves_a_quiesced_or_removed_server() {
    let mut m1 = model(FwdMethod::Nat, "rr");
    m1.expire_nodest_conn = true;
    let s1 = Arc::new(Snapshot::build(&m1, None).unwrap());
    let mut w = Worker::new(0, 1, s1.clone(), SEC);
    // An established connection to rs1...
    assert_eq!(addr4(&one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, SYN, b"")).1, 30), RS1);
    one(&mut w, SEC, tcp4(RS1, 8080, CIP, 40000, SYN | ACK, b""));
    one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, ACK, b""));
    // ...whose server is quiesced: its packets still go there...
    let mut m2 = m1.clone();
    m2.services[0].dests[0].weight = 0;
    let s2 = Arc::new(Snapshot::build(&m2, Some(&s1)).unwrap());
    w.set_snapshot(s2.clone());
    assert_eq!(addr4(&one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, ACK, b"")).1, 30), RS1);
    // ...but a SYN on its ports is a new connection, to rs2.
    assert_eq!(addr4(&one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, SYN, b"")).1, 30), RS2);
    assert_eq!(w.counters().reused_conns, 1);
    assert_eq!(w.loads()[0], DestLoad::default());
    // rs2 removed: a SYN is scheduled (to rs1, weight 1 again) instead of
    // being dropped as dest_gone; other segments are still dropped.
    let mut m3 = m1.clone();
    m3.services[0].dests.remove(1);
    w.set_snapshot(Arc::new(Snapshot::build(&m3, Some(&s2)).unwrap()));
    assert_eq!(addr4(&one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, SYN, b"")).1, 30), RS1);
    assert_eq!(w.counters().reused_conns, 2);
    assert_eq!(w.counters().drops[DropReason::DestGone as usize], 0);
}

#[test]
fn fullnat_reuse_gives_the_local_port_back() {
    let mut w = worker(&model(FwdMethod::FullNat, "rr"));
    let (_, out) = one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, SYN, b""));
    let lport = parse(&out).unwrap().sport;
    for f in [
        tcp4(RS1, 8080, LIP, lport, SYN | ACK, b""),
        tcp4(CIP, 40000, VIP, 80, ACK, b""),
        tcp4(CIP, 40000, VIP, 80, FIN | ACK, b""),
        tcp4(RS1, 8080, LIP, lport, FIN | ACK, b""),
    ] {
        assert_eq!(one(&mut w, SEC, f).0, TX);
    }
    assert_eq!(state_of(&w, 40000), Some("TIME_WAIT"));
    let (v, out) = one(&mut w, 2 * SEC, tcp4(CIP, 40000, VIP, 80, SYN, b""));
    assert_eq!(v, TX);
    assert_eq!(addr4(&out, 30), RS2);
    let lport2 = parse(&out).unwrap().sport;
    assert_eq!(w.lports.in_use(ip("10.0.0.200")), 1, "the old connection's port is back in the pool");
    // the old port is nobody's now; the new one is the new connection's
    assert_eq!(one(&mut w, 2 * SEC, tcp4(RS1, 8080, LIP, lport, ACK, b"")).0, Verdict::Drop(DropReason::NoConn));
    assert_eq!(one(&mut w, 2 * SEC, tcp4(RS2, 8080, LIP, lport2, SYN | ACK, b"")).0, TX);
    // the wheel frees the old entry later without releasing its port again
    one(&mut w, 300 * SEC, tcp4([198, 51, 100, 9], 1, [10, 0, 0, 9], 1, ACK, b""));
    assert_eq!((w.conns(), w.lports.in_use(ip("10.0.0.200"))), (0, 0));
}

#[test]
fn a_persistent_client_reusing_ports_stays_with_its_template() {
    let mut w = worker(&persistent(FwdMethod::Nat, 300, 32));
    let rs = nat_open_close(&mut w, SEC, 40000);
    // the connection is controlled by the template: IPVS leaves it alone
    let (_, out) = one(&mut w, 2 * SEC, tcp4(CIP, 40000, VIP, 80, SYN, b""));
    assert_eq!(addr4(&out, 30), rs);
    assert_eq!(w.counters().reused_conns, 0);
}

/// A NAT connection from CIP:`cport` through the handshake: ESTABLISHED.
fn nat_established(w: &mut Worker, now: u64, cport: u16) -> [u8; 4] {
    let (v, out) = one(w, now, tcp4(CIP, cport, VIP, 80, SYN, b""));
    assert_eq!(v, TX);
    let rs = addr4(&out, 30);
    assert_eq!(one(w, now, tcp4(rs, 8080, CIP, cport, SYN | ACK, b"")).0, TX);
    assert_eq!(one(w, now, tcp4(CIP, cport, VIP, 80, ACK, b"")).0, TX);
    rs
}

/// The sum of every dest's connection counts.
fn load_total(w: &Worker) -> u32 {
    w.loads().iter().map(|l| l.active + l.inactive).sum()
}

#[test]
fn a_full_table_evicts_the_oldest_embryonic_connection_for_a_new_one() {
    let mut m = model(FwdMethod::Nat, "rr");
    m.max_conns = 4;
    let mut w = worker(&m);
    nat_established(&mut w, SEC, 1000);
    nat_established(&mut w, SEC, 1001);
    // a flood: SYNs from spoofed sources that never answer
    let spoofed = |i: u8| tcp4([198, 51, 100, i], 5000, VIP, 80, SYN, b"");
    assert_eq!(one(&mut w, 2 * SEC, spoofed(1)).0, TX);
    assert_eq!(one(&mut w, 3 * SEC, spoofed(2)).0, TX);
    assert_eq!(w.conns(), 4);
    // a real client gets in: one embryonic entry goes, never an
    // established one
    let (v, out) = one(&mut w, 4 * SEC, tcp4(CIP, 2000, VIP, 80, SYN, b""));
    assert_eq!(v, TX);
    assert!(verify(&out));
    assert_eq!((w.conns(), w.counters().evicted_conns), (4, 1));
    assert_eq!(load_total(&w), 4, "the evicted connection's load was given back");
    let gone: Vec<u8> = (1..=2u8)
        .filter(|&i| one(&mut w, 4 * SEC, tcp4([198, 51, 100, i], 5000, VIP, 80, ACK, b"")).0 == Verdict::Drop(DropReason::NoConn))
        .collect();
    assert_eq!(gone.len(), 1, "exactly one spoofed connection was evicted: {gone:?}");
    for p in [1000, 1001, 2000] {
        assert_eq!(one(&mut w, 4 * SEC, tcp4(CIP, p, VIP, 80, ACK, b"x")).0, TX, "client port {p}");
    }
    // now every entry is established or closing: nothing is evicted, the
    // SYN is a counted drop, and the established connections carry on
    let mut w2 = worker(&m);
    for p in 0..4 {
        nat_established(&mut w2, SEC, 3000 + p);
    }
    assert_eq!(one(&mut w2, 2 * SEC, tcp4(CIP, 2000, VIP, 80, SYN, b"")).0, Verdict::Drop(DropReason::TableFull));
    assert_eq!(one(&mut w2, 2 * SEC, tcp4(CIP, 3000, VIP, 80, ACK, b"x")).0, TX);
    assert_eq!(w2.counters().evicted_conns, 0);
}

/// A director's closing connections are due before its embryonic ones
/// (CLOSE 10 s against SYN_RECV 60 s): more of them than one eviction
/// search looks at (64) must not keep a flood's entries from being
/// evicted. The first search is spent on them (that SYN is dropped, and
/// none is made again in its tick); the next goes on past them.
#[test]
fn closing_connections_due_first_do_not_hide_the_embryonic_ones() {
    let mut m = model(FwdMethod::Nat, "rr");
    m.max_conns = 100;
    let mut w = worker(&m);
    for p in 0..70 {
        nat_established(&mut w, SEC, 1000 + p);
        assert_eq!(one(&mut w, SEC, tcp4(CIP, 1000 + p, VIP, 80, RST | ACK, b"")).0, TX);
    }
    for i in 0..30u16 {
        let spoofed = tcp4([198, 51, 100, (i % 250) as u8 + 1], 5000 + i, VIP, 80, SYN, b"");
        assert_eq!(one(&mut w, 2 * SEC, spoofed).0, TX);
    }
    assert_eq!(w.conns(), 100);
    let syn = |p: u16| tcp4(CIP, p, VIP, 80, SYN, b"");
    assert_eq!(one(&mut w, 3 * SEC, syn(3000)).0, Verdict::Drop(DropReason::TableFull), "64 closing connections looked at");
    assert_eq!(one(&mut w, 3 * SEC, syn(3001)).0, Verdict::Drop(DropReason::TableFull), "no second search in a tick");
    // the next tick: every SYN gets in, each in place of an embryonic entry
    for p in 3002..3030 {
        assert_eq!(one(&mut w, 3 * SEC + 100_000_000, syn(p)).0, TX, "client port {p}");
    }
    assert_eq!((w.conns(), w.counters().evicted_conns), (100, 28));
    // never a closing connection (they end at their time): the spoofed
    // entries were the ones to go
    let left = (0..30u16).filter(|&i| one(&mut w, 3 * SEC + 100_000_000, tcp4([198, 51, 100, (i % 250) as u8 + 1], 5000 + i, VIP, 80, ACK, b"")).0 == TX).count();
    assert_eq!(left, 2);
}

#[test]
fn drop_entry_off_udp_and_persistence() {
    // off: a full table drops the SYN even with embryonic entries in it
    let mut m = model(FwdMethod::Nat, "rr");
    m.max_conns = 2;
    m.drop_entry = false;
    let mut w = worker(&m);
    one(&mut w, SEC, tcp4([198, 51, 100, 1], 5000, VIP, 80, SYN, b""));
    one(&mut w, SEC, tcp4([198, 51, 100, 2], 5000, VIP, 80, SYN, b""));
    assert_eq!(one(&mut w, 2 * SEC, tcp4(CIP, 2000, VIP, 80, SYN, b"")).0, Verdict::Drop(DropReason::TableFull));
    // a new UDP flow makes room as a SYN does (IPVS's drop_entry does not
    // ask what the newcomer is)
    m.drop_entry = true;
    let mut w = worker(&m);
    one(&mut w, SEC, tcp4([198, 51, 100, 1], 5000, VIP, 80, SYN, b""));
    one(&mut w, SEC, tcp4([198, 51, 100, 2], 5000, VIP, 80, SYN, b""));
    assert_eq!(one(&mut w, 2 * SEC, udp4(CIP, 5353, VIP, 53, b"q")).0, TX);
    assert_eq!(w.counters().evicted_conns, 1);
    // a persistent service needs room for the template too: two go
    let mut m = persistent(FwdMethod::Nat, 300, 32);
    m.max_conns = 4;
    let mut w = worker(&m);
    // two spoofed clients: a template and a connection each
    one(&mut w, SEC, tcp4([198, 51, 100, 1], 5000, VIP, 80, SYN, b""));
    one(&mut w, SEC, tcp4([198, 51, 100, 2], 5000, VIP, 80, SYN, b""));
    assert_eq!(w.conns(), 4);
    let (v, _) = one(&mut w, 3 * SEC, tcp4(CIP, 2000, VIP, 80, SYN, b""));
    assert_eq!(v, TX);
    assert_eq!(w.counters().evicted_conns, 2);
    // the spoofed clients' templates went with their connections (IPVS
    // expires `cp->control` too): released at once, freed by a later
    // eviction or the wheel
    assert_eq!(w.counters().templates_expired, 2);
    assert_eq!(w.conns(), 4, "the spoofed clients' unlinked templates, the new client's template and connection");
    assert_eq!(load_total(&w), 1);
    assert_eq!(w.loads().iter().map(|l| l.persist).sum::<u32>(), 1);
    // a second newcomer gets in too, and the table stays within bounds
    let (v, _) = one(&mut w, 4 * SEC, tcp4([192, 0, 2, 9], 2000, VIP, 80, SYN, b""));
    assert_eq!(v, TX);
    assert_eq!(w.conns(), 4);
}

/// IPVS's `ip_vs_random_dropentry` also ends UDP flows and ESTABLISHED
/// connections that have been idle for 60 s and have had at most 8
/// packets from their client (one candidate in n of those with n
/// packets); never a younger one, one with more packets, or a closing one.
#[test]
fn drop_entry_ends_idle_udp_flows_and_idle_established_connections() {
    let mut m = model(FwdMethod::Nat, "rr");
    m.max_conns = 3;
    let mut w = worker(&m);
    for i in 1..=3 {
        assert_eq!(one(&mut w, SEC, udp4([198, 51, 100, i], 5353, VIP, 53, b"q")).0, TX);
    }
    // 30 s idle: none may go
    assert_eq!(one(&mut w, 31 * SEC, udp4(CIP, 5353, VIP, 53, b"q")).0, Verdict::Drop(DropReason::TableFull));
    // 61 s idle (the UDP timeout is 300 s): one goes for the newcomer
    assert_eq!(one(&mut w, 62 * SEC, udp4(CIP, 5353, VIP, 53, b"q")).0, TX);
    assert_eq!((w.conns(), w.counters().evicted_conns), (3, 1));
    assert_eq!(load_total(&w), 3, "the ended flow's load was given back");

    // TCP: an idle ESTABLISHED connection with 3 packets from its client
    // goes, one with 10 stays
    let mut m = model(FwdMethod::Nat, "rr");
    m.max_conns = 2;
    let mut w = worker(&m);
    nat_established(&mut w, SEC, 1000); // SYN, ACK: 2 packets in
    one(&mut w, SEC, tcp4(CIP, 1000, VIP, 80, ACK, b"x"));
    nat_established(&mut w, SEC, 1001);
    for _ in 0..8 {
        one(&mut w, SEC, tcp4(CIP, 1001, VIP, 80, ACK, b"x"));
    }
    assert_eq!(one(&mut w, 30 * SEC, tcp4(CIP, 2000, VIP, 80, SYN, b"")).0, Verdict::Drop(DropReason::TableFull), "not idle long enough");
    assert_eq!(one(&mut w, 100 * SEC, tcp4(CIP, 2000, VIP, 80, SYN, b"")).0, TX);
    assert_eq!(w.counters().evicted_conns, 1);
    assert_eq!(one(&mut w, 100 * SEC, tcp4(CIP, 1000, VIP, 80, ACK, b"x")).0, Verdict::Drop(DropReason::NoConn), "the 3-packet one went");
    assert_eq!(one(&mut w, 100 * SEC, tcp4(CIP, 1001, VIP, 80, ACK, b"x")).0, TX, "the 10-packet one stays");
    // a table of busy or closing connections: nothing goes
    let mut m = model(FwdMethod::Nat, "rr");
    m.max_conns = 2;
    let mut w = worker(&m);
    nat_established(&mut w, SEC, 1000);
    for _ in 0..9 {
        one(&mut w, SEC, tcp4(CIP, 1000, VIP, 80, ACK, b"x"));
    }
    nat_open_close(&mut w, SEC, 1001);
    assert_eq!(one(&mut w, 100 * SEC, udp4(CIP, 5353, VIP, 53, b"q")).0, Verdict::Drop(DropReason::TableFull));
    assert_eq!(w.counters().evicted_conns, 0);
}

/// Client addresses the worker `w` of `n` owns (with the default /32
/// shard prefix), from 198.18.0.0 on.
fn owned_sources(w: u16, n: u16, count: usize) -> Vec<[u8; 4]> {
    (0u32..)
        .map(|i| (0xc612_0000u32 + i).to_be_bytes())
        .filter(|a| shard_hash(a) % n as u32 == w as u32)
        .take(count)
        .collect()
}

/// FULLNAT local ports are pooled per (local address, real server): a SYN
/// flood towards one real server cannot take the ports of another, every
/// real server has a local address's whole port space (the same port goes
/// towards both), and a full pool makes room as drop_entry does, ending the
/// embryonic connection due first that holds one of its ports.
#[test]
fn fullnat_ports_are_pooled_per_real_server_and_a_full_pool_evicts() {
    let m = model(FwdMethod::FullNat, "rr");
    // worker 0 of 8: 8064 ports per pool, so the test floods quickly
    let mut w = Worker::new(0, 8, Arc::new(Snapshot::build(&m, None).unwrap()), SEC);
    let slice = LocalPorts::new(0, 8).slice() as usize;
    assert_eq!(slice, 8064);
    let srcs = owned_sources(0, 8, 2 * slice + 1);
    let syns: Vec<Vec<u8>> = srcs[..2 * slice].iter().map(|&s| tcp4(s, 40000, VIP, 80, SYN, b"")).collect();
    let out = run(&mut w, SEC, &syns);
    let mut ports: [Vec<u16>; 2] = [vec![], vec![]];
    for (v, f) in &out {
        assert_eq!(*v, TX, "every SYN gets a port: {slice} per real server");
        let rs = addr4(f, 14 + 16);
        assert_eq!(addr4(f, 14 + 12), LIP);
        ports[(rs == RS2) as usize].push(parse(f).unwrap().sport);
    }
    for p in &mut ports {
        p.sort_unstable();
        assert_eq!(p.len(), slice);
    }
    assert_eq!(ports[0], ports[1], "the same local ports towards each real server");
    assert_eq!(w.laddr_in_use(ip("10.0.0.200")), 2 * slice as u32);
    // both pools are full: the next SYN (rr: real server 1) ends the
    // embryonic connection due first that holds one of real server 1's
    // ports, and takes it
    let (v, f) = one(&mut w, 2 * SEC, tcp4(srcs[2 * slice], 40000, VIP, 80, SYN, b""));
    assert_eq!(v, TX);
    assert_eq!(addr4(&f, 14 + 16), RS1);
    assert_eq!(w.counters().evicted_conns, 1);
    assert_eq!(w.conns(), 2 * slice);
    // the same flood with drop_entry off: the SYN is dropped, counted
    let mut m = model(FwdMethod::FullNat, "rr");
    m.drop_entry = false;
    let mut w = Worker::new(0, 8, Arc::new(Snapshot::build(&m, None).unwrap()), SEC);
    assert!(run(&mut w, SEC, &syns).iter().all(|(v, _)| *v == TX));
    let (v, _) = one(&mut w, 2 * SEC, tcp4(srcs[2 * slice], 40000, VIP, 80, SYN, b""));
    assert_eq!(v, Verdict::Drop(DropReason::NoLocalPort));
    assert_eq!(w.counters().evicted_conns, 0);
}

#[test]
fn fullnat_handshake_ack_carries_the_client_in_toa() {
    use crate::wire::toa;
    let mut w = worker(&model(FwdMethod::FullNat, "rr"));
    let (_, syn) = one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, SYN, b""));
    let lport = parse(&syn).unwrap().sport;
    fn has_toa(f: &[u8]) -> Option<(u16, &[u8])> {
        toa::find(&f[parse(f).unwrap().l4 as usize..])
    }
    assert_eq!(has_toa(&syn), None, "not on the SYN");
    one(&mut w, SEC, tcp4(RS1, 8080, LIP, lport, SYN | ACK, b""));
    let ack = tcp4(CIP, 40000, VIP, 80, ACK, b"GET /");
    let (v, out) = one(&mut w, SEC, ack.clone());
    assert_eq!(v, TX);
    assert!(verify(&out), "every checksum from scratch");
    assert_eq!(out.len(), ack.len() + toa::LEN_V4);
    assert_eq!(has_toa(&out), Some((40000, &CIP[..])));
    let m = parse(&out).unwrap();
    assert_eq!((addr4(&out, 26), m.sport, addr4(&out, 30), m.dport), (LIP, lport, RS1, 8080));
    assert_eq!(&out[out.len() - 5..], b"GET /");
    assert_eq!(dst_mac(&out), RS1_MAC);
    // only that segment: the next ones go as they came
    let (_, out) = one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, ACK, b"more"));
    assert_eq!(has_toa(&out), None);
    assert_eq!(w.counters().toa_added, 1);
    // a client whose ACK has no option space left: forwarded, counted
    let (_, syn) = one(&mut w, SEC, tcp4(CIP, 40001, VIP, 80, SYN, b""));
    let lport = parse(&syn).unwrap().sport;
    one(&mut w, SEC, tcp4(RS2, 8080, LIP, lport, SYN | ACK, b""));
    let mut full = tcp4(CIP, 40001, VIP, 80, ACK, b"");
    full[14 + 20 + 12] = 15 << 4; // 60-byte header: 40 option bytes...
    full.splice(14 + 40..14 + 40, [1u8; 40]); // ...of NOPs
    let tl = be16(&full, 16) + 40;
    full[16..18].copy_from_slice(&tl.to_be_bytes());
    refresh_ipv4_checksum(&mut full, 14);
    refresh_tcp_checksum(&mut full);
    assert!(verify(&full));
    let (v, out) = one(&mut w, SEC, full.clone());
    assert_eq!(v, TX);
    assert!(verify(&out));
    assert_eq!((out.len(), has_toa(&out)), (full.len(), None));
    assert_eq!((w.counters().toa_added, w.counters().toa_skipped), (1, 1));
    // off: never
    let mut m = model(FwdMethod::FullNat, "rr");
    m.toa = false;
    let mut w = worker(&m);
    let (_, syn) = one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, SYN, b""));
    let lport = parse(&syn).unwrap().sport;
    one(&mut w, SEC, tcp4(RS1, 8080, LIP, lport, SYN | ACK, b""));
    let (_, out) = one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, ACK, b""));
    assert_eq!(has_toa(&out), None);
    assert_eq!(w.counters().toa_added + w.counters().toa_skipped, 0);
}

/// Found by the `icmp_relay` fuzz target (fuzz/regressions/icmp_relay/):
/// a client frame whose source MAC is broadcast, multicast, zero or the
/// director's own must not become the MAC its replies, relayed ICMP
/// errors or generated ICMP errors are sent to.
#[test]
fn a_bogus_source_mac_is_never_a_destination() {
    let d = MAC_DIRECTOR;
    for bad in [[0xff; 6], [0x01, 0, 0x5e, 0, 0, 1], [0; 6], d] {
        // NAT: the client has no neighbour entry (it is not on a connected
        // prefix... it is 10.0.0.7 on eth0's, without a MAC), so its frame's
        // source MAC would be the way back.
        let mut w = worker(&model(FwdMethod::Nat, "rr"));
        let mut syn = tcp4([10, 0, 0, 7], 40000, VIP, 80, SYN, b"");
        syn[6..12].copy_from_slice(&bad);
        let (v, out) = one(&mut w, SEC, syn);
        assert_eq!(v, Verdict::Drop(DropReason::NoNeighbour), "{bad:02x?}: {out:02x?}");
        assert_eq!(w.conns(), 0);
        // No real server: no ICMP error to that MAC either.
        let mut m = model(FwdMethod::Dr, "wrr");
        for x in &mut m.services[0].dests {
            x.weight = 0;
        }
        let mut w = worker(&m);
        let mut syn = tcp4(CIP, 40000, VIP, 80, SYN, b"");
        syn[6..12].copy_from_slice(&bad);
        let (v, _) = one(&mut w, SEC, syn);
        assert_eq!(v, Verdict::Drop(DropReason::NoDest), "{bad:02x?}");
        let c = w.counters();
        assert_eq!((c.icmp_sent, c.tx_packets, c.total_drops()), (0, 0, 1), "one frame, one drop");
    }
}

/// `f` as a sender with TX checksum offload leaves it: the TCP/UDP
/// checksum field holds the pseudo-header sum.
fn partial(f: &[u8]) -> Vec<u8> {
    let mut p = f.to_vec();
    let m = parse(&p).unwrap();
    if m.v6 {
        checksum::make_partial::<Ipv6Addr>(&mut p, &m);
    } else {
        checksum::make_partial::<Ipv4Addr>(&mut p, &m);
    }
    assert_ne!(p, f, "the test frame's full checksum is not its partial sum");
    p
}

/// The model of [`model`] on IPv6: TCP VIP6:80 and UDP VIP6:53 with one
/// real server, the local address `2001:db8::200` for FULLNAT.
pub(super) fn model6(fwd: FwdMethod) -> Model {
    let mut m = model(fwd, "rr");
    let rport = if matches!(fwd, FwdMethod::Nat | FwdMethod::FullNat) { 8080 } else { 0 };
    for s in &mut m.services {
        let ServiceKey::Addr { proto, port, .. } = s.key else { unreachable!() };
        s.key = ServiceKey::Addr { proto, addr: ip("2001:db8::100"), port };
        s.dests = vec![Dest { addr: ip("2001:db8:1::1"), port: rport, weight: 1, fwd, u_threshold: 0, l_threshold: 0, proxy: None }];
        s.laddrs = if fwd == FwdMethod::FullNat { vec![ip("2001:db8::200")] } else { vec![] };
    }
    m
}

/// Partial checksums (clients and real servers behind veths with TX
/// checksum offload, the default): every method, both directions, TCP and
/// UDP, IPv4 and IPv6, FULLNAT's TOA insertion, and the ICMP error TUN
/// builds about a packet too big. Each frame goes through one worker as
/// a NIC delivers it (full checksum) and through another as a veth does
/// (partial): the outputs are the same bytes, and verify from scratch.
#[test]
fn partial_checksums_are_completed_in_every_mode() {
    for fwd in FwdMethod::ALL {
        for v6 in [false, true] {
            let m = if v6 { model6(fwd) } else { model(fwd, "rr") };
            let (mut full, mut part) = (worker(&m), worker(&m));
            let (c, vip, rs, lip): (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) = if v6 {
                let a = |s: &str| s.parse::<Ipv6Addr>().unwrap().octets().to_vec();
                (V6A.to_vec(), a("2001:db8::100"), a("2001:db8:1::1"), a("2001:db8::200"))
            } else {
                (CIP.to_vec(), VIP.to_vec(), RS1.to_vec(), LIP.to_vec())
            };
            let tcp = |s: &[u8], sp, d: &[u8], dp, fl, pl: &[u8]| {
                if v6 {
                    tcp6(s.try_into().unwrap(), sp, d.try_into().unwrap(), dp, fl, pl)
                } else {
                    tcp4(s.try_into().unwrap(), sp, d.try_into().unwrap(), dp, fl, pl)
                }
            };
            let udp = |s: &[u8], sp, d: &[u8], dp, pl: &[u8]| {
                if v6 {
                    udp6(s.try_into().unwrap(), sp, d.try_into().unwrap(), dp, pl)
                } else {
                    udp4(s.try_into().unwrap(), sp, d.try_into().unwrap(), dp, pl)
                }
            };
            let what = format!("{} {}", fwd.name(), if v6 { "v6" } else { "v4" });
            let mut step = |f: Vec<u8>, name: &str| -> (Verdict, Vec<u8>) {
                let (va, a) = one(&mut full, SEC, f.clone());
                let (vb, b) = one(&mut part, SEC, partial(&f));
                assert_eq!(va, vb, "{what} {name}");
                assert_eq!(a, b, "{what} {name}: the same bytes as from full checksums");
                if matches!(va, Verdict::Tx { .. }) {
                    assert!(verify(&a), "{what} {name}");
                }
                (va, a)
            };
            let (v, syn) = step(tcp(&c, 40000, &vip, 80, SYN, b""), "SYN");
            assert_eq!(v, TX, "{what}");
            let (v, q) = step(udp(&c, 5353, &vip, 53, b"query"), "UDP query");
            assert_eq!(v, TX, "{what}");
            if fwd.sees_replies() {
                // the real server's answers come back partial too
                let (to, tp, uto, up) = if fwd == FwdMethod::FullNat {
                    let (ms, mq) = (parse(&syn).unwrap(), parse(&q).unwrap());
                    (lip.clone(), ms.sport, lip.clone(), mq.sport)
                } else {
                    (c.clone(), 40000, c.clone(), 5353)
                };
                let (v, _) = step(tcp(&rs, 8080, &to, tp, SYN | ACK, b""), "SYN-ACK");
                assert_eq!(v, TX, "{what}");
                let (v, _) = step(udp(&rs, 8080, &uto, up, b"answer"), "UDP answer");
                assert_eq!(v, TX, "{what}");
            }
            // FULLNAT adds TOA to this one
            let (v, ack) = step(tcp(&c, 40000, &vip, 80, ACK, b"GET / HTTP/1.1\r\n\r\n"), "handshake ACK");
            assert_eq!(v, TX, "{what}");
            if fwd == FwdMethod::FullNat {
                let m = parse(&ack).unwrap();
                assert!(crate::wire::toa::find(&ack[m.l4 as usize..]).is_some(), "{what}: TOA added");
            }
            if fwd == FwdMethod::Tun {
                // too big to encapsulate with DF: an ICMP error quoting it
                let (v, err) = step(tcp(&c, 40000, &vip, 80, ACK, &[7u8; 1450]), "too big");
                assert_eq!(v, TX, "{what}");
                assert_eq!(parse(&err).unwrap().proto, if v6 { proto::ICMPV6 } else { proto::ICMP }, "{what}");
            }
        }
    }
}

// ---- what the steering program redirects: fragments, options, 802.1ad,
// ---- a real server's own traffic

/// Runs `frags` (one datagram's fragments, in the given order) and returns
/// the verdicts and the forwarded frames in order.
fn run_all(w: &mut Worker, frags: &[Vec<u8>]) -> (Vec<Verdict>, Vec<Vec<u8>>) {
    let out = run(w, SEC, frags);
    let v = out.iter().map(|(v, _)| *v).collect();
    let tx = out.into_iter().filter(|(v, _)| matches!(v, Verdict::Tx { .. })).map(|(_, d)| d).collect();
    (v, tx)
}

#[test]
fn nat_forwards_fragments_both_ways_and_drops_those_that_overtake_their_head() {
    let mut w = worker(&model(FwdMethod::Nat, "rr"));
    let big = udp4(CIP, 5353, VIP, 53, &[7u8; 3000]);
    let frags = fragment4(&big, 1480, 77);
    assert_eq!(frags.len(), 3);
    let (v, out) = run_all(&mut w, &frags);
    assert_eq!(v, vec![TX; 3]);
    for f in &out {
        assert!(verify(f), "each fragment's IP header");
        assert_eq!((addr4(f, 30), addr4(f, 26), be16(f, 18)), (RS1, CIP, 77), "same real server, client, id");
    }
    let whole = reassemble(&out).expect("the fragments still fit together");
    assert!(verify(&whole), "the datagram's UDP checksum holds over the rewritten fragments");
    let m = parse(&whole).unwrap();
    assert_eq!((m.sport, m.dport), (5353, 8080));
    // The reply, fragmented by the real server: source back to VIP:53.
    let back = fragment4(&udp4(RS1, 8080, CIP, 5353, &[9u8; 2500]), 1480, 4242);
    let (v, out) = run_all(&mut w, &back);
    assert_eq!(v, vec![TX; 2]);
    assert!(out.iter().all(|f| addr4(f, 26) == VIP && addr4(f, 30) == CIP && dst_mac(f) == GW_MAC));
    let whole = reassemble(&out).unwrap();
    assert!(verify(&whole));
    let m = parse(&whole).unwrap();
    assert_eq!((m.sport, m.dport), (53, 5353));
    assert_eq!(w.counters().new_conns, 1);
    // Out of order: what comes before its first fragment is dropped,
    // counted; the rest of the next datagram follows its head.
    let frags = fragment4(&udp4(CIP, 5353, VIP, 53, &[1u8; 3000]), 1480, 78);
    let (v, out) = run_all(&mut w, &[frags[2].clone(), frags[0].clone(), frags[1].clone()]);
    assert_eq!(v, vec![Verdict::Drop(DropReason::FragNoHead), TX, TX]);
    assert_eq!(out.len(), 2);
    assert_eq!(w.counters().drops[DropReason::FragNoHead as usize], 1);
    // Entries expire: a fragment 2 s after its head finds nothing.
    let frags = fragment4(&udp4(CIP, 5353, VIP, 53, &[1u8; 3000]), 1480, 79);
    assert_eq!(one(&mut w, SEC, frags[0].clone()).0, TX);
    assert_eq!(one(&mut w, 4 * SEC, frags[1].clone()).0, Verdict::Drop(DropReason::FragNoHead));
}

#[test]
fn fullnat_dr_and_tun_forward_fragments() {
    // FULLNAT: both addresses of every fragment; the reply to LIP:lport too.
    let mut w = worker(&model(FwdMethod::FullNat, "rr"));
    let frags = fragment4(&udp4(CIP, 5353, VIP, 53, &[3u8; 2000]), 1000, 5);
    let (v, out) = run_all(&mut w, &frags);
    assert_eq!(v, vec![TX; 3]);
    assert!(out.iter().all(|f| addr4(f, 26) == LIP && addr4(f, 30) == RS1));
    let whole = reassemble(&out).unwrap();
    assert!(verify(&whole));
    let lport = parse(&whole).unwrap().sport;
    let back = fragment4(&udp4(RS1, 8080, LIP, lport, &[4u8; 2000]), 1000, 6);
    let (v, out) = run_all(&mut w, &back);
    assert_eq!(v, vec![TX; 3]);
    let whole = reassemble(&out).unwrap();
    assert!(verify(&whole));
    let m = parse(&whole).unwrap();
    assert_eq!((addr4(&whole, 26), m.sport, addr4(&whole, 30), m.dport), (VIP, 53, CIP, 5353));
    // DR: every fragment to the real server's MAC, nothing else changed.
    let mut w = worker(&model(FwdMethod::Dr, "rr"));
    let (v, out) = run_all(&mut w, &frags);
    assert_eq!(v, vec![TX; 3]);
    for (o, i) in out.iter().zip(&frags) {
        assert_eq!((dst_mac(o), &o[12..]), (RS1_MAC, &i[12..]));
    }
    // TUN: every fragment encapsulated whole towards the real server.
    let mut w = worker(&model(FwdMethod::Tun, "rr"));
    let (v, out) = run_all(&mut w, &frags);
    assert_eq!(v, vec![TX; 3]);
    for (o, i) in out.iter().zip(&frags) {
        assert!(verify(o));
        assert_eq!((addr4(o, 30), &o[34..]), (RS1, &i[14..]));
    }
    assert_eq!(w.counters().new_conns, 1);
}

#[test]
fn ipv6_fragments_follow_their_first_through_nat() {
    let mut m = model(FwdMethod::Nat, "rr");
    m.services = vec![Service {
        key: ServiceKey::Addr { proto: Proto::Udp, addr: ip("2001:db8::100"), port: 53 },
        sched: "rr".into(),
        sched_flags: SchedFlags::default(),
        persistence: None,
        dests: vec![Dest { addr: ip("2001:db8:1::1"), port: 0, weight: 1, fwd: FwdMethod::Nat, u_threshold: 0, l_threshold: 0, proxy: None }],
        laddrs: vec![],
        synproxy: false,
    }];
    let mut w = worker(&m);
    let IpAddr::V6(vip) = ip("2001:db8::100") else { unreachable!() };
    let IpAddr::V6(rs) = ip("2001:db8:1::1") else { unreachable!() };
    let frags = fragment6(&udp6(V6A, 5353, vip.octets(), 53, &[5u8; 3000]), 1400, 0xdead_beef);
    assert_eq!(frags.len(), 3);
    let (v, out) = run_all(&mut w, &frags);
    assert_eq!(v, vec![TX; 3]);
    assert!(out.iter().all(|f| f[38..54] == rs.octets() && f[21] == 63), "destination and hop limit of every fragment");
    let whole = reassemble(&out).unwrap();
    assert!(verify(&whole), "UDP checksum of the datagram");
    let back = fragment6(&udp6(rs.octets(), 53, V6A, 5353, &[6u8; 2000]), 1400, 9);
    let (v, out) = run_all(&mut w, &back);
    assert_eq!(v, vec![TX; 2]);
    assert!(out.iter().all(|f| f[22..38] == vip.octets()));
    assert!(verify(&reassemble(&out).unwrap()));
    // Out of order: the later fragment first is dropped.
    let frags = fragment6(&udp6(V6A, 5353, vip.octets(), 53, &[5u8; 3000]), 1400, 10);
    assert_eq!(one(&mut w, SEC, frags[1].clone()).0, Verdict::Drop(DropReason::FragNoHead));
}

#[test]
fn fragments_meet_the_owner_of_their_flow() {
    // FULLNAT replies are owned by the local port, which only the first
    // fragment carries: the worker that receives the datagram remembers
    // where it handed the head and hands the rest the same way.
    let snap = Arc::new(Snapshot::build(&model(FwdMethod::FullNat, "rr"), None).unwrap());
    let mut ws: Vec<Worker> = (0..2).map(|i| Worker::new(i, 2, snap.clone(), SEC)).collect();
    let mut checked = 0;
    for host in 1..=8u8 {
        let cip = [192, 0, 2, host];
        let syn = tcp4(cip, 40000, VIP, 80, SYN, b"");
        let (_, v, out) = at_owner(&mut ws, syn);
        assert_eq!(v, TX);
        let m = parse(&out).unwrap();
        let owner = crate::ipvs::laddr::port_owner(m.sport, 2);
        let reply = tcp4(addr4(&out, 30), m.dport, LIP, m.sport, ACK, &[1u8; 2000]);
        let frags = fragment4(&reply, 1000, host as u16);
        let rx = 1 - owner as usize; // the wrong worker receives them all
        for f in &frags {
            assert_eq!(one(&mut ws[rx], SEC, f.clone()).0, Verdict::Handoff { worker: owner });
        }
        let (v, out) = run_all(&mut ws[owner as usize], &frags);
        assert_eq!(v, vec![TX; 3]);
        assert!(verify(&reassemble(&out).unwrap()));
        checked += 1;
    }
    assert_eq!(checked, 8);
}

#[test]
fn ipv4_options_and_802_1ad_are_forwarded() {
    for fwd in [FwdMethod::Nat, FwdMethod::FullNat, FwdMethod::Dr, FwdMethod::Tun] {
        let mut w = worker(&model(fwd, "rr"));
        let syn = with_ipv4_options(&tcp4(CIP, 40000, VIP, 80, SYN, b"opt"));
        let (v, out) = one(&mut w, SEC, syn);
        assert_eq!(v, TX, "{fwd}");
        assert!(verify(&out), "{fwd}");
        if matches!(fwd, FwdMethod::Nat | FwdMethod::FullNat) {
            let m = parse(&out).unwrap();
            assert_eq!((m.l4, m.dport), (38, 8080), "{fwd}: the port after the options is rewritten");
        }
    }
    // An S-tag (802.1ad) frame parses like an 802.1Q one: its VLAN id
    // names the sub-interface it came in on, and it leaves as the route to
    // the real server says (untagged here); a VLAN the port has not is
    // dropped, as the kernel drops it.
    let mut m = model(FwdMethod::Nat, "rr");
    m.net.subifs.push(crate::ctl::model::SubIfConf { name: "eth0.20".into(), port: 0, vid: 20, mac: MAC_DIRECTOR, mtu: 1500, addrs: vec![] });
    let mut w = worker(&m);
    let ad = |port: u16, vid: u16| {
        let mut f = vlan(tcp4(CIP, port, VIP, 80, SYN, b""), vid);
        f[12..14].copy_from_slice(&0x88a8u16.to_be_bytes());
        f
    };
    let (v, out) = one(&mut w, SEC, ad(40000, 20));
    assert_eq!(v, TX);
    assert_eq!((be16(&out, 12), addr4(&out, 30)), (0x0800, RS1));
    assert!(verify(&out));
    assert_eq!(one(&mut w, SEC, ad(40001, 30)).0, Verdict::Drop(DropReason::UnknownVlan));
    assert_eq!(w.conns(), 1);
}

#[test]
fn a_real_servers_own_traffic_goes_to_the_kernel() {
    // A NAT real server querying an upstream server from its service port:
    // no connection, no service: the kernel routes it, as with IPVS.
    let mut w = worker(&model(FwdMethod::Nat, "rr"));
    let q = udp4(RS1, 8080, [203, 0, 113, 5], 53, b"upstream?");
    assert_eq!(one(&mut w, SEC, q).0, Verdict::Pass(PassReason::NotService));
    let syn = tcp4(RS1, 8080, [203, 0, 113, 5], 443, SYN, b"");
    assert_eq!(one(&mut w, SEC, syn).0, Verdict::Pass(PassReason::NotService));
    // Its fragments follow the head to the kernel.
    let frags = fragment4(&udp4(RS1, 8080, [203, 0, 113, 5], 53, &[0u8; 3000]), 1480, 1);
    let (v, _) = run_all(&mut w, &frags);
    assert_eq!(v, vec![Verdict::Pass(PassReason::NotService), Verdict::Pass(PassReason::Fragment), Verdict::Pass(PassReason::Fragment)]);
    assert_eq!(w.conns(), 0);
}

/// Drops the kernel in front of IPVS makes too (bad headers and lengths,
/// source routes, TTL), or IPVS itself (no real server, no connection for
/// a non-SYN, a full table) — or that follow from forwarding without
/// reassembly (a fragment ahead of its first), or where xvs is documented
/// as stricter than IPVS (SYN+FIN/RST, port 0). What is redirected must
/// end as one of these, be forwarded, or go to the kernel.
const IPVS_LIKE_DROPS: &[DropReason] = &[
    DropReason::Truncated,
    DropReason::BadIpHeader,
    DropReason::BadIpLength,
    DropReason::BadIpChecksum,
    DropReason::BadIpOptions,
    DropReason::SourceRoute,
    DropReason::TtlExceeded,
    DropReason::BadL4Header,
    DropReason::BadIpv6Ext,
    DropReason::BadIcmp,
    DropReason::NoConn,
    DropReason::NoDest,
    DropReason::NoLocalPort,
    DropReason::NoNeighbour,
    DropReason::TooBig,
    DropReason::TableFull,
    DropReason::ConnClash,
    DropReason::FamilyMismatch,
    DropReason::FragNoHead,
    // The kernel's input path (docs/modes.md, "What xvs drops before a
    // connection"): frames for another host or VLAN, martian sources.
    DropReason::OtherHost,
    DropReason::UnknownVlan,
    DropReason::Martian,
    // Stricter than IPVS, as stateful firewalls are (documented there).
    DropReason::BadSyn,
    DropReason::ZeroPort,
];

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 400, failure_persistence: None, ..Default::default() })]
    /// The steering program and the worker are one specification: a
    /// frame the program (its mirror, held to the BPF object by
    /// `steer::tests`) redirects is forwarded, handed to another worker or
    /// to the kernel — never as "not IP", which would mean the two
    /// disagree on what a frame is — or dropped for a reason IPVS (or the
    /// kernel before it) drops it for. Sequences of frames, so that later
    /// ones meet the connections and fragment entries earlier ones made.
    #[test]
    fn what_is_redirected_is_forwarded_given_back_or_dropped_as_ipvs_would(
        fwd in proptest::sample::select(vec![FwdMethod::Nat, FwdMethod::FullNat, FwdMethod::Dr, FwdMethod::Tun]),
        workers in 1u16..3,
        seq in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 20), 1..12),
    ) {
        use crate::io::xdp::steer::Rule;
        use crate::io::xdp::steer_model::{classify, RuleSet, Steered};
        let m = model(fwd, "rr");
        let mut rules = Rule::for_services(&m.services, &m.groups);
        rules.extend(m.net.ports.iter().flat_map(|p| p.addrs.iter().map(|(a, _)| Rule::Local(*a))));
        let set = RuleSet::new(&rules);
        let mut w = Worker::new(workers - 1, workers, Arc::new(Snapshot::build(&m, None).unwrap()), SEC);
        for c in &seq {
            let f = steering_sample(c);
            if classify(&f, &set) != Steered::Redirect {
                continue;
            }
            let (v, out) = one(&mut w, SEC, f.clone());
            proptest::prop_assert!(w.counters().balance().holds(), "{}: {}", fwd, w.counters().balance());
            match v {
                Verdict::Tx { .. } => proptest::prop_assert!(verify(&out) || !verify(&f), "{fwd}: sent a broken frame for {:02x?}", f),
                Verdict::Handoff { .. } => {}
                Verdict::Pass(r) => proptest::prop_assert_ne!(r, PassReason::NonIp, "{}: the program redirected what the parser calls not IP: {:02x?}", fwd, f),
                Verdict::Drop(r) => proptest::prop_assert!(IPVS_LIKE_DROPS.contains(&r), "{fwd}: dropped as {r} {:02x?}", f),
            }
        }
    }
}

/// Each completion is counted (`csum_completed`); frames with full
/// checksums are not.
#[test]
fn completions_are_counted() {
    let mut w = worker(&model(FwdMethod::Nat, "rr"));
    one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, SYN, b""));
    assert_eq!(w.counters().csum_completed, 0);
    let (v, out) = one(&mut w, SEC, partial(&tcp4(CIP, 40000, VIP, 80, ACK, b"x")));
    assert_eq!(v, TX);
    assert!(verify(&out));
    assert_eq!(w.counters().csum_completed, 1);
}

/// On a port said to be a NIC the fast path skips the partial test: the
/// same verdicts and bytes as on a virtual port for full checksums; a
/// partial sum there (which a NIC never delivers) is forwarded as it is.
#[test]
fn nic_ports_skip_the_partial_test_only() {
    let m = model(FwdMethod::Nat, "rr");
    let (mut virt, mut nic) = (worker(&m), worker(&m));
    nic.set_nic_port(0, true);
    for f in [tcp4(CIP, 40000, VIP, 80, SYN, b""), tcp4(CIP, 40000, VIP, 80, ACK, b"x"), udp4(CIP, 5353, VIP, 53, b"q")] {
        assert_eq!(one(&mut virt, SEC, f.clone()), one(&mut nic, SEC, f));
    }
    let (v, out) = one(&mut nic, SEC, partial(&tcp4(CIP, 40000, VIP, 80, ACK, b"y")));
    assert_eq!(v, TX);
    assert!(!verify(&out), "not completed");
    assert_eq!(nic.counters().csum_completed, 0);
    nic.set_nic_port(0, false);
    let (v, out) = one(&mut nic, SEC, partial(&tcp4(CIP, 40000, VIP, 80, ACK, b"z")));
    assert_eq!(v, TX);
    assert!(verify(&out));
    assert_eq!(nic.counters().csum_completed, 1);
}

/// Every frame a worker is given ends in exactly one place, and the
/// counters say where: `rx + made = tx + dropped + to_kernel + handed_off`
/// (docs/operations.md), also when the driver could not do what a verdict
/// said (a full TX ring, a full inbox, a full kernel path).
#[test]
fn counters_balance_through_every_outcome() {
    let mut m = model(FwdMethod::Nat, "rr");
    m.services[1].dests.iter_mut().for_each(|d| d.weight = 0); // UDP: no server
    let snap = Arc::new(Snapshot::build(&m, None).unwrap());
    let mut w = Worker::new(0, 2, snap, SEC);
    // Pick a client the other worker owns and one this worker owns.
    let (mut mine, mut theirs) = (None, None);
    for h in 1..=50u8 {
        let c = [192, 0, 2, h];
        match one(&mut w, SEC, tcp4(c, 1000, VIP, 80, SYN, b"")).0 {
            TX => mine = mine.or(Some(c)),
            Verdict::Handoff { .. } => theirs = theirs.or(Some(c)),
            v => panic!("{v:?}"),
        }
    }
    let (mine, theirs) = (mine.unwrap(), theirs.unwrap());
    let frames = vec![
        tcp4(mine, 40000, VIP, 80, SYN, b""),       // forwarded
        tcp4(RS1, 8080, mine, 40000, SYN | ACK, b""), // forwarded (reply)
        tcp4(theirs, 40000, VIP, 80, SYN, b""),     // handed off
        tcp4(mine, 40001, VIP, 80, ACK, b""),       // dropped: no connection
        icmp4_echo(mine, VIP),                      // to the kernel
        udp4(mine, 5353, VIP, 53, b"q"),            // no server: ICMP error made in its place
        vec![0u8; 10],                              // dropped: truncated
    ];
    let before = w.counters().clone();
    let out = run(&mut w, SEC, &frames);
    let c = w.counters();
    assert_eq!(c.rx_packets - before.rx_packets, 7);
    assert_eq!(c.icmp_sent, 1, "{out:?}");
    assert!(c.balance().holds(), "{}", c.balance());
    // The driver could not transmit one frame nor hand one off, and the
    // kernel path was full for the echo request: they count as dropped.
    let (tx, handoffs, passes) = (c.tx_packets, c.handoffs, c.total_passes());
    w.count_refused(&Refused { tx_full: (1, 60), handoff_full: 1, ..Refused::default() });
    w.count_kernel_full(PassReason::Icmp);
    let c = w.counters();
    assert_eq!((c.tx_packets, c.handoffs, c.total_passes()), (tx - 1, handoffs - 1, passes - 1));
    assert_eq!(
        (c.drops[DropReason::TxFull as usize], c.drops[DropReason::HandoffFull as usize], c.drops[DropReason::KernelFull as usize]),
        (1, 1, 1)
    );
    assert!(c.balance().holds(), "{}", c.balance());
    // Frames handed in are received (and counted apart as well).
    w.count_handed_in(3);
    assert_eq!(w.counters().handed_in, 3);
}

/// The ICMP errors a worker makes are rate limited (`icmp_msgs_per_sec`,
/// `icmp_msgs_burst`, a worker's share); what is over the limit is only
/// dropped, counted. Fragmentation needed is never limited.
#[test]
fn icmp_errors_are_rate_limited_but_path_mtu_ones_are_not() {
    let mut m = model(FwdMethod::Tun, "rr");
    m.services[1].dests.iter_mut().for_each(|d| d.weight = 0); // UDP: no server
    m.icmp_msgs_per_sec = 10;
    m.icmp_msgs_burst = 5;
    let mut w = worker(&m);
    let udp: Vec<Vec<u8>> = (0..20).map(|i| udp4(CIP, 5000 + i, VIP, 53, b"q")).collect();
    let sent = |out: &[(Verdict, Vec<u8>)]| out.iter().filter(|(v, _)| *v == TX).count();
    assert_eq!(sent(&run(&mut w, SEC, &udp)), 5, "the burst");
    assert_eq!((w.counters().icmp_sent, w.counters().icmp_limited), (5, 15));
    assert_eq!(sent(&run(&mut w, SEC + SEC / 5, &udp)), 2, "200 ms at 10/s");
    assert_eq!(sent(&run(&mut w, 10 * SEC, &udp)), 5, "full again, no more than the burst");
    assert_eq!(w.counters().drops[DropReason::NoDest as usize], 60);
    assert!(w.counters().balance().holds(), "{}", w.counters().balance());
    // Packets too big for the tunnel, with DF: every one is answered.
    assert_eq!(one(&mut w, 10 * SEC, tcp4(CIP, 40000, VIP, 80, SYN, b"")).0, TX);
    let big: Vec<Vec<u8>> = (0..20).map(|_| tcp4(CIP, 40000, VIP, 80, ACK, &[0u8; 1441])).collect();
    assert_eq!(sent(&run(&mut w, 10 * SEC, &big)), 20);
    assert_eq!(w.counters().drops[DropReason::TooBig as usize], 20);
    // Two workers share the director's limit: 5 / 2, rounded up, each.
    let snap = Arc::new(Snapshot::build(&m, None).unwrap());
    for id in 0..2 {
        let mut w = Worker::new(id, 2, snap.clone(), SEC);
        let mine: Vec<Vec<u8>> = (0..200u16)
            .map(|i| udp4([192, 0, 2, (i % 250) as u8 + 1], 5000 + i, VIP, 53, b"q"))
            .filter(|f| {
                let mut probe = Worker::new(id, 2, snap.clone(), SEC);
                !matches!(one(&mut probe, SEC, f.clone()).0, Verdict::Handoff { .. })
            })
            .collect();
        assert!(mine.len() > 10);
        assert_eq!(sent(&run(&mut w, SEC, &mine)), 3, "worker {id}");
    }
}

/// Two workers of one director, and SYNs from clients each of them owns
/// (`per` clients a worker, in order).
fn two_workers(m: &Model, per: usize) -> (Vec<Worker>, Vec<Vec<[u8; 4]>>) {
    let snap = Arc::new(Snapshot::build(m, None).unwrap());
    let ws: Vec<Worker> = (0..2).map(|i| Worker::new(i, 2, snap.clone(), SEC)).collect();
    let mut mine = vec![Vec::new(), Vec::new()];
    for host in 1..=250u8 {
        let c = [192, 0, 2, host];
        let k = Key { saddr: Ipv4Addr::from(c), daddr: Ipv4Addr::from(VIP), sport: 1000, dport: 80, proto: 6 };
        let o = ws[0].owner(&k) as usize;
        if mine[o].len() < per {
            mine[o].push(c);
        }
    }
    assert!(mine.iter().all(|v| v.len() == per));
    (ws, mine)
}

/// The upper threshold (`-x`) holds for the director, not per worker, as
/// in IPVS: a server with `-x 2` takes two connections whichever workers
/// open them, and is usable again once they end.
#[test]
fn thresholds_are_global_across_workers() {
    let mut m = model(FwdMethod::Dr, "wrr");
    m.services[0].dests[0].weight = 0; // rs2 only
    m.services[0].dests[1].u_threshold = 2;
    m.services[0].dests[1].l_threshold = 1;
    let (mut ws, mine) = two_workers(&m, 2);
    let syn = |c: [u8; 4]| tcp4(c, 1000, VIP, 80, SYN, b"");
    // worker 0 opens one, worker 1 one: rs2 is at its threshold ...
    assert_eq!(dst_mac(&one(&mut ws[0], SEC, syn(mine[0][0])).1), RS2_MAC);
    assert_eq!(dst_mac(&one(&mut ws[1], SEC, syn(mine[1][0])).1), RS2_MAC);
    assert!(ws[0].snap.dests[1].shared.overloaded());
    // ... for both: each worker's second SYN finds no server (per-worker
    // counts would have let each take 2, 4 in all).
    for (i, w) in ws.iter_mut().enumerate() {
        one(w, SEC, syn(mine[i][1]));
        assert_eq!(w.counters().drops[DropReason::NoDest as usize], 1, "worker {i}");
        assert_eq!(w.loads()[1].conns(), 1, "worker {i}'s share");
    }
    // worker 1's connection ends (SYN_RECV, 60 s): 1 is not below the
    // lower threshold 1; worker 0's ends too: 0 is, for both workers.
    one(&mut ws[1], 70 * SEC, tcp4([198, 51, 100, 9], 1, [10, 0, 0, 9], 1, ACK, b""));
    assert!(ws[0].snap.dests[1].shared.overloaded(), "1 conn left");
    one(&mut ws[0], 70 * SEC, tcp4([198, 51, 100, 9], 1, [10, 0, 0, 9], 1, ACK, b""));
    assert_eq!(dst_mac(&one(&mut ws[1], 70 * SEC, syn(mine[1][1])).1), RS2_MAC);
}

/// lc sees the connections the other workers opened: after worker 0 put
/// two on rs1 and one on rs2, worker 1's first choice is rs2 (per-worker
/// counts would have made it rs1, the first of two idle servers).
#[test]
fn least_connection_counts_are_global_across_workers() {
    let mut m = model(FwdMethod::Dr, "lc");
    m.services[0].dests[1].weight = 1;
    let (mut ws, mine) = two_workers(&m, 3);
    let syn = |c: [u8; 4]| tcp4(c, 1000, VIP, 80, SYN, b"");
    let picks: Vec<[u8; 6]> = mine[0].iter().map(|&c| dst_mac(&one(&mut ws[0], SEC, syn(c)).1)).collect();
    assert_eq!(picks, vec![RS1_MAC, RS2_MAC, RS1_MAC]);
    assert_eq!(dst_mac(&one(&mut ws[1], SEC, syn(mine[1][0])).1), RS2_MAC);
    assert_eq!(dst_mac(&one(&mut ws[1], SEC, syn(mine[1][1])).1), RS1_MAC, "2 and 2: the first");
    // Each worker reports its own share; the director adds them.
    let share = |w: &Worker| (w.loads()[0].conns(), w.loads()[1].conns());
    assert_eq!((share(&ws[0]), share(&ws[1])), ((2, 1), (1, 1)));
    // The shared counts follow a connection between inactive and active.
    let snap = Arc::new(Snapshot::build(&m, None).unwrap());
    let mut w = Worker::new(0, 1, snap.clone(), SEC);
    let counts = || (snap.dests[0].shared.get().active, snap.dests[0].shared.get().inactive);
    one(&mut w, SEC, syn(CIP));
    assert_eq!(counts(), (0, 1), "SYN_RECV is inactive");
    one(&mut w, SEC, tcp4(CIP, 1000, VIP, 80, ACK, b""));
    assert_eq!(counts(), (1, 0), "ESTABLISHED is active");
    one(&mut w, SEC, tcp4(CIP, 1000, VIP, 80, FIN | ACK, b""));
    assert_eq!(counts(), (0, 1));
    one(&mut w, 1000 * SEC, tcp4([198, 51, 100, 9], 1, [10, 0, 0, 9], 1, ACK, b""));
    assert_eq!(snap.dests[0].shared.get(), DestLoad::default(), "released");
}

/// A worker adds its changes to the shared counts once per burst, not
/// per connection (`SharedDue`): its own decisions within the burst still
/// see them (lc alternates between two idle servers instead of sending
/// the whole burst to the first), the shared counts hold them all once
/// the burst ends, and the other worker's lc decides by them.
#[test]
fn a_burst_sees_its_own_new_connections_and_publishes_them_at_its_end() {
    let mut m = model(FwdMethod::Dr, "lc");
    m.services[0].dests[1].weight = 1;
    let (mut ws, mine) = two_workers(&m, 7);
    let syns: Vec<Vec<u8>> = mine[0][..6].iter().map(|&c| tcp4(c, 1000, VIP, 80, SYN, b"")).collect();
    let picks: Vec<[u8; 6]> = run(&mut ws[0], SEC, &syns).iter().map(|(_, f)| dst_mac(f)).collect();
    assert_eq!(picks, [RS1_MAC, RS2_MAC].repeat(3), "one burst");
    let snap = ws[0].snap.clone();
    let counts = |i: usize| {
        let l = snap.dests[i].shared.get();
        (l.active, l.inactive)
    };
    assert_eq!((counts(0), counts(1)), ((0, 3), (0, 3)), "all six, SYN_RECV, in the shared counts");
    // Worker 0's seventh goes to rs1 (3 and 3: the first); worker 1 then
    // sees 4 and 3 and picks rs2.
    assert_eq!(dst_mac(&one(&mut ws[0], SEC, tcp4(mine[0][6], 1000, VIP, 80, SYN, b"")).1), RS1_MAC);
    assert_eq!(dst_mac(&one(&mut ws[1], SEC, tcp4(mine[1][0], 1000, VIP, 80, SYN, b"")).1), RS2_MAC);
    // Established, then ended: moves and ends reach the shared counts.
    let acks: Vec<Vec<u8>> = mine[0][..6].iter().map(|&c| tcp4(c, 1000, VIP, 80, ACK, b"")).collect();
    run(&mut ws[0], SEC, &acks);
    assert_eq!((counts(0), counts(1)), ((3, 1), (3, 1)), "six established, two still SYN_RECV");
    let rsts: Vec<Vec<u8>> = mine[0][..6].iter().map(|&c| tcp4(c, 1000, VIP, 80, RST, b"")).collect();
    run(&mut ws[0], SEC, &rsts);
    assert_eq!((counts(0), counts(1)), ((0, 4), (0, 4)), "reset: CLOSE is inactive");
    ws[0].set_clock(1000 * SEC);
    ws[0].expire(usize::MAX);
    ws[1].set_clock(1000 * SEC);
    ws[1].expire(usize::MAX);
    assert_eq!((counts(0), counts(1)), ((0, 0), (0, 0)), "all ended");
}

/// IPVS's `sloppy_tcp` (`tcp_conn_schedule`): a mid-connection packet of a
/// flow this director does not know — ECMP moved it here — is scheduled
/// instead of dropped, in the state IPVS's table gives it; RST never is.
/// With mh, the server is the one another director chose on the SYN.
#[test]
fn sloppy_tcp_schedules_a_mid_connection_packet_as_ipvs_does() {
    let mut m = model(FwdMethod::Dr, "mh");
    let mut w = worker(&m);
    assert_eq!(one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, ACK, b"x")).0, Verdict::Drop(DropReason::NoConn), "off: IPVS's default");
    assert_eq!(w.conns(), 0);

    m.sloppy_tcp = true;
    let mut other = worker(&m);
    let mut w = worker(&m);
    let (v, on_syn) = one(&mut other, SEC, tcp4(CIP, 40000, VIP, 80, SYN, b""));
    assert_eq!(v, TX);
    let (v, out) = one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, ACK, b"GET /"));
    assert_eq!(v, TX);
    assert_eq!(dst_mac(&out), dst_mac(&on_syn), "mh: the same real server as the director that saw the SYN");
    // IPVS's INPUT-ONLY table: an ACK on a new (NONE) connection → CLOSE.
    assert_eq!(state_of(&w, 40000), Some("CLOSE"));
    assert_eq!((w.counters().new_conns, w.counters().sloppy_conns), (1, 1));
    // The flow goes on on that connection.
    let (v, again) = one(&mut w, 2 * SEC, tcp4(CIP, 40000, VIP, 80, ACK | PSH, b"more"));
    assert_eq!((v, dst_mac(&again)), (TX, dst_mac(&out)));
    assert_eq!((w.conns(), w.counters().new_conns), (1, 1));
    // A FIN of an unknown flow is scheduled too; a RST is not.
    assert_eq!(one(&mut w, 2 * SEC, tcp4(CIP, 40001, VIP, 80, FIN | ACK, b"")).0, TX);
    assert_eq!(state_of(&w, 40001), Some("CLOSE"));
    assert_eq!(one(&mut w, 2 * SEC, tcp4(CIP, 40002, VIP, 80, RST, b"")).0, Verdict::Drop(DropReason::NoConn));
    assert_eq!(one(&mut w, 2 * SEC, tcp4(CIP, 40002, VIP, 80, RST | ACK, b"")).0, Verdict::Drop(DropReason::NoConn));
    assert_eq!(state_of(&w, 40002), None);
    // A SYN with FIN stays refused; the input checks still apply.
    assert_eq!(one(&mut w, 2 * SEC, tcp4(CIP, 40003, VIP, 80, SYN | FIN, b"")).0, Verdict::Drop(DropReason::BadSyn));
    assert_eq!(one(&mut w, 2 * SEC, tcp4(CIP, 0, VIP, 80, ACK, b"")).0, Verdict::Drop(DropReason::ZeroPort));
    assert_eq!(w.counters().sloppy_conns, 2);

    // NAT: the INPUT table gives CLOSE too, and the reply goes back.
    let mut m = model(FwdMethod::Nat, "mh");
    m.sloppy_tcp = true;
    let mut w = worker(&m);
    let (v, out) = one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, ACK, b"x"));
    assert_eq!(v, TX);
    assert_eq!(state_of(&w, 40000), Some("CLOSE"));
    let rs = addr4(&out, 30);
    assert_eq!(one(&mut w, SEC, tcp4(rs, 8080, CIP, 40000, ACK, b"y")).0, TX);

    // Switched off by a new snapshot: unknown flows are dropped again,
    // known ones go on.
    let mut m2 = m.clone();
    m2.sloppy_tcp = false;
    let s2 = Arc::new(Snapshot::build(&m2, Some(&**w.snapshot())).unwrap());
    w.set_snapshot(s2);
    assert_eq!(one(&mut w, 3 * SEC, tcp4(CIP, 40009, VIP, 80, ACK, b"")).0, Verdict::Drop(DropReason::NoConn));
    assert_eq!(one(&mut w, 3 * SEC, tcp4(CIP, 40000, VIP, 80, ACK, b"")).0, TX);
}

/// A real server whose next hop is not resolved yet (just added; the
/// kernel is still asking for its MAC) takes no new connection: the
/// schedulers pass over it, so no SYN is lost while a reachable server
/// remains. With none reachable the SYN is dropped as `no_neighbour`
/// without a port unreachable, so the client's retransmission finds the
/// server once resolved instead of its connect() failing.
#[test]
fn servers_awaiting_their_neighbour_take_no_new_connection() {
    for sched in ["rr", "wrr", "wlc", "lc", "sed", "nq", "fo", "ovf", "twos", "lblc", "lblcr", "sh", "dh", "mh"] {
        let mut m = model(FwdMethod::Nat, sched);
        m.services[0].sched_flags = SchedFlags(SchedFlags::FLAG1); // sh/mh fall back past it
        m.net.neighbours.retain(|n| n.addr != ip("10.0.1.2"));
        let mut w = worker(&m);
        for port in 40000..40020 {
            let (v, out) = one(&mut w, SEC, tcp4(CIP, port, VIP, 80, SYN, b""));
            assert_eq!(v, TX, "{sched}: port {port}");
            assert_eq!(addr4(&out, 30), RS1, "{sched}: port {port} went to the unresolved server");
        }
        assert_eq!(w.counters().total_drops(), 0, "{sched}");
        // Neither resolved: a silent, counted drop.
        m.net.neighbours.retain(|n| n.addr != ip("10.0.1.1"));
        let mut w = worker(&m);
        let (v, _) = one(&mut w, SEC, tcp4(CIP, 40000, VIP, 80, SYN, b""));
        assert_eq!(v, Verdict::Drop(DropReason::NoNeighbour), "{sched}");
        let c = w.counters();
        assert_eq!((c.icmp_sent, c.tx_packets, w.conns()), (0, 0, 0), "{sched}");
    }
}

/// A connection's client count stops at `IN_PKTS_MAX` (drop_entry reads
/// 1 to 8); its packets then take `forward`'s settled path, which still
/// transmits them and follows the TCP state.
#[test]
fn the_client_count_stops_and_settled_connections_forward_as_before() {
    let m = model(FwdMethod::Nat, "rr");
    let mut w = worker(&m);
    nat_established(&mut w, SEC, 1000);
    for _ in 0..20 {
        assert_eq!(one(&mut w, SEC, tcp4(CIP, 1000, VIP, 80, ACK, b"x")).0, TX);
    }
    let mut seen = Vec::new();
    w.tables.v4.for_each(|_, c| seen.push((c.in_pkts, c.state)));
    assert_eq!(seen, vec![(crate::ipvs::seqadj::IN_PKTS_MAX, TcpState::Established as u8)]);
    assert_eq!(one(&mut w, SEC, tcp4(CIP, 1000, VIP, 80, FIN | ACK, b"")).0, TX);
    let mut seen = Vec::new();
    w.tables.v4.for_each(|_, c| seen.push((c.in_pkts, c.state)));
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, crate::ipvs::seqadj::IN_PKTS_MAX, "the count stays stopped");
    assert_ne!(seen[0].1, TcpState::Established as u8, "the settled path follows the FIN");
}

/// A NAT or FULLNAT director's index is sized for two keys a connection
/// (the reply's too), a DR or TUN one's for one: the same bound takes
/// twice the index bytes with NAT, and both stay at most 7/16 full.
#[test]
fn presized_indexes_count_the_reply_keys_of_nat() {
    let bytes = |fwd| {
        let mut m = model(fwd, "rr");
        m.max_conns = 100_000;
        worker(&m).presize_tables()
    };
    let (dr, tun, nat, fnat) = (bytes(FwdMethod::Dr), bytes(FwdMethod::Tun), bytes(FwdMethod::Nat), bytes(FwdMethod::FullNat));
    assert_eq!(dr, tun);
    assert_eq!(nat, fnat);
    assert_eq!(nat, 2 * dr, "NAT's index: twice DR's for the same max_conns");
    // Both families' indexes, 64-byte buckets of 7 keys each.
    assert!(dr / 2 / 64 * 7 * 7 >= 100_000 * 16, "DR at most 7/16 full");
}

