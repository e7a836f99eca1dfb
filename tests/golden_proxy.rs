//! Golden test of the PROXY protocol through FULLNAT (`proxy_protocol` per
//! real server: rs1 "v1", rs2 "v2"): a capture of two connections goes
//! through the real `xvs replay`, and the capture it writes is checked
//! field by field against the numbers computed here (addresses, ports,
//! sequence and acknowledgement numbers, SACK edges, windows and options,
//! payload with the header in front), by a from-scratch checksum
//! verification, and by tshark: the PROXY header dissected (`proxy.*`
//! fields: version, client address and port, VIP and port) and each TCP
//! stream — the server's side (what xvs sent it and its answers) and the
//! client's — with sequence analysis on, without a malformed frame or an
//! error.
//!
//! Connection A speaks first: handshake ACK (the header alone), first
//! data (the header again in front of it: the server had not acknowledged
//! it yet), its retransmission (the same bytes again), the server's answer
//! and SACK, more data, FIN. Connection B speaks second: the header rides
//! on the handshake ACK, the server's banner acknowledges it, the client's
//! ACKs and data are shifted from then on. Both negotiate window scaling,
//! SACK and timestamps in their SYNs.

mod golden_fullnat;

use golden_fullnat::{counter, dissect, pcap, replay, scratch, seg, tcp_service, tshark, ACK, CLIENT, CLIENT_MAC, ETH0_MAC, ETH1_MAC, FIN, PSH, SYN, VIP};
use std::path::PathBuf;
use std::process::Command;
use tempfile::TempDir;
use xvs::gen::packet::verify;
use xvs::wire::{parse, tcpseq};

const RS: [[u8; 4]; 2] = [[10, 0, 1, 1], [10, 0, 1, 2]];
const RS_MAC: [[u8; 6]; 2] = [[2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 1, 2]];

