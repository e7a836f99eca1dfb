//! What the golden tests of FULLNAT's TCP features (golden_proxy.rs: the
//! PROXY protocol, golden_synproxy.rs: the SYN proxy) share: the addresses
//! of configs/fullnat.toml, that file's TCP service edited for the test,
//! a TCP segment builder, the real `xvs replay` of a capture with its
//! counters, and tshark's dissection with checksum validation.

// Each test file uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::TempDir;
use xvs::gen::packet::verify;
use xvs::gen::scenario::{parse_pcap, pcap_bytes};

pub const XVS: &str = env!("CARGO_BIN_EXE_xvs");

pub const CLIENT: [u8; 4] = [10, 0, 0, 2];
pub const VIP: [u8; 4] = [10, 0, 0, 100];
pub const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
pub const ETH0_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
pub const ETH1_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0x10];
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// A scratch directory (`xvs-golden-<name>-…`), removed on drop (also
/// when a test fails).
pub fn scratch(name: &str) -> TempDir {
    tempfile::Builder::new().prefix(&format!("xvs-golden-{name}-")).tempdir().expect("temp dir")
}

/// configs/fullnat.toml's TCP service (the UDP one cut off) with `edit`
/// applied, written to `file` in `dir`.
pub fn tcp_service(dir: &TempDir, file: &str, edit: impl FnOnce(&str) -> String) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("configs/fullnat.toml")).unwrap();
    let tcp = text.split("# A UDP service beside it").next().unwrap();
    let p = dir.path().join(file);
    std::fs::write(&p, edit(tcp)).unwrap();
    p
}

/// A TCP segment (options padded with NOPs to a multiple of 4).
#[allow(clippy::too_many_arguments)]
pub fn seg(smac: [u8; 6], dmac: [u8; 6], src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8, seq: u32, ack: u32, win: u16, opts: &[u8], data: &[u8]) -> Vec<u8> {
    let mut o = opts.to_vec();
    while o.len() % 4 != 0 {
        o.insert(0, 1);
    }
    let mut f = Vec::new();
    f.extend_from_slice(&dmac);
    f.extend_from_slice(&smac);
    f.extend_from_slice(&[0x08, 0]);
    let tl = (20 + 20 + o.len() + data.len()) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&tl.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    f.push((((20 + o.len()) / 4) as u8) << 4);
    f.push(flags);
    f.extend_from_slice(&win.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(&o);
    f.extend_from_slice(data);
    xvs::gen::packet::refresh_ipv4_checksum(&mut f, 14);
    xvs::gen::packet::refresh_tcp_checksum(&mut f);
    assert!(verify(&f));
    f
}

/// A pcap of `frames`, one a millisecond.
pub fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    pcap_bytes(frames.iter().enumerate().map(|(i, f)| ((i as u64 + 1) * 1_000_000, &f[..])))
}

/// `xvs replay --counters` of `frames` with `cfg` (the capture files
/// named after `name`): the frames it sent and the counters it printed.
pub fn replay(cfg: &Path, dir: &TempDir, name: &str, frames: &[Vec<u8>]) -> (Vec<Vec<u8>>, String) {
    let pin = dir.path().join(format!("{name}.in.pcap"));
    let pout = dir.path().join(format!("{name}.out.pcap"));
    std::fs::write(&pin, pcap(frames)).unwrap();
    let o = Command::new(XVS).arg("replay").arg("--config").arg(cfg).arg("--in").arg(&pin).arg("--out").arg(&pout).arg("--counters").output().unwrap();
    assert!(o.status.success(), "xvs replay failed: {}", String::from_utf8_lossy(&o.stderr));
    let out = parse_pcap(&std::fs::read(&pout).unwrap()).unwrap().into_iter().map(|(_, f)| f).collect();
    (out, String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The counter `name` of `xvs replay --counters`' output.
pub fn counter(text: &str, name: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(&format!("{name}="))).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no counter {name} in {text}"))
}

/// tshark, or `None` with a SKIP line saying that `what` are not
/// dissected (a failure where CI=true requires it).
pub fn tshark(what: &str) -> Option<&'static str> {
    if Command::new("tshark").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return Some("tshark");
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("tshark is not installed, and CI=true requires it: run `make deps`");
    }
    eprintln!("SKIP: tshark is not installed: {what} are not dissected (run `make deps`)");
    None
}

/// One frame as tshark dissected it.
pub struct Dissected {
    /// An expert item of severity error or worse.
    pub error: bool,
    /// The expert items' messages.
    pub experts: String,
    pub malformed: String,
    /// The fields asked for, in order.
    pub fields: Vec<String>,
}

/// Dissects `frames` (written to `<name>.tshark.pcap` in `dir`) with IP
/// and TCP checksum validation on (every checksum must be good) and the
/// preferences `prefs`, reading `fields`; one row a frame, every frame read.
pub fn dissect(tshark: &str, dir: &TempDir, name: &str, frames: &[Vec<u8>], prefs: &[&str], fields: &[&str]) -> Vec<Dissected> {
    let p = dir.path().join(format!("{name}.tshark.pcap"));
    std::fs::write(&p, pcap(frames)).unwrap();
    let mut cmd = Command::new(tshark);
    cmd.arg("-n").arg("-r").arg(&p);
    for o in ["ip.check_checksum:TRUE", "tcp.check_checksum:TRUE"].iter().chain(prefs) {
        cmd.arg("-o").arg(o);
    }
    cmd.args(["-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"]);
    for f in ["_ws.expert.severity", "_ws.expert.message", "_ws.malformed", "tcp.checksum.status", "ip.checksum.status"].iter().chain(fields) {
        cmd.arg("-e").arg(f);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "tshark: {}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let rows: Vec<Dissected> = text
        .lines()
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            let col = |i: usize| c.get(i).copied().unwrap_or("").to_string();
            // Wireshark's PI_ERROR severity is 0x00800000.
            let error = col(0).split(',').filter(|s| !s.is_empty()).any(|s| s.parse::<u32>().unwrap_or(u32::MAX) >= 0x0080_0000);
            assert_eq!(col(3), "1", "{name}: tcp checksum status in {l:?}");
            assert_eq!(col(4), "1", "{name}: ip checksum status in {l:?}");
            Dissected { error, experts: col(1), malformed: col(2), fields: (0..fields.len()).map(|i| col(5 + i)).collect() }
        })
        .collect();
    assert_eq!(rows.len(), frames.len(), "{name}: tshark read every frame:\n{text}");
    rows
}
