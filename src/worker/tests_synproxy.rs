//! Worker tests of the SYN proxy (`ipvs::synproxy`): the cookie SYN-ACK,
//! the valid ACK turned into the client's SYN, the splice on the real
//! server's SYN-ACK, the offset and window rescaling afterwards, through
//! FULLNAT and NAT, IPv4 and IPv6; bad ACKs, a spoofed flood that leaves
//! the table empty, a lost SYN, a refusing server.

use super::tests::*;
use super::*;
use crate::gen::packet::*;
use crate::wire::tcp_flags::*;
use crate::wire::{be16, tcpseq};

const KEY: synproxy::Secret = synproxy::Secret([0x1234_5678_9abc_def0, 0x0fed_cba9_8765_4321]);
const ISN: u32 = 0xffff_ff00; // the client's: its stream wraps
const RSN: u32 = 0x4000_0000; // the server's
/// MSS 1460, SACK-permitted, timestamps, window scale 9.
const SYN_OPTS: &[u8] = &[2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 9];

/// `tcp4` with these numbers, window, options (NOP-padded) and payload.
#[allow(clippy::too_many_arguments)]
fn seg(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8, seq: u32, ack: u32, win: u16, opts: &[u8], payload: &[u8]) -> Vec<u8> {
    let f = tcp4(src, sport, dst, dport, flags, payload);
    let mut o = opts.to_vec();
    while o.len() % 4 != 0 {
        o.push(1);
    }
    let mut g = f[..14 + 40].to_vec();
    g.extend_from_slice(&o);
    g.extend_from_slice(&f[14 + 40..]);
    g[14 + 32] = (((20 + o.len()) / 4) as u8) << 4;
    g[14 + 24..14 + 28].copy_from_slice(&seq.to_be_bytes());
    g[14 + 28..14 + 32].copy_from_slice(&ack.to_be_bytes());
    g[14 + 34..14 + 36].copy_from_slice(&win.to_be_bytes());
    let tl = be16(&g, 16) + o.len() as u16;
    g[16..18].copy_from_slice(&tl.to_be_bytes());
    refresh_ipv4_checksum(&mut g, 14);
    refresh_tcp_checksum(&mut g);
    g
}

fn proxied(fwd: FwdMethod) -> Worker {
    let mut m = model(fwd, "rr");
    m.toa = false;
    m.services[0].synproxy = true;
    let mut w = worker(&m);
    w.set_synproxy_secret(KEY);
    w
}

fn seq_ack(f: &[u8]) -> (u32, u32) {
    let m = parse(f).unwrap();
    (tcpseq::seq(f, &m), tcpseq::ack(f, &m))
}

fn flags_of(f: &[u8]) -> u8 {
    let m = parse(f).unwrap();
    f[m.l4 as usize + 13]
}

fn window(f: &[u8]) -> u16 {
    let m = parse(f).unwrap();
    be16(f, m.l4 as usize + 14)
}

fn opts_of(f: &[u8]) -> Vec<u8> {
    let m = parse(f).unwrap();
    let l4 = m.l4 as usize;
    f[l4 + 20..l4 + ((f[l4 + 12] >> 4) as usize) * 4].to_vec()
}

fn payload(f: &[u8]) -> &[u8] {
    let m = parse(f).unwrap();
    let l4 = m.l4 as usize;
    &f[l4 + ((f[l4 + 12] >> 4) as usize) * 4..m.end as usize]
}

