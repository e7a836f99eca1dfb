//! Golden test of the SYN proxy through FULLNAT (configs/fullnat.toml's
//! TCP service with `synproxy = true`): a connection goes through the
//! real `xvs replay` (whose cookie secret is fixed, so each step's input
//! can answer what the previous replay sent), and the capture it writes
//! is checked field by field (addresses, ports, flags, sequence and
//! acknowledgement numbers, options, windows, SACK edges), by a
//! from-scratch checksum verification, and by tshark: each side's TCP
//! stream — the client's (its frames and what xvs sent it) and the
//! server's — dissected with checksum validation and sequence analysis
//! on, without a malformed frame, an error, or a lost segment, and with
//! window scaling as the client and the server each negotiated it.
//!
//! The client offers MSS 1460, SACK, timestamps and window scale 9; the
//! director's SYN-ACK answers with a cookie, MSS 1460, SACK and window
//! scale 7 (no timestamps); the client's ACK becomes the SYN to the real
//! server (ISN, MSS, SACK, scale 9 from the cookie); the server's SYN-ACK
//! (scale 5) is answered with the ACK; data both ways, a SACK block from
//! the client, and the server's window rescaled from 5 to 7.

mod golden_fullnat;

use golden_fullnat::{counter, dissect, replay, scratch, seg, tcp_service, tshark, ACK, CLIENT, CLIENT_MAC, ETH0_MAC, ETH1_MAC, PSH, SYN, VIP};
use std::path::PathBuf;
use tempfile::TempDir;
use xvs::gen::packet::verify;
use xvs::wire::{be16, parse, tcpseq};

const ISN: u32 = 0xffff_fff0;
const RSN: u32 = 0x1234_5678;

fn config(dir: &TempDir) -> PathBuf {
    tcp_service(dir, "synproxy.toml", |tcp| {
        assert!(tcp.contains("scheduler = \"wrr\"\n"));
        tcp.replacen("scheduler = \"wrr\"\n", "scheduler = \"wrr\"\nsynproxy = true\n", 1)
    })
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
    win: u16,
    opts: Vec<u8>,
    sack: Vec<u32>,
    payload: Vec<u8>,
}

fn seen(f: &[u8]) -> Seen {
    assert!(verify(f), "every checksum from scratch");
    let m = parse(f).unwrap();
    let l4 = m.l4 as usize;
    let hl = ((f[l4 + 12] >> 4) as usize) * 4;
    let a4 = |o: usize| [f[o], f[o + 1], f[o + 2], f[o + 3]];
    Seen {
        src: a4(m.l3 as usize + 12),
        sport: m.sport,
        dst: a4(m.l3 as usize + 16),
        dport: m.dport,
        flags: f[l4 + 13],
        seq: tcpseq::seq(f, &m),
        ack: tcpseq::ack(f, &m),
        win: be16(f, l4 + 14),
        opts: f[l4 + 20..l4 + hl].to_vec(),
        sack: tcpseq::sack_edges(f, &m),
        payload: f[l4 + hl..m.end as usize].to_vec(),
    }
}

