//! Worker tests of the PROXY protocol and the sequence adjustment under
//! it (`ipvs::seqadj`): through FULLNAT and NAT, the header in front of
//! the client's stream, retransmissions, a client that speaks second,
//! SACK and the MTU — every number and checksum checked.

use super::tests::*;
use super::*;
use crate::gen::packet::*;
use crate::wire::proxy::Version;
use crate::wire::tcp_flags::*;
use crate::wire::{be16, tcpseq};

/// A client or server segment with these numbers (and options).
#[allow(clippy::too_many_arguments)]
fn seg(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = tcp4(src, sport, dst, dport, flags, payload);
    f[14 + 20 + 4..14 + 20 + 8].copy_from_slice(&seq.to_be_bytes());
    f[14 + 20 + 8..14 + 20 + 12].copy_from_slice(&ack.to_be_bytes());
    refresh_tcp_checksum(&mut f);
    f
}

/// `f` with a SACK option of these blocks (after two NOPs).
fn with_sack(f: &[u8], blocks: &[(u32, u32)]) -> Vec<u8> {
    let mut o = vec![1u8, 1, 5, (2 + 8 * blocks.len()) as u8];
    for (l, r) in blocks {
        o.extend_from_slice(&l.to_be_bytes());
        o.extend_from_slice(&r.to_be_bytes());
    }
    let mut g = f[..14 + 40].to_vec();
    g.extend_from_slice(&o);
    g.extend_from_slice(&f[14 + 40..]);
    g[14 + 32] = (((20 + o.len()) / 4) as u8) << 4;
    let tl = be16(&g, 16) + o.len() as u16;
    g[16..18].copy_from_slice(&tl.to_be_bytes());
    refresh_ipv4_checksum(&mut g, 14);
    refresh_tcp_checksum(&mut g);
    g
}

fn proxied(fwd: FwdMethod, v: Version) -> Worker {
    let mut m = model(fwd, "rr");
    m.toa = false;
    for s in &mut m.services {
        for d in &mut s.dests {
            d.proxy = Some(v);
        }
    }
    worker(&m)
}

fn seq_ack(f: &[u8]) -> (u32, u32) {
    let m = parse(f).unwrap();
    (tcpseq::seq(f, &m), tcpseq::ack(f, &m))
}

fn payload(f: &[u8]) -> &[u8] {
    let m = parse(f).unwrap();
    let l4 = m.l4 as usize;
    &f[l4 + ((f[l4 + 12] >> 4) as usize) * 4..m.end as usize]
}

const ISN: u32 = 0xffff_fff0; // the client's: its stream wraps
const RSN: u32 = 7000; // the server's
const V1: &[u8] = b"PROXY TCP4 192.0.2.1 10.0.0.100 40000 80\r\n";