/// The handshake through the proxy; returns the cookie and the port the
/// server sees the client on.
fn handshake(w: &mut Worker, fwd: FwdMethod) -> (u32, u16) {
    // The SYN: answered by the director itself, nothing kept.
    let (v, sa) = one(w, SEC, seg(CIP, 40000, VIP, 80, SYN, ISN, 0, 64240, SYN_OPTS, b""));
    assert_eq!(v, TX);
    assert!(verify(&sa), "checksums from scratch");
    assert_eq!(flags_of(&sa), SYN | ACK);
    let m = parse(&sa).unwrap();
    assert_eq!((addr4(&sa, 26), m.sport, addr4(&sa, 30), m.dport), (VIP, 80, CIP, 40000));
    assert_eq!((dst_mac(&sa), src_mac(&sa)), (MAC_CLIENT, MAC_DIRECTOR));
    let (cookie, ack) = seq_ack(&sa);
    assert_eq!(ack, ISN.wrapping_add(1));
    let t = synproxy::Tuple { saddr: Ipv4Addr::from(CIP), daddr: Ipv4Addr::from(VIP), sport: 40000, dport: 80 };
    let data = SynOpts { mss: 1460, wscale: Some(9), sack: true }.encode(false);
    assert_eq!(cookie, synproxy::make(&KEY, &t, ISN, synproxy::count(SEC), data), "the cookie encodes the options");
    // MSS of the link (1500), SACK-permitted, our window scale; no timestamps
    assert_eq!(opts_of(&sa), [2, 4, 5, 180, 1, 1, 4, 2, 1, 3, 3, synproxy::WSCALE]);
    assert_eq!(w.conns(), 0, "no state for a SYN");
    assert_eq!(w.counters().synproxy_syn, 1);
    // The client's ACK: a connection, and its SYN to the real server.
    let (v, syn) = one(w, SEC, seg(CIP, 40000, VIP, 80, ACK, ISN.wrapping_add(1), cookie.wrapping_add(1), 502, &[], b""));
    assert_eq!(v, TX);
    assert!(verify(&syn));
    assert_eq!(w.conns(), 1);
    assert_eq!(flags_of(&syn), SYN);
    assert_eq!(seq_ack(&syn).0, ISN, "the client's ISN");
    assert_eq!(opts_of(&syn), [2, 4, 5, 180, 1, 1, 4, 2, 1, 3, 3, 9], "the client's options, from the cookie");
    assert_eq!(window(&syn), 65535, "502 << 9, unscaled for a SYN (at most 65535)");
    let m = parse(&syn).unwrap();
    let client = if fwd == FwdMethod::FullNat { LIP } else { CIP };
    assert_eq!((addr4(&syn, 26), addr4(&syn, 30), m.dport), (client, RS1, 8080));
    let cport = m.sport;
    // The server's SYN-ACK: answered with the ACK, to the server.
    let sa_opts = [2, 4, 5, 180, 1, 1, 4, 2, 1, 3, 3, 5];
    let (v, hs) = one(w, SEC, seg(RS1, 8080, client, cport, SYN | ACK, RSN, ISN.wrapping_add(1), 65535, &sa_opts, b""));
    assert_eq!(v, TX);
    assert!(verify(&hs));
    assert_eq!(flags_of(&hs), ACK);
    assert_eq!(seq_ack(&hs), (ISN.wrapping_add(1), RSN + 1));
    let m = parse(&hs).unwrap();
    assert_eq!((addr4(&hs, 26), m.sport, addr4(&hs, 30), m.dport), (client, cport, RS1, 8080));
    assert_eq!(dst_mac(&hs), RS1_MAC, "the way of the connection's packets");
    assert!(payload(&hs).is_empty() && opts_of(&hs).is_empty());
    assert_eq!(w.counters().synproxy_spliced, 1);
    (cookie, cport)
}

