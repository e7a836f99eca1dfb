//! Rough throughput of the AF_XDP driver on veth: a generator and a
//! reflector, both on `io::xdp`, in two network namespaces this program
//! creates (`xvs-xdp-bench-<pid>-{c,d}`) and removes.
//!
//! ```sh
//! cargo run --release --example xdp_bench -- [busy|adaptive] [seconds] [threaded] [pin]
//! ```
//!
//! The generator (namespace c) sends UDP frames to a VIP as fast as its TX
//! ring drains and counts the replies; the reflector (namespace d) swaps
//! MACs, addresses and ports and sends every frame back. `threaded` turns
//! on threaded NAPI for both veth ends, so the kernel's receive work runs
//! in kthreads the scheduler can move off the busy cores. `pin` pins the
//! reflector to CPU 0 and the generator to CPU 1. Needs root.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xvs::io::xdp::{self, Fate, PollMode, Rule, XdpConfig, XdpIo};
use xvs::ipvs::Proto;
use xvs::wire;

fn sh(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .expect("run command");
    assert!(st.success(), "`{}` failed", args.join(" "));
}

struct Lab(String, String);
impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.1]).status();
    }
}

const VIP: Ipv4Addr = Ipv4Addr::new(10, 199, 1, 100);

fn cfg(ifname: &str, poll: PollMode) -> XdpConfig {
    XdpConfig {
        interfaces: vec![ifname.into()],
        queues: vec![0],
        poll,
        ..XdpConfig::default()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let poll = match args.get(1).map(String::as_str) {
        Some("busy") => PollMode::Busy,
        _ => PollMode::default(),
    };
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let threaded = args[1..].iter().any(|s| s == "threaded");
    let pin = args[1..].iter().any(|s| s == "pin");
    let pin_to = move |cpu: usize| {
        if pin {
            core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
        }
    };
    if !xdp::is_root() {
        eprintln!("xdp_bench needs root");
        std::process::exit(1);
    }
    let base = format!("xvs-xdp-bench-{}", std::process::id());
    let lab = Lab(format!("{base}-c"), format!("{base}-d"));
    let (c, d) = (lab.0.as_str(), lab.1.as_str());
    sh(&["ip", "netns", "add", c]);
    sh(&["ip", "netns", "add", d]);
    sh(&[
        "ip",
        "-n",
        c,
        "link",
        "add",
        "xvs-xdp-c",
        "type",
        "veth",
        "peer",
        "name",
        "xvs-xdp-d",
        "netns",
        d,
    ]);
    for (ns, ifn) in [(c, "xvs-xdp-c"), (d, "xvs-xdp-d")] {
        sh(&["ip", "-n", ns, "link", "set", ifn, "up"]);
    }

    let stop = Arc::new(AtomicBool::new(false));
    // Reflector.
    let (stop_r, dn) = (stop.clone(), d.to_string());
    let reflector = std::thread::spawn(move || {
        pin_to(0);
        xdp::enter_netns(&dn).unwrap();
        let (mut io, mut qs) = XdpIo::open(&cfg("xvs-xdp-d", poll)).expect("open reflector");
        io.set_rules(&[Rule::Vip {
            proto: Proto::Udp,
            addr: IpAddr::V4(VIP),
            port: 7000,
        }])
        .unwrap();
        let q = &mut qs[0];
        while !stop_r.load(Ordering::Relaxed) {
            let n = q.burst(64, |frames, ports, fates| {
                for (i, f) in frames.iter_mut().enumerate() {
                    let Ok(m) = wire::parse(f.data()) else {
                        continue;
                    };
                    let b = f.data_mut();
                    let (s, t) = (wire::src_mac(b), wire::dst_mac(b));
                    wire::set_macs(b, &s, &t);
                    let (l3, l4) = (m.l3 as usize, m.l4 as usize);
                    for k in 0..4 {
                        b.swap(l3 + 12 + k, l3 + 16 + k);
                    }
                    b.swap(l4, l4 + 2);
                    b.swap(l4 + 1, l4 + 3);
                    fates[i] = Fate::Tx { port: ports[i] };
                }
            });
            q.idle(n, Duration::from_millis(10));
        }
        (*q.stats(), io)
    });
    std::thread::sleep(Duration::from_millis(300));

    // Generator: its own steering takes the replies (from VIP:7000).
    pin_to(1);
    xdp::enter_netns(c).unwrap();
    let (mut io, mut qs) = XdpIo::open(&cfg("xvs-xdp-c", PollMode::Busy)).expect("open generator");
    io.set_rules(&[Rule::RealServer {
        proto: Proto::Udp,
        addr: IpAddr::V4(VIP),
        port: 7000,
    }])
    .unwrap();
    if threaded {
        // veth has NAPI instances only once XDP is attached: now.
        for (ns, ifn) in [(c, "xvs-xdp-c"), (d, "xvs-xdp-d")] {
            sh(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sh",
                "-c",
                &format!("echo 1 > /sys/class/net/{ifn}/threaded"),
            ]);
        }
    }
    let q = &mut qs[0];
    let frame = xvs::gen::packet::udp4([10, 199, 0, 1], 5000, VIP.octets(), 7000, &[0u8; 18]);
    let (mut sent, mut got) = (0u64, 0u64);
    let start = Instant::now();
    let mut mark = (start, 0u64);
    while start.elapsed() < Duration::from_secs(secs) {
        got += q.burst(64, |_, _, _| {}) as u64;
        // Keep at most a few bursts in flight so the reflector, not the
        // generator's TX ring, is what is measured.
        if sent - got.min(sent) < 1024 {
            sent += q.send_new(0, 64, |_, f| {
                f.buf[f.head..f.head + frame.len()].copy_from_slice(&frame);
                f.len = frame.len();
                true
            }) as u64;
        } else {
            q.idle(0, Duration::ZERO);
        }
        if mark.0.elapsed() >= Duration::from_secs(1) {
            println!(
                "  {:>8.0} pps reflected",
                (got - mark.1) as f64 / mark.0.elapsed().as_secs_f64()
            );
            mark = (Instant::now(), got);
        }
    }
    let el = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (rst, rio) = reflector.join().unwrap();
    println!(
        "mode {:?}{}{}: sent {sent}, reflected back {got} in {el:.1}s = {:.0} pps; reflector {:?}; generator {:?}",
        poll,
        if threaded { " (threaded NAPI)" } else { "" },
        if pin { " (pinned)" } else { "" },
        got as f64 / el,
        rst,
        q.stats()
    );
    drop(rio);
    drop(io);
}
