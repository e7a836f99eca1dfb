//! The XDP steering program's cost per frame (docs/performance.md,
//! "Steering program"): the real `steer.bpf.o` with a director's rule set
//! (VIPs, 100 NAT real servers per family and protocol, FULLNAT local
//! addresses, the director's own addresses), run by the kernel's test
//! loop (`BPF_PROG_TEST_RUN`, `--repeat` runs per call), per kind of
//! frame, beside a program that only returns `XDP_PASS` timed on the same
//! frame in the same run (the floor: the test loop, the context set-up
//! and the program call). The figure that matters is the steering
//! program's time above that floor; the target is at most 25 ns for every
//! kind.
//!
//! Each run times every kind once (floor, then program); medians over
//! `--runs` runs, the difference taken within each run. Needs root (loads
//! BPF programs); prints a SKIP line otherwise.
//!
//! Run: `cargo bench --bench steer` (`-- --quick` for a short run, `--runs
//! N`, `--repeat N`, `--object PATH` to time another build of
//! `steer.bpf.c` with the same maps).

use std::net::IpAddr;
use xvs::gen::packet::{tcp4, tcp6, udp4, udp6};
use xvs::io::xdp::steer::{PassFloor, SteerTestbed};
use xvs::io::xdp::Rule;
use xvs::ipvs::Proto;

/// The target: nanoseconds above the floor.
const TARGET_NS: f64 = 25.0;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

fn v4(a: u8, b: u8, c: u8, d: u8) -> [u8; 4] {
    [a, b, c, d]
}

fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().expect("address").octets()
}

const VIP4: [u8; 4] = [10, 0, 0, 100];
const VIP4_FNAT: [u8; 4] = [10, 0, 0, 101];
const DIRECTOR4: [u8; 4] = [10, 0, 0, 1];
const CLIENT4: [u8; 4] = [192, 0, 2, 1];
const VIP6: &str = "2001:db8::100";
const CLIENT6: &str = "2001:db8:9::9";

fn ip4(a: [u8; 4]) -> IpAddr {
    IpAddr::from(a)
}

fn ip6(s: &str) -> IpAddr {
    IpAddr::from(v6(s))
}

/// A director's rules: a NAT service on TCP 80 and 443 and UDP 53 of one
/// IPv4 VIP with 100 real servers (TCP 8080, UDP 53), a FULLNAT service on
/// a second VIP with 8 local addresses, an IPv6 VIP (TCP 443, UDP 53) with
/// 100 NAT real servers and 4 local addresses, the director's own
/// addresses.
fn rules() -> Vec<Rule> {
    use Proto::{Tcp, Udp};
    let mut r = vec![
        Rule::Vip { proto: Tcp, addr: ip4(VIP4), port: 80 },
        Rule::Vip { proto: Tcp, addr: ip4(VIP4), port: 443 },
        Rule::Vip { proto: Udp, addr: ip4(VIP4), port: 53 },
        Rule::Vip { proto: Tcp, addr: ip4(VIP4_FNAT), port: 80 },
        Rule::Vip { proto: Tcp, addr: ip6(VIP6), port: 443 },
        Rule::Vip { proto: Udp, addr: ip6(VIP6), port: 53 },
        Rule::Local(ip4(DIRECTOR4)),
        Rule::Local(ip6("2001:db8::1")),
    ];
    for i in 1..=100u8 {
        let rs = ip4(v4(10, 1, 0, i));
        r.push(Rule::RealServer { proto: Tcp, addr: rs, port: 8080 });
        r.push(Rule::RealServer { proto: Udp, addr: rs, port: 53 });
        let rs6 = ip6(&format!("2001:db8:1::{i:x}"));
        r.push(Rule::RealServer { proto: Tcp, addr: rs6, port: 443 });
        r.push(Rule::RealServer { proto: Udp, addr: rs6, port: 53 });
    }
    for i in 1..=8u8 {
        r.push(Rule::LocalAddr(ip4(v4(10, 2, 0, i))));
    }
    for i in 1..=4u8 {
        r.push(Rule::LocalAddr(ip6(&format!("2001:db8:2::{i:x}"))));
    }
    r
}

fn arp() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[0x08, 0x06]);
    // request: who has 10.0.0.100 tell 192.0.2.1
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 192, 0, 2, 1]);
    f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 0, 0, 100]);
    f.resize(60, 0);
    f
}