fn spliced_flow(fwd: FwdMethod) {
    let mut w = proxied(fwd);
    let (cookie, cport) = handshake(&mut w, fwd);
    let client = if fwd == FwdMethod::FullNat { LIP } else { CIP };
    let c1 = ISN.wrapping_add(1);
    // client data: its acknowledgement moves to the server's numbers
    let (v, d) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, ACK | PSH, c1, cookie.wrapping_add(1), 502, &[], b"GET / HTTP/1.1\r\n\r\n"));
    assert_eq!(v, TX);
    assert!(verify(&d));
    assert_eq!(seq_ack(&d), (c1, RSN + 1));
    assert_eq!(payload(&d), b"GET / HTTP/1.1\r\n\r\n");
    // server data: its sequence moves to the cookie's, its window to our
    // scale (5 -> 7: a quarter)
    let (v, r) = one(&mut w, SEC, seg(RS1, 8080, client, cport, ACK | PSH, RSN + 1, c1.wrapping_add(18), 1000, &[], b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(v, TX);
    assert!(verify(&r));
    assert_eq!(seq_ack(&r), (cookie.wrapping_add(1), c1.wrapping_add(18)));
    assert_eq!(window(&r), 250);
    let m = parse(&r).unwrap();
    assert_eq!((addr4(&r, 26), m.sport, addr4(&r, 30), m.dport), (VIP, 80, CIP, 40000));
    // the client's SACK of server data moves with its acknowledgement
    let sack = [1, 1, 5, 10];
    let mut o = sack.to_vec();
    o.extend_from_slice(&cookie.wrapping_add(100).to_be_bytes());
    o.extend_from_slice(&cookie.wrapping_add(200).to_be_bytes());
    let (_, s) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, ACK, c1.wrapping_add(18), cookie.wrapping_add(18), 502, &o, b""));
    assert!(verify(&s));
    let m = parse(&s).unwrap();
    assert_eq!(tcpseq::sack_edges(&s, &m), vec![RSN + 100, RSN + 200]);
    assert_eq!(seq_ack(&s).1, RSN + 18);
    // a big window is clamped, not wrapped
    let (_, r) = one(&mut w, SEC, seg(RS1, 8080, client, cport, ACK, RSN + 18, c1.wrapping_add(18), 65535, &[], b""));
    assert_eq!(window(&r), 16383);
    assert_eq!(w.conns(), 1);
    assert_eq!(w.counters().synproxy_spliced, 1);
}

#[test]
fn fullnat_handshake_splice_and_offset() {
    spliced_flow(FwdMethod::FullNat);
}

#[test]
fn nat_handshake_splice_and_offset() {
    spliced_flow(FwdMethod::Nat);
}

#[test]
fn bad_acks_are_dropped_and_counted_and_make_nothing() {
    let mut w = proxied(FwdMethod::FullNat);
    let (_, sa) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, SYN, ISN, 0, 64240, SYN_OPTS, b""));
    let (cookie, _) = seq_ack(&sa);
    let bad = [
        // a guessed cookie, another port, another client, a stale cookie
        (seg(CIP, 40000, VIP, 80, ACK, ISN.wrapping_add(1), cookie.wrapping_add(1 << 20), 502, &[], b""), SEC),
        (seg(CIP, 40001, VIP, 80, ACK, ISN.wrapping_add(1), cookie.wrapping_add(1), 502, &[], b""), SEC),
        (seg([192, 0, 2, 9], 40000, VIP, 80, ACK, ISN.wrapping_add(1), cookie.wrapping_add(1), 502, &[], b""), SEC),
        (seg(CIP, 40000, VIP, 80, ACK, ISN.wrapping_add(1), cookie.wrapping_add(1), 502, &[], b""), SEC + (3u64 << 36)),
    ];
    for (f, now) in bad {
        assert_eq!(one(&mut w, now, f).0, Verdict::Drop(DropReason::SynproxyBadAck));
    }
    assert_eq!(w.counters().drops[DropReason::SynproxyBadAck as usize], 4);
    // a RST or a FIN without ACK is no cookie ACK
    assert_eq!(one(&mut w, SEC, seg(CIP, 40000, VIP, 80, RST, ISN.wrapping_add(1), 0, 0, &[], b"")).0, Verdict::Drop(DropReason::NoConn));
    assert_eq!(w.conns(), 0);
    assert_eq!(w.counters().new_conns, 0);
    // one count later the cookie is still good
    let (v, _) = one(&mut w, SEC + (1u64 << 36), seg(CIP, 40000, VIP, 80, ACK, ISN.wrapping_add(1), cookie.wrapping_add(1), 502, &[], b""));
    assert_eq!(v, TX);
    assert_eq!(w.conns(), 1);
}

