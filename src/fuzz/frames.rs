//! Frames through `Worker::process_burst`, against a director that has
//! every forwarding mode, both families, TCP and UDP, persistence and
//! FULLNAT with TOA (`fuzz/director.toml`), and a table small enough to fill.
//!
//! Three ways to turn bytes into frames ([`Mode`]):
//! - `Raw`: the input is a list of frames as received (seeded from the
//!   golden captures);
//! - `Structured`: a program of operations that build frames from fields
//!   (valid headers and checksums, then bent: options, extension headers,
//!   VLAN tags, padding, fragments, bad lengths and checksums), answer
//!   what the director sent (replies from real servers and clients), move
//!   the clock, reload the configuration;
//! - `Icmp`: the same, weighted towards ICMP errors quoting packets the
//!   director sent (the relay path), truncated or damaged.
//!
//! Checked on every burst, beyond "no panic" ([`check_tx`]):
//! - the fast parser and the checked parser agree on every input;
//! - every transmitted frame re-parses (ours and etherparse's parser);
//! - when the input's checksums were valid, every checksum of the output
//!   is valid by a full recompute;
//! - a frame never leaves with one of the director's own MACs, a
//!   multicast or the zero MAC as destination, or on a port that does
//!   not exist, or longer than the egress MTU when its input fit;
//! - the counters balance: `rx = tx + drops + passes + handoffs -
//!   icmp_sent` (an ICMP error sent for a frame counts the frame as a
//!   drop and the error as a transmit), and agree with the verdicts.
//!
//! And once the input is over, after the clock runs far ahead: no
//! connection or template left, every real server's load back to zero,
//! every FULLNAT local port free, as many connections ended as made.

use super::Bytes;
use crate::ctl::config;
use crate::ctl::snapshot::Snapshot;
use crate::gen::packet::verify;
use crate::io::mem::{Batch, MAX_FRAME};
use crate::stats::WorkerCounters;
use crate::wire::checksum::{checksum, fold, pseudo_v4, pseudo_v6, sum};
use crate::wire::{be16, parse, parse_checked, proto, tcp_flags, Reject};
use crate::worker::{Verdict, Worker};
use std::sync::{Arc, OnceLock};

/// The director's configuration (also the seed of the `config` target).
pub const CONFIG: &str = include_str!("../../fuzz/director.toml");

const SEC: u64 = 1_000_000_000;

/// How the input becomes frames. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Raw,
    Structured,
    Icmp,
}

/// The snapshots a run moves through on reloads: the configuration, then
/// one with a real server removed and another quiesced (weight 0), then
/// one with a smaller table, then the configuration again. Built once.
fn snapshots() -> &'static [Arc<Snapshot>] {
    static S: OnceLock<Vec<Arc<Snapshot>>> = OnceLock::new();
    S.get_or_init(|| {
        let base = config::load_str(CONFIG, "fuzz/director.toml").expect("the fuzz director's configuration loads");
        let a = Snapshot::build(&base, None).expect("and compiles");
        let mut m = base.clone();
        m.services[0].dests.remove(0);
        m.services[1].dests[1].weight = 0;
        m.services[2].dests[0].weight = 0;
        let b = Snapshot::build(&m, Some(&a)).expect("variant b compiles");
        let mut m2 = m.clone();
        m2.max_conns = 8;
        m2.services.pop();
        let c = Snapshot::build(&m2, Some(&b)).expect("variant c compiles");
        let d = Snapshot::build(&base, Some(&c)).expect("the configuration again");
        vec![Arc::new(a), Arc::new(b), Arc::new(c), Arc::new(d)]
    })
}

/// The fuzzing director's snapshot (the sync target's worker).
pub(crate) fn snapshot() -> Arc<Snapshot> {
    snapshots()[0].clone()
}

/// The director's MACs (never a destination).
fn own_macs(s: &Snapshot) -> impl Iterator<Item = [u8; 6]> + '_ {
    s.ports.iter().map(|p| p.mac)
}