#[test]
fn synproxy_handshake_splice_and_offset_through_fullnat() {
    let dir = scratch("synproxy");
    let cfg = config(&dir);
    let mut steps: Vec<Vec<u8>> = Vec::new();
    let client = |flags, seq, ack, win, opts: &[u8], data: &[u8]| seg(CLIENT_MAC, ETH0_MAC, CLIENT, 40000, VIP, 80, flags, seq, ack, win, opts, data);

    // 1. The SYN: MSS 1460, SACK permitted, timestamps, window scale 9.
    steps.push(client(SYN, ISN, 0, 64240, &[2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 9, 0, 0, 0, 0, 1, 3, 3, 9], b""));
    let (out, _) = replay(&cfg, &dir, "synproxy", &steps);
    let sa = seen(&out[0]);
    let cookie = sa.seq;
    assert_eq!(
        sa,
        Seen { src: VIP, sport: 80, dst: CLIENT, dport: 40000, flags: SYN | ACK, seq: cookie, ack: ISN + 1, win: 65535, opts: vec![2, 4, 5, 180, 1, 1, 4, 2, 1, 3, 3, 7], sack: vec![], payload: vec![] }
    );
    assert_eq!(&out[0][..12], &[&CLIENT_MAC[..], &ETH0_MAC[..]].concat()[..], "back to the client from eth0");
    let c1 = ISN.wrapping_add(1);
    let k1 = cookie.wrapping_add(1);

    // 2. The client's ACK (window 502 in its scale 9): the SYN to a real server.
    steps.push(client(ACK, c1, k1, 502, &[], b""));
    let (out, _) = replay(&cfg, &dir, "synproxy", &steps);
    let syn = seen(&out[1]);
    let (rs, lip, lport) = (syn.dst, syn.src, syn.sport);
    assert!(lip == [10, 0, 1, 200] || lip == [10, 0, 1, 201], "{lip:?}");
    assert!(rs == [10, 0, 1, 1] || rs == [10, 0, 1, 2]);
    assert_eq!(syn, Seen { src: lip, sport: lport, dst: rs, dport: 8080, flags: SYN, seq: ISN, ack: 0, win: 65535, opts: vec![2, 4, 5, 180, 1, 1, 4, 2, 1, 3, 3, 9], sack: vec![], payload: vec![] });
    let rs_mac = [2, 0, 0, 0, 1, rs[3]];
    assert_eq!(&out[1][..12], &[&rs_mac[..], &ETH1_MAC[..]].concat()[..]);
    let server = |flags, seq, ack, win, opts: &[u8], data: &[u8]| seg(rs_mac, ETH1_MAC, rs, 8080, lip, lport, flags, seq, ack, win, opts, data);

    // 3. The server's SYN-ACK (scale 5): the director's ACK back to it.
    steps.push(server(SYN | ACK, RSN, c1, 65160, &[2, 4, 5, 180, 4, 2, 1, 3, 3, 5], b""));
    // 4. Client data, 5. the server's answer, 6. the client's ACK with a
    // SACK block of a later piece, 7. the server's next data.
    let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let r1 = RSN + 1;
    steps.push(client(ACK | PSH, c1, k1, 502, &[], req));
    steps.push(server(ACK | PSH, r1, c1.wrapping_add(req.len() as u32), 2000, &[], resp));
    let mut sack = vec![5, 10];
    sack.extend_from_slice(&k1.wrapping_add(resp.len() as u32 + 100).to_be_bytes());
    sack.extend_from_slice(&k1.wrapping_add(resp.len() as u32 + 200).to_be_bytes());
    steps.push(client(ACK, c1.wrapping_add(req.len() as u32), k1.wrapping_add(resp.len() as u32), 500, &sack, b""));
    steps.push(server(ACK | PSH, r1 + resp.len() as u32, c1.wrapping_add(req.len() as u32), 4000, &[], b"more"));
    let (out, counters) = replay(&cfg, &dir, "synproxy", &steps);
    assert_eq!(out.len(), steps.len(), "one frame out per frame in");
    let rl = resp.len() as u32;
    let ql = req.len() as u32;
    let want = [
        Seen { src: lip, sport: lport, dst: rs, dport: 8080, flags: ACK, seq: c1, ack: r1, win: 127, opts: vec![], sack: vec![], payload: vec![] },
        Seen { src: lip, sport: lport, dst: rs, dport: 8080, flags: ACK | PSH, seq: c1, ack: r1, win: 502, opts: vec![], sack: vec![], payload: req.to_vec() },
        Seen { src: VIP, sport: 80, dst: CLIENT, dport: 40000, flags: ACK | PSH, seq: k1, ack: c1.wrapping_add(ql), win: 500, opts: vec![], sack: vec![], payload: resp.to_vec() },
        Seen {
            src: lip,
            sport: lport,
            dst: rs,
            dport: 8080,
            flags: ACK,
            seq: c1.wrapping_add(ql),
            ack: r1 + rl,
            win: 500,
            opts: [1, 1, 5, 10].into_iter().chain((r1 + rl + 100).to_be_bytes()).chain((r1 + rl + 200).to_be_bytes()).collect(),
            sack: vec![r1 + rl + 100, r1 + rl + 200],
            payload: vec![],
        },
        Seen { src: VIP, sport: 80, dst: CLIENT, dport: 40000, flags: ACK | PSH, seq: k1.wrapping_add(rl), ack: c1.wrapping_add(ql), win: 1000, opts: vec![], sack: vec![], payload: b"more".to_vec() },
    ];
    for (k, w) in want.iter().enumerate() {
        assert_eq!(&seen(&out[2 + k]), w, "step {}", 3 + k);
    }
    assert_eq!(&out[2][..12], &[&rs_mac[..], &ETH1_MAC[..]].concat()[..], "the handshake's ACK to the server");
    assert_eq!(counter(&counters, "synproxy_syn"), 1);
    assert_eq!(counter(&counters, "synproxy_ack"), 1);
    assert_eq!(counter(&counters, "synproxy_spliced"), 1);
    assert_eq!(counter(&counters, "new_conns"), 1);

    // tshark: each side's stream as its two ends see it.
    let Some(tshark) = tshark("the SYN proxy golden frames") else { return };
    // client side: its own frames (in) and what xvs sent it (out)
    let client_side: Vec<Vec<u8>> = steps
        .iter()
        .zip(&out)
        .filter_map(|(i, o)| if seen(i).src == CLIENT { Some(i.clone()) } else if seen(o).dst == CLIENT { Some(o.clone()) } else { None })
        .collect();
    // the SYN-ACK comes from xvs for the SYN; its ACK and data follow
    let client_side = [vec![steps[0].clone(), out[0].clone()], client_side[1..].to_vec()].concat();
    let server_side: Vec<Vec<u8>> = steps
        .iter()
        .zip(&out)
        .flat_map(|(i, o)| {
            let s = seen(i);
            if s.src == rs {
                vec![i.clone()]
            } else if seen(o).dst == rs {
                vec![o.clone()]
            } else {
                vec![]
            }
        })
        .collect();
    // the director's ACK answers the server's SYN-ACK: after it
    let server_side = [server_side[..2].to_vec(), vec![out[2].clone()], server_side[2..].iter().filter(|f| **f != out[2]).cloned().collect()].concat();
    for (side, frames, scale) in [("client", &client_side, 128u32), ("server", &server_side, 32)] {
        let rows = dissect_tcp(tshark, &dir, side, frames);
        for (k, r) in rows.iter().enumerate() {
            assert!(r.malformed.is_empty() && !r.error, "{side} side frame {}: {:?}", k + 1, r.experts);
            for bad in ["lost_segment", "ack_lost_segment", "out_of_order", "retransmission", "duplicate_ack", "zero_window", "window_full"] {
                assert!(!r.analysis.contains(bad), "{side} side frame {}: tcp.analysis {}", k + 1, r.analysis);
            }
        }
        // window scaling as negotiated: the last frame's window in bytes
        let last = rows.last().unwrap();
        let f = frames.last().unwrap();
        let field = seen(f).win as u32;
        assert_eq!(last.win_size, (field * scale).to_string(), "{side}: {}", last.analysis);
    }
}

struct Row {
    experts: String,
    error: bool,
    malformed: String,
    analysis: String,
    win_size: String,
}

/// Dissects `frames` with checksum validation and TCP sequence analysis.
fn dissect_tcp(tshark: &str, dir: &TempDir, name: &str, frames: &[Vec<u8>]) -> Vec<Row> {
    dissect(tshark, dir, name, frames, &["tcp.analyze_sequence_numbers:TRUE"], &["tcp.analysis.flags", "tcp.window_size"])
        .into_iter()
        .map(|d| Row { analysis: format!("{} {}", d.fields[0], d.experts).to_lowercase().replace(' ', "_"), win_size: d.fields[1].clone(), experts: d.experts, error: d.error, malformed: d.malformed })
        .collect()
}