#[test]
fn a_spoofed_syn_flood_leaves_the_table_empty() {
    let mut w = proxied(FwdMethod::FullNat);
    let frames: Vec<Vec<u8>> =
        (0..2000u32).map(|i| seg([198, 18, (i >> 8) as u8, i as u8], 1024 + i as u16, VIP, 80, SYN, i.wrapping_mul(7919), 0, 1024, &[2, 4, 5, 180], b"")).collect();
    let out = run(&mut w, SEC, &frames);
    assert!(out.iter().all(|(v, f)| *v == TX && verify(f) && flags_of(f) == SYN | ACK));
    assert_eq!(w.conns(), 0);
    assert_eq!(w.counters().synproxy_syn, 2000);
    assert_eq!(w.counters().new_conns, 0);
    // bad input on the way: a SYN with FIN, a martian source, port 0
    for (f, r) in [
        (seg(CIP, 40000, VIP, 80, SYN | FIN, 1, 0, 1, &[], b""), DropReason::BadSyn),
        (seg([127, 0, 0, 1], 40000, VIP, 80, SYN, 1, 0, 1, &[], b""), DropReason::Martian),
        (seg(CIP, 0, VIP, 80, SYN, 1, 0, 1, &[], b""), DropReason::ZeroPort),
    ] {
        assert_eq!(one(&mut w, SEC, f).0, Verdict::Drop(r));
    }
    assert_eq!(w.conns(), 0);
}

#[test]
fn client_data_before_the_splice_resends_the_syn_and_the_data_comes_again() {
    let mut w = proxied(FwdMethod::FullNat);
    let (_, sa) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, SYN, ISN, 0, 64240, &[2, 4, 5, 180], b""));
    let (cookie, _) = seq_ack(&sa);
    assert_eq!(opts_of(&sa), [2, 4, 5, 180], "no SACK, no window scale when the client offered none");
    // the ACK comes with data: the SYN goes, the data does not
    let (_, syn) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, ACK | PSH, ISN.wrapping_add(1), cookie.wrapping_add(1), 1000, &[], b"hello"));
    assert_eq!((flags_of(&syn), seq_ack(&syn).0, payload(&syn)), (SYN, ISN, &b""[..]));
    assert_eq!(opts_of(&syn), [2, 4, 5, 180]);
    let lport = parse(&syn).unwrap().sport;
    // its retransmission (the SYN was lost): the SYN again, same numbers
    let (v, syn2) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, ACK | PSH, ISN.wrapping_add(1), cookie.wrapping_add(1), 1000, &[], b"hello"));
    assert_eq!(v, TX);
    assert!(verify(&syn2));
    assert_eq!(syn2, syn);
    assert_eq!(w.conns(), 1);
    // a server segment that is no SYN-ACK for it is dropped
    let stray = seg(RS1, 8080, LIP, lport, ACK, RSN, ISN.wrapping_add(7), 100, &[], b"");
    assert_eq!(one(&mut w, SEC, stray).0, Verdict::Drop(DropReason::SynproxyWait));
    // the SYN-ACK without window scale: nothing rescaled
    let (_, hs) = one(&mut w, SEC, seg(RS1, 8080, LIP, lport, SYN | ACK, RSN, ISN.wrapping_add(1), 29200, &[2, 4, 5, 180], b""));
    assert_eq!((flags_of(&hs), seq_ack(&hs)), (ACK, (ISN.wrapping_add(1), RSN + 1)));
    // the data again, now through
    let (_, d) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, ACK | PSH, ISN.wrapping_add(1), cookie.wrapping_add(1), 1000, &[], b"hello"));
    assert_eq!((seq_ack(&d), payload(&d)), ((ISN.wrapping_add(1), RSN + 1), &b"hello"[..]));
    let (_, r) = one(&mut w, SEC, seg(RS1, 8080, LIP, lport, ACK, RSN + 1, ISN.wrapping_add(6), 29200, &[], b""));
    assert_eq!((seq_ack(&r), window(&r)), ((cookie.wrapping_add(1), ISN.wrapping_add(6)), 29200));
    // a retransmitted SYN-ACK after the splice reaches the client as ours
    let (v, sa2) = one(&mut w, SEC, seg(RS1, 8080, LIP, lport, SYN | ACK, RSN, ISN.wrapping_add(1), 29200, &[2, 4, 5, 180], b""));
    assert_eq!(v, TX);
    assert_eq!(seq_ack(&sa2).0, cookie);
}