const V4: [[u8; 4]; 16] = [
    [10, 0, 0, 2],      // the client in the lab
    [192, 0, 2, 10],    // clients behind the gateway
    [198, 51, 100, 7],
    [10, 0, 0, 100],    // VIP
    [10, 0, 0, 101],    // VIP of the every-port service
    [10, 0, 1, 1],      // real servers, one per mode
    [10, 0, 1, 2],
    [10, 0, 1, 3],
    [10, 0, 1, 4],
    [10, 0, 1, 200],    // FULLNAT local addresses
    [10, 0, 1, 201],
    [10, 0, 0, 1],      // the director
    [10, 0, 1, 9],      // a real server without a neighbour
    [0, 0, 0, 0],
    [255, 255, 255, 255],
    [10, 0, 0, 254],    // the gateway
];

const V6: [[u16; 8]; 10] = [
    [0x2001, 0xdb8, 0, 0, 0, 0, 0, 2],
    [0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 7],
    [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100],
    [0x2001, 0xdb8, 1, 0, 0, 0, 0, 1],
    [0x2001, 0xdb8, 1, 0, 0, 0, 0, 2],
    [0x2001, 0xdb8, 1, 0, 0, 0, 0, 3],
    [0x2001, 0xdb8, 1, 0, 0, 0, 0, 4],
    [0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x200],
    [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1],
    [0xff02, 0, 0, 0, 0, 0, 0, 1],
];

fn v6(w: [u16; 8]) -> [u8; 16] {
    let mut a = [0; 16];
    for (i, x) in w.iter().enumerate() {
        a[2 * i..2 * i + 2].copy_from_slice(&x.to_be_bytes());
    }
    a
}

/// An address of the family: mostly one the configuration knows.
fn addr(r: &mut Bytes<'_>, is_v6: bool) -> Vec<u8> {
    let i = r.u8() as usize;
    if is_v6 {
        if i < 240 {
            v6(V6[i % V6.len()]).to_vec()
        } else {
            r.take(16).iter().copied().chain(std::iter::repeat(0)).take(16).collect()
        }
    } else if i < 240 {
        V4[i % V4.len()].to_vec()
    } else {
        vec![r.u8(), r.u8(), r.u8(), r.u8()]
    }
}

fn port(r: &mut Bytes<'_>) -> u16 {
    match r.u8() % 12 {
        0 | 1 => 80,
        2 => 53,
        3 => 443,
        4 => 8080,
        5 => 8443,
        6 => 5353,
        7 => 0,
        8 => 40000 + (r.u8() % 8) as u16,
        9 | 10 => crate::ipvs::laddr::PORT_MIN + (r.u8() % 16) as u16,
        _ => r.u16(),
    }
}

/// The fields of a frame to build.
#[derive(Clone, Debug)]
struct Spec {
    dmac: [u8; 6],
    smac: [u8; 6],
    vlan: Option<u16>,
    src: Vec<u8>,
    dst: Vec<u8>,
    proto: u8,
    ttl: u8,
    df: bool,
    /// IPv4 options (a multiple of 4 bytes) or IPv6 extension headers.
    ip_opts: Vec<u8>,
    /// IPv4 fragment field (flags and offset); for IPv6 a fragment header
    /// is added when it is not zero.
    frag: u16,
    /// L4 header after its first 4 bytes (ports), checksum zeroed: built
    /// by the caller for TCP/UDP/ICMP.
    l4: Vec<u8>,
    payload: Vec<u8>,
    /// Bytes after the IP datagram (Ethernet padding).
    pad: usize,
}

