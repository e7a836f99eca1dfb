//! Persistence through the pcap replay path: `xvs replay` over a capture in
//! which one client opens connections over time. Within the persistence
//! timeout every connection lands on the same real server; after the
//! timeout (and its connections) have passed the client is scheduled
//! afresh and may move. Another client in the same /24 shares the
//! template; one in another /24 does not.

use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use xvs::gen::packet::tcp4;
use xvs::wire::tcp_flags::SYN;

const VIP: [u8; 4] = [10, 0, 0, 100];
const RS1_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const RS2_MAC: [u8; 6] = [2, 0, 0, 0, 1, 2];

fn config(dir: &Path) -> std::path::PathBuf {
    let base = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/dr.toml")).unwrap();
    // rr alternates between the two servers, so any stickiness is the
    // template's doing.
    let text = base.replace("scheduler = \"wrr\"", "scheduler = \"rr\"\npersistence = 120\npersistence_netmask = 24");
    assert!(text.contains("persistence = 120"), "configs/dr.toml changed shape");
    let p = dir.join("persist.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// SYNs at the given seconds: (time, client, client port).
fn capture(path: &Path, syns: &[(u64, [u8; 4], u16)]) {
    let mut w = PcapWriter::new(std::fs::File::create(path).unwrap()).unwrap();
    for &(t, c, p) in syns {
        let f = tcp4(c, p, VIP, 80, SYN, b"");
        w.write_packet(&PcapPacket::new(Duration::from_secs(1_700_000_000 + t), f.len() as u32, &f)).unwrap();
    }
}

fn replay(cfg: &Path, input: &Path, output: &Path) -> Vec<[u8; 6]> {
    let out = Command::new(env!("CARGO_BIN_EXE_xvs"))
        .args(["replay", "--counters", "--config"])
        .arg(cfg)
        .arg("--in")
        .arg(input)
        .arg("--out")
        .arg(output)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with("templates_created=")), "{text}");
    let mut r = PcapReader::new(std::fs::File::open(output).unwrap()).unwrap();
    let mut macs = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        macs.push(p.data[0..6].try_into().unwrap());
    }
    macs
}

#[test]
fn same_client_same_server_within_the_timeout_then_free_to_move() {
    let tmp = tempdir();
    let dir = tmp.path();
    let cfg = config(dir);
    let (input, output) = (dir.join("in.pcap"), dir.join("out.pcap"));
    let a = [192, 0, 2, 10];
    let a2 = [192, 0, 2, 77]; // same /24 as a
    let b = [198, 51, 100, 5]; // another /24
    capture(
        &input,
        &[
            (0, a, 1000),
            (10, a, 1001),
            (20, a2, 1002),
            (30, b, 1003),
            (100, a, 1004),
            // a's template was last used at 100 s: it lives until 220 s,
            // its connections (SYN_RECV, 60 s) end before that.
            (400, a, 1005),
        ],
    );
    let m = replay(&cfg, &input, &output);
    assert_eq!(m.len(), 6, "every SYN forwarded");
    let first = m[0];
    assert!(first == RS1_MAC || first == RS2_MAC);
    assert_eq!(&m[1..3], &[first, first], "same client and same /24 stick within the timeout");
    assert_ne!(m[3], first, "another /24 is scheduled by rr: the other server");
    assert_eq!(m[4], first, "still within the timeout");
    // After expiry rr continues from its last pick (the other server,
    // for b), so a lands on `first` again by rr's turn — what matters is
    // that a new template was made: check the counters run below.
    let out = Command::new(env!("CARGO_BIN_EXE_xvs"))
        .args(["replay", "--counters", "--config"])
        .arg(&cfg)
        .arg("--in")
        .arg(&input)
        .arg("--out")
        .arg(&output)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let get = |k: &str| -> u64 {
        text.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).unwrap_or_else(|| panic!("{k} in {text}")).parse().unwrap()
    };
    assert_eq!(get("templates_created"), 3, "a, b, and a again after expiry");
    assert_eq!(get("templates_expired"), 2, "a's first template and b's");
}

#[test]
fn after_expiry_the_client_can_move() {
    let tmp = tempdir();
    let dir = tmp.path();
    let cfg = config(dir);
    let (input, output) = (dir.join("in.pcap"), dir.join("out.pcap"));
    let a = [192, 0, 2, 10];
    // a alone: rr would give rs1, rs2, rs1, ... without persistence. With
    // it, a stays until its template expires; the next template is rr's
    // next pick, the other server.
    capture(&input, &[(0, a, 1000), (5, a, 1001), (300, a, 1002), (305, a, 1003)]);
    let m = replay(&cfg, &input, &output);
    assert_eq!(m.len(), 4);
    assert_eq!(m[0], m[1]);
    assert_ne!(m[2], m[0], "moved after the template expired");
    assert_eq!(m[2], m[3]);
}

/// A scratch directory, removed on drop (also when a test fails).
fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("xvs-persist-").tempdir().expect("temp dir")
}
