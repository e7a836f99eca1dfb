//! A SYN flood from FLOOD_SYNS (default 10 million) spoofed sources and a
//! UDP flood, through the live path (`make test-faults`; ignored by
//! `cargo test`: minutes). The DR lab (`lab::lan`), xvs with two workers
//! and `max_conns` 100 000 per worker; from the client's namespace, raw
//! sockets send SYNs to VIP:80 and datagrams to VIP:53 from sources in
//! 100.64.0.0/10 that no host holds, as fast as they go, while:
//! - four established connections exchange a line every 100 ms;
//! - real clients open new connections (a GET each) in a loop.
//!
//! Asserted: xvs's memory stays bounded (the tables never exceed
//! `max_conns`: RSS growth below what two full tables take), no
//! established connection breaks (every line is echoed, in order, during
//! the flood and after it: none is evicted or reset; the longest wait for
//! an echo is printed, since a director at capacity drops frames as they
//! come and TCP retransmits), and new connections succeed; their rate and
//! success ratio are printed (docs/reliability.md).

mod lab;

use lab::{rss_kb, who, Lab};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xvs::gen::packet::{tcp4, udp4};
use xvs::wire::tcp_flags::SYN;

const NET: u8 = 86;
const MAX_CONNS: u64 = 100_000;

fn config() -> String {
    format!(
        r#"
[global]
max_conns = {MAX_CONNS}

[[service]]
proto = "tcp"
vip = "10.{NET}.0.100"
port = 80
scheduler = "rr"
  [[service.real_server]]
  ip = "10.{NET}.0.11"
  mode = "dr"
  [[service.real_server]]
  ip = "10.{NET}.0.12"
  mode = "dr"

[[service]]
proto = "tcp"
vip = "10.{NET}.0.100"
port = 7
scheduler = "rr"
  [[service.real_server]]
  ip = "10.{NET}.0.11"
  mode = "dr"

[[service]]
proto = "udp"
vip = "10.{NET}.0.100"
port = 53
scheduler = "rr"
  [[service.real_server]]
  ip = "10.{NET}.0.11"
  mode = "dr"
"#
    )
}

/// Sends `n` spoofed frames' IP packets built by `make(i)` from `ns`
/// through a raw socket; returns how many went out.
fn flood(ns: &str, n: u64, stop: Arc<AtomicBool>, make: impl Fn(u64) -> Vec<u8> + Send + 'static) -> std::thread::JoinHandle<u64> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        lab::enter(&ns);
        // SAFETY: a raw socket owned by this thread, closed below; the
        // buffers and sockaddr outlive each call.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW);
            assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
            let dst = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes([10, NET, 0, 100]) },
                sin_zero: [0; 8],
            };
            let mut sent = 0;
            for i in 0..n {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let f = make(i);
                let ip = &f[14..];
                let r = libc::sendto(fd, ip.as_ptr() as *const libc::c_void, ip.len(), 0, &dst as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t);
                if r == ip.len() as isize {
                    sent += 1;
                } else {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
            libc::close(fd);
            sent
        }
    })
}

/// A spoofed source: 100.64.0.0/10 (4 M addresses), then the port.
fn spoofed(i: u64) -> ([u8; 4], u16) {
    let a = 0x6440_0000u32 + (i % (1 << 22)) as u32;
    (a.to_be_bytes(), 1024 + (i >> 22) as u16)
}