/// Builds the frame with every length and checksum right.
fn build(s: &Spec) -> Vec<u8> {
    let is_v6 = s.src.len() == 16;
    let mut f = Vec::with_capacity(14 + 60 + s.l4.len() + s.payload.len() + s.pad);
    f.extend_from_slice(&s.dmac);
    f.extend_from_slice(&s.smac);
    if let Some(vid) = s.vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(if is_v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    let l3 = f.len();
    let l4_len = s.l4.len() + s.payload.len();
    if is_v6 {
        let frag_hdr = s.frag != 0;
        let ext = s.ip_opts.len() + if frag_hdr { 8 } else { 0 };
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&((ext + l4_len) as u16).to_be_bytes());
        // Extension headers: hop-by-hop options (padded to 8) then a
        // fragment header.
        let first = if !s.ip_opts.is_empty() { 0 } else if frag_hdr { 44 } else { s.proto };
        f.push(first);
        f.push(s.ttl);
        f.extend_from_slice(&s.src);
        f.extend_from_slice(&s.dst);
        if !s.ip_opts.is_empty() {
            let next = if frag_hdr { 44 } else { s.proto };
            let mut h = s.ip_opts.clone();
            h[0] = next;
            h[1] = (h.len() / 8 - 1) as u8;
            f.extend_from_slice(&h);
        }
        if frag_hdr {
            f.extend_from_slice(&[s.proto, 0]);
            f.extend_from_slice(&s.frag.to_be_bytes());
            f.extend_from_slice(&[0, 0, 0, 1]);
        }
    } else {
        let ihl = 5 + s.ip_opts.len() / 4;
        f.push(0x40 | ihl as u8);
        f.push(0);
        f.extend_from_slice(&((ihl * 4 + l4_len) as u16).to_be_bytes());
        f.extend_from_slice(&[0x12, 0x34]);
        f.extend_from_slice(&(s.frag | if s.df { 0x4000 } else { 0 }).to_be_bytes());
        f.push(s.ttl);
        f.push(s.proto);
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&s.src);
        f.extend_from_slice(&s.dst);
        f.extend_from_slice(&s.ip_opts);
        let c = checksum(&f[l3..l3 + ihl * 4]);
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    let l4 = f.len();
    f.extend_from_slice(&s.l4);
    f.extend_from_slice(&s.payload);
    let seg = &f[l4..];
    let ps = if is_v6 {
        pseudo_v6(&s.src[..].try_into().expect("16"), &s.dst[..].try_into().expect("16"), s.proto, seg.len() as u32)
    } else {
        pseudo_v4(&s.src[..].try_into().expect("4"), &s.dst[..].try_into().expect("4"), s.proto, seg.len() as u16)
    };
    let off = match s.proto {
        proto::TCP if s.l4.len() >= 18 => Some((16, ps)),
        proto::UDP if s.l4.len() >= 8 => Some((6, ps)),
        proto::ICMP if s.l4.len() >= 4 => Some((2, 0)),
        proto::ICMPV6 if s.l4.len() >= 4 => Some((2, ps)),
        _ => None,
    };
    if let Some((o, ps)) = off {
        let mut c = !fold(sum(ps, seg));
        if s.proto == proto::UDP && c == 0 {
            c = 0xffff;
        }
        f[l4 + o..l4 + o + 2].copy_from_slice(&c.to_be_bytes());
    }
    f.resize(f.len() + s.pad, 0);
    f
}

fn tcp_header(r: &mut Bytes<'_>, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let opts: Vec<u8> = match r.u8() % 6 {
        0 | 1 => vec![],
        2 => vec![2, 4, 0x05, 0xb4],                                         // MSS
        3 => vec![2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7], // MSS, SACK ok, TS, WS
        4 => vec![1; 40],                                                    // full option space
        _ => {
            let n = (r.u8() % 11) as usize * 4;
            r.take(n).iter().copied().chain(std::iter::repeat(1)).take(n).collect()
        }
    };
    let mut h = Vec::with_capacity(20 + opts.len());
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&r.u32().to_be_bytes()); // seq
    h.extend_from_slice(&r.u32().to_be_bytes()); // ack
    h.push((((20 + opts.len()) / 4) as u8) << 4);
    h.push(flags);
    h.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
    h.extend_from_slice(&opts);
    h
}

fn flags(r: &mut Bytes<'_>) -> u8 {
    use tcp_flags::*;
    match r.u8() % 10 {
        0 | 1 => SYN,
        2 | 3 => ACK,
        4 => PSH | ACK,
        5 => SYN | ACK,
        6 => FIN | ACK,
        7 => RST,
        8 => RST | ACK,
        _ => r.u8(),
    }
}

