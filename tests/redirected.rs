//! What the steering program redirects beyond plain frames, through
//! `xvs replay` in every forwarding mode: IPv4 options and 802.1ad tags
//! (last test), and fragments, checked as
//! the golden tests check frames: a large UDP datagram from the client,
//! fragmented in order, out of order with its first fragment last (the
//! fragments ahead of it are dropped, counted), and with its later
//! fragments swapped (all forwarded); for NAT and FULLNAT the real
//! server's fragmented answer too. What comes out is put back together
//! and its UDP checksum verified from scratch, every fragment must carry
//! the same rewrite, and tshark (with IP reassembly and checksum
//! validation on) must find every reassembled datagram good.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::TempDir;
use xvs::gen::packet::{fragment4, reassemble, tcp4, udp4, verify, vlan, with_ipv4_options};
use xvs::gen::scenario::{parse_pcap, pcap_bytes, CLIENT, LIPS, RS, VIP};
use xvs::wire::{be16, parse};

const XVS: &str = env!("CARGO_BIN_EXE_xvs");

/// A scratch directory, removed on drop (also when a test fails).
fn scratch() -> TempDir {
    tempfile::Builder::new().prefix("xvs-fragments-").tempdir().expect("temp dir")
}

/// Replays `frames` with `configs/<mode>.toml`: the frames sent and the
/// counters.
fn replay(d: &TempDir, mode: &str, name: &str, frames: &[Vec<u8>]) -> (Vec<Vec<u8>>, BTreeMap<String, u64>, PathBuf) {
    replay_with(d, mode, "", name, frames)
}

/// As [`replay`], with `extra` appended to the config.
fn replay_with(d: &TempDir, mode: &str, extra: &str, name: &str, frames: &[Vec<u8>]) -> (Vec<Vec<u8>>, BTreeMap<String, u64>, PathBuf) {
    let d = d.path();
    let (pin, pout) = (d.join(format!("{name}.in.pcap")), d.join(format!("{name}.out.pcap")));
    let t0 = 1_700_000_000_000_000_000u64;
    std::fs::write(&pin, pcap_bytes(frames.iter().enumerate().map(|(i, f)| (t0 + i as u64 * 1000, f.as_slice())))).unwrap();
    let mut text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("configs/{mode}.toml"))).unwrap();
    text.push_str(extra);
    let cfg = d.join(format!("{name}.toml"));
    std::fs::write(&cfg, text).unwrap();
    let o = Command::new(XVS)
        .args(["replay", "--counters", "--config"])
        .arg(&cfg)
        .arg("--in")
        .arg(&pin)
        .arg("--out")
        .arg(&pout)
        .output()
        .unwrap();
    assert!(o.status.success(), "xvs replay: {}", String::from_utf8_lossy(&o.stderr));
    let counters = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_once('=').and_then(|(k, v)| Some((k.to_string(), v.parse().ok()?))))
        .collect();
    let out = parse_pcap(&std::fs::read(&pout).unwrap()).unwrap().into_iter().map(|(_, f)| f).collect();
    (out, counters, pout)
}

fn a4(f: &[u8], off: usize) -> [u8; 4] {
    [f[off], f[off + 1], f[off + 2], f[off + 3]]
}

/// Groups IPv4 fragments (outer header for TUN: the inner packet) by
/// (source, destination, id) and reassembles each datagram.
fn datagrams(out: &[Vec<u8>], tun: bool) -> Vec<Vec<u8>> {
    type Datagram = ([u8; 4], [u8; 4], u16);
    let mut groups: BTreeMap<Datagram, Vec<Vec<u8>>> = BTreeMap::new();
    for f in out {
        assert!(verify(f), "a forwarded fragment's headers: {f:02x?}");
        let inner = if tun {
            let mut g = f[..14].to_vec();
            g.extend_from_slice(&f[34..]);
            g
        } else {
            f.clone()
        };
        groups.entry((a4(&inner, 26), a4(&inner, 30), be16(&inner, 18))).or_default().push(inner);
    }
    groups
        .into_values()
        .map(|g| {
            let d = reassemble(&g).unwrap_or_else(|| panic!("fragments that do not fit together: {g:02x?}"));
            assert!(verify(&d), "the reassembled datagram's UDP checksum");
            d
        })
        .collect()
}