/// configs/fullnat.toml's TCP service, rs1 with PROXY v1, rs2 with v2.
fn config(dir: &TempDir) -> PathBuf {
    tcp_service(dir, "proxy.toml", |tcp| {
        let mut n = 0;
        let out: String = tcp
            .lines()
            .map(|l| {
                if l.trim() == "mode = \"fullnat\"" {
                    n += 1;
                    format!("{l}\n  proxy_protocol = \"v{n}\"\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        assert_eq!(n, 2, "two real servers");
        out
    })
}

fn ts(a: u32, b: u32) -> Vec<u8> {
    let mut o = vec![8, 10];
    o.extend_from_slice(&a.to_be_bytes());
    o.extend_from_slice(&b.to_be_bytes());
    o
}

fn sack(l: u32, r: u32) -> Vec<u8> {
    let mut o = vec![5, 10];
    o.extend_from_slice(&l.to_be_bytes());
    o.extend_from_slice(&r.to_be_bytes());
    o
}

/// SYN options: MSS 1460, SACK permitted, timestamps, window scale 7.
fn syn_opts(t: u32) -> Vec<u8> {
    let mut o = vec![2, 4, 0x05, 0xb4, 4, 2];
    o.extend_from_slice(&ts(t, 0));
    o.extend_from_slice(&[1, 3, 3, 7]);
    o
}

/// What a frame says, read with xvs's own parser.
#[derive(Debug, PartialEq)]
struct Seen {
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    sack: Vec<u32>,
    win: u16,
    payload: Vec<u8>,
}

fn seen(f: &[u8]) -> Seen {
    assert!(verify(f), "every checksum from scratch");
    let m = parse(f).unwrap();
    let l4 = m.l4 as usize;
    let hl = ((f[l4 + 12] >> 4) as usize) * 4;
    Seen {
        src: f[26..30].try_into().unwrap(),
        sport: m.sport,
        dst: f[30..34].try_into().unwrap(),
        dport: m.dport,
        flags: m.tcp_flags,
        seq: tcpseq::seq(f, &m),
        ack: tcpseq::ack(f, &m),
        sack: tcpseq::sack_edges(f, &m),
        win: u16::from_be_bytes([f[l4 + 14], f[l4 + 15]]),
        payload: f[l4 + hl..m.end as usize].to_vec(),
    }
}

/// The header the test expects, written here from haproxy's
/// specification (not with xvs's encoder).
fn expected_header(v: u8, cport: u16) -> Vec<u8> {
    if v == 1 {
        format!("PROXY TCP4 10.0.0.2 10.0.0.100 {cport} 80\r\n").into_bytes()
    } else {
        let mut h = b"\r\n\r\n\x00\r\nQUIT\n".to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0, 12]);
        h.extend_from_slice(&CLIENT);
        h.extend_from_slice(&VIP);
        h.extend_from_slice(&cport.to_be_bytes());
        h.extend_from_slice(&80u16.to_be_bytes());
        h
    }
}

#[test]
fn proxy_header_and_sequence_offset_through_fullnat() {
    let dir = scratch("proxy");
    let cfg = config(&dir);
    let c = |sport, flags, seq, ack, opts: &[u8], data: &[u8]| seg(CLIENT_MAC, ETH0_MAC, CLIENT, sport, VIP, 80, flags, seq, ack, 502, opts, data);
    let (ca, cb) = (40001u16, 40002u16);
    let (isn_a, isn_b) = (0xffff_ff00u32, 5000u32); // A's stream wraps
    // Stage 1: the SYNs, to learn each connection's real server and
    // local address and port (wrr; FULLNAT's pools).
    let syns = vec![c(ca, SYN, isn_a, 0, &syn_opts(1), b""), c(cb, SYN, isn_b, 0, &syn_opts(2), b"")];
    let (out1, _) = replay(&cfg, &dir, "syn", &syns);
    assert_eq!(out1.len(), 2);
    let who = |f: &[u8]| {
        let s = seen(f);
        let rs = RS.iter().position(|r| *r == s.dst).expect("to a real server");
        (rs, s.src, s.sport)
    };
    let (rs_a, lip_a, lport_a) = who(&out1[0]);
    let (rs_b, lip_b, lport_b) = who(&out1[1]);
    let (va, vb) = (rs_a as u8 + 1, rs_b as u8 + 1);
    let s_ = |rs: usize, lip, lport, flags, seq, ack, opts: &[u8], data: &[u8]| seg(RS_MAC[rs], ETH1_MAC, RS[rs], 8080, lip, lport, flags, seq, ack, 1000, opts, data);
    let (ha, hb) = (expected_header(va, ca), expected_header(vb, cb));
    let (la, lb) = (ha.len() as u32, hb.len() as u32);
    let (sa, sb) = (isn_a.wrapping_add(1), isn_b + 1);
    let (ra, rb) = (9_000_000u32, 7_000_000u32);
    let req = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    let req2 = b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n";
    let n = req.len() as u32;
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let banner = b"220 ready\r\n";
    let sa_opts = |t| [vec![2, 4, 0x05, 0xb4, 4, 2], ts(t, 1), vec![1, 3, 3, 7]].concat();
    // (input frame, expected output as Seen)
    let mut steps: Vec<(Vec<u8>, Seen)> = Vec::new();
    let to_rs = |rs: usize, lip, lport, flags, seq, ack, sackv: Vec<u32>, win, payload: Vec<u8>| Seen { src: lip, sport: lport, dst: RS[rs], dport: 8080, flags, seq, ack, sack: sackv, win, payload };
    let to_c = |cport, flags, seq, ack, sackv: Vec<u32>, payload: Vec<u8>| Seen { src: VIP, sport: 80, dst: CLIENT, dport: cport, flags, seq, ack, sack: sackv, win: 1000, payload };
    let t = |a| ts(a, 100);
    // A: SYN, SYN-ACK
    steps.push((syns[0].clone(), to_rs(rs_a, lip_a, lport_a, SYN, isn_a, 0, vec![], 502, vec![])));
    steps.push((syns[1].clone(), to_rs(rs_b, lip_b, lport_b, SYN, isn_b, 0, vec![], 502, vec![])));
    steps.push((s_(rs_a, lip_a, lport_a, SYN | ACK, ra, sa, &sa_opts(10), b""), to_c(ca, SYN | ACK, ra, sa, vec![], vec![])));
    steps.push((s_(rs_b, lip_b, lport_b, SYN | ACK, rb, sb, &sa_opts(20), b""), to_c(cb, SYN | ACK, rb, sb, vec![], vec![])));
    // A: handshake ACK: the header alone
    steps.push((c(ca, ACK, sa, ra + 1, &t(3), b""), to_rs(rs_a, lip_a, lport_a, ACK, sa, ra + 1, vec![], 502, ha.clone())));
    // A: first data, not acknowledged yet: header in front, same place
    let with_h = [ha.clone(), req.to_vec()].concat();
    steps.push((c(ca, ACK | PSH, sa, ra + 1, &t(4), req), to_rs(rs_a, lip_a, lport_a, ACK | PSH, sa, ra + 1, vec![], 502, with_h.clone())));
    // A: its retransmission: the same bytes again
    steps.push((c(ca, ACK | PSH, sa, ra + 1, &t(5), req), to_rs(rs_a, lip_a, lport_a, ACK | PSH, sa, ra + 1, vec![], 502, with_h)));
    // A: the server answers, acknowledging header and request
    steps.push((s_(rs_a, lip_a, lport_a, ACK | PSH, ra + 1, sa.wrapping_add(la + n), &t(11), resp), to_c(ca, ACK | PSH, ra + 1, sa.wrapping_add(n), vec![], resp.to_vec())));
    // A: more data, shifted; the server SACKs a later block
    let s2 = sa.wrapping_add(n);
    steps.push((c(ca, ACK | PSH, s2, ra + 1 + resp.len() as u32, &t(6), req2), to_rs(rs_a, lip_a, lport_a, ACK | PSH, s2.wrapping_add(la), ra + 1 + resp.len() as u32, vec![], 502, req2.to_vec())));
    let (l, r) = (s2.wrapping_add(la + 2 * n), s2.wrapping_add(la + 3 * n));
    steps.push((
        s_(rs_a, lip_a, lport_a, ACK, ra + 1 + resp.len() as u32, s2.wrapping_add(la + n), &[t(12), sack(l, r)].concat(), b""),
        to_c(ca, ACK, ra + 1 + resp.len() as u32, s2.wrapping_add(n), vec![l.wrapping_sub(la), r.wrapping_sub(la)], vec![]),
    ));
    // A: FIN, and the server's FIN
    let s3 = s2.wrapping_add(n);
    let r3 = ra + 1 + resp.len() as u32;
    steps.push((c(ca, ACK | FIN, s3, r3, &t(7), b""), to_rs(rs_a, lip_a, lport_a, ACK | FIN, s3.wrapping_add(la), r3, vec![], 502, vec![])));
    steps.push((s_(rs_a, lip_a, lport_a, ACK | FIN, r3, s3.wrapping_add(la + 1), &t(13), b""), to_c(ca, ACK | FIN, r3, s3.wrapping_add(1), vec![], vec![])));
    steps.push((c(ca, ACK, s3.wrapping_add(1), r3 + 1, &t(8), b""), to_rs(rs_a, lip_a, lport_a, ACK, s3.wrapping_add(la + 1), r3 + 1, vec![], 502, vec![])));
    // B: handshake ACK with the header; the server speaks first
    steps.push((c(cb, ACK, sb, rb + 1, &t(3), b""), to_rs(rs_b, lip_b, lport_b, ACK, sb, rb + 1, vec![], 502, hb.clone())));
    steps.push((s_(rs_b, lip_b, lport_b, ACK | PSH, rb + 1, sb + lb, &t(21), banner), to_c(cb, ACK | PSH, rb + 1, sb, vec![], banner.to_vec())));
    let rb2 = rb + 1 + banner.len() as u32;
    steps.push((c(cb, ACK, sb, rb2, &t(4), b""), to_rs(rs_b, lip_b, lport_b, ACK, sb + lb, rb2, vec![], 502, vec![])));
    steps.push((c(cb, ACK | PSH, sb, rb2, &t(5), b"EHLO x\r\n"), to_rs(rs_b, lip_b, lport_b, ACK | PSH, sb + lb, rb2, vec![], 502, b"EHLO x\r\n".to_vec())));
    steps.push((s_(rs_b, lip_b, lport_b, ACK, rb2, sb + lb + 8, &t(22), b""), to_c(cb, ACK, rb2, sb + 8, vec![], vec![])));

    let input: Vec<Vec<u8>> = steps.iter().map(|(f, _)| f.clone()).collect();
    let (out, counters) = replay(&cfg, &dir, "proxy", &input);
    assert_eq!(out.len(), steps.len(), "every frame forwarded:\n{counters}");
    for (k, (o, (i, want))) in out.iter().zip(&steps).enumerate() {
        let got = seen(o);
        assert_eq!(&got, want, "frame {}", k + 1);
        // options other than SACK edges go as they came (window scale,
        // timestamps, MSS): compare the option bytes outside SACK blocks
        let (mi, mo) = (parse(i).unwrap(), parse(o).unwrap());
        let opts = |f: &[u8], m: &xvs::wire::Meta| {
            let l4 = m.l4 as usize;
            f[l4 + 20..l4 + ((f[l4 + 12] >> 4) as usize) * 4].to_vec()
        };
        let (oi, oo) = (opts(i, &mi), opts(o, &mo));
        if got.sack.is_empty() {
            assert_eq!(oi, oo, "frame {}: options untouched", k + 1);
        } else {
            assert_eq!(oi.len(), oo.len());
        }
    }
    assert_eq!(counter(&counters, "proxy_headers"), 4, "A's ACK, data, retransmission; B's ACK");
    assert_eq!(counter(&counters, "proxy_cut"), 0);
    assert_eq!(counter(&counters, "tx_packets"), steps.len() as u64);

    // tshark: the header dissected, and both sides' streams consistent.
    let Some(tshark) = tshark("the PROXY golden frames") else { return };
    let server_side: Vec<Vec<u8>> = steps
        .iter()
        .zip(&out)
        .map(|((i, w), o)| if w.dst == CLIENT { i.clone() } else { o.clone() })
        .collect();
    let client_side: Vec<Vec<u8>> = steps
        .iter()
        .zip(&out)
        .map(|((i, w), o)| if w.dst == CLIENT { o.clone() } else { i.clone() })
        .collect();
    for (side, frames) in [("server", &server_side), ("client", &client_side)] {
        for (k, r) in dissect_proxy(tshark, &dir, side, frames, true).iter().enumerate() {
            assert!(r.malformed.is_empty() && !r.error, "{side} side frame {}: {:?}", k + 1, r.experts);
        }
    }
    let mut headers = Vec::new();
    for (k, r) in dissect_proxy(tshark, &dir, "headers", &server_side, false).iter().enumerate() {
        assert!(r.malformed.is_empty() && !r.error, "frame {}: {:?}", k + 1, r.experts);
        if !r.proxy_version.is_empty() {
            headers.push((k, r.proxy_version.clone(), r.proxy_src.clone(), r.proxy_sport.clone(), r.proxy_dst.clone(), r.proxy_dport.clone()));
        }
    }
    let want: Vec<(usize, String, String, String, String, String)> = steps
        .iter()
        .enumerate()
        .filter(|(_, (_, w))| w.dst != CLIENT && (w.payload.starts_with(b"PROXY") || w.payload.starts_with(b"\r\n\r\n")))
        .map(|(k, (_, w))| {
            let (v, p) = if w.dport == 8080 && w.src == lip_a && w.sport == lport_a { (va, ca) } else { (vb, cb) };
            (k, v.to_string(), "10.0.0.2".to_string(), p.to_string(), "10.0.0.100".to_string(), "80".to_string())
        })
        .collect();
    assert_eq!(headers, want, "tshark's proxy.* fields of every header");
}

// ---- tshark ----

struct Row {
    proxy_version: String,
    proxy_src: String,
    proxy_sport: String,
    proxy_dst: String,
    proxy_dport: String,
    experts: String,
    error: bool,
    malformed: String,
}

/// Dissects `frames` with checksum validation, the PROXY dissector on the
/// real servers' port.
///
/// With `analyze`, TCP sequence analysis is on: retransmitted bytes are
/// then not handed to the PROXY dissector again (wireshark dissects a
/// stream's bytes once), so the headers are read with it off.
fn dissect_proxy(tshark: &str, dir: &TempDir, name: &str, frames: &[Vec<u8>], analyze: bool) -> Vec<Row> {
    // The PROXY dissector is a heuristic one: tried before the port's
    // (8080: HTTP) so it sees the headers.
    let seq = if analyze { "tcp.analyze_sequence_numbers:TRUE" } else { "tcp.analyze_sequence_numbers:FALSE" };
    let fields = ["proxy.version", "proxy.v1.proto", "proxy.src.ipv4", "proxy.srcport", "proxy.dst.ipv4", "proxy.dstport"];
    dissect(tshark, dir, name, frames, &[seq, "tcp.try_heuristic_first:TRUE"], &fields)
        .into_iter()
        .map(|d| {
            let col = |i: usize| d.fields[i].clone();
            // v1 has no version field: its protocol word says it.
            let version = if col(1) == "TCP4" { "1".to_string() } else { col(0) };
            Row { proxy_version: version, proxy_src: col(2), proxy_sport: col(3), proxy_dst: col(4), proxy_dport: col(5), experts: d.experts, error: d.error, malformed: d.malformed }
        })
        .collect()
}

// ---- ICMP errors about an adjusted connection ----

/// An ICMPv4 "destination unreachable, fragmentation needed" (type 3 code
/// 4, next-hop MTU `mtu`) from `src` about the IP packet of frame `about`,
/// quoting as much of it as RFC 1812 allows (576 bytes in all), in an
/// Ethernet frame from `smac` to `dmac`. Written here from RFC 792/1191.
fn frag_needed(smac: [u8; 6], dmac: [u8; 6], src: [u8; 4], about: &[u8], mtu: u16) -> Vec<u8> {
    let ip = &about[14..];
    let quote = &ip[..ip.len().min(576 - 20 - 8)];
    let mut icmp = vec![3u8, 4, 0, 0, 0, 0];
    icmp.extend_from_slice(&mtu.to_be_bytes());
    icmp.extend_from_slice(quote);
    let c = ones_complement(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&dmac);
    f.extend_from_slice(&smac);
    f.extend_from_slice(&[0x08, 0]);
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0, 64, 1, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ip[12..16]); // to the quoted packet's sender
    f.extend_from_slice(&icmp);
    xvs::gen::packet::refresh_ipv4_checksum(&mut f, 14);
    f
}

fn ones_complement(b: &[u8]) -> u16 {
    let mut s: u32 = b.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// A router on either side of the director cannot pass a segment of a
/// PROXY-adjusted connection and says so. The error xvs relays quotes the
/// segment in the numbering of the side it reaches: the client finds the
/// sequence and acknowledgement numbers it sent, the real server its own
/// — checked by xvs's parser and by tshark's dissection of the quoted
/// TCP header (`tcp.seq`, `tcp.ack`, absolute), with every checksum valid.
#[test]
fn icmp_errors_quote_each_sides_own_sequence_numbers() {
    let dir = scratch("proxy");
    let cfg = config(&dir);
    let ca = 40011u16;
    let isn = 0xffff_fff0u32;
    let c = |flags, seq, ack, opts: &[u8], data: &[u8]| seg(CLIENT_MAC, ETH0_MAC, CLIENT, ca, VIP, 80, flags, seq, ack, 502, opts, data);
    let syn = c(SYN, isn, 0, &syn_opts(1), b"");
    let (o, _) = replay(&cfg, &dir, "icmp-syn", std::slice::from_ref(&syn));
    let s0 = seen(&o[0]);
    let rs = RS.iter().position(|r| *r == s0.dst).unwrap();
    let (lip, lport) = (s0.src, s0.sport);
    let h = expected_header(rs as u8 + 1, ca);
    let l = h.len() as u32;
    let r = |flags, seq, ack, opts: &[u8], data: &[u8]| seg(RS_MAC[rs], ETH1_MAC, RS[rs], 8080, lip, lport, flags, seq, ack, 1000, opts, data);
    let (sa, ra) = (isn.wrapping_add(1), 3_000_000u32);
    let req = vec![b'a'; 600];
    let n = req.len() as u32;
    let ans = vec![b'b'; 900];
    let s2 = sa.wrapping_add(n);
    let mut frames = vec![
        syn,
        r(SYN | ACK, ra, sa, &[2, 4, 0x05, 0xb4], b""),
        c(ACK | PSH, sa, ra + 1, &ts(3, 1), &req),
        r(ACK, ra + 1, sa.wrapping_add(l + n), &ts(4, 3), b""),
        // the client's next segment (xvs sends it on at s2 + l) ...
        c(ACK | PSH, s2, ra + 1, &ts(5, 4), &req),
        // ... and the server's answer (the client gets ack s2 + n)
        r(ACK | PSH, ra + 1, sa.wrapping_add(l + 2 * n), &[ts(6, 5), sack(sa.wrapping_add(l + 3 * n), sa.wrapping_add(l + 4 * n))].concat(), &ans),
    ];
    let (out, counters) = replay(&cfg, &dir, "icmp-conn", &frames);
    assert_eq!(out.len(), frames.len(), "{counters}");
    let (to_server, to_client) = (out[4].clone(), out[5].clone());
    assert_eq!((seen(&to_server).seq, seen(&to_server).ack), (s2.wrapping_add(l), ra + 1));
    assert_eq!((seen(&to_client).seq, seen(&to_client).ack), (ra + 1, sa.wrapping_add(2 * n)));
    // A router between the director and the server (10.0.1.253), and one
    // on the client's side (its gateway, 10.0.0.254).
    frames.push(frag_needed([2, 0, 0, 0, 1, 0xfd], ETH1_MAC, [10, 0, 1, 253], &to_server, 1000));
    frames.push(frag_needed([2, 0, 0, 0, 0, 0xfe], ETH0_MAC, [10, 0, 0, 254], &to_client, 1000));
    let (out, counters) = replay(&cfg, &dir, "icmp", &frames);
    assert_eq!(out.len(), frames.len(), "{counters}");
    assert_eq!(counter(&counters, "icmp_relayed"), 2);
    let (e1, e2) = (&out[6], &out[7]);
    for e in [e1, e2] {
        assert!(verify(e), "every checksum from scratch, the quoted ones too");
    }
    // what each side sent: (src, dst, sport, dport, seq, ack)
    let sent = |f: &[u8]| {
        let s = seen(f);
        (s.src, s.dst, s.sport, s.dport, s.seq, s.ack)
    };
    let quoted = |e: &[u8]| {
        let q = &e[14 + 20 + 8..];
        let l4 = &q[((q[0] & 15) as usize) * 4..];
        let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        (<[u8; 4]>::try_from(&q[12..16]).unwrap(), <[u8; 4]>::try_from(&q[16..20]).unwrap(), u16::from_be_bytes([l4[0], l4[1]]), u16::from_be_bytes([l4[2], l4[3]]), be32(&l4[4..]), be32(&l4[8..]))
    };
    assert_eq!((&e1[26..30], &e1[30..34]), (&VIP[..], &CLIENT[..]), "to the client");
    assert_eq!(quoted(e1), sent(&frames[4]), "the client's own segment");
    assert_eq!((&e2[26..30], &e2[30..34]), (&lip[..], &RS[rs][..]), "to the server");
    assert_eq!(quoted(e2), sent(&frames[5]), "the server's own segment");
    // The server's SACK edges come back as it wrote them.
    let q = &e2[14 + 20 + 8 + 20..];
    let opts = &q[20..((q[12] >> 4) as usize) * 4];
    let at = opts.windows(2).position(|w| w == [5, 10]).expect("the SACK option quoted");
    let edge = |i: usize| u32::from_be_bytes(opts[at + 2 + i..at + 6 + i].try_into().unwrap());
    assert_eq!((edge(0), edge(4)), (sa.wrapping_add(l + 3 * n), sa.wrapping_add(l + 4 * n)));

    let Some(tshark) = tshark("the PROXY golden frames") else { return };
    let p = dir.path().join("icmp.tshark.pcap");
    std::fs::write(&p, pcap(&[e1.to_vec(), e2.to_vec()])).unwrap();
    let o = Command::new(tshark)
        .arg("-n")
        .arg("-r")
        .arg(&p)
        .args(["-o", "ip.check_checksum:TRUE", "-o", "tcp.relative_sequence_numbers:FALSE", "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"])
        .args(["-e", "icmp.type", "-e", "icmp.code", "-e", "icmp.checksum.status", "-e", "ip.src", "-e", "ip.dst", "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "tcp.seq", "-e", "tcp.ack", "-e", "_ws.malformed", "-e", "_ws.expert.severity"])
        .output()
        .unwrap();
    assert!(o.status.success(), "tshark: {}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let rows: Vec<Vec<String>> = text.lines().map(|l| l.split('\t').map(str::to_string).collect()).collect();
    assert_eq!(rows.len(), 2, "{text}");
    let ip = |a: [u8; 4]| std::net::Ipv4Addr::from(a).to_string();
    for (row, f) in rows.iter().zip([&frames[4], &frames[5]]) {
        let (src, dst, sport, dport, seq, ack) = sent(f);
        let col = |i: usize| row.get(i).cloned().unwrap_or_default();
        assert_eq!((col(0), col(1), col(2)), ("3".into(), "4".into(), "1".into()), "fragmentation needed, checksum good: {text}");
        // the outer addresses, then the quoted ones
        assert_eq!(col(3).split(',').nth(1), Some(ip(src).as_str()), "{text}");
        assert_eq!(col(4).split(',').nth(1), Some(ip(dst).as_str()), "{text}");
        assert_eq!((col(5), col(6)), (sport.to_string(), dport.to_string()), "{text}");
        assert_eq!((col(7), col(8)), (seq.to_string(), ack.to_string()), "the quoted numbers are the sender's own: {text}");
        assert!(col(9).is_empty(), "malformed: {text}");
        let error = col(10).split(',').filter(|s| !s.is_empty()).any(|s| s.parse::<u32>().unwrap_or(u32::MAX) >= 0x0080_0000);
        assert!(!error, "{text}");
    }
}
