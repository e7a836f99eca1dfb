//! `sloppy_tcp` through the pcap replay path, as two directors behind ECMP
//! see a flow that moves (docs/scale-out.md): director A receives whole
//! connections (SYN, then data); director B, an `xvs replay` of its own
//! (another process) with the same configuration (DR, `mh` with
//! `mh-port`), receives only their later segments, as after the router
//! rehashed them. With `sloppy_tcp` B forwards every one of them, each to
//! the real server A chose for it, and counts them as `sloppy_conns`; a
//! RST of an unknown flow is still dropped. Without it, B drops them all
//! (`drop_no_conn`), as IPVS does. B's output is checked by tshark
//! (checksums on) when it is installed.

use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use xvs::gen::packet::tcp4;
use xvs::wire::tcp_flags::{ACK, FIN, PSH, RST, SYN};

const VIP: [u8; 4] = [10, 0, 0, 100];
const CLIENT: [u8; 4] = [192, 0, 2, 10];
const FLOWS: u16 = 24;

fn config(dir: &Path, sloppy: bool) -> PathBuf {
    let base = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/dr.toml")).unwrap();
    let text = base
        .replace("scheduler = \"wrr\"", "scheduler = \"mh\"\nflags = [\"mh-port\"]")
        .replace("[global]\n", &format!("[global]\nsloppy_tcp = {sloppy}\n"));
    assert!(text.contains("scheduler = \"mh\"") && text.contains("sloppy_tcp"), "configs/dr.toml changed shape");
    let p = dir.join(format!("sloppy-{sloppy}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

fn capture(path: &Path, frames: &[Vec<u8>]) {
    let mut w = PcapWriter::new(std::fs::File::create(path).unwrap()).unwrap();
    for (i, f) in frames.iter().enumerate() {
        let t = Duration::from_secs(1_700_000_000) + Duration::from_millis(i as u64);
        w.write_packet(&PcapPacket::new(t, f.len() as u32, f)).unwrap();
    }
}

/// Replays `frames`: the destination MAC of each transmitted frame (with
/// its client port) and the counters.
/// What a replay gave: (client port, destination MAC) per transmitted
/// frame, the counters, the output capture.
type Replayed = (Vec<(u16, [u8; 6])>, BTreeMap<String, u64>, PathBuf);

fn replay(cfg: &Path, dir: &Path, name: &str, frames: &[Vec<u8>]) -> Replayed {
    let (input, output) = (dir.join(format!("{name}.in.pcap")), dir.join(format!("{name}.out.pcap")));
    capture(&input, frames);
    let out = Command::new(env!("CARGO_BIN_EXE_xvs"))
        .args(["replay", "--counters", "--config"])
        .arg(cfg)
        .arg("--in")
        .arg(&input)
        .arg("--out")
        .arg(&output)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let counters = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect();
    let mut r = PcapReader::new(std::fs::File::open(&output).unwrap()).unwrap();
    let mut sent = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        let sport = u16::from_be_bytes([p.data[34], p.data[35]]);
        sent.push((sport, p.data[0..6].try_into().unwrap()));
    }
    (sent, counters, output)
}

/// A scratch directory, removed on drop (also when a test fails).
fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("xvs-sloppy-").tempdir().expect("temp dir")
}

/// Director A's traffic: each flow's SYN and first data segment.
fn whole(ports: std::ops::Range<u16>) -> Vec<Vec<u8>> {
    ports.flat_map(|p| [tcp4(CLIENT, p, VIP, 80, SYN, b""), tcp4(CLIENT, p, VIP, 80, ACK | PSH, b"GET / HTTP/1.0\r\n\r\n")]).collect()
}

/// Director B's: the same flows' later segments (data, then a FIN for
/// the last few), and a RST of a flow nobody knows.
fn later(ports: std::ops::Range<u16>) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = ports.clone().map(|p| tcp4(CLIENT, p, VIP, 80, ACK | PSH, b"more")).collect();
    v.extend(ports.clone().skip(FLOWS as usize - 4).map(|p| tcp4(CLIENT, p, VIP, 80, FIN | ACK, b"")));
    v.push(tcp4(CLIENT, 9999, VIP, 80, RST, b""));
    v
}

#[test]
fn a_flow_moved_to_another_director_goes_on_to_the_same_real_server() {
    let tmp = tempdir();
    let dir = tmp.path();
    let ports = 40000..40000 + FLOWS;
    let (a, _, _) = replay(&config(dir, true), dir, "a", &whole(ports.clone()));
    let first: BTreeMap<u16, [u8; 6]> = a.iter().copied().collect();
    assert_eq!(first.len(), FLOWS as usize);
    let macs: std::collections::BTreeSet<[u8; 6]> = first.values().copied().collect();
    assert_eq!(macs.len(), 2, "mh-port spreads the flows over both real servers: {first:?}");

    let (b, c, out) = replay(&config(dir, true), dir, "b", &later(ports.clone()));
    assert_eq!(b.len(), FLOWS as usize + 4, "every segment but the RST is forwarded");
    for (port, mac) in &b {
        assert_eq!(Some(mac), first.get(port), "client port {port}: another real server than director A's");
    }
    assert_eq!((c["new_conns"], c["sloppy_conns"], c["drop_no_conn"]), (FLOWS as u64, FLOWS as u64, 1));
    tshark_clean(&out, FLOWS as usize + 4);

    // Without sloppy_tcp (IPVS's default) director B drops them all.
    let (b, c, _) = replay(&config(dir, false), dir, "b-strict", &later(ports));
    assert!(b.is_empty(), "{b:?}");
    assert_eq!((c["new_conns"], c["sloppy_conns"], c["drop_no_conn"]), (0, 0, FLOWS as u64 + 4 + 1));
}

/// tshark reads `n` TCP frames with good checksums and nothing malformed.
fn tshark_clean(pcap: &Path, n: usize) {
    let Ok(o) = Command::new("tshark")
        .args(["-n", "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE", "-T", "fields", "-e", "tcp.checksum.status", "-e", "_ws.malformed", "-r"])
        .arg(pcap)
        .output()
    else {
        println!("SKIP tshark check: tshark is not installed (make deps)");
        return;
    };
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), n, "{text}");
    assert!(lines.iter().all(|l| l.trim() == "1"), "every TCP checksum good (status 1), none malformed:\n{text}");
}
