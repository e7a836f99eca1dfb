//! Sync messages as xvs sends them, dissected by tshark's IPVS dissector
//! (`-d udp.port==8848,ipvs`): no malformed packet and no expert error in
//! any of them, and tshark reads the same header and records as we wrote.
//!
//! Wireshark's dissector (4.x) knows version 1's records but not their
//! options: it reads the next record where an option starts. The xvs
//! option (FULLNAT connections, and NAT ones with a sequence adjustment)
//! is shaped so that it is read as one IPv6
//! record and the rest stay aligned (see `src/sync/wire.rs`); the records
//! tshark reads there are not ours, so the field comparison covers the
//! messages without FULLNAT records, and every message is checked for
//! malformed fields.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use xvs::ipvs::proto::TcpState;
use xvs::ipvs::seqadj::SeqAdj;
use xvs::ipvs::FwdMethod;
use xvs::sync::auth::Auth;
use xvs::sync::conn::{SyncConn, GROUP_TEMPLATE, TEMPLATE_BIT};
use xvs::sync::wire::{self, Kind, MsgBuilder, Trailer, MAC_LEN, TRAILER_LEN};

fn tshark() -> Option<&'static str> {
    if Command::new("tshark").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return Some("tshark");
    }
    assert!(std::env::var("CI").map_or(true, |v| v != "true"), "tshark is not installed, and CI=true requires it (make deps)");
    println!("SKIP: tshark is not installed (make deps)");
    None
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A deterministic mix of every kind of connection xvs syncs.
fn conns(n: usize, v6: bool, fullnat: bool) -> Vec<SyncConn> {
    let mut x: u32 = 0x9e37_79b9;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let (c, v, d, l) = if v6 {
                (ip(&format!("2001:db8::{:x}", x & 0xffff)), ip("2001:db8::100"), ip(&format!("2001:db8:1::{}", 11 + i % 3)), ip("2001:db8:1::200"))
            } else {
                (IpAddr::from((0x6440_0000u32 | (x & 0x3f_ffff)).to_be_bytes()), ip("10.0.0.100"), ip(&format!("10.0.1.{}", 11 + i % 3)), ip("10.0.1.200"))
            };
            let fwd = if fullnat { FwdMethod::FullNat } else { [FwdMethod::Dr, FwdMethod::Tun, FwdMethod::Nat][i % 3] };
            let kind = i % 5;
            let mut sc = SyncConn {
                caddr: c,
                vaddr: v,
                daddr: d,
                laddr: if fullnat { l } else if v6 { ip("::") } else { ip("0.0.0.0") },
                cport: 1024 + (x >> 16) as u16 % 60000,
                vport: 80,
                dport: if fwd == FwdMethod::Nat || fullnat { 8080 } else { 80 },
                lport: if fullnat { 1024 + i as u16 } else { 0 },
                proto: 6,
                state: [TcpState::Established, TcpState::SynRecv, TcpState::FinWait, TcpState::TimeWait, TcpState::CloseWait][i % 5] as u8,
                fwd,
                template: false,
                inactive: i % 5 != 0,
                timeout: 900,
                seqadj: None,
            };
            match kind {
                1 if !fullnat => {
                    sc.proto = 17;
                    sc.state = 0;
                    sc.vport = 53;
                }
                3 if !fullnat => {
                    sc.template = true;
                    sc.proto = TEMPLATE_BIT | 6;
                    sc.cport = 0;
                    sc.lport = 0;
                    sc.timeout = 300;
                }
                4 if !fullnat => {
                    sc.template = true;
                    sc.proto = GROUP_TEMPLATE;
                    sc.vaddr = if v6 { ip("::") } else { ip("0.0.0.0") };
                    sc.cport = 0;
                    sc.vport = 7;
                }
                _ => {}
            }
            sc
        })
        .collect()
}

