//! Where xvs follows IPVS (and the kernel under it), through `xvs replay`
//! over captures built here: the rate limit of the ICMP errors xvs makes,
//! the outer fragmentation of tunnelled packets, and the ICMP errors that
//! quote xvs's own IPIP and IPv6-in-IPv6 packets (dissected by tshark
//! when it is installed), expire_nodest_conn both ways across a reload. Every
//! replay's counters must balance (docs/operations.md): `rx + made = tx +
//! dropped + to_kernel + handed_off`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::TempDir;
use xvs::gen::packet::{refresh_ipv4_checksum, tcp4, tcp6, udp4};
use xvs::gen::scenario::{parse_pcap, pcap_bytes, CLIENT, RS, RS_ROUTER, VIP};
use xvs::wire::frame::{Frame, HEADROOM};
use xvs::wire::icmp::{build_error, refresh_checksum, ErrorKind};
use xvs::wire::tcp_flags::{ACK, SYN};
use xvs::wire::{be16, ip, parse};

const XVS: &str = env!("CARGO_BIN_EXE_xvs");

/// A scratch directory, removed on drop (also when a test fails).
fn scratch() -> TempDir {
    tempfile::Builder::new().prefix("xvs-fidelity-").tempdir().expect("temp dir")
}

/// `configs/<mode>.toml` with `edit` applied (which must change it).
fn config(d: &TempDir, mode: &str, edit: impl Fn(&str) -> String) -> PathBuf {
    let base = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("configs/{mode}.toml"))).unwrap();
    let text = edit(&base);
    assert_ne!(text, base, "configs/{mode}.toml changed shape");
    let p = d.path().join(format!("{mode}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// Replays `frames` (at the given nanosecond offsets) with `cfg`: the
/// frames sent and the counters, which must balance.
fn replay(d: &TempDir, cfg: &Path, name: &str, frames: &[(u64, Vec<u8>)]) -> (Vec<Vec<u8>>, BTreeMap<String, u64>) {
    replay_reloading(d, cfg, &[], name, frames)
}

/// [`replay`] with `--reload SECS=FILE` for each of `reloads`.
fn replay_reloading(d: &TempDir, cfg: &Path, reloads: &[(u64, &Path)], name: &str, frames: &[(u64, Vec<u8>)]) -> (Vec<Vec<u8>>, BTreeMap<String, u64>) {
    let (pin, pout) = (d.path().join(format!("{name}.in.pcap")), d.path().join(format!("{name}.out.pcap")));
    let t0 = 1_700_000_000_000_000_000u64;
    std::fs::write(&pin, pcap_bytes(frames.iter().map(|(t, f)| (t0 + t, f.as_slice())))).unwrap();
    let o = Command::new(XVS)
        .args(["replay", "--counters", "--config"])
        .arg(cfg)
        .arg("--in")
        .arg(&pin)
        .arg("--out")
        .arg(&pout)
        .args(reloads.iter().flat_map(|(t, f)| ["--reload".to_string(), format!("{t}={}", f.display())]))
        .output()
        .unwrap();
    assert!(o.status.success(), "xvs replay: {}", String::from_utf8_lossy(&o.stderr));
    let c: BTreeMap<String, u64> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_once('=').and_then(|(k, v)| Some((k.to_string(), v.parse().ok()?))))
        .collect();
    let sum = |p: &str| c.iter().filter(|(k, _)| k.starts_with(p)).map(|(_, v)| v).sum::<u64>();
    let made = c["icmp_sent"] + c.get("frags_made").copied().unwrap_or(0);
    assert_eq!(
        c["rx_packets"] + made,
        c["tx_packets"] + sum("drop_") + sum("pass_") + c["handoffs"],
        "the counters balance: {c:?}"
    );
    let out = parse_pcap(&std::fs::read(&pout).unwrap()).unwrap().into_iter().map(|(_, f)| f).collect();
    (out, c)
}

/// A UDP service without an available real server answers every datagram
/// with "port unreachable" — at most `icmp_msgs_burst` at once and then
/// `icmp_msgs_per_sec`; the datagrams beyond are only dropped, and
/// counted. Without a limit every one is answered.
#[test]
fn icmp_errors_xvs_makes_are_rate_limited() {
    let d = scratch();
    let quiesce = |s: &str, limit: &str| {
        // the UDP service's real servers at weight 0, and the limit
        let s = s.replace("  ip = \"10.0.1.1\"\n  mode = \"nat\"", "  ip = \"10.0.1.1\"\n  weight = 0\n  mode = \"nat\"");
        let s = s.replace("  ip = \"10.0.1.2\"\n  mode = \"nat\"", "  ip = \"10.0.1.2\"\n  weight = 0\n  mode = \"nat\"");
        format!("[global]\n{limit}\n{s}")
    };
    let limited = config(&d, "nat", |s| quiesce(s, "icmp_msgs_per_sec = 100\nicmp_msgs_burst = 10"));
    // 100 datagrams within 10 ms, then 100 more a second later.
    let c = CLIENT.octets();
    let mut frames: Vec<(u64, Vec<u8>)> = (0..100u64).map(|i| (i * 100_000, udp4(c, 5000 + i as u16, VIP.octets(), 53, b"q"))).collect();
    frames.extend((0..100u64).map(|i| (1_000_000_000 + i * 100_000, udp4(c, 6000 + i as u16, VIP.octets(), 53, b"q"))));
    let (out, n) = replay(&d, &limited, "limited", &frames);
    // 10 at once, 1 more by 10 ms at 100/s; a second later the bucket is
    // full again (10), plus one more within those 10 ms.
    assert!((20..=22).contains(&out.len()), "{} errors sent: {n:?}", out.len());
    for f in &out {
        let m = parse(f).unwrap();
        assert_eq!((m.proto, f[m.l4 as usize], f[m.l4 as usize + 1]), (1, 3, 3), "port unreachable");
    }
    assert_eq!(n["icmp_sent"], out.len() as u64);
    assert_eq!(n["icmp_limited"], 200 - out.len() as u64);
    assert_eq!(n["drop_no_dest"], 200, "every datagram is dropped, answered or not");
    // icmp_msgs_per_sec = 0: no limit.
    let unlimited = config(&d, "nat", |s| quiesce(s, "icmp_msgs_per_sec = 0"));
    let (out, n) = replay(&d, &unlimited, "unlimited", &frames);
    assert_eq!((out.len(), n["icmp_limited"]), (200, 0));
}

/// tshark's fields of every frame of `pcap` (IPv4 reassembly and every
/// checksum check on), tab-separated, one line per frame; `None` (and a
/// SKIP line) without tshark, which CI requires.
fn tshark(pcap: &Path, fields: &[&str]) -> Option<Vec<Vec<String>>> {
    if !Command::new("tshark").arg("--version").output().is_ok_and(|o| o.status.success()) {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "tshark is not installed, and CI=true requires it (make deps)");
        eprintln!("SKIP: tshark is not installed: the frames are not dissected (run `make deps`)");
        return None;
    }
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(pcap);
    for o in ["ip.defragment:TRUE", "ip.check_checksum:TRUE", "tcp.check_checksum:TRUE", "udp.check_checksum:TRUE"] {
        cmd.arg("-o").arg(o);
    }
    cmd.args(["-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"]);
    for f in fields {
        cmd.arg("-e").arg(f);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "tshark: {}", String::from_utf8_lossy(&o.stderr));
    Some(String::from_utf8_lossy(&o.stdout).lines().map(|l| l.split('\t').map(str::to_string).collect()).collect())
}

