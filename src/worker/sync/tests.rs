//! Connection sync between two workers standing for two directors: what
//! the master's worker emits and when, and how the backup's worker takes
//! it and forwards with it.

use super::super::tests::*;
use super::*;
use crate::ctl::model::Model;
use crate::gen::packet::*;
use crate::sync::link::Walk;
use crate::wire::tcp_flags::*;
use crate::wire::{dst_mac, parse};

fn params(threshold: u8, period: u8) -> Params {
    Params { master: true, threshold, period, syn_recv: false }
}

/// A master's worker with a link.
fn master(m: &Model, p: Params) -> (Worker, Arc<Link>) {
    let mut w = worker(m);
    let link = Arc::new(Link::default());
    w.set_sync(Some((link.clone(), p)));
    (w, link)
}

fn events(l: &Link) -> Vec<SyncConn> {
    std::iter::from_fn(|| l.events.pop()).collect()
}

fn tcp(sport: u16, flags: u8) -> Vec<u8> {
    tcp4(CIP, sport, VIP, 80, flags, b"")
}

fn state(c: &SyncConn) -> TcpState {
    TcpState::from_u8(c.state)
}

#[test]
fn a_connection_is_synced_when_established_then_at_the_threshold_and_every_period() {
    let (mut w, link) = master(&model(FwdMethod::Nat, "rr"), params(3, 50));
    one(&mut w, SEC, tcp(40000, SYN));
    assert!(events(&link).is_empty(), "SYN_RECV is not synced");
    one(&mut w, SEC, tcp(40000, ACK));
    let e = events(&link);
    assert_eq!(e.len(), 1, "the change to ESTABLISHED");
    assert_eq!((state(&e[0]), e[0].timeout, e[0].daddr, e[0].dport), (TcpState::Established, 900, ip("10.0.1.1"), 8080));
    assert_eq!((e[0].caddr, e[0].cport, e[0].vaddr, e[0].vport, e[0].fwd), (ip("192.0.2.1"), 40000, ip("10.0.0.100"), 80, FwdMethod::Nat));
    assert!(!e[0].inactive && !e[0].template);
    one(&mut w, SEC, tcp(40000, ACK | PSH));
    assert_eq!(events(&link).len(), 1, "the third incoming packet (sync_threshold 3)");
    // Replies do not count (IPVS counts incoming packets).
    for _ in 0..100 {
        one(&mut w, SEC, tcp4(RS1, 8080, CIP, 40000, ACK, b""));
    }
    assert!(events(&link).is_empty());
    for i in 1..=50 {
        one(&mut w, SEC, tcp(40000, ACK));
        assert_eq!(events(&link).len(), (i == 50) as usize, "packet {}", 3 + i);
    }
    // Closing: every change is synced at once.
    one(&mut w, SEC, tcp(40000, FIN | ACK));
    let e = events(&link);
    assert_eq!(e.len(), 1);
    assert_eq!(state(&e[0]), TcpState::CloseWait);
    assert!(e[0].inactive);
    assert_eq!(link.events_dropped(), 0);
}

#[test]
fn syn_recv_and_udp_and_a_full_queue() {
    let (mut w, link) = master(&model(FwdMethod::Dr, "rr"), Params { syn_recv: true, ..params(3, 50) });
    one(&mut w, SEC, tcp(40000, SYN));
    let e = events(&link);
    assert_eq!(e.len(), 1);
    assert_eq!(state(&e[0]), TcpState::SynRecv);
    assert_eq!(e[0].timeout, 60);
    // UDP: at the third datagram.
    for i in 1..=3 {
        one(&mut w, SEC, udp4(CIP, 5353, VIP, 53, b"q"));
        assert_eq!(events(&link).len(), (i == 3) as usize);
    }
    // A full queue drops the event and counts it; forwarding goes on.
    while link.events.push(events_filler()).is_ok() {}
    let (v, _) = one(&mut w, SEC, tcp(40001, SYN));
    assert_eq!(v, TX);
    assert_eq!(link.events_dropped(), 1);
}