/// Packs `conns` into messages as the sync thread does.
fn messages(conns: &[SyncConn], syncid: u8, maxlen: usize, auth: Option<&Auth>) -> Vec<Vec<u8>> {
    let reserve = TRAILER_LEN + if auth.is_some() { MAC_LEN } else { 0 };
    let mut out = Vec::new();
    let mut b = MsgBuilder::new(syncid, maxlen);
    let mut seq = 0;
    let mut finish = |b: &mut MsgBuilder, out: &mut Vec<Vec<u8>>| {
        seq += 1;
        let t = Trailer { kind: Kind::Data, bulk_port: 8848, sender: 0x1234, seq, time_ms: 1_700_000_000_000, total: 0 };
        let m = b.finish(Some(&t), auth.is_some());
        if let Some(a) = auth {
            let mac = a.sign(wire::sign_range(m));
            wire::put_mac(m, &mac);
        }
        out.push(m.to_vec());
        b.clear();
    };
    for c in conns {
        let r = c.to_record();
        if !b.push(&r, reserve).unwrap() {
            finish(&mut b, &mut out);
            assert!(b.push(&r, reserve).unwrap());
        }
    }
    finish(&mut b, &mut out);
    // A hello.
    let t = Trailer { kind: Kind::Hello, bulk_port: 8848, sender: 0x1234, seq: 999, time_ms: 1, total: 0 };
    out.push(MsgBuilder::new(syncid, 256).finish(Some(&t), false).to_vec());
    out
}

struct Dissected {
    count: Vec<u32>,
    caddr: Vec<String>,
    daddr: Vec<String>,
    cport: Vec<u32>,
    malformed: bool,
    expert: Vec<String>,
}

fn dissect(t: &str, frames: &[Vec<u8>], name: &str) -> Vec<Dissected> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let p = dir.join(format!("sync-{name}-{}.pcap", std::process::id()));
    let pcap = xvs::gen::scenario::pcap_bytes(frames.iter().enumerate().map(|(i, f)| (1_000_000_000 + i as u64, &f[..])));
    std::fs::write(&p, pcap).unwrap();
    let mut cmd = Command::new(t);
    cmd.args(["-n", "-r"]).arg(&p).args(["-d", "udp.port==8848,ipvs", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,", "-E", "separator=\t"]);
    for f in ["ipvs.conncount", "ipvs.caddr", "ipvs.caddr6", "ipvs.daddr", "ipvs.daddr6", "ipvs.cport", "_ws.malformed", "_ws.expert.severity", "_ws.expert.message"] {
        cmd.args(["-e", f]);
    }
    let o = cmd.output().expect("running tshark");
    let _ = std::fs::remove_file(&p);
    assert!(o.status.success(), "tshark: {}", String::from_utf8_lossy(&o.stderr));
    let split = |s: &str| -> Vec<String> { s.split(',').filter(|x| !x.is_empty()).map(str::to_string).collect() };
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            let col = |i: usize| c.get(i).copied().unwrap_or("");
            let num = |s: &str| split(s).iter().map(|v| v.parse().unwrap()).collect::<Vec<u32>>();
            let mut caddr = split(col(1));
            caddr.extend(split(col(2)));
            let mut daddr = split(col(3));
            daddr.extend(split(col(4)));
            Dissected {
                count: num(col(0)),
                caddr,
                daddr,
                cport: num(col(5)),
                malformed: !col(6).is_empty(),
                expert: split(col(8)),
            }
        })
        .collect()
}

/// The datagram as a sync daemon sends it: multicast, TTL (hop limit) 1.
fn frame(msg: &[u8], v6: bool) -> Vec<u8> {
    if v6 {
        let g = "ff02::81".parse::<std::net::Ipv6Addr>().unwrap().octets();
        let mut f = xvs::gen::packet::udp6(ip_bytes6("2001:db8::1"), 40000, g, 8848, msg);
        f[14 + 7] = 1;
        f
    } else {
        let mut f = xvs::gen::packet::udp4([10, 0, 0, 1], 40000, [224, 0, 0, 81], 8848, msg);
        f[14 + 8] = 1;
        xvs::gen::packet::refresh_ipv4_checksum(&mut f, 14);
        f
    }
}

fn ip_bytes6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