fn payload(r: &mut Bytes<'_>) -> Vec<u8> {
    let n = match r.u8() % 8 {
        0..=3 => 0,
        4 | 5 => (r.u8() % 64) as usize,
        6 => 1400 + (r.u8() % 100) as usize,
        _ => r.u16() as usize % 1600,
    };
    let fill = r.u8();
    vec![fill; n]
}

/// L4 header and payload for a protocol.
fn l4(r: &mut Bytes<'_>, pr: u8, sport: u16, dport: u16, fl: Option<u8>) -> (Vec<u8>, Vec<u8>) {
    let body = payload(r);
    let h = match pr {
        proto::TCP => {
            let f = fl.unwrap_or_else(|| flags(r));
            tcp_header(r, sport, dport, f)
        }
        proto::UDP => {
            let mut h = Vec::with_capacity(8);
            h.extend_from_slice(&sport.to_be_bytes());
            h.extend_from_slice(&dport.to_be_bytes());
            h.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
            h.extend_from_slice(&[0, 0]);
            h
        }
        proto::ICMP | proto::ICMPV6 => {
            // An echo, or an informational type: not errors (those are
            // built by `icmp_error`).
            let t = if pr == proto::ICMP { r.pick(&[8u8, 0, 13]) } else { r.pick(&[128u8, 129, 135, 136]) };
            vec![t, 0, 0, 0, 0, 1, 0, 1]
        }
        _ => r.take(8).to_vec(),
    };
    (h, body)
}

/// The director's port whose prefixes hold `a` (0: client side, 1: real
/// servers), for the receiving port of a frame from `a`.
fn side(a: &[u8]) -> u8 {
    match a.len() {
        4 => (a[0] == 10 && a[1] == 0 && a[2] == 1) as u8,
        _ => (a[4] == 0 && a[5] == 1) as u8,
    }
}

/// A frame made from fields.
fn new_frame(r: &mut Bytes<'_>, snap: &Snapshot) -> (Vec<u8>, u8) {
    let is_v6 = r.u8() % 3 == 0;
    let pr = match r.u8() % 10 {
        0..=4 => proto::TCP,
        5..=7 => proto::UDP,
        8 => {
            if is_v6 {
                proto::ICMPV6
            } else {
                proto::ICMP
            }
        }
        _ => r.pick(&[proto::IPIP, proto::IPV6, 47, 132, 0]),
    };
    let src = addr(r, is_v6);
    let dst = addr(r, is_v6);
    let (sport, dport) = (port(r), port(r));
    let (l4h, body) = l4(r, pr, sport, dport, None);
    let mut p = side(&src);
    if r.u8() % 16 == 0 {
        p ^= 1;
    }
    let own = snap.ports[p as usize % snap.ports.len()].mac;
    let dmac = match r.u8() % 16 {
        0 => [0xff; 6],
        1 => [2, 0, 0, 0, 0, r.u8()],
        _ => own,
    };
    let smac = match r.u8() % 16 {
        0 => own,
        1 => [0; 6],
        2 => [0xff; 6],
        3 => [1, 0, 0x5e, 0, 0, 1],
        _ => [2, 0, 0, 0, p, r.u8() % 8],
    };
    let vlan = (r.u8() % 16 == 0).then(|| r.u16());
    let ttl = r.pick(&[64u8, 64, 64, 1, 0, 2, 255]);
    let df = r.bool();
    let ip_opts = match r.u8() % 16 {
        0 if is_v6 => {
            let n = 8 * (1 + (r.u8() % 3) as usize);
            let mut h = vec![0u8; n];
            h[2] = 1; // PadN covering the rest
            h[3] = (n - 4) as u8;
            h
        }
        0 => {
            let n = 4 * (1 + (r.u8() % 10) as usize);
            let mut o = vec![1u8; n];
            o[n - 1] = 0;
            o
        }
        _ => vec![],
    };
    let frag = match r.u8() % 16 {
        0 => 0x2000,                   // more fragments, offset 0
        1 => r.u16() & 0x1fff,         // a later fragment
        _ => 0,
    };
    let spec = Spec { dmac, smac, vlan, src, dst, proto: pr, ttl, df, ip_opts, frag: if is_v6 { frag << 3 } else { frag }, l4: l4h, payload: body, pad: if r.u8() % 8 == 0 { (r.u8() % 32) as usize } else { 0 } };
    (build(&spec), p)
}