/// `f` without DF (header checksum fixed).
fn no_df(mut f: Vec<u8>) -> Vec<u8> {
    f[20] &= !0x40;
    refresh_ipv4_checksum(&mut f, 14);
    f
}

/// A 1500-byte client packet without DF does not fit the 1500-byte link
/// once tunnelled: it leaves in two fragments of the outer datagram, with
/// one outer id, which tshark puts back together into the IPIP packet and
/// the client's TCP segment, every checksum good. With DF the client is
/// told the MTU (1480) instead.
#[test]
fn tunnelled_packets_without_df_leave_in_fragments_tshark_reassembles() {
    let d = scratch();
    let cfg = config(&d, "tun", |s| s.replace("scheduler = \"wrr\"", "scheduler = \"rr\""));
    let c = CLIENT.octets();
    let big = no_df(tcp4(c, 40000, VIP.octets(), 80, SYN, &[0x5a; 1460]));
    assert_eq!(big.len(), 14 + 1500);
    // (10 ms apart: another burst, so the fragments are written together)
    let frames = vec![(0, big.clone()), (10_000_000, tcp4(c, 40001, VIP.octets(), 80, SYN, &[0x5a; 1460]))];
    let (out, n) = replay(&d, &cfg, "tun-frag", &frames);
    assert_eq!(out.len(), 3, "two fragments and an ICMP error: {n:?}");
    assert_eq!((n["frags_made"], n["icmp_sent"], n["drop_too_big"]), (1, 1, 1));
    let (a, b) = (&out[0], &out[1]);
    assert_eq!((a.len(), b.len()), (14 + 1500, 14 + 20 + 20));
    assert_eq!((be16(a, 18), be16(a, 20)), (be16(b, 18), 0x2000), "one id; the first has more fragments");
    assert_eq!(be16(b, 20), 1480 / 8, "the second at offset 1480, the last");
    let e = parse(&out[2]).unwrap();
    assert_eq!((e.icmp_type, e.icmp_code, be16(&out[2], e.l4 as usize + 6)), (3, 4, 1480));
    let pout = d.path().join("tun-frag.out.pcap");
    let fields = ["frame.number", "ip.proto", "ip.checksum.status", "ip.reassembled.length", "tcp.len", "tcp.checksum.status", "_ws.malformed"];
    let Some(rows) = tshark(&pout, &fields) else { return };
    assert_eq!(rows.len(), 3, "{rows:?}");
    for r in &rows {
        assert!(r[2].split(',').all(|s| s == "1"), "every IPv4 header checksum good: {r:?}");
        assert!(r[6].is_empty(), "nothing malformed: {r:?}");
    }
    // The second frame completes the datagram: 1500 bytes of IPIP
    // payload, the client's 1460-byte segment inside, checksum good.
    let r = &rows[1];
    assert_eq!(r[1], "4,6", "IPIP, then TCP: {r:?}");
    assert_eq!(r[3], "1500", "reassembled: {r:?}");
    assert_eq!((r[4].as_str(), r[5].as_str()), ("1460", "1"), "{r:?}");
}