#[test]
fn fullnat_v1_header_goes_first_and_the_offset_holds() {
    let mut w = proxied(FwdMethod::FullNat, Version::V1);
    let l = V1.len() as u32;
    let s = ISN.wrapping_add(1);
    let (v, syn) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, SYN, ISN, 0, b""));
    assert_eq!(v, TX);
    assert_eq!(seq_ack(&syn).0, ISN, "the SYN is not moved");
    let lport = parse(&syn).unwrap().sport;
    let back = |w: &mut Worker, flags, seq, ack, data: &[u8]| one(w, SEC, seg(RS1, 8080, LIP, lport, flags, seq, ack, data));
    let (_, sa) = back(&mut w, SYN | ACK, RSN, s, b"");
    assert_eq!(seq_ack(&sa), (RSN, s), "the SYN-ACK acknowledges the SYN only");
    // the handshake ACK carries the header (its own segment: a client
    // that speaks second gets it all the same)
    let (v, hs) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, ACK, s, RSN + 1, b""));
    assert_eq!(v, TX);
    assert!(verify(&hs), "checksums from scratch");
    assert_eq!(payload(&hs), V1);
    assert_eq!(seq_ack(&hs), (s, RSN + 1));
    let m = parse(&hs).unwrap();
    assert_eq!((addr4(&hs, 26), m.sport, addr4(&hs, 30), m.dport), (LIP, lport, RS1, 8080));
    // first data before the server acknowledged: the header again in
    // front of it, at the same place (no second offset)
    let (_, d1) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, ACK | PSH, s, RSN + 1, b"GET / HTTP/1.1\r\n"));
    assert!(verify(&d1));
    assert_eq!(seq_ack(&d1).0, s);
    assert_eq!(payload(&d1), [V1, b"GET / HTTP/1.1\r\n"].concat());
    // the server acknowledges header and data: the client sees its own
    let (_, a1) = back(&mut w, ACK, RSN + 1, s.wrapping_add(l + 16), b"HTTP/1.1 200 OK\r\n");
    assert!(verify(&a1));
    assert_eq!(seq_ack(&a1), (RSN + 1, s.wrapping_add(16)));
    // an ack inside the header is the stream's start to the client
    let (_, a0) = back(&mut w, ACK, RSN + 1, s.wrapping_add(5), b"");
    assert_eq!(seq_ack(&a0).1, s);
    // a retransmission of the first data after the acknowledgement: the
    // same bytes at the same server-side place, without a header
    let (_, r1) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, ACK | PSH, s, RSN + 18, b"GET / HTTP/1.1\r\n"));
    assert_eq!((seq_ack(&r1).0, payload(&r1)), (s.wrapping_add(l), &b"GET / HTTP/1.1\r\n"[..]));
    // later data is shifted (across the client's wrap)
    let (_, d2) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, ACK, s.wrapping_add(16), RSN + 18, b"Host: x\r\n\r\n"));
    assert!(verify(&d2));
    assert_eq!(seq_ack(&d2), (s.wrapping_add(16 + l), RSN + 18));
    // SACK blocks from the server are moved with the acknowledgement
    let sacked = with_sack(&seg(RS1, 8080, LIP, lport, ACK, RSN + 18, s.wrapping_add(l + 16), b""), &[(s.wrapping_add(l + 100), s.wrapping_add(l + 200))]);
    let (_, sk) = one(&mut w, SEC, sacked);
    assert!(verify(&sk));
    let m = parse(&sk).unwrap();
    assert_eq!(tcpseq::sack_edges(&sk, &m), vec![s.wrapping_add(100), s.wrapping_add(200)]);
    // the client's SACK blocks (of server data) do not move
    let cs = with_sack(&seg(CIP, 40000, VIP, 80, ACK, s.wrapping_add(27), RSN + 18, b""), &[(RSN + 50, RSN + 60)]);
    let (_, cs) = one(&mut w, SEC, cs);
    let m = parse(&cs).unwrap();
    assert_eq!(tcpseq::sack_edges(&cs, &m), vec![RSN + 50, RSN + 60]);
    assert_eq!(seq_ack(&cs).0, s.wrapping_add(27 + l));
    assert_eq!(w.counters().proxy_headers, 2);
    assert_eq!(w.counters().proxy_cut, 0);
}

#[test]
fn a_client_that_speaks_second_gets_its_acks_shifted_once_the_header_is_in() {
    let mut w = proxied(FwdMethod::FullNat, Version::V2);
    let s = 101u32;
    let (_, syn) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, SYN, 100, 0, b""));
    let lport = parse(&syn).unwrap().sport;
    one(&mut w, SEC, seg(RS1, 8080, LIP, lport, SYN | ACK, RSN, s, b""));
    let (_, hs) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, ACK, s, RSN + 1, b""));
    let h = payload(&hs).to_vec();
    assert_eq!(h.len(), 28);
    assert_eq!(&h[..12], &crate::wire::proxy::SIG_V2);
    assert_eq!(&h[16..28], &[192, 0, 2, 1, 10, 0, 0, 100, 0x9c, 0x40, 0, 80]);
    // the server speaks first, acknowledging the header
    let (_, banner) = one(&mut w, SEC, seg(RS1, 8080, LIP, lport, ACK | PSH, RSN + 1, s + 28, b"220 hello\r\n"));
    assert_eq!(seq_ack(&banner), (RSN + 1, s));
    // the client's ACK of it now goes past the header
    let (_, ca) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, ACK, s, RSN + 12, b""));
    assert!(verify(&ca));
    assert_eq!((seq_ack(&ca), payload(&ca).len()), ((s + 28, RSN + 12), 0));
    // and its first data too
    let (_, cd) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, ACK, s, RSN + 12, b"EHLO x\r\n"));
    assert_eq!((seq_ack(&cd).0, payload(&cd)), (s + 28, &b"EHLO x\r\n"[..]));
    assert_eq!(w.counters().proxy_headers, 1);
    // a RST at the header's place before the server had it keeps its number
    let (_, syn) = one(&mut w, SEC, seg(CIP, 40001, VIP, 80, SYN, 500, 0, b""));
    let lport = parse(&syn).unwrap().sport;
    one(&mut w, SEC, seg(RS2, 8080, LIP, lport, SYN | ACK, RSN, 501, b""));
    let (_, rst) = one(&mut w, SEC, seg(CIP, 40001, VIP, 80, RST, 501, 0, b""));
    assert_eq!((seq_ack(&rst).0, payload(&rst).len()), (501, 0));
}