/// Where an IP packet sits in a transmitted frame: (l3, end, v6), the
/// inner packet of a tunnel if `inner`.
fn ip_span(f: &[u8], inner: bool) -> Option<(usize, usize, bool)> {
    let m = parse(f).ok()?;
    let (l3, end) = (m.l3 as usize, m.end as usize);
    if inner && (m.proto == proto::IPIP || m.proto == proto::IPV6) {
        let i = m.l4 as usize;
        let v6 = m.proto == proto::IPV6;
        let len = if v6 { 40 + be16(f, i + 4) as usize } else { be16(f, i + 2) as usize };
        return (i + len <= end).then_some((i, i + len, v6));
    }
    Some((l3, end, m.v6))
}

/// A real server's (or client's) answer to a frame the director sent:
/// addresses and ports swapped, back to the port it left from.
fn reply(r: &mut Bytes<'_>, sent: &(Vec<u8>, u8), snap: &Snapshot) -> Option<(Vec<u8>, u8)> {
    let (f, p) = sent;
    let m = parse(f).ok()?;
    if m.proto != proto::TCP && m.proto != proto::UDP {
        return None;
    }
    let (l3, v6) = (m.l3 as usize, m.v6);
    let (src, dst) = if v6 { (f[l3 + 24..l3 + 40].to_vec(), f[l3 + 8..l3 + 24].to_vec()) } else { (f[l3 + 16..l3 + 20].to_vec(), f[l3 + 12..l3 + 16].to_vec()) };
    let fl = match r.u8() % 6 {
        0 => tcp_flags::SYN | tcp_flags::ACK,
        1 | 2 => tcp_flags::ACK,
        3 => tcp_flags::FIN | tcp_flags::ACK,
        4 => tcp_flags::RST,
        _ => r.u8(),
    };
    let (l4h, body) = l4(r, m.proto, m.dport, m.sport, Some(fl));
    let spec = Spec {
        dmac: snap.ports[*p as usize % snap.ports.len()].mac,
        smac: crate::wire::dst_mac(f),
        vlan: m.vlan.then(|| be16(f, 14)),
        src,
        dst,
        proto: m.proto,
        ttl: 64,
        df: true,
        ip_opts: vec![],
        frag: 0,
        l4: l4h,
        payload: body,
        pad: 0,
    };
    Some((build(&spec), *p))
}