#[test]
#[ignore]
fn a_ten_million_source_syn_flood_and_a_udp_flood() {
    let syns: u64 = std::env::var("FLOOD_SYNS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let Some(mut lab) = Lab::new("a_ten_million_source_syn_flood") else { return };
    let t = lab::lan(&mut lab, NET, 2, 2);
    for (i, r) in t.rs.clone().iter().enumerate() {
        lab.http_server(r, "0.0.0.0:80".parse().unwrap(), &format!("rs{}", i + 1));
        lab.udp_server(r, "0.0.0.0:53".parse().unwrap(), &format!("rs{}", i + 1));
        // The real servers must not answer the spoofed sources anywhere:
        // they have no route to 100.64.0.0/10 (their replies die there).
        let _ = lab::sh(&["ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.tcp_syncookies=1"]);
    }
    // An echo server for the established connections, on rs1.
    let rs1 = t.rs[0].clone();
    std::thread::spawn(move || {
        lab::enter(&rs1);
        let l = std::net::TcpListener::bind("0.0.0.0:7").unwrap();
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                for line in BufReader::new(s).lines().map_while(Result::ok) {
                    if w.write_all(format!("{line}\n").as_bytes()).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let x = lab.xvs(&t.director, &config(), &["-i", "d0", "--workers", "2"]);
    let pid = lab.pid(x);
    let stop = Arc::new(AtomicBool::new(false));
    // Established connections first.
    let echo: SocketAddr = t.sock(0, 100, 7);
    let est_ok = Arc::new(AtomicU64::new(0));
    let mut est = Vec::new();
    for k in 0..4 {
        let (ns, stop, ok) = (t.client.clone(), stop.clone(), est_ok.clone());
        // Each connection: every line echoed, in order, until the flood
        // ends and once after; a reset, a close or a wrong line breaks it.
        // Returns why it broke, if it did, and the longest wait for an echo
        // (the flood may delay an echo: the director at capacity drops
        // frames as they come, and TCP retransmits; it must not lose it).
        est.push(std::thread::spawn(move || -> (Option<String>, Duration) {
            lab::enter(&ns);
            let s = TcpStream::connect_timeout(&echo, Duration::from_secs(3)).expect("established connection");
            s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            let mut longest = Duration::ZERO;
            for n in 0.. {
                let last = stop.load(Ordering::Relaxed);
                let line = format!("est {k} {n}\n");
                if let Err(e) = w.write_all(line.as_bytes()) {
                    return (Some(format!("connection {k}, line {n}: write: {e}")), longest);
                }
                let t = Instant::now();
                let mut back = String::new();
                loop {
                    match r.read_line(&mut back) {
                        Ok(0) => return (Some(format!("connection {k}, line {n}: closed")), longest),
                        Ok(_) => break,
                        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) && t.elapsed() < Duration::from_secs(60) => {}
                        Err(e) => return (Some(format!("connection {k}, line {n}: read after {:?}: {e}", t.elapsed())), longest),
                    }
                }
                longest = longest.max(t.elapsed());
                if back != line {
                    return (Some(format!("connection {k}: echoed {back:?} for {line:?}")), longest);
                }
                ok.fetch_add(1, Ordering::Relaxed);
                if last {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (None, longest)
        }));
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss0 = rss_kb(pid);
    let t0 = Instant::now();
    let syn = flood(&t.client, syns, stop.clone(), |i| {
        let (src, sport) = spoofed(i);
        tcp4(src, sport, [10, NET, 0, 100], 80, SYN, b"")
    });
    let udp = flood(&t.client, syns / 10, stop.clone(), |i| {
        let (src, sport) = spoofed(i + (1 << 21));
        udp4(src, sport, [10, NET, 0, 100], 53, b"flood")
    });
    // Legitimate new connections during the flood.
    let vip = t.sock(0, 100, 80);
    let clients = t.clients();
    let (ns, stop2) = (t.client.clone(), stop.clone());
    let legit = std::thread::spawn(move || {
        lab::enter(&ns);
        let (mut ok, mut tried) = (0u64, 0u64);
        let t0 = Instant::now();
        while !stop2.load(Ordering::Relaxed) {
            let from = clients[tried as usize % clients.len()];
            tried += 1;
            let r = lab::connect_from(from, 0, vip, Some(Duration::from_secs(2))).and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                s.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
                let mut b = String::new();
                s.read_to_string(&mut b).map_err(|e| e.to_string())?;
                Ok(b)
            });
            if r.is_ok_and(|b| matches!(who(b.split("\r\n\r\n").nth(1).unwrap_or("")), "rs1" | "rs2")) {
                ok += 1;
            }
        }
        (ok, tried, t0.elapsed())
    });
    let sent_syn = syn.join().unwrap();
    let flood_time = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let sent_udp = udp.join().unwrap();
    let (ok, tried, legit_time) = legit.join().unwrap();
    let est: Vec<(Option<String>, Duration)> = est.into_iter().map(|h| h.join().unwrap()).collect();
    let est_longest = est.iter().map(|e| e.1).max().unwrap_or_default();
    let rss1 = rss_kb(pid);
    let c = lab.stop_xvs(x);
    println!("{}", c.text);
    let rate = ok as f64 / legit_time.as_secs_f64();
    println!(
        "flood: {sent_syn} spoofed SYNs and {sent_udp} spoofed datagrams in {flood_time:?} ({:.0} SYN/s); RSS {rss0} kB -> {rss1} kB; \
         established connections: {} lines echoed, the longest wait {est_longest:?}; new connections {ok} of {tried} succeeded ({:.1} per second)",
        sent_syn as f64 / flood_time.as_secs_f64(),
        est_ok.load(Ordering::Relaxed),
        rate
    );
    assert!(sent_syn >= syns * 9 / 10, "the flood did not get out: {sent_syn} of {syns}");
    // Two workers, two families' tables at most MAX_CONNS each, IPv4
    // connections are one cache line, plus the index: well under 64 MiB.
    assert!(rss1 < rss0 + 64 * 1024, "memory grew from {rss0} kB to {rss1} kB under the flood");
    for (broke, _) in &est {
        assert!(broke.is_none(), "an established connection broke during the flood: {}", broke.as_deref().unwrap_or(""));
    }
    assert!(est_ok.load(Ordering::Relaxed) > 0);
    assert!(ok > 0, "no legitimate connection got through the flood ({tried} tried)");
    assert!(c.get("evicted_conns") > 0, "{}", c.text);
}