/// An ICMP error from a router on the tunnel's path (10.0.1.253, MTU
/// 1400) about one of xvs's IPIP packets: the client is told
/// fragmentation needed, MTU 1380, quoting its own packet, from the VIP —
/// as IPVS's ip_vs_in_icmp does.
#[test]
fn errors_quoting_our_ipip_packets_tell_the_client_the_mtu_less_the_tunnel() {
    let d = scratch();
    let cfg = config(&d, "tun", |s| s.replace("scheduler = \"wrr\"", "scheduler = \"rr\""));
    let c = CLIENT.octets();
    let pkt = tcp4(c, 40000, VIP.octets(), 80, SYN, &[0x5a; 1300]);
    let (out, _) = replay(&d, &cfg, "tun-icmp-1", &[(0, pkt.clone())]);
    let tunnelled = &out[0];
    assert_eq!(parse(tunnelled).unwrap().proto, 4);
    // The router answers the outer packet's source (10.0.1.254); the
    // frame reaches the director's MAC.
    let mut b = vec![0u8; HEADROOM + tunnelled.len()];
    b[HEADROOM..].copy_from_slice(tunnelled);
    let mut fr = Frame::new(&mut b, HEADROOM, tunnelled.len());
    let m = parse(fr.data()).unwrap();
    build_error::<Ipv4Addr>(&mut fr, &m, ErrorKind::TooBig { mtu: 1400 }).unwrap();
    let mut err = fr.data().to_vec();
    let em = parse(&err).unwrap();
    ip::set_src(&mut err, &em, RS_ROUTER);
    err[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 0x10]);
    err[6..12].copy_from_slice(&[2, 0, 0, 0, 1, 0xfd]);
    let (out, n) = replay(&d, &cfg, "tun-icmp-2", &[(0, pkt.clone()), (1_000, err)]);
    assert_eq!((out.len(), n["icmp_relayed"]), (2, 1), "{n:?}");
    let e = &out[1];
    let m = parse(e).unwrap();
    assert_eq!((m.icmp_type, m.icmp_code, be16(e, m.l4 as usize + 6)), (3, 4, 1380));
    assert_eq!((&e[26..30], &e[30..34]), (&VIP.octets()[..], &c[..]), "from the VIP to the client");
    assert_eq!(&e[m.l4 as usize + 8..m.l4 as usize + 28], &pkt[14..34], "quoting the client's own packet");
    let Some(rows) = tshark(&d.path().join("tun-icmp-2.out.pcap"), &["ip.src", "ip.dst", "icmp.type", "icmp.code", "icmp.mtu", "icmp.checksum.status", "ip.checksum.status", "_ws.malformed"]) else {
        return;
    };
    let r = &rows[1];
    assert_eq!(r[0], format!("{VIP},{CLIENT}"), "the error, then the quoted packet: {r:?}");
    assert_eq!(r[1], format!("{CLIENT},{VIP}"), "{r:?}");
    assert_eq!((r[2].as_str(), r[3].as_str(), r[4].as_str(), r[5].as_str()), ("3", "4", "1380", "1"), "{r:?}");
    assert!(r[6].split(',').all(|s| s == "1") && r[7].is_empty(), "{r:?}");
}