#[test]
fn a_full_size_first_segment_leaves_its_tail_for_the_client_to_resend() {
    let mut w = proxied(FwdMethod::FullNat, Version::V1);
    let l = V1.len();
    let s = 1001u32;
    let (_, syn) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, SYN, 1000, 0, b""));
    let lport = parse(&syn).unwrap().sport;
    one(&mut w, SEC, seg(RS1, 8080, LIP, lport, SYN | ACK, RSN, s, b""));
    let data: Vec<u8> = (0..1460u32).map(|i| i as u8).collect();
    let (v, d) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, ACK | FIN, s, RSN + 1, &data));
    assert_eq!(v, TX);
    assert!(verify(&d));
    let m = parse(&d).unwrap();
    assert_eq!(m.ip_len(), 1500, "within the MTU");
    assert_eq!(payload(&d), [V1, &data[..1460 - l]].concat());
    assert_eq!(m.tcp_flags & FIN, 0, "the FIN stays with the bytes left out");
    assert_eq!((w.counters().proxy_headers, w.counters().proxy_cut), (1, 1));
    // the server acknowledges what it got; the client resends the rest
    let (_, a) = one(&mut w, SEC, seg(RS1, 8080, LIP, lport, ACK, RSN + 1, s + 1460, b""));
    assert_eq!(seq_ack(&a).1, s + (1460 - l) as u32);
    let rest = &data[1460 - l..];
    let (_, r) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, ACK | FIN, s + (1460 - l) as u32, RSN + 1, rest));
    assert_eq!((seq_ack(&r).0, payload(&r)), (s + 1460, rest));
}

#[test]
fn nat_too_and_other_servers_untouched() {
    let mut w = proxied(FwdMethod::Nat, Version::V1);
    let (_, _) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, SYN, 10, 0, b""));
    one(&mut w, SEC, seg(RS1, 8080, CIP, 40000, SYN | ACK, RSN, 11, b""));
    let (_, d) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, ACK, 11, RSN + 1, b"x"));
    assert!(verify(&d));
    assert_eq!(payload(&d), [V1, b"x"].concat());
    let (_, a) = one(&mut w, SEC, seg(RS1, 8080, CIP, 40000, ACK, RSN + 1, 11 + V1.len() as u32 + 1, b""));
    assert_eq!(seq_ack(&a).1, 12);
    // UDP to a proxied server is not touched
    let (v, u) = one(&mut w, SEC, udp4(CIP, 5000, VIP, 53, b"q"));
    assert_eq!((v, payload_udp(&u)), (TX, &b"q"[..]));
    // without proxy_protocol nothing moves, and the entry never grows
    let mut w = worker(&model(FwdMethod::FullNat, "rr"));
    let (_, syn) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, SYN, 10, 0, b""));
    let lport = parse(&syn).unwrap().sport;
    one(&mut w, SEC, seg(RS1, 8080, LIP, lport, SYN | ACK, RSN, 11, b""));
    let (_, d) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, ACK, 11, RSN + 1, b"x"));
    assert_eq!((seq_ack(&d).0, payload(&d)), (11, &b"x"[..]));
    assert_eq!(w.seqadj[0].bytes() + w.seqadj[1].bytes(), 0);
    assert_eq!(std::mem::size_of::<Conn<std::net::Ipv4Addr>>(), 64);
}

fn payload_udp(f: &[u8]) -> &[u8] {
    let m = parse(f).unwrap();
    &f[m.l4 as usize + 8..m.end as usize]
}