fn events_filler() -> SyncConn {
    SyncConn {
        caddr: ip("192.0.2.9"),
        vaddr: ip("10.0.0.100"),
        daddr: ip("10.0.1.1"),
        laddr: ip("0.0.0.0"),
        cport: 1,
        vport: 80,
        dport: 80,
        lport: 0,
        proto: 6,
        state: 1,
        fwd: FwdMethod::Dr,
        template: false,
        inactive: false,
        timeout: 1,
        seqadj: None,
    }
}

#[test]
fn no_events_without_a_master_daemon() {
    let mut w = worker(&model(FwdMethod::Nat, "rr"));
    let link = Arc::new(Link::default());
    w.set_sync(Some((link.clone(), Params { master: false, ..params(1, 1) })));
    for f in [SYN, ACK, ACK, ACK] {
        one(&mut w, SEC, tcp(40000, f));
    }
    assert!(events(&link).is_empty());
    assert!(w.sync.is_none());
}

/// The master makes connection 40001 (to rs2: rr's second) established;
/// returns its event.
fn established_on_rs2(m: &Model) -> SyncConn {
    let (mut a, link) = master(m, params(3, 50));
    one(&mut a, SEC, tcp(40000, SYN));
    one(&mut a, SEC, tcp(40001, SYN));
    one(&mut a, SEC, tcp(40001, ACK));
    let e = events(&link);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].daddr, ip("10.0.1.2"));
    e[0]
}

#[test]
fn a_backup_forwards_a_synced_connection_to_the_same_server_without_scheduling() {
    let m = model(FwdMethod::Nat, "rr");
    let ev = established_on_rs2(&m);
    let mut b = worker(&m);
    assert_eq!(b.sync_apply(&ev), Ok(Applied::Added));
    assert_eq!(b.conns(), 1);
    assert_eq!((b.loads()[1].active, b.loads()[1].inactive), (1, 0));
    // Data from the client goes to rs2 (rr here would pick rs1).
    let (v, out) = one(&mut b, SEC, tcp(40001, ACK | PSH));
    assert_eq!((v, dst_mac(&out)), (TX, RS2_MAC));
    assert_eq!(parse(&out).unwrap().dport, 8080);
    // rs2's answer goes back to the client through the gateway.
    let (v, out) = one(&mut b, SEC, tcp4(RS2, 8080, CIP, 40001, ACK, b"hi"));
    assert_eq!((v, dst_mac(&out)), (TX, GW_MAC));
    assert_eq!((b.counters().new_conns, b.counters().drops[crate::stats::DropReason::NoConn as usize]), (0, 0));
    // The same record again is an update; a state change moves the load.
    let mut fin = ev;
    fin.state = TcpState::FinWait as u8;
    fin.inactive = true;
    assert_eq!(b.sync_apply(&fin), Ok(Applied::Updated));
    assert_eq!((b.loads()[1].active, b.loads()[1].inactive), (0, 1));
    assert_eq!(b.conns(), 1);
    // The master rescheduled the client's ports to rs1: the entry follows.
    let mut moved = ev;
    moved.daddr = ip("10.0.1.1");
    assert_eq!(b.sync_apply(&moved), Ok(Applied::Added));
    let (_, out) = one(&mut b, SEC, tcp(40001, ACK));
    assert_eq!(dst_mac(&out), RS1_MAC);
}

#[test]
fn the_timer_is_the_synced_timeout() {
    let m = model(FwdMethod::Dr, "rr");
    let mut ev = established_on_rs2(&m);
    ev.timeout = 10;
    let mut b = worker(&m);
    b.sync_apply(&ev).unwrap();
    b.set_clock(SEC + 9 * SEC);
    b.expire(1000);
    assert_eq!(b.conns(), 1);
    b.set_clock(SEC + 11 * SEC);
    b.expire(1000);
    assert_eq!(b.conns(), 0, "expired after its 10 s");
    assert_eq!(b.loads()[1].active, 0);
}