/// An IPv6 TUN director: the client side (eth0, 2001:db8::1/64, the
/// router 2001:db8::fe as gateway) and the real server's (eth1,
/// 2001:db8:1::fe/64, rs 2001:db8:1::1), TCP [2001:db8::100]:80.
const TUN6: &str = r#"
[[interface]]
name = "eth0"
mac = "02:00:00:00:00:10"
mtu = 1500
addresses = ["2001:db8::1/64"]
gateways = ["2001:db8::fe"]

[[interface]]
name = "eth1"
mac = "02:00:00:00:01:10"
mtu = 1500
addresses = ["2001:db8:1::fe/64"]

[[neighbour]]
ip = "2001:db8::fe"
mac = "02:00:00:00:00:fe"

[[neighbour]]
ip = "2001:db8:1::1"
mac = "02:00:00:00:01:01"

[[service]]
proto = "tcp"
vip = "2001:db8::100"
port = 80
scheduler = "rr"

  [[service.real_server]]
  ip = "2001:db8:1::1"
  mode = "tun"
"#;

/// The IPv6 counterpart: an ICMPv6 Packet Too Big from a router on the
/// tunnel's path (2001:db8:1::253, MTU 1400) about one of xvs's
/// IPv6-in-IPv6 packets: the client is told Packet Too Big, MTU 1360 (the
/// path's less the 40-byte tunnel header), quoting its own packet, from
/// the VIP. (IPVS's ip_vs_in_icmp_v6 leaves it to the stack.)
#[test]
fn packet_too_big_quoting_our_ipv6_tunnel_tells_the_client_the_mtu_less_40() {
    let d = scratch();
    let cfg = d.path().join("tun6.toml");
    std::fs::write(&cfg, TUN6).unwrap();
    let a6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    let (client, vip) = (a6("2001:db8:5::7"), a6("2001:db8::100"));
    let pkt = tcp6(client.octets(), 40000, vip.octets(), 80, SYN, &[0x5a; 1400]);
    let (out, _) = replay(&d, &cfg, "tun6-icmp-1", &[(0, pkt.clone())]);
    let tunnelled = &out[0];
    assert_eq!((parse(tunnelled).unwrap().proto, tunnelled.len()), (41, 14 + 1500), "IPv6 in IPv6, the link's MTU");
    // The router answers the outer packet's source (2001:db8:1::fe).
    let mut b = vec![0u8; HEADROOM + tunnelled.len()];
    b[HEADROOM..].copy_from_slice(tunnelled);
    let mut fr = Frame::new(&mut b, HEADROOM, tunnelled.len());
    let m = parse(fr.data()).unwrap();
    build_error::<Ipv6Addr>(&mut fr, &m, ErrorKind::TooBig { mtu: 1400 }).unwrap();
    let mut err = fr.data().to_vec();
    let em = parse(&err).unwrap();
    assert_eq!(&err[38..54], &a6("2001:db8:1::fe").octets()[..], "to the tunnel's source");
    ip::set_src(&mut err, &em, a6("2001:db8:1::253"));
    refresh_checksum(&mut err, &em);
    err[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 0x10]);
    err[6..12].copy_from_slice(&[2, 0, 0, 0, 1, 0xfd]);
    let (out, n) = replay(&d, &cfg, "tun6-icmp-2", &[(0, pkt.clone()), (1_000, err)]);
    assert_eq!((out.len(), n["icmp_relayed"], n.get("pass_icmp").copied().unwrap_or(0)), (2, 1, 0), "{n:?}");
    let e = &out[1];
    let m = parse(e).unwrap();
    let l4 = m.l4 as usize;
    assert_eq!((m.proto, e[l4], e[l4 + 1]), (58, 2, 0), "Packet Too Big");
    assert_eq!(u32::from_be_bytes([e[l4 + 4], e[l4 + 5], e[l4 + 6], e[l4 + 7]]), 1360);
    assert_eq!((&e[22..38], &e[38..54]), (&vip.octets()[..], &client.octets()[..]), "from the VIP to the client");
    assert_eq!(&e[0..6], &[2, 0, 0, 0, 0, 0xfe], "through the client side's router");
    assert_eq!(&e[l4 + 8..l4 + 48], &pkt[14..54], "quoting the client's own packet");
    let fields = ["ipv6.src", "ipv6.dst", "icmpv6.type", "icmpv6.code", "icmpv6.mtu", "icmpv6.checksum.status", "_ws.malformed"];
    let Some(rows) = tshark(&d.path().join("tun6-icmp-2.out.pcap"), &fields) else {
        return;
    };
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0][0], format!("2001:db8:1::fe,{client}"), "the tunnelled packet: outer, then the client's: {:?}", rows[0]);
    let r = &rows[1];
    assert_eq!(r[0], format!("{vip},{client}"), "the error, then the quoted packet: {r:?}");
    assert_eq!(r[1], format!("{client},{vip}"), "{r:?}");
    assert_eq!((r[2].as_str(), r[3].as_str(), r[4].as_str(), r[5].as_str()), ("2", "0", "1360", "1"), "{r:?}");
    assert!(r[6].is_empty(), "nothing malformed: {r:?}");
}