#[test]
fn many_packets_keep_the_count_below_the_flag() {
    let mut w = proxied(FwdMethod::FullNat, Version::V1);
    let (_, syn) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, SYN, 10, 0, b""));
    let lport = parse(&syn).unwrap().sport;
    one(&mut w, SEC, seg(RS1, 8080, LIP, lport, SYN | ACK, RSN, 11, b""));
    let frames: Vec<Vec<u8>> = (0..300).map(|_| seg(CIP, 40000, VIP, 80, ACK, 11 + 1, RSN + 1, b"")).collect();
    run(&mut w, SEC, &frames);
    let mut flags = Vec::new();
    w.tables.v4.for_each(|_, c| flags.push(c.in_pkts));
    assert_eq!(flags, vec![SEQ_ADJ | seqadj::IN_PKTS_MAX], "the count stops at IN_PKTS_MAX below the bit");
    let (_, d) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, ACK, 12, RSN + 1, b"y"));
    assert_eq!(seq_ack(&d).0, 12 + V1.len() as u32, "still adjusted");
}

#[test]
fn a_sloppy_takeover_mid_stream_gets_no_offset() {
    let mut m = model(FwdMethod::FullNat, "rr");
    m.toa = false;
    m.sloppy_tcp = true;
    for d in &mut m.services[0].dests {
        d.proxy = Some(Version::V1);
    }
    let mut w = worker(&m);
    // an ACK of a connection another director started
    let (v, out) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, ACK, 5000, RSN, b"more"));
    assert_eq!(v, TX);
    assert_eq!(w.counters().sloppy_conns, 1);
    assert_eq!((seq_ack(&out), payload(&out)), ((5000, RSN), &b"more"[..]), "forwarded as it came");
    assert_eq!(w.seqadj[0].bytes(), 0, "no entry");
    assert_eq!(w.counters().proxy_headers, 0);
}

// ---- connection sync of an adjusted connection ----

use crate::sync::conn::SyncConn;
use crate::sync::link::{Link, Params};
use std::sync::Arc;

pub(super) fn events(l: &Link) -> Vec<SyncConn> {
    std::iter::from_fn(|| l.events.pop()).collect()
}

/// `sc` as a backup receives it: a wire record in a message, decoded.
pub(super) fn over_the_wire(sc: &SyncConn) -> SyncConn {
    use crate::sync::wire::{decode, Decoded, MsgBuilder};
    let mut b = MsgBuilder::new(1, 1472);
    assert_eq!(b.push(&sc.to_record(), 0), Ok(true));
    let mut d = Decoded::default();
    decode(b.finish(None, false), &mut d).unwrap();
    let r = d.records[0].as_ref().expect("a sound record");
    SyncConn::from_record(r).expect("taken")
}