#[test]
fn the_client_hop_is_learned_from_the_first_client_packet() {
    let m = model(FwdMethod::Nat, "rr");
    let mut ev = established_on_rs2(&m);
    // A client on the director's own LAN whose MAC the kernel has not seen.
    ev.caddr = ip("10.0.0.7");
    let mut b = worker(&m);
    b.sync_apply(&ev).unwrap();
    let reply = || tcp4(RS2, 8080, [10, 0, 0, 7], 40001, ACK, b"x");
    let (v, _) = one(&mut b, SEC, reply());
    assert_eq!(v, crate::worker::Verdict::Drop(crate::stats::DropReason::NoNeighbour));
    let (v, _) = one(&mut b, SEC, tcp4([10, 0, 0, 7], 40001, VIP, 80, ACK, b""));
    assert_eq!(v, TX);
    let (v, out) = one(&mut b, SEC, reply());
    assert_eq!((v, dst_mac(&out)), (TX, MAC_CLIENT));
}

#[test]
fn fullnat_keeps_its_local_port_reserved() {
    let m = model(FwdMethod::FullNat, "rr");
    let (mut a, link) = master(&m, params(3, 50));
    one(&mut a, SEC, tcp(40000, SYN));
    one(&mut a, SEC, tcp(40000, ACK));
    let ev = events(&link)[0];
    assert_eq!(ev.laddr, ip("10.0.0.200"));
    assert!(ev.lport >= crate::ipvs::laddr::PORT_MIN);
    let mut b = worker(&m);
    assert_eq!(b.sync_apply(&ev), Ok(Applied::Added));
    assert_eq!(b.laddr_in_use(ip("10.0.0.200")), 1);
    // The real server's reply to the local port reaches the client.
    let (v, out) = one(&mut b, SEC, tcp4(RS1, 8080, LIP, ev.lport, ACK, b"x"));
    assert_eq!(v, TX);
    let p = parse(&out).unwrap();
    assert_eq!((addr4(&out, 14 + 16), p.dport), (CIP, 40000));
    // Another client's connection on the same local port: refused.
    let mut other = ev;
    other.cport = 40002;
    assert_eq!(b.sync_apply(&other), Err(Refused::PortTaken));
    // New connections on the backup never get that port.
    for port in 41000..41100 {
        one(&mut b, SEC, tcp(port, SYN));
    }
    assert_eq!(b.laddr_in_use(ip("10.0.0.200")), 101);
    // Not a local address of the service here.
    let mut bad = ev;
    bad.cport = 40003;
    bad.laddr = ip("10.0.0.201");
    assert_eq!(b.sync_apply(&bad), Err(Refused::LocalAddr));
}

#[test]
fn fullnat_goes_to_the_worker_its_port_names() {
    let m = model(FwdMethod::FullNat, "rr");
    let snap = Arc::new(Snapshot::build(&m, None).unwrap());
    let mut ws: Vec<Worker> = (0..2).map(|i| Worker::new(i, 2, snap.clone(), SEC)).collect();
    // Find a client whose flows worker 1 owns, make a connection there.
    let c = (1..=250u8).find(|&x| sync_owner(&snap, 2, &SyncConn { caddr: IpAddr::from([192, 0, 2, x]), ..events_filler() }) == 1).unwrap();
    let link = Arc::new(Link::default());
    ws[1].set_sync(Some((link.clone(), params(3, 50))));
    one(&mut ws[1], SEC, tcp4([192, 0, 2, c], 40000, VIP, 80, SYN, b""));
    one(&mut ws[1], SEC, tcp4([192, 0, 2, c], 40000, VIP, 80, ACK, b""));
    let ev = events(&link)[0];
    assert_eq!(sync_owner(&snap, 2, &ev), 1);
    let mut b: Vec<Worker> = (0..2).map(|i| Worker::new(i, 2, snap.clone(), SEC)).collect();
    assert_eq!(b[0].sync_apply(&ev), Err(Refused::Owner));
    assert_eq!(b[1].sync_apply(&ev), Ok(Applied::Added));
}

#[test]
fn what_does_not_fit_this_director_is_refused() {
    let m = model(FwdMethod::Nat, "rr");
    let ev = established_on_rs2(&m);
    let mut b = worker(&m);
    let mut x = ev;
    x.vaddr = ip("10.0.0.101");
    assert_eq!(b.sync_apply(&x), Err(Refused::NoService));
    let mut x = ev;
    x.daddr = ip("10.0.1.9");
    assert_eq!(b.sync_apply(&x), Err(Refused::NoDest));
    let mut x = ev;
    x.template = true;
    x.proto = TEMPLATE_BIT | 6;
    assert_eq!(b.sync_apply(&x), Err(Refused::NotPersistent));
    assert_eq!(b.conns(), 0);
}