/// An ICMP error about a frame the director sent, from its receiver or a
/// router on the way, quoting as much of it as the fuzzer says.
fn icmp_error(r: &mut Bytes<'_>, sent: &(Vec<u8>, u8), snap: &Snapshot) -> Option<(Vec<u8>, u8)> {
    let (f, p) = sent;
    let (l3, end, v6) = ip_span(f, r.u8() % 4 == 0)?;
    let (osrc, odst) = if v6 { (f[l3 + 8..l3 + 24].to_vec(), f[l3 + 24..l3 + 40].to_vec()) } else { (f[l3 + 12..l3 + 16].to_vec(), f[l3 + 16..l3 + 20].to_vec()) };
    // The complaining node: the destination itself, a router, anyone.
    let node = match r.u8() % 4 {
        0 | 1 => odst,
        2 => addr(r, v6),
        _ => {
            if v6 {
                self::v6(V6[8]).to_vec()
            } else {
                vec![10, 0, 1, 254]
            }
        }
    };
    let full = end - l3;
    let qlen = match r.u8() % 6 {
        0 => full,
        1 => 28.min(full),
        2 => 48.min(full),
        3 => 68.min(full),
        4 => (r.u8() as usize).min(full),
        _ => (r.u16() as usize).min(full),
    };
    let mut quoted = f[l3..l3 + qlen].to_vec();
    if r.u8() % 8 == 0 && !quoted.is_empty() {
        let i = r.u16() as usize % quoted.len();
        quoted[i] ^= r.u8() | 1;
    }
    let (t, c, rest): (u8, u8, u32) = if v6 {
        match r.u8() % 6 {
            0 | 1 => (2, 0, r.pick(&[1280u32, 1400, 1500, 0, 9000])),
            2 => (1, r.pick(&[0u8, 1, 3, 4]), 0),
            3 => (3, 0, 0),
            4 => (4, 0, 8),
            _ => (r.u8(), r.u8(), r.u32()),
        }
    } else {
        match r.u8() % 7 {
            0 | 1 => (3, 4, r.pick(&[576u32, 1400, 1480, 68, 0, 9000])),
            2 => (3, r.pick(&[0u8, 1, 3, 13]), 0),
            3 => (11, 0, 0),
            4 => (12, 0, 0x1400_0000),
            5 => (5, 1, 0),
            _ => (r.u8(), r.u8(), r.u32()),
        }
    };
    let mut l4h = vec![t, c, 0, 0];
    l4h.extend_from_slice(&rest.to_be_bytes());
    let spec = Spec {
        dmac: snap.ports[*p as usize % snap.ports.len()].mac,
        smac: crate::wire::dst_mac(f),
        vlan: None,
        src: node,
        dst: osrc,
        proto: if v6 { proto::ICMPV6 } else { proto::ICMP },
        ttl: 64,
        df: false,
        ip_opts: vec![],
        frag: 0,
        l4: l4h,
        payload: quoted,
        pad: 0,
    };
    Some((build(&spec), *p))
}

/// Bends a built frame: a byte changed, a length or checksum broken, cut short.
fn bend(r: &mut Bytes<'_>, f: &mut Vec<u8>) {
    if f.is_empty() {
        return;
    }
    match r.u8() % 5 {
        0 => {
            let i = r.u16() as usize % f.len();
            f[i] = r.u8();
        }
        1 => {
            let n = r.u16() as usize % f.len();
            f.truncate(n);
        }
        2 if f.len() > 18 => {
            // the IP length field (IPv4 total length / IPv6 payload length)
            let o = if be16(f, 12) == 0x86dd { 18 } else { 16 };
            let v = r.u16();
            f[o..o + 2].copy_from_slice(&v.to_be_bytes());
        }
        3 => {
            let extra = r.take(64).to_vec();
            f.extend_from_slice(&extra);
        }
        _ => {
            let i = r.u16() as usize % f.len();
            f[i] ^= 0xff;
        }
    }
}

/// One run: the state between bursts.
struct Run {
    w: Worker,
    snap: usize,
    now: u64,
    batch: Batch,
    /// The inputs of the batch being filled.
    pending: Vec<(Vec<u8>, u8)>,
    /// Frames the director sent lately (to answer them).
    sent: Vec<(Vec<u8>, u8)>,
}

impl Run {
    fn new(workers: u16, id: u16) -> Run {
        Run {
            w: Worker::new(id, workers, snapshots()[0].clone(), SEC),
            snap: 0,
            now: SEC,
            batch: Batch::new(),
            pending: Vec::new(),
            sent: Vec::new(),
        }
    }

    fn push(&mut self, f: Vec<u8>, port: u8) {
        if f.len() > MAX_FRAME {
            return;
        }
        // The two parsers agree on every frame.
        assert_eq!(parse(&f), parse_checked(&f), "fast and checked parsers disagree on {f:02x?}");
        if self.batch.is_full() {
            self.flush();
        }
        self.batch.push(&f, port).expect("fits");
        self.pending.push((f, port));
    }

    fn flush(&mut self) {
        let before = self.w.counters().clone();
        let snap = self.w.snapshot().clone();
        let inputs = std::mem::take(&mut self.pending);
        let mut verdicts = Vec::with_capacity(inputs.len());
        let mut out = Vec::new();
        self.batch.process(&mut self.w, self.now, |v, d| {
            verdicts.push(v);
            if let Verdict::Tx { port } = v {
                out.push((d.to_vec(), port));
            }
        });
        let mut outs = out.into_iter();
        for ((input, _), v) in inputs.iter().zip(&verdicts) {
            if let Verdict::Tx { .. } = v {
                let (o, port) = outs.next().expect("an output per transmit");
                check_tx(&snap, input, &o, port);
                if self.sent.len() >= 16 {
                    self.sent.remove(0);
                }
                self.sent.push((o, port));
            }
        }
        check_balance(&before, self.w.counters(), &verdicts);
    }