/// A master (A) with a PROXY v1 connection through FULLNAT syncs it; a
/// backup (B) that received it rewrites every segment after a takeover
/// exactly as A does: client data shifted past the header, the server's
/// acknowledgements and SACK edges moved back, a retransmitted first
/// segment — byte for byte the frames A sends.
#[test]
fn a_backup_continues_an_adjusted_stream_exactly_as_the_master() {
    let (mut a, mut b) = (proxied(FwdMethod::FullNat, Version::V1), proxied(FwdMethod::FullNat, Version::V1));
    let link = Arc::new(Link::default());
    a.set_sync(Some((link.clone(), Params { master: true, threshold: 3, period: 50, syn_recv: false })));
    let l = V1.len() as u32;
    let s = ISN.wrapping_add(1);
    let c = |flags, seq: u32, ack, data: &[u8]| seg(CIP, 40000, VIP, 80, flags, seq, ack, data);
    let (_, syn) = one(&mut a, SEC, c(SYN, ISN, 0, b""));
    let lport = parse(&syn).unwrap().sport;
    let r = |flags, seq, ack: u32, data: &[u8]| seg(RS1, 8080, LIP, lport, flags, seq, ack, data);
    one(&mut a, SEC, r(SYN | ACK, RSN, s, b""));
    one(&mut a, SEC, c(ACK, s, RSN + 1, b""));
    let es = events(&link);
    assert_eq!(es.len(), 1, "ESTABLISHED");
    let want = seqadj::SeqAdj { start: s, out_delta: 0, len: l as u16, proxy: 1, acked: false, ..Default::default() };
    assert_eq!(es[0].seqadj, Some(want), "the offset travels with the connection");
    // A backup that heard only this goes on with the header pending: a
    // first segment gets it in front, as A would.
    let mut early = proxied(FwdMethod::FullNat, Version::V1);
    assert_eq!(early.sync_apply(&over_the_wire(&es[0])), Ok(Applied::Added));
    let first = c(ACK | PSH, s, RSN + 1, b"GET / HTTP/1.1\r\n");
    let (v, e1) = one(&mut early, SEC, first.clone());
    let (_, a1) = one(&mut a, SEC, first);
    let third = events(&link);
    assert_eq!(third.iter().map(|e| e.seqadj).collect::<Vec<_>>(), vec![Some(want)], "the third packet's (sync_threshold)");
    assert_eq!(v, TX);
    assert_eq!(e1, a1, "the header in front, at the stream's start");
    assert_eq!(payload(&e1), [V1, b"GET / HTTP/1.1\r\n"].concat());
    // The server acknowledges the header: news for the backup at once.
    let (_, _) = one(&mut a, SEC, r(ACK, RSN + 1, s.wrapping_add(l + 16), b"HTTP/1.1 200 OK\r\n"));
    let acked = events(&link);
    assert_eq!(acked.len(), 1, "the acknowledgement of the header is synced");
    assert_eq!(acked[0].seqadj, Some(seqadj::SeqAdj { acked: true, ..want }));
    assert_eq!(early.sync_apply(&over_the_wire(&acked[0])), Ok(Applied::Updated));
    assert_eq!(b.sync_apply(&over_the_wire(&acked[0])), Ok(Applied::Added));
    // The takeover: the same segments through A and through B.
    let sacked = with_sack(&r(ACK, RSN + 18, s.wrapping_add(l + 16), b""), &[(s.wrapping_add(l + 100), s.wrapping_add(l + 200))]);
    let mid = [
        c(ACK | PSH, s.wrapping_add(16), RSN + 18, b"Host: x\r\n\r\n"),
        c(ACK | PSH, s, RSN + 18, b"GET / HTTP/1.1\r\n"),
        r(ACK | PSH, RSN + 18, s.wrapping_add(l + 27), b"body"),
        sacked,
        with_sack(&c(ACK, s.wrapping_add(27), RSN + 22, b""), &[(RSN + 50, RSN + 60)]),
        c(ACK | FIN, s.wrapping_add(27), RSN + 22, b""),
    ];
    for (k, f) in mid.iter().enumerate() {
        let (va, fa) = one(&mut a, SEC, f.clone());
        let (vb, fb) = one(&mut b, SEC, f.clone());
        let (ve, fe) = one(&mut early, SEC, f.clone());
        assert_eq!((va, vb, ve), (TX, TX, TX), "segment {k}");
        assert!(verify(&fb), "segment {k}");
        assert_eq!(fb, fa, "segment {k}: the backup's frame is the master's");
        assert_eq!(fe, fa, "segment {k}: so is the one updated by the news");
    }
    // e.g. the client's data went shifted, the server's SACK moved back
    let (_, d) = one(&mut b, SEC, c(ACK, s.wrapping_add(28), RSN + 22, b"z"));
    assert_eq!(seq_ack(&d).0, s.wrapping_add(28 + l));
    assert_eq!(b.counters().proxy_headers, 0, "B never had to put the header in");
    // A table walk (a bulk pull, a refresh) carries the offset too.
    let mut walk = crate::sync::link::Walk::new(1, crate::sync::link::WalkKind::All);
    walk.rows = Vec::with_capacity(8);
    b.sync_walk(&mut walk, 100_000);
    assert_eq!(walk.rows.len(), 1);
    assert_eq!(walk.rows[0].seqadj, Some(seqadj::SeqAdj { acked: true, ..want }));
}

