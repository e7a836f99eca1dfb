//! The soak (`make soak DURATION=<seconds>`; ignored by `cargo test`):
//! the NAT lab (`lab::two_legs`, two workers) under a mix of traffic for
//! DURATION seconds — short HTTP connections, long-lived TCP connections
//! that talk every second, UDP queries, a configuration reload (weights
//! changed) every 2 minutes and a real server's weight flapping to 0 and
//! back through the control socket every 3 minutes — sampled every
//! SAMPLE seconds (default 60) into target/soak/soak.csv:
//! the RSS of `xvs run`, connections, and where the UMEM chunks are.
//!
//! Checked: every sample's UMEM chunks are accounted for (free +
//! returning + in the kernel = total, up to the frames being handed
//! between workers at that instant); RSS after warm-up stays flat;
//! no request fails; after the traffic stops and the timeouts pass, the
//! connections are back to zero and every chunk is accounted for exactly;
//! at exit the counters balance. See docs/reliability.md.

mod lab;

use lab::{rss_kb, Lab};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NET: u8 = 93;

fn config(w1: u32, w2: u32) -> String {
    format!(
        r#"
[timeouts]
tcp = 120
tcp_fin = 10
udp = 15

[timeouts.tcp_state]
time_wait = 20
close_wait = 20
last_ack = 20

[[service]]
proto = "tcp"
vip = "10.{NET}.0.100"
port = 80
scheduler = "wlc"
  [[service.real_server]]
  ip = "10.{NET}.1.11"
  port = 8080
  mode = "nat"
  weight = {w1}
  [[service.real_server]]
  ip = "10.{NET}.1.12"
  port = 8080
  mode = "nat"
  weight = {w2}

[[service]]
proto = "tcp"
vip = "10.{NET}.0.100"
port = 7
scheduler = "rr"
  [[service.real_server]]
  ip = "10.{NET}.1.11"
  mode = "nat"
  [[service.real_server]]
  ip = "10.{NET}.1.12"
  mode = "nat"

[[service]]
proto = "udp"
vip = "10.{NET}.0.100"
port = 53
scheduler = "rr"
  [[service.real_server]]
  ip = "10.{NET}.1.11"
  mode = "nat"
  [[service.real_server]]
  ip = "10.{NET}.1.12"
  mode = "nat"
"#
    )
}

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A line echo server (one thread per connection) in `ns` on port 7.
fn echo_server(ns: &str, stop: Arc<AtomicBool>) {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        lab::enter(&ns);
        let l = TcpListener::bind("0.0.0.0:7").expect("bind :7");
        l.set_nonblocking(true).unwrap();
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((s, _)) => {
                    std::thread::spawn(move || {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                        let mut w = s.try_clone().unwrap();
                        for line in BufReader::new(s).lines().map_while(Result::ok) {
                            if w.write_all(format!("{line}\n").as_bytes()).is_err() {
                                break;
                            }
                        }
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
}

/// GET / through the VIP: Ok when an answer came.
fn get(vip: SocketAddr) -> Result<(), String> {
    let mut s = TcpStream::connect_timeout(&vip, Duration::from_secs(3)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut body = String::new();
    s.read_to_string(&mut body).map_err(|e| format!("read: {e}"))?;
    if body.contains("rs") {
        Ok(())
    } else {
        Err(format!("odd answer {body:?}"))
    }
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl Tally {
    fn count(&self, r: Result<(), String>, what: &str) {
        match r {
            Ok(()) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                // The wall-clock time and the host's load, to lay a failure
                // beside the director's counters and what else ran.
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
                eprintln!("soak: {what} failed at unix {now} (load {}): {e}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// The metrics text, fetched inside the director's namespace.
fn metrics(ns: &str) -> String {
    lab::in_ns(ns, || {
        let Ok(mut s) = TcpStream::connect_timeout(&"127.0.0.1:9477".parse().unwrap(), Duration::from_secs(2)) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
        let mut t = String::new();
        let _ = s.read_to_string(&mut t);
        t
    })
}

/// Sum of a metric's samples whose labels contain `label` ("" for all).
fn metric(text: &str, name: &str, label: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .filter(|(k, _)| (*k == name || k.starts_with(&format!("{name}{{"))) && k.contains(label))
        .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
        .sum::<f64>() as u64
}

struct Sample {
    t: u64,
    rss: u64,
    conns: u64,
    free: u64,
    returning: u64,
    kernel: u64,
    total: u64,
    ok: u64,
    failed: u64,
}

fn sample(t0: Instant, ns: &str, pid: u32, tally: &Tally) -> Sample {
    let m = metrics(ns);
    Sample {
        t: t0.elapsed().as_secs(),
        rss: rss_kb(pid),
        conns: metric(&m, "xvs_connections", ""),
        free: metric(&m, "xvs_umem_chunks", "at=\"free\""),
        returning: metric(&m, "xvs_umem_chunks", "at=\"returning\""),
        kernel: metric(&m, "xvs_umem_chunks", "at=\"kernel\""),
        total: metric(&m, "xvs_umem_chunks", "at=\"total\""),
        ok: tally.ok.load(Ordering::Relaxed),
        failed: tally.failed.load(Ordering::Relaxed),
    }
}

#[test]
#[ignore]
fn soak() {
    let duration = env_secs("DURATION", 300);
    let every = env_secs("SAMPLE", 60);
    let Some(mut lab) = Lab::new("soak") else { return };
    let t = lab::two_legs(&mut lab, NET, 2, 2, true);
    let stop_servers = Arc::new(AtomicBool::new(false));
    for (i, r) in t.rs.clone().iter().enumerate() {
        lab.http_server(r, "0.0.0.0:8080".parse().unwrap(), &format!("rs{}", i + 1));
        lab.udp_server(r, "0.0.0.0:53".parse().unwrap(), &format!("rs{}", i + 1));
        echo_server(r, stop_servers.clone());
    }
    let x = lab.xvs(&t.director, &config(1, 1), &["-i", "d0", "-i", "d1", "--workers", "2"]);
    let pid = lab.pid(x);
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/soak");
    std::fs::create_dir_all(&out).unwrap();
    let mut csv = std::fs::File::create(out.join("soak.csv")).unwrap();
    writeln!(csv, "seconds,rss_kb,connections,umem_free,umem_returning,umem_kernel,umem_total,requests_ok,requests_failed").unwrap();

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let vip = t.sock(0, 100, 80);
    let mut load = Vec::new();
    // Short connections: two clients, a GET each, about 40 per second in all.
    for _ in 0..2 {
        let (ns, stop, tally) = (t.client.clone(), stop.clone(), tally.clone());
        load.push(std::thread::spawn(move || {
            lab::enter(&ns);
            while !stop.load(Ordering::Relaxed) {
                tally.count(get(vip), "GET");
                std::thread::sleep(Duration::from_millis(50));
            }
        }));
    }
    // Long connections: 8 that each send a line a second, and reconnect
    // after 100 lines.
    for i in 0..8u32 {
        let (ns, stop, tally) = (t.client.clone(), stop.clone(), tally.clone());
        let echo = t.sock(0, 100, 7);
        load.push(std::thread::spawn(move || {
            lab::enter(&ns);
            while !stop.load(Ordering::Relaxed) {
                let r = (|| -> Result<(), String> {
                    let s = TcpStream::connect_timeout(&echo, Duration::from_secs(3)).map_err(|e| format!("connect: {e}"))?;
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut w = s.try_clone().unwrap();
                    let mut r = BufReader::new(s);
                    for n in 0..100 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let line = format!("long {i} line {n}\n");
                        w.write_all(line.as_bytes()).map_err(|e| format!("write: {e}"))?;
                        let mut back = String::new();
                        r.read_line(&mut back).map_err(|e| format!("read: {e}"))?;
                        if back != line {
                            return Err(format!("echo {back:?} for {line:?}"));
                        }
                        std::thread::sleep(Duration::from_secs(1));
                    }
                    Ok(())
                })();
                tally.count(r, "long connection");
            }
        }));
    }
    // UDP: a query every 100 ms from a new socket (a new flow) each time.
    {
        let (ns, stop, tally) = (t.client.clone(), stop.clone(), tally.clone());
        let dns = t.sock(0, 100, 53);
        load.push(std::thread::spawn(move || {
            lab::enter(&ns);
            while !stop.load(Ordering::Relaxed) {
                let r = (|| -> Result<(), String> {
                    let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    // One retry: UDP may lose a datagram on a loaded machine.
                    for _ in 0..2 {
                        s.send_to(b"q", dns).map_err(|e| e.to_string())?;
                        let mut b = [0u8; 256];
                        if s.recv_from(&mut b).is_ok() {
                            return Ok(());
                        }
                    }
                    Err("no UDP answer".into())
                })();
                tally.count(r, "UDP query");
                std::thread::sleep(Duration::from_millis(100));
            }
        }));
    }

    let t0 = Instant::now();
    let mut samples = Vec::new();
    let mut next_sample = Duration::ZERO;
    let mut next_reload = Duration::from_secs(120);
    let mut next_flap = Duration::from_secs(180);
    let mut flapped = false;
    let xvsadm = env!("CARGO_BIN_EXE_xvsadm");
    let sock = lab.socket(x).to_path_buf();
    let mut reloads = 0u32;
    while t0.elapsed() < Duration::from_secs(duration) {
        let now = t0.elapsed();
        if now >= next_sample {
            let s = sample(t0, &t.director, pid, &tally);
            writeln!(csv, "{},{},{},{},{},{},{},{},{}", s.t, s.rss, s.conns, s.free, s.returning, s.kernel, s.total, s.ok, s.failed).unwrap();
            println!("soak: t={}s rss={} kB conns={} umem free={} returning={} kernel={} total={} requests ok={} failed={}", s.t, s.rss, s.conns, s.free, s.returning, s.kernel, s.total, s.ok, s.failed);
            let held = s.free + s.returning + s.kernel;
            // Frames between workers at this instant: at most an inbox (4096) and a burst per worker.
            assert!(held <= s.total && s.total - held <= 2 * (4096 + 64), "UMEM chunks unaccounted for at t={}s: {held} of {}", s.t, s.total);
            samples.push(s);
            next_sample += Duration::from_secs(every);
        }
        if now >= next_reload {
            reloads += 1;
            lab.rewrite_config(x, &config(1 + reloads % 3, 1 + (reloads + 1) % 3));
            lab.signal(x, "HUP");
            next_reload += Duration::from_secs(120);
        }
        if now >= next_flap {
            let w = if flapped { "1" } else { "0" };
            flapped = !flapped;
            let svc = format!("10.{NET}.0.100:80");
            let rs = format!("10.{NET}.1.12:8080");
            let o = std::process::Command::new(xvsadm)
                .env("XVS_SOCKET", &sock)
                .args(["-e", "-t", &svc, "-r", &rs, "-m", "-w", w])
                .output()
                .expect("xvsadm");
            assert!(o.status.success(), "xvsadm -e: {}", String::from_utf8_lossy(&o.stderr));
            next_flap += Duration::from_secs(180);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    for h in load {
        let _ = h.join();
    }
    // The timeouts pass (closing states 10-20 s, udp 15 s): every
    // connection ends.
    let quiet = Instant::now();
    let end = loop {
        std::thread::sleep(Duration::from_secs(5));
        let s = sample(t0, &t.director, pid, &tally);
        if s.conns == 0 || quiet.elapsed() > Duration::from_secs(200) {
            break s;
        }
    };
    writeln!(csv, "{},{},{},{},{},{},{},{},{}", end.t, end.rss, end.conns, end.free, end.returning, end.kernel, end.total, end.ok, end.failed).unwrap();
    println!("soak: after the traffic, t={}s rss={} kB conns={} umem free={} returning={} kernel={} total={}", end.t, end.rss, end.conns, end.free, end.returning, end.kernel, end.total);
    let c = lab.stop_xvs(x);
    stop_servers.store(true, Ordering::Relaxed);
    println!("{}", c.text);
    let (ok, failed) = (tally.ok.load(Ordering::Relaxed), tally.failed.load(Ordering::Relaxed));
    println!("soak: {ok} requests answered, {failed} failed, {reloads} reloads, {} samples", samples.len());

    assert_eq!(end.conns, 0, "connections left {} s after the traffic stopped", quiet.elapsed().as_secs());
    assert_eq!(end.free + end.returning + end.kernel, end.total, "UMEM chunks unaccounted for at rest");
    assert_eq!(failed, 0, "requests failed during the soak");
    // RSS flat after warm-up (the first third of the samples, at least one):
    // no more than 5 % + 4 MiB above the warm-up's peak.
    let warm = (samples.len() / 3).max(1);
    let base = samples[..warm].iter().map(|s| s.rss).max().unwrap_or(0);
    let peak = samples[warm..].iter().map(|s| s.rss).max().unwrap_or(base);
    assert!(peak <= base + base / 20 + 4096, "RSS grew after warm-up: {base} kB -> {peak} kB");
    // Counters balance: every frame received was sent, dropped, passed or
    // handed to another worker (which counts it again when it gets it);
    // an ICMP error sent counts its frame as a drop and itself as a send.
    let sum = |prefix: &str| c.values.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v).sum::<u64>();
    let (rx, tx) = (c.get("rx_packets"), c.get("tx_packets"));
    assert_eq!(
        rx + c.get("icmp_sent"),
        tx + sum("drop_") + sum("pass_") + c.get("handoffs"),
        "counters do not balance:\n{}",
        c.text
    );
}