    fn advance(&mut self, ns: u64) {
        self.flush();
        self.now = self.now.saturating_add(ns);
    }

    fn reload(&mut self) {
        self.flush();
        let s = snapshots();
        if self.snap + 1 < s.len() {
            self.snap += 1;
            self.w.set_snapshot(s[self.snap].clone());
        }
    }

    /// The clock runs far ahead until every entry has expired; then
    /// nothing may be left held.
    fn drain(&mut self) {
        self.flush();
        for _ in 0..64 {
            if self.w.conns() == 0 {
                break;
            }
            self.now = self.now.saturating_add(3600 * SEC);
            self.w.set_clock(self.now);
            while self.w.expire(1 << 20) > 0 {}
        }
        let c = self.w.counters();
        assert_eq!(self.w.conns(), 0, "connections left after every timeout passed");
        for (i, l) in self.w.loads().iter().enumerate() {
            assert_eq!((l.active, l.inactive, l.persist), (0, 0, 0), "dest {i} still has load {l:?} with no connection left");
        }
        for s in &self.w.snapshot().services {
            for a in &s.laddrs {
                assert_eq!(self.w.laddr_in_use(*a), 0, "local ports of {a} still in use with no connection left");
            }
        }
        assert_eq!(c.new_conns, c.expired_conns, "connections made and ended differ");
        assert_eq!(c.templates_created, c.templates_expired, "templates made and ended differ");
    }
}

/// Checks one transmitted frame against its input. See the module docs.
pub fn check_tx(snap: &Snapshot, input: &[u8], out: &[u8], port: u8) {
    assert!((port as usize) < snap.ports.len(), "sent on port {port}, which does not exist");
    assert!(out.len() >= 14, "a transmitted frame of {} bytes", out.len());
    let dmac: [u8; 6] = out[..6].try_into().expect("6");
    assert!(!own_macs(snap).any(|m| m == dmac), "sent to the director's own MAC {dmac:02x?}: {out:02x?}");
    assert!(dmac[0] & 1 == 0, "sent to a multicast / broadcast MAC {dmac:02x?}: in {input:02x?} out {out:02x?}");
    assert!(dmac != [0; 6], "sent to the zero MAC: in {input:02x?} out {out:02x?}");
    let m = match parse(out) {
        Ok(m) => m,
        Err(Reject::Pass(_)) => panic!("a transmitted frame is not IP: {out:02x?}"),
        Err(Reject::Drop(r)) => panic!("a transmitted frame does not parse ({r:?}): in {input:02x?} out {out:02x?}"),
    };
    assert!(etherparse::SlicedPacket::from_ethernet(out).is_ok(), "etherparse refuses a transmitted frame: {out:02x?}");
    if verify(input) {
        assert!(verify(out), "checksums broken by the director: in {input:02x?} out {out:02x?}");
    }
    if let Ok(mi) = parse(input) {
        if mi.ip_len() <= 1500 {
            let mtu = snap.ports[port as usize].mtu as usize;
            assert!(m.ip_len() <= mtu, "{} bytes sent on a port of MTU {mtu}: in {input:02x?} out {out:02x?}", m.ip_len());
        }
    }
}