/// What the backup cannot rewrite with it (its own real server is DR)
/// goes in without the offset; a record without one leaves the entry
/// the connection has (a master that does not sync offsets).
#[test]
fn a_synced_offset_only_where_the_stream_is_rewritten() {
    let mut a = proxied(FwdMethod::Nat, Version::V2);
    let link = Arc::new(Link::default());
    a.set_sync(Some((link.clone(), Params { master: true, threshold: 3, period: 50, syn_recv: false })));
    one(&mut a, SEC, seg(CIP, 40000, VIP, 80, SYN, 100, 0, b""));
    one(&mut a, SEC, seg(RS1, 8080, CIP, 40000, SYN | ACK, RSN, 101, b""));
    one(&mut a, SEC, seg(CIP, 40000, VIP, 80, ACK, 101, RSN + 1, b""));
    let ev = over_the_wire(&events(&link)[0]);
    assert_eq!(ev.seqadj.map(|e| (e.len, e.proxy)), Some((28, 2)));
    let mut dr = worker(&model(FwdMethod::Dr, "rr"));
    let mut dr_ev = ev;
    dr_ev.dport = 80;
    assert_eq!(dr.sync_apply(&dr_ev), Ok(Applied::Added));
    assert_eq!(dr.seqadj[0].bytes(), 0, "no entry for a DR connection");
    let mut b = proxied(FwdMethod::Nat, Version::V2);
    b.sync_apply(&ev).unwrap();
    let mut none = ev;
    none.seqadj = None;
    assert_eq!(b.sync_apply(&none), Ok(Applied::Updated));
    let (_, d) = one(&mut b, SEC, seg(CIP, 40000, VIP, 80, ACK, 101, RSN + 1, b"x"));
    assert_eq!(payload(&d), [&a_v2_header()[..], b"x"].concat(), "still adjusted: the header pending");
}

fn a_v2_header() -> Vec<u8> {
    let mut h = crate::wire::proxy::SIG_V2.to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12, 192, 0, 2, 1, 10, 0, 0, 100, 0x9c, 0x40, 0, 80]);
    h
}

// ---- ICMP errors quoting an adjusted connection ----

/// An ICMP error (`kind`) about `f`, from `from`, as a router makes it:
/// all of `f` quoted (up to 576 bytes), or its first `cut` bytes of L4.
fn icmp_about(f: &[u8], from: [u8; 4], kind: ErrorKind, cut: Option<usize>) -> Vec<u8> {
    let mut b = vec![0u8; 128 + f.len()];
    b[128..].copy_from_slice(f);
    let mut fr = Frame::new(&mut b, 128, f.len());
    let m = parse(fr.data()).unwrap();
    icmp::build_error::<Ipv4Addr>(&mut fr, &m, kind).unwrap();
    let mut e = fr.data().to_vec();
    let em = parse(&e).unwrap();
    if let Some(n) = cut {
        let q = icmp::quoted(&e, &em).unwrap();
        e.truncate(q.l4 as usize + n);
        let tl = (e.len() - 14) as u16;
        e[16..18].copy_from_slice(&tl.to_be_bytes());
        refresh_ipv4_checksum(&mut e, 14);
    }
    let em = parse(&e).unwrap();
    crate::wire::ip::set_src(&mut e, &em, Ipv4Addr::from(from));
    refresh_ipv4_checksum(&mut e, 14);
    let em = parse(&e).unwrap();
    icmp::refresh_checksum(&mut e, &em);
    e[0..6].copy_from_slice(&MAC_DIRECTOR);
    e
}

/// The quoted segment's (seq, ack) of an ICMP error (ack 0: not quoted).
fn quoted_seq_ack(e: &[u8]) -> (u32, u32) {
    let m = parse(e).unwrap();
    let q = icmp::quoted(e, &m).unwrap();
    let l4 = q.l4 as usize;
    let ack = e.get(l4 + 8..l4 + 12).map_or(0, |a| u32::from_be_bytes(a.try_into().unwrap()));
    (u32::from_be_bytes(e[l4 + 4..l4 + 8].try_into().unwrap()), ack)
}