/// The FULLNAT config with the real server at `rs` removed from the TCP
/// service, and expire_nodest_conn as given.
fn without(d: &TempDir, rs: Ipv4Addr, expire_nodest_conn: bool, name: &str) -> PathBuf {
    let base = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/fullnat.toml")).unwrap();
    let block = |ip: Ipv4Addr, w: u32| format!("  [[service.real_server]]\n  ip = \"{ip}\"\n  port = 8080\n  weight = {w}\n  mode = \"fullnat\"\n");
    let w = if rs == RS[0] { 1 } else { 2 };
    assert!(base.contains(&block(rs, w)), "configs/fullnat.toml changed shape");
    let text = format!("[global]\nexpire_nodest_conn = {expire_nodest_conn}\n{}", base.replacen(&block(rs, w), "", 1));
    let p = d.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// expire_nodest_conn through a reload that removes a real server: off
/// (IPVS's default), the client's packets of its connection are dropped
/// (`dest_gone`), the entry and its FULLNAT local port held, until the
/// connection expires, after which a SYN on the same ports is scheduled
/// afresh; on, the entry ends at the next client packet (slot and port
/// given back at once) and a SYN is scheduled afresh at once.
#[test]
fn expire_nodest_conn_across_a_reload_both_ways() {
    let d = scratch();
    let cfg = config(&d, "fullnat", |s| s.replace("scheduler = \"wrr\"", "scheduler = \"rr\""));
    let c = CLIENT.octets();
    let v = VIP.octets();
    let syn = tcp4(c, 40000, v, 80, SYN, b"");
    let ack = tcp4(c, 40000, v, 80, ACK, b"x");
    let (out, _) = replay(&d, &cfg, "first", &[(0, syn.clone())]);
    let rs = Ipv4Addr::new(out[0][30], out[0][31], out[0][32], out[0][33]);
    assert!(RS.contains(&rs), "to a real server: {rs}");
    let other = if rs == RS[0] { RS[1] } else { RS[0] };
    let sec = 1_000_000_000u64;
    // SYN at 0 (SYN_RECV: 60 s by default; dropped packets do not
    // restart it), the server removed at 1 s, client packets at 2 and
    // 3 s, a SYN on the same ports at 4 s, another later.
    let frames = |late: u64| vec![(0, syn.clone()), (2 * sec, ack.clone()), (3 * sec, ack.clone()), (4 * sec, syn.clone()), (late * sec, syn.clone())];
    // off: dropped while the entry lives; the SYN too follows it (dropped).
    let off = without(&d, rs, false, "off.toml");
    let (out, n) = replay_reloading(&d, &cfg, &[(1, &off)], "off", &frames(4));
    assert_eq!(out.len(), 1, "only the first SYN is forwarded: {n:?}");
    assert_eq!(n["drop_dest_gone"], 4, "{n:?}");
    assert_eq!((n["conns"], n["expired_conns"]), (1, 0), "the entry (and its port) is held: {n:?}");
    // ... until it expires: then a SYN on the same ports is scheduled.
    let (out, n) = replay_reloading(&d, &cfg, &[(1, &off)], "off-late", &frames(2000));
    assert_eq!((out.len(), n["drop_dest_gone"], n["expired_conns"]), (2, 3, 1), "{n:?}");
    assert_eq!(&out[1][30..34], &other.octets()[..], "afresh, to the server left");
    // on: the first client packet ends the entry (an ACK finds no
    // connection then); the SYN is scheduled afresh to the other server.
    let on = without(&d, rs, true, "on.toml");
    let (out, n) = replay_reloading(&d, &cfg, &[(1, &on)], "on", &frames(5));
    assert_eq!(n["drop_dest_gone"], 0, "{n:?}");
    assert_eq!(n["expired_conns"], 1, "ended at the first ACK: {n:?}");
    assert_eq!(n["drop_no_conn"], 2, "both ACKs find no connection: {n:?}");
    assert_eq!(out.len(), 3, "the first SYN, the one at 4 s and its retransmission at 5 s: {n:?}");
    assert_eq!((&out[1][30..34], &out[2][30..34]), (&other.octets()[..], &other.octets()[..]), "afresh, to the server left");
    assert_eq!(n["conns"], 1, "only the new connection is tracked: {n:?}");
}
