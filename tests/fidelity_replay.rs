//! Where xvs follows IPVS (and the kernel under it), through `xvs replay`
//! over captures built here: the rate limit of the ICMP errors xvs makes,
//! the outer fragmentation of tunnelled packets, and the ICMP errors that
//! quote xvs's own IPIP packets. Every replay's counters must balance
//! (docs/operations.md): `rx + made = tx + dropped + to_kernel +
//! handed_off`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use xvs::gen::packet::udp4;
use xvs::gen::scenario::{parse_pcap, pcap_bytes, CLIENT, VIP};
use xvs::wire::parse;

const XVS: &str = env!("CARGO_BIN_EXE_xvs");

/// A scratch directory, removed on drop (also when a test fails).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("xvs-fidelity-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `configs/<mode>.toml` with `edit` applied (which must change it).
fn config(d: &Scratch, mode: &str, edit: impl Fn(&str) -> String) -> PathBuf {
    let base = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("configs/{mode}.toml"))).unwrap();
    let text = edit(&base);
    assert_ne!(text, base, "configs/{mode}.toml changed shape");
    let p = d.0.join(format!("{mode}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// Replays `frames` (at the given nanosecond offsets) with `cfg`: the
/// frames sent and the counters, which must balance.
fn replay(d: &Scratch, cfg: &Path, name: &str, frames: &[(u64, Vec<u8>)]) -> (Vec<Vec<u8>>, BTreeMap<String, u64>) {
    let (pin, pout) = (d.0.join(format!("{name}.in.pcap")), d.0.join(format!("{name}.out.pcap")));
    let t0 = 1_700_000_000_000_000_000u64;
    std::fs::write(&pin, pcap_bytes(frames.iter().map(|(t, f)| (t0 + t, f.as_slice())))).unwrap();
    let o = Command::new(XVS)
        .args(["replay", "--counters", "--config"])
        .arg(cfg)
        .arg("--in")
        .arg(&pin)
        .arg("--out")
        .arg(&pout)
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
    let d = Scratch::new("icmp-limit");
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