#[test]
fn templates_travel_with_their_connections_and_keep_persistence_on_the_backup() {
    let m = persistent(FwdMethod::Dr, 300, 32);
    let (mut a, link) = master(&m, params(3, 50));
    // rr gives the first client rs1; its template says so.
    one(&mut a, SEC, tcp(40000, SYN));
    one(&mut a, SEC, tcp(40000, ACK));
    let e = events(&link);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(!e[0].template && e[1].template);
    assert_eq!((e[1].timeout, e[1].daddr, e[1].cport, e[1].vport), (300, ip("10.0.1.1"), 0, 80));
    // A backup whose scheduler would start elsewhere: persistence wins.
    let mut b = worker(&m);
    one(&mut b, SEC, tcp4([192, 0, 2, 77], 1, VIP, 80, SYN, b""));
    for ev in &e {
        assert_eq!(b.sync_apply(ev), Ok(Applied::Added));
    }
    assert_eq!(b.loads()[0].persist, 2, "192.0.2.77's own template and the synced one");
    let (_, out) = one(&mut b, SEC, tcp(40500, SYN));
    assert_eq!(dst_mac(&out), RS1_MAC, "the client's new connection follows its template");
}

#[test]
fn walks_copy_the_table_in_slices_or_only_what_had_traffic() {
    let m = model(FwdMethod::Nat, "rr");
    let mut w = worker(&m);
    for p in 0..100 {
        one(&mut w, SEC, tcp(40000 + p, SYN));
        one(&mut w, SEC, tcp(40000 + p, ACK));
    }
    let mut all = Vec::new();
    let mut walk = Walk::new(1, WalkKind::All);
    walk.rows = Vec::with_capacity(7);
    let mut passes = 0;
    loop {
        passes += 1;
        w.sync_walk(&mut walk, 16);
        all.append(&mut walk.rows);
        if walk.done {
            break;
        }
        walk.rows = Vec::with_capacity(7);
    }
    assert!(passes > 14, "{passes}");
    all.sort_by_key(|c| c.cport);
    all.dedup();
    assert_eq!(all.len(), 100, "every connection once");
    // Ten seconds later only the ten touched since come in a refresh.
    let later = SEC + 10 * SEC;
    for p in 0..10 {
        one(&mut w, later, tcp(40000 + p, ACK));
    }
    let mut walk = Walk::new(2, WalkKind::Recent { ticks: timer::secs(5) });
    w.sync_walk(&mut walk, 100_000);
    assert!(walk.done);
    assert_eq!(walk.rows.len(), 10);
}

#[test]
fn with_rss_ownership_a_received_connection_goes_where_the_nic_delivers_its_flow() {
    use crate::ipvs::rss::{RssConfig, RssMap, DEFAULT_KEY};
    let map = RssMap::new(RssConfig { key: DEFAULT_KEY.to_vec(), indir: (0..128).map(|b| b % 4).collect() }, 4).unwrap();
    for fwd in [FwdMethod::Dr, FwdMethod::Nat] {
        let mut snap = Snapshot::build(&model(fwd, "rr"), None).unwrap();
        snap.rss = Some(Arc::new(map.clone()));
        let mut spread = [0; 4];
        for x in 1..=40u8 {
            let sc = SyncConn { caddr: IpAddr::from([192, 0, 2, x]), fwd, ..events_filler() };
            let want = if fwd == FwdMethod::Nat {
                // A NAT VIP is client-owned in every mode.
                (crate::worker::shard_hash(&[192, 0, 2, x]) % 4) as u16
            } else {
                map.owner(&[192, 0, 2, x], &VIP)
            };
            assert_eq!(sync_owner(&snap, 4, &sc), want, "{fwd} 192.0.2.{x}");
            spread[want as usize] += 1;
        }
        assert!(spread.iter().all(|&n| n > 0), "{fwd}: {spread:?}");
    }
}