/// The counters moved as the verdicts say, and balance.
fn check_balance(a: &WorkerCounters, b: &WorkerCounters, verdicts: &[Verdict]) {
    let d = |f: fn(&WorkerCounters) -> u64| f(b) - f(a);
    let n = |p: fn(&Verdict) -> bool| verdicts.iter().filter(|v| p(v)).count() as u64;
    let rx = d(|c| c.rx_packets);
    let tx = d(|c| c.tx_packets);
    let drops = d(|c| c.total_drops());
    let passes = d(|c| c.total_passes());
    let hand = d(|c| c.handoffs);
    let sent = d(|c| c.icmp_sent);
    assert_eq!(rx, verdicts.len() as u64, "rx_packets counts every frame");
    assert_eq!(tx, n(|v| matches!(v, Verdict::Tx { .. })), "tx_packets = transmit verdicts");
    assert_eq!(passes, n(|v| matches!(v, Verdict::Pass(_))), "passes = pass verdicts");
    assert_eq!(hand, n(|v| matches!(v, Verdict::Handoff { .. })), "handoffs = hand-off verdicts");
    assert_eq!(
        rx + sent,
        tx + drops + passes + hand,
        "counters do not balance: rx {rx} icmp_sent {sent} tx {tx} drops {drops} passes {passes} handoffs {hand}"
    );
}

/// Runs the fuzzer's bytes through a worker. Panics when an invariant
/// breaks (see the module docs).
pub fn run(data: &[u8], mode: Mode) {
    let mut r = Bytes::new(data);
    // One worker of one, or one of two (hand-offs, ownership).
    let cfg = r.u8();
    let (workers, id) = match cfg % 4 {
        0 | 1 => (1, 0),
        2 => (2, 0),
        _ => (2, 1),
    };
    let mut run = Run::new(workers, id);
    match mode {
        Mode::Raw => raw(&mut r, &mut run),
        Mode::Structured | Mode::Icmp => program(&mut r, &mut run, mode),
    }
    run.drain();
}

/// `Raw`: frames, each a big-endian length (top bit: received on port 1)
/// and its bytes; a burst every 32 frames, 1 ms apart.
fn raw(r: &mut Bytes<'_>, run: &mut Run) {
    while !r.is_empty() {
        let h = r.u16();
        let f = r.take((h & 0x7fff) as usize).to_vec();
        run.push(f, (h >> 15) as u8);
        if run.batch.is_full() {
            run.advance(1_000_000);
        }
    }
}

/// Encodes frames the way [`Mode::Raw`] reads them (seed corpora).
pub fn encode_raw(frames: &[(Vec<u8>, u8)]) -> Vec<u8> {
    let mut v = vec![0];
    for (f, p) in frames {
        let n = f.len().min(0x7fff);
        v.extend_from_slice(&((n as u16) | ((*p as u16) << 15)).to_be_bytes());
        v.extend_from_slice(&f[..n]);
    }
    v
}

fn program(r: &mut Bytes<'_>, run: &mut Run, mode: Mode) {
    let mut ops = 0;
    while !r.is_empty() && ops < 512 {
        ops += 1;
        let op = r.u8() % 16;
        let op = if mode == Mode::Icmp && op >= 8 { op % 4 + 9 } else { op };
        let snap = run.w.snapshot().clone();
        let frame = match op {
            0..=5 => Some(new_frame(r, &snap)),
            6..=8 => {
                if run.sent.is_empty() {
                    Some(new_frame(r, &snap))
                } else {
                    let i = r.u8() as usize % run.sent.len();
                    let s = run.sent[i].clone();
                    reply(r, &s, &snap)
                }
            }
            9..=11 => {
                if run.sent.is_empty() {
                    None
                } else {
                    let i = r.u8() as usize % run.sent.len();
                    let s = run.sent[i].clone();
                    icmp_error(r, &s, &snap)
                }
            }
            12 => {
                let ns = match r.u8() % 4 {
                    0 => r.u16() as u64 * 1_000_000,
                    1 => r.u16() as u64 * SEC,
                    2 => 0,
                    _ => r.u32() as u64,
                };
                run.advance(ns);
                None
            }
            13 => {
                run.flush();
                None
            }
            14 => {
                run.reload();
                None
            }
            _ => {
                let n = (r.u8() as usize) * 2;
                Some((r.take(n).to_vec(), r.u8() & 1))
            }
        };
        if let Some((mut f, p)) = frame {
            if r.u8() % 8 == 0 {
                bend(r, &mut f);
            }
            run.push(f, p);
        }
    }
}