/// tshark, with IP reassembly and UDP checksum validation (and no DNS:
/// the payload is not DNS): every
/// reassembled datagram's checksum is good and nothing is malformed
/// (a SKIP line without tshark, an error under CI).
fn tshark_checks(pcap: &Path, datagrams: usize) {
    let ok = Command::new("tshark").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "tshark is required under CI (make deps)");
        println!("SKIP tshark checks: tshark is not installed");
        return;
    }
    let o = Command::new("tshark")
        .args(["-r"])
        .arg(pcap)
        .args(["--disable-protocol", "dns", "--disable-protocol", "mdns", "-o", "ip.defragment:TRUE", "-o", "udp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"])
        .args(["-T", "fields", "-e", "udp.checksum.status", "-e", "ip.checksum.status", "-e", "_ws.malformed", "-e", "_ws.expert.severity"])
        .output()
        .unwrap();
    assert!(o.status.success(), "tshark: {}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let mut good_udp = 0;
    for line in text.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        assert!(cols.get(2).map_or(true, |c| c.is_empty()), "malformed: {line}");
        if let Some(s) = cols.first().filter(|c| !c.is_empty()) {
            assert_eq!(*s, "1", "udp checksum status: {line}");
            good_udp += 1;
        }
        assert!(cols.get(1).map_or(true, |c| c.split(',').all(|s| s == "1" || s == "2")), "ip checksum status: {line}");
    }
    assert_eq!(good_udp, datagrams, "{text}");
}

/// The client's datagram `id` of `len` bytes to VIP:53, in fragments of
/// at most `max` bytes of payload.
fn query(id: u16, len: usize, max: usize) -> Vec<Vec<u8>> {
    let payload: Vec<u8> = (0..len).map(|i| (i * 7 + id as usize) as u8).collect();
    fragment4(&udp4(CLIENT.octets(), 5353, VIP.octets(), 53, &payload), max, id)
}

fn run_mode(mode: &str) {
    let d = scratch();
    let tun = mode == "tun";
    let max = if tun { 1400 } else { 1480 };
    let (a, b, c) = (query(1, 3000, max), query(2, 3000, max), query(3, 3000, max));
    assert_eq!(a.len(), 3);
    let mut input: Vec<Vec<u8>> = a.clone();
    input.extend([b[1].clone(), b[2].clone(), b[0].clone()]);
    input.extend([c[0].clone(), c[2].clone(), c[1].clone()]);
    let (out, counters, _) = replay(&d, mode, mode, &input);
    assert_eq!(out.len(), 3 + 1 + 3, "{mode}: {counters:?}");
    assert_eq!(counters["drop_frag_no_head"], 2, "{mode}");
    // Datagram A whole, B's head alone, C whole.
    let ds = datagrams(&[&out[..3], &out[4..]].concat(), tun);
    assert_eq!(ds.len(), 2);
    let first = &ds[0];
    let m = parse(first).unwrap();
    assert_eq!(m.end as usize - m.l4 as usize, 3008, "{mode}: the whole UDP datagram");
    // Every fragment of a datagram carries the same rewrite.
    // (TUN: the outer destination; every other mode: the datagram's.)
    let dst = a4(&out[0], 30);
    assert!(out.iter().all(|f| a4(f, 30) == dst), "{mode}: one real server for the flow");
    let mut replies = Vec::new();
    match mode {
        "nat" | "fullnat" => {
            let rs = RS.iter().find(|r| r.octets() == dst).expect("a real server");
            assert_eq!(m.dport, 53);
            let (to, to_port) = if mode == "nat" {
                assert_eq!((a4(first, 26), m.sport), (CLIENT.octets(), 5353), "NAT keeps the client");
                (CLIENT.octets(), 5353)
            } else {
                assert!(LIPS.iter().any(|l| l.octets() == a4(first, 26)), "FULLNAT's source is a local address");
                (a4(first, 26), m.sport)
            };
            let payload: Vec<u8> = (0..4000).map(|i| (i % 241) as u8).collect();
            replies = fragment4(&udp4(rs.octets(), 53, to, to_port, &payload), 1480, 999);
        }
        "dr" => {
            for (o, i) in out.iter().zip(&a) {
                assert_eq!(&o[12..], &i[12..], "DR: nothing above L2 changes");
            }
        }
        _ => {
            for (o, i) in out.iter().zip(&a) {
                assert_eq!((&o[34..], o[23]), (&i[14..], 4), "TUN: the fragment whole inside IPIP");
            }
        }
    }
    if replies.is_empty() {
        let (_, _, pout) = replay(&d, mode, &format!("{mode}-t"), &input);
        tshark_checks(&pout, 2);
        return;
    }
    // The same traffic, then the real server's answer in three fragments.
    let mut with_reply = input.clone();
    with_reply.extend(replies);
    let (out2, counters, pout) = replay(&d, mode, &format!("{mode}-reply"), &with_reply);
    assert_eq!(out2.len(), out.len() + 3, "{mode}: {counters:?}");
    assert_eq!(&out2[..out.len()], &out[..], "{mode}: the same choices again");
    let back = datagrams(&out2[out.len()..], false);
    assert_eq!(back.len(), 1);
    let mb = parse(&back[0]).unwrap();
    assert_eq!((a4(&back[0], 26), mb.sport, a4(&back[0], 30), mb.dport), (VIP.octets(), 53, CLIENT.octets(), 5353), "{mode}: the answer comes from VIP:53");
    tshark_checks(&pout, 3);
}