/// Gives every NAT and FULLNAT TCP connection of `cs` a PROXY header's
/// sequence adjustment (v1 and v2 in turn; the xvs option then rides on
/// NAT records too).
fn adjust(cs: &mut [SyncConn]) {
    use xvs::wire::proxy::{header, Version, MAX_LEN};
    for (i, c) in cs.iter_mut().enumerate() {
        if c.template || c.proto != 6 || !matches!(c.fwd, FwdMethod::Nat | FwdMethod::FullNat) {
            continue;
        }
        let v = [Version::V1, Version::V2][i % 2];
        let mut h = [0u8; MAX_LEN];
        let len = match (c.caddr, c.vaddr) {
            (IpAddr::V4(a), IpAddr::V4(b)) => header(v, a, c.cport, b, c.vport, &mut h),
            (IpAddr::V6(a), IpAddr::V6(b)) => header(v, a, c.cport, b, c.vport, &mut h),
            _ => unreachable!(),
        };
        c.seqadj = Some(SeqAdj { start: 0x9000_0000u32.wrapping_mul(i as u32), out_delta: 0, len: len as u16, proxy: v.code(), acked: i % 3 == 0, ..SeqAdj::default() });
    }
}

fn check(t: &str, name: &str, v6: bool, fullnat: bool, auth: Option<&Auth>) {
    check_with(t, name, v6, fullnat, false, auth)
}

fn check_with(t: &str, name: &str, v6: bool, fullnat: bool, adjusted: bool, auth: Option<&Auth>) {
    let mut cs = conns(200, v6, fullnat);
    if adjusted {
        adjust(&mut cs);
        assert!(cs.iter().filter(|c| c.seqadj.is_some()).count() > 20, "{name}: adjusted connections");
    }
    let msgs = messages(&cs, 9, 1472, auth);
    assert!(msgs.len() > 3, "{name}: several messages");
    let frames: Vec<Vec<u8>> = msgs.iter().map(|m| frame(m, v6)).collect();
    let d = dissect(t, &frames, name);
    assert_eq!(d.len(), msgs.len(), "{name}");
    let mut at = 0;
    for (k, (x, m)) in d.iter().zip(&msgs).enumerate() {
        assert!(!x.malformed, "{name}: message {k} is malformed to tshark");
        assert!(x.expert.is_empty(), "{name}: message {k}: expert info {:?}", x.expert);
        let n = m[4] as usize;
        assert_eq!(x.count, vec![n as u32], "{name}: message {k}'s count");
        if fullnat || adjusted || n == 0 {
            at += n;
            continue;
        }
        // tshark reads our records exactly.
        let mine = &cs[at..at + n];
        at += n;
        let want_c: Vec<String> = mine.iter().map(|c| c.caddr.to_string()).collect();
        let want_d: Vec<String> = mine.iter().map(|c| c.daddr.to_string()).collect();
        let want_p: Vec<u32> = mine.iter().map(|c| c.to_record().cport as u32).collect();
        assert_eq!(x.caddr, want_c, "{name}: message {k}");
        assert_eq!(x.daddr, want_d, "{name}: message {k}");
        assert_eq!(x.cport, want_p, "{name}: message {k}");
    }
    assert_eq!(at, cs.len());
}

#[test]
fn tshark_dissects_every_sync_message_without_error() {
    let Some(t) = tshark() else { return };
    let key = Auth::new(b"0123456789abcdef").unwrap();
    check(t, "v4", false, false, None);
    check(t, "v6", true, false, None);
    check(t, "v4-signed", false, false, Some(&key));
    check(t, "v4-fullnat", false, true, None);
    check(t, "v6-fullnat-signed", true, true, Some(&key));
    // With sequence adjustments (the PROXY protocol's offset) in the xvs
    // option, on NAT and FULLNAT records.
    check_with(t, "v4-nat-adjusted", false, false, true, None);
    check_with(t, "v6-fullnat-adjusted-signed", true, true, true, Some(&key));
}

#[test]
fn the_dissection_check_can_fail() {
    // A message cut short is malformed to tshark: the check above would see it.
    let Some(t) = tshark() else { return };
    let msgs = messages(&conns(10, false, false), 1, 1472, None);
    let mut cut = msgs[0].clone();
    cut.truncate(8 + 36 + 10);
    let d = dissect(t, &[frame(&cut, false)], "cut");
    assert!(d[0].malformed, "a truncated message must be malformed to tshark");
}