#[test]
fn icmp_errors_quoting_an_adjusted_segment_carry_the_other_sides_numbers() {
    let mut w = proxied(FwdMethod::FullNat, Version::V1);
    let l = V1.len() as u32;
    let s = ISN.wrapping_add(1);
    let (_, syn) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, SYN, ISN, 0, b""));
    let lport = parse(&syn).unwrap().sport;
    one(&mut w, SEC, seg(RS1, 8080, LIP, lport, SYN | ACK, RSN, s, b""));
    one(&mut w, SEC, seg(CIP, 40000, VIP, 80, ACK | PSH, s, RSN + 1, b"GET / HTTP/1.1\r\n"));
    one(&mut w, SEC, seg(RS1, 8080, LIP, lport, ACK, RSN + 1, s.wrapping_add(l + 16), b""));
    // the client's data, shifted on its way to the server...
    let big = vec![7u8; 1000];
    let sent = seg(CIP, 40000, VIP, 80, ACK | PSH, s.wrapping_add(16), RSN + 1, &big);
    let (_, fwd) = one(&mut w, SEC, sent.clone());
    assert_eq!(seq_ack(&fwd), (s.wrapping_add(16 + l), RSN + 1));
    // ...was too big for a router between us and the server: the client
    // hears of its own segment, with its own numbers
    let (v, out) = one(&mut w, SEC, icmp_about(&fwd, [10, 0, 1, 253], ErrorKind::TooBig { mtu: 900 }, None));
    assert_eq!(v, TX);
    assert!(verify(&out), "ICMP, quoted IP and TCP checksums");
    assert_eq!(quoted_seq_ack(&out), seq_ack(&sent), "the client's seq and ack");
    let m = parse(&out).unwrap();
    let q = icmp::quoted(&out, &m).unwrap();
    assert_eq!((q.addrs::<Ipv4Addr>(&out), q.sport, q.dport), ((Ipv4Addr::from(CIP), Ipv4Addr::from(VIP)), 40000, 80));
    assert_eq!(w.counters().icmp_relayed, 1);
    // A router that quotes 8 bytes only (RFC 792): the sequence number
    // still is the client's.
    let (v, out) = one(&mut w, SEC, icmp_about(&fwd, [10, 0, 1, 253], ErrorKind::PortUnreachable, Some(8)));
    assert_eq!(v, TX);
    assert!(verify(&out));
    assert_eq!(quoted_seq_ack(&out).0, s.wrapping_add(16));
    // The header segment itself (the handshake's ACK, at the start).
    let hs = seg(LIP, lport, RS1, 8080, ACK, s, RSN + 1, V1);
    let (_, out) = one(&mut w, SEC, icmp_about(&hs, [10, 0, 1, 253], ErrorKind::TooBig { mtu: 900 }, None));
    assert_eq!(quoted_seq_ack(&out).0, s, "the start is the start on both sides");
    // The server's answer with a SACK block, seen by the client...
    let ans = with_sack(&seg(RS1, 8080, LIP, lport, ACK | PSH, RSN + 1, s.wrapping_add(l + 1016), &big), &[(s.wrapping_add(l + 2000), s.wrapping_add(l + 2100))]);
    let (_, to_client) = one(&mut w, SEC, ans.clone());
    assert_eq!(seq_ack(&to_client), (RSN + 1, s.wrapping_add(1016)));
    // ...too big for a router on the client's side: the server hears of
    // its own segment, with its own numbers and SACK edges.
    let (v, out) = one(&mut w, SEC, icmp_about(&to_client, [10, 0, 0, 254], ErrorKind::TooBig { mtu: 900 }, None));
    assert_eq!(v, TX);
    assert!(verify(&out));
    assert_eq!(quoted_seq_ack(&out), seq_ack(&ans), "the server's seq and ack");
    let m = parse(&out).unwrap();
    let q = icmp::quoted(&out, &m).unwrap();
    let qm = crate::wire::Meta { l4: q.l4, end: q.end, ..Default::default() };
    assert_eq!(tcpseq::sack_edges(&out, &qm), vec![s.wrapping_add(l + 2000), s.wrapping_add(l + 2100)]);
    assert_eq!(w.counters().icmp_relayed, 4);
    // The quoted TCP checksum follows: the quoted segment is the server's
    // own, byte for byte from its TCP header on (the payload quoted up to
    // the ICMP's 576 bytes).
    let l4 = q.l4 as usize;
    let am = parse(&ans).unwrap();
    assert_eq!(&out[l4..q.end as usize], &ans[am.l4 as usize..am.l4 as usize + (q.end - q.l4) as usize]);
}