#[test]
fn a_refusing_server_resets_the_client_in_its_window() {
    let mut w = proxied(FwdMethod::Nat);
    let (_, sa) = one(&mut w, SEC, seg(CIP, 40000, VIP, 80, SYN, ISN, 0, 64240, SYN_OPTS, b""));
    let (cookie, _) = seq_ack(&sa);
    one(&mut w, SEC, seg(CIP, 40000, VIP, 80, ACK, ISN.wrapping_add(1), cookie.wrapping_add(1), 502, &[], b""));
    let (v, rst) = one(&mut w, SEC, seg(RS1, 8080, CIP, 40000, RST | ACK, 0, ISN.wrapping_add(1), 0, &[], b""));
    assert_eq!(v, TX);
    assert!(verify(&rst));
    assert_eq!(seq_ack(&rst), (cookie.wrapping_add(1), ISN.wrapping_add(1)));
    assert_eq!(addr4(&rst, 26), VIP);
    assert_eq!(w.counters().synproxy_spliced, 0);
}

#[test]
fn ipv6_handshake_through_fullnat() {
    let mut m = super::tests::model6(FwdMethod::FullNat);
    m.toa = false;
    m.services[0].synproxy = true;
    let mut w = worker(&m);
    w.set_synproxy_secret(KEY);
    let c6: [u8; 16] = "2001:db8:2::7".parse::<Ipv6Addr>().unwrap().octets();
    let v6: [u8; 16] = "2001:db8::100".parse::<Ipv6Addr>().unwrap().octets();
    let mut syn = tcp6(c6, 40000, v6, 80, SYN, b"");
    let m0 = parse(&syn).unwrap();
    syn[m0.l4 as usize + 4..m0.l4 as usize + 8].copy_from_slice(&ISN.to_be_bytes());
    refresh_tcp_checksum(&mut syn);
    let (v, sa) = one(&mut w, SEC, syn);
    assert_eq!(v, TX);
    assert!(verify(&sa));
    assert_eq!(opts_of(&sa), [2, 4, 5, 160], "MSS 1500 - 60");
    let (cookie, _) = seq_ack(&sa);
    let mut ack = tcp6(c6, 40000, v6, 80, ACK, b"");
    let l4 = parse(&ack).unwrap().l4 as usize;
    ack[l4 + 4..l4 + 8].copy_from_slice(&ISN.wrapping_add(1).to_be_bytes());
    ack[l4 + 8..l4 + 12].copy_from_slice(&cookie.wrapping_add(1).to_be_bytes());
    refresh_tcp_checksum(&mut ack);
    let (v, s) = one(&mut w, SEC, ack);
    assert_eq!(v, TX);
    assert!(verify(&s));
    assert_eq!((flags_of(&s), seq_ack(&s).0), (SYN, ISN));
    assert_eq!(opts_of(&s), [2, 4, 4, 196], "no MSS offered: the table's lowest, IPv6's minimum 1220");
}

#[test]
fn a_snapshot_refuses_synproxy_with_dr_or_tun_servers_and_udp() {
    for fwd in [FwdMethod::Dr, FwdMethod::Tun] {
        let mut m = model(fwd, "rr");
        m.services[0].synproxy = true;
        let e = Snapshot::build(&m, None).unwrap_err().to_string();
        assert!(e.contains("cannot serve a synproxy service"), "{e}");
    }
    let mut m = model(FwdMethod::Nat, "rr");
    m.services[1].synproxy = true;
    let e = Snapshot::build(&m, None).unwrap_err().to_string();
    assert!(e.contains("synproxy is for TCP services only"), "{e}");
}