/// The kinds of frame: name, frame, whether it is redirected.
fn frames() -> Vec<(&'static str, Vec<u8>, bool)> {
    const ACK: u8 = 0x10;
    let p = [0x5a; 10];
    vec![
        ("service TCP v4", tcp4(CLIENT4, 40000, VIP4, 80, ACK, &p), true),
        ("service UDP v4", udp4(CLIENT4, 40000, VIP4, 53, &p), true),
        ("service TCP v6", tcp6(v6(CLIENT6), 40000, v6(VIP6), 443, ACK, &p), true),
        ("service UDP v6", udp6(v6(CLIENT6), 40000, v6(VIP6), 53, &p), true),
        ("NAT reply TCP v4", tcp4(v4(10, 1, 0, 57), 8080, CLIENT4, 40000, ACK, &p), true),
        ("NAT reply UDP v6", udp6(v6("2001:db8:1::39"), 53, v6(CLIENT6), 40000, &p), true),
        ("FULLNAT reply TCP v4", tcp4(v4(10, 3, 0, 5), 8080, v4(10, 2, 0, 5), 5000, ACK, &p), true),
        ("FULLNAT reply TCP v6", tcp6(v6("2001:db8:3::5"), 8080, v6("2001:db8:2::3"), 5000, ACK, &p), true),
        ("pass: ARP", arp(), false),
        ("pass: VIP, other port (TCP 22)", tcp4(CLIENT4, 40000, VIP4, 22, ACK, &p), false),
        ("pass: to the director (ssh)", tcp4(CLIENT4, 40000, DIRECTOR4, 22, ACK, &p), false),
        ("pass: health-check reply v4", tcp4(v4(10, 1, 0, 57), 8080, DIRECTOR4, 45000, ACK, &p), false),
        ("pass: health-check reply v6", tcp6(v6("2001:db8:1::39"), 443, v6("2001:db8::1"), 45000, ACK, &p), false),
    ]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn arg_after(args: &[String], name: &str) -> Option<u32> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let runs = arg_after(&args, "--runs").unwrap_or(if quick { 3 } else { 9 }).max(1);
    let repeat = arg_after(&args, "--repeat").unwrap_or(if quick { 100_000 } else { 1_000_000 });
    if !xvs::io::xdp::is_root() {
        println!("SKIP steer: needs root (loads BPF programs for BPF_PROG_TEST_RUN)");
        return;
    }
    let rules = rules();
    // --object PATH: another build of steer.bpf.c (clang -O2 -target bpf),
    // to time a variant without rebuilding xvs.
    let object = args.iter().position(|a| a == "--object").and_then(|i| args.get(i + 1));
    let tb = match object {
        Some(p) => {
            let elf = std::fs::read(p).unwrap_or_else(|e| panic!("--object {p}: {e}"));
            SteerTestbed::load_object(&elf, &rules)
        }
        None => SteerTestbed::load(&rules),
    }
    .unwrap_or_else(|e| panic!("loading the steering program: {e}"));
    let floor = PassFloor::load().unwrap_or_else(|e| panic!("loading the XDP_PASS program: {e}"));
    let kinds = frames();
    // Each kind does what its name says (no socket on the queue: a
    // redirect comes back as XDP_DROP).
    for (name, f, redirect) in &kinds {
        let (ret, _) = tb.time(f, 1).expect("test run");
        let want = if *redirect { XDP_DROP } else { XDP_PASS };
        assert_eq!(ret, want, "{name}: the program returned {ret}, expected {want}");
    }
    let n = kinds.len();
    let (mut prog, mut base, mut above) = (vec![Vec::new(); n], vec![Vec::new(); n], vec![Vec::new(); n]);
    for _ in 0..runs {
        for (i, (_, f, _)) in kinds.iter().enumerate() {
            let (_, b) = floor.time(f, repeat).expect("test run (floor)");
            let (_, p) = tb.time(f, repeat).expect("test run");
            prog[i].push(p as f64);
            base[i].push(b as f64);
            above[i].push(p as f64 - b as f64);
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "steer: xvs_steer with {} rules, BPF_PROG_TEST_RUN x {repeat}, median of {runs} runs (load {})",
        rules.len(),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!("  {:<34} {:>9} {:>9} {:>11}  target (<= {TARGET_NS} ns above)", "frame", "program", "floor", "above");
    let mut all_met = true;
    for (i, (name, _, _)) in kinds.iter().enumerate() {
        let a = median(above[i].clone());
        let met = a <= TARGET_NS;
        all_met &= met;
        println!(
            "  {:<34} {:>6.1} ns {:>6.1} ns {:>8.1} ns  {}",
            name,
            median(prog[i].clone()),
            median(base[i].clone()),
            a,
            if met { "met" } else { "NOT met" }
        );
    }
    println!(
        "steer: target {} (every kind within {TARGET_NS} ns of the floor)",
        if all_met { "met" } else { "NOT met" }
    );
}