#[test]
fn fragments_through_nat() {
    run_mode("nat");
}

#[test]
fn fragments_through_fullnat() {
    run_mode("fullnat");
}

#[test]
fn fragments_through_dr() {
    run_mode("dr");
}

#[test]
fn fragments_through_tun() {
    run_mode("tun");
}

/// A VLAN 20 sub-interface on the client side's port, for the 802.1ad
/// frames.
const VLAN20: &str = r#"
[[interface]]
name = "eth0.20"
link = "eth0"
vlan = 20
addresses = ["10.0.20.1/24"]
"#;

/// A SYN with IPv4 options and one tagged with an 802.1ad S-tag, in every
/// mode: forwarded (NAT and FULLNAT find the ports after the options),
/// every checksum good by tshark; the tagged one arrives on VLAN 20 (the
/// VLAN's id is what names the sub-interface) and leaves untagged, as the
/// route to the real servers says; one for a VLAN the port has not is
/// dropped as the kernel drops it.
#[test]
fn options_and_802_1ad_tags_through_every_mode() {
    for mode in ["nat", "fullnat", "dr", "tun"] {
        let d = scratch();
        let opt = with_ipv4_options(&tcp4(CLIENT.octets(), 40000, VIP.octets(), 80, 0x02, b""));
        let ad = |port: u16, vid: u16| {
            let mut f = vlan(tcp4(CLIENT.octets(), port, VIP.octets(), 80, 0x02, b""), vid);
            f[12..14].copy_from_slice(&0x88a8u16.to_be_bytes());
            f
        };
        let (out, counters, pout) = replay_with(&d, mode, VLAN20, "opt", &[opt, ad(40001, 20), ad(40002, 30)]);
        assert_eq!(out.len(), 2, "{mode}: {counters:?}");
        assert_eq!(counters.get("drop_unknown_vlan"), Some(&1), "{mode}: {counters:?}");
        assert!(out.iter().all(|f| verify(f)), "{mode}");
        let m = parse(&out[0]).unwrap();
        // (TUN: the inner header, behind the outer one.)
        let ihl = if mode == "tun" { (out[0][34] & 0x0f) as usize * 4 } else { m.l4 as usize - 14 };
        assert_eq!(ihl, 24, "{mode}: the options are kept");
        if mode == "nat" || mode == "fullnat" {
            assert_eq!(m.dport, 8080, "{mode}: the port after the options is rewritten");
        }
        assert!(!parse(&out[1]).unwrap().vlan, "{mode}: egress follows the route, untagged");
        let ok = Command::new("tshark").arg("--version").output().is_ok_and(|o| o.status.success());
        if !ok {
            println!("SKIP tshark checks: tshark is not installed");
            continue;
        }
        let o = Command::new("tshark")
            .arg("-r")
            .arg(&pout)
            .args(["-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"])
            .args(["-T", "fields", "-e", "tcp.checksum.status", "-e", "ip.checksum.status", "-e", "_ws.malformed", "-e", "vlan.etype"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
        assert_eq!(lines.len(), 2, "{mode}: {text}");
        for l in &lines {
            assert_eq!(l[0], "1", "{mode}: tcp checksum: {text}");
            assert!(l[1].split(',').all(|s| s == "1"), "{mode}: ip checksum: {text}");
            assert!(l.get(2).map_or(true, |c| c.is_empty()), "{mode}: malformed: {text}");
        }
    }
}