/// A master (A) splices a SYN proxy's connection and syncs it; a backup
/// (B) that received the record (its phase, the offset between the
/// cookie and the server's ISN, the window rescale) rewrites every later
/// segment exactly as A does, byte for byte: a takeover keeps the stream.
#[test]
fn a_backup_continues_a_spliced_connection_exactly_as_the_master() {
    use super::tests_proxy::{events, over_the_wire};
    use crate::sync::link::{Link, Params};
    use std::sync::Arc;
    for fwd in [FwdMethod::FullNat, FwdMethod::Nat] {
        let mut a = proxied(fwd);
        let link = Arc::new(Link::default());
        a.set_sync(Some((link.clone(), Params { master: true, threshold: 3, period: 50, syn_recv: false })));
        let (cookie, cport) = handshake(&mut a, fwd);
        let client = if fwd == FwdMethod::FullNat { LIP } else { CIP };
        let c1 = ISN.wrapping_add(1);
        let c = |flags, seq: u32, ack: u32, data: &[u8]| seg(CIP, 40000, VIP, 80, flags, seq, ack, 502, &[], data);
        let r = |flags, seq: u32, ack: u32, data: &[u8]| seg(RS1, 8080, client, cport, flags, seq, ack, 1000, &[], data);
        // Packets after the splice until the master syncs (sync_threshold).
        one(&mut a, SEC, c(ACK | PSH, c1, cookie.wrapping_add(1), b"GET / HTTP/1.1\r\n\r\n"));
        one(&mut a, SEC, r(ACK | PSH, RSN + 1, c1.wrapping_add(18), b"HTTP/1.1 200 OK\r\n"));
        let es = events(&link);
        let last = es.last().unwrap_or_else(|| panic!("{fwd:?}: nothing synced"));
        let e = last.seqadj.unwrap_or_else(|| panic!("{fwd:?}: no offset in {last:?}"));
        assert_eq!((e.syn, e.out_delta, e.win_shift), (seqadj::SPLICED, RSN.wrapping_sub(cookie), 5 - synproxy::WSCALE as i8), "{fwd:?}");
        let mut b = proxied(fwd);
        b.set_synproxy_secret(synproxy::Secret([7, 7])); // its own secret: not needed once spliced
        b.sync_apply(&over_the_wire(last)).unwrap_or_else(|e| panic!("{fwd:?}: {e:?}"));
        let mid = [
            c(ACK | PSH, c1.wrapping_add(18), cookie.wrapping_add(18), b"GET /2 HTTP/1.1\r\n\r\n"),
            r(ACK | PSH, RSN + 18, c1.wrapping_add(38), b"more"),
            c(ACK | PSH, c1.wrapping_add(18), cookie.wrapping_add(22), b"GET /2 HTTP/1.1\r\n\r\n"),
            r(ACK | FIN, RSN + 22, c1.wrapping_add(38), b""),
            c(ACK | FIN, c1.wrapping_add(38), cookie.wrapping_add(23), b""),
        ];
        for (k, f) in mid.iter().enumerate() {
            let (va, fa) = one(&mut a, SEC, f.clone());
            let (vb, fb) = one(&mut b, SEC, f.clone());
            assert_eq!((va, vb), (TX, TX), "{fwd:?} segment {k}");
            assert!(verify(&fb), "{fwd:?} segment {k}");
            assert_eq!(fb, fa, "{fwd:?} segment {k}: the backup's frame is the master's");
        }
        // e.g. the server's sequence went to the cookie's numbering and its
        // window to the client's scale on B as well
        let (_, d) = one(&mut b, SEC, r(ACK, RSN + 23, c1.wrapping_add(39), b""));
        assert_eq!(seq_ack(&d).0, cookie.wrapping_add(23), "{fwd:?}");
        assert_eq!(window(&d), 1000 >> 2, "{fwd:?}: scale 5 to 7");
        assert_eq!(b.counters().synproxy_spliced, 0, "{fwd:?}: B never spliced it itself");
    }
}
