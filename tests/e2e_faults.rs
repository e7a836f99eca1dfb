//! Fault injection under load, end to end (docs/reliability.md): real
//! kernel clients fetch through the VIP of the NAT lab (`lab::two_legs`,
//! two workers) while something goes wrong on purpose.
//!
//! - `xvs run` is SIGKILLed mid-traffic and started again: the crashed
//!   run's steering program is replaced (one XDP program per interface,
//!   the new one), no AF_XDP socket of the dead process is left, and
//!   traffic flows again within a bounded time (printed).
//! - a reload storm: valid and invalid configurations alternate every
//!   50 ms (SIGHUP) while clients fetch: no request fails, the invalid
//!   ones are refused and named in the log, and the process holds no
//!   more file descriptors after than before.
//! - a flood of control-socket requests and metrics scrapes while
//!   forwarding: every fetch through the VIP still succeeds.
//! - a real server that dies (RST) and one that blackholes (link down):
//!   the health checker takes both out, then the live one answers all.
//! - the director's interfaces going down and up, changing MTU, and the
//!   real servers' leg changing MAC: traffic flows again within a bounded
//!   time, and xvs sends to the real servers from the new MAC.

mod lab;

use lab::{sh, Lab};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(net: u8, w2: u32) -> String {
    format!(
        r#"
[[service]]
proto = "tcp"
vip = "10.{net}.0.100"
port = 80
scheduler = "rr"
  [[service.real_server]]
  ip = "10.{net}.1.11"
  port = 8080
  mode = "nat"
  [[service.real_server]]
  ip = "10.{net}.1.12"
  port = 8080
  mode = "nat"
  weight = {w2}
"#
    )
}

/// The NAT lab with two HTTP servers and xvs running; `None` when the
/// machine cannot run it.
fn nat_lab(name: &str, net: u8) -> Option<(Lab, lab::Topo, usize)> {
    let mut lab = Lab::new(name)?;
    let t = lab::two_legs(&mut lab, net, 2, 2, true);
    for (i, r) in t.rs.clone().iter().enumerate() {
        lab.http_server(r, "0.0.0.0:8080".parse().unwrap(), &format!("rs{}", i + 1));
    }
    let x = lab.xvs(&t.director, &config(net, 1), &["-i", "d0", "-i", "d1", "--workers", "2"]);
    Some((lab, t, x))
}

fn get(vip: SocketAddr, timeout: Duration) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&vip, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut body = String::new();
    s.read_to_string(&mut body).map_err(|e| format!("read: {e}"))?;
    Ok(body)
}

/// Clients fetching through the VIP from the client namespace until
/// stopped; counts answers and failures (with the first failure).
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    first_error: Arc<std::sync::Mutex<Option<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(ns: &str, vip: SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let first_error = Arc::new(std::sync::Mutex::new(None));
        let threads = (0..clients)
            .map(|_| {
                let (ns, stop, ok, failed, first) = (ns.to_string(), stop.clone(), ok.clone(), failed.clone(), first_error.clone());
                std::thread::spawn(move || {
                    lab::enter(&ns);
                    while !stop.load(Ordering::Relaxed) {
                        match get(vip, Duration::from_secs(3)) {
                            Ok(b) if b.contains("rs") => ok.fetch_add(1, Ordering::Relaxed),
                            r => {
                                first.lock().unwrap().get_or_insert(format!("{r:?}"));
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                        std::thread::sleep(Duration::from_millis(10));
                    }
                })
            })
            .collect();
        Load { stop, ok, failed, first_error, threads }
    }

    /// Stops the clients: (answered, failed, first failure).
    fn stop(mut self) -> (u64, u64, Option<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        (self.ok.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed), self.first_error.lock().unwrap().clone())
    }
}

/// The XDP program ids attached to `iface` in `ns` (`ip -d link`).
fn xdp_progs(ns: &str, iface: &str) -> Vec<String> {
    let out = sh(&["ip", "-n", ns, "-d", "link", "show", "dev", iface]).unwrap_or_default();
    let words: Vec<&str> = out.split_whitespace().collect();
    words.windows(2).filter(|w| w[0] == "id" && out.contains("prog/xdp")).map(|w| w[1].to_string()).collect()
}

/// AF_XDP sockets open in namespace `ns`: the "sockets" column of the
/// XDP line of its /proc/net/protocols (ss --xdp needs xdp_diag, which
/// this kernel may not have).
fn xdp_sockets(ns: &str) -> usize {
    let out = sh(&["ip", "netns", "exec", ns, "cat", "/proc/net/protocols"]).unwrap_or_default();
    out.lines().find(|l| l.starts_with("XDP ")).and_then(|l| l.split_whitespace().nth(2)?.parse().ok()).unwrap_or(usize::MAX)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn sigkill_mid_traffic_then_restart_replaces_the_program_and_traffic_flows_again() {
    let Some((mut lab, t, x)) = nat_lab("sigkill_mid_traffic_then_restart", 81) else { return };
    let vip = t.sock(0, 100, 80);
    let load = Load::start(&t.client, vip, 2);
    std::thread::sleep(Duration::from_millis(1500));
    let before = (xdp_progs(&t.director, "d0"), xdp_progs(&t.director, "d1"), xdp_sockets(&t.director));
    lab.signal(x, "KILL");
    std::thread::sleep(Duration::from_millis(300));
    // The dead process's programs stay attached (netlink XDP outlives it):
    // the next start must remove them.
    let t_restart = Instant::now();
    let y = lab.xvs(&t.director, &config(81, 1), &["-i", "d0", "-i", "d1", "--workers", "2"]);
    let ready = t_restart.elapsed();
    // Traffic flows again: the first answer through the VIP after the restart.
    let flows = lab::in_ns(&t.client, move || {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if get(vip, Duration::from_millis(500)).is_ok_and(|b| b.contains("rs")) {
                return Some(t0.elapsed());
            }
        }
        None
    });
    let (ok, failed, _) = load.stop();
    let after = (xdp_progs(&t.director, "d0"), xdp_progs(&t.director, "d1"), xdp_sockets(&t.director));
    let log = lab.log(y);
    let c = lab.stop_xvs(y);
    println!("{log}\nbefore the kill: programs {:?} {:?}, {} AF_XDP sockets; after the restart: {:?} {:?}, {} sockets", before.0, before.1, before.2, after.0, after.1, after.2);
    println!("restart ready in {ready:?}; traffic flowed again {:?} after that; during the test {ok} answers, {failed} failures (while xvs was dead)", flows);
    assert!(log.contains("removed the XDP program"), "the crashed run's program was not removed:\n{log}");
    assert_eq!((before.0.len(), before.1.len(), after.0.len(), after.1.len()), (1, 1, 1, 1), "one XDP program per interface");
    assert_ne!(before.0, after.0, "the old steering program is still attached on d0");
    assert_ne!(before.1, after.1, "the old steering program is still attached on d1");
    // Two workers on two interfaces: four sockets, before and after.
    assert_eq!((before.2, after.2), (4, 4), "AF_XDP sockets: {} before the kill, {} after the restart (a leak, or sockets missing)", before.2, after.2);
    let flows = flows.expect("no answer through the VIP within 10 s of the restart");
    assert!(flows < Duration::from_secs(5), "traffic took {flows:?} to flow again");
    assert!(c.get("new_conns") > 0, "{}", c.text);
}

#[test]
fn a_reload_storm_under_load_fails_no_request_and_leaks_nothing() {
    let Some((mut lab, t, x)) = nat_lab("a_reload_storm_under_load", 82) else { return };
    let vip = t.sock(0, 100, 80);
    let pid = lab.pid(x);
    std::thread::sleep(Duration::from_millis(300));
    let fds_before = fds(pid);
    let load = Load::start(&t.client, vip, 2);
    let bad = "[[service]]\nproto = \"tcp\"\nvip = \"10.82.0.100\"\nport = 80\nscheduler = \"nope\"\n";
    let mut reloads = 0;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(4) {
        let text = if reloads % 2 == 0 { config(82, 1 + reloads % 3) } else { bad.to_string() };
        lab.rewrite_config(x, &text);
        lab.signal(x, "HUP");
        reloads += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    // The last one valid, then let it settle.
    lab.rewrite_config(x, &config(82, 1));
    lab.signal(x, "HUP");
    std::thread::sleep(Duration::from_millis(500));
    let (ok, failed, first) = load.stop();
    std::thread::sleep(Duration::from_millis(300));
    let fds_after = fds(pid);
    let log = lab.log(x);
    let c = lab.stop_xvs(x);
    println!("{reloads} reloads in 4 s; {ok} answers, {failed} failures; fds {fds_before} -> {fds_after}\n{}", c.text);
    assert_eq!(failed, 0, "requests failed during the reload storm: {first:?}\n{log}");
    assert!(ok > 20, "too little traffic to say anything: {ok}");
    assert!(log.contains("nope"), "the invalid configuration's scheduler is not named:\n{log}");
    assert!(fds_after <= fds_before + 2, "file descriptors grew: {fds_before} -> {fds_after}");
    assert_eq!(c.get("drop_no_conn"), 0, "{}", c.text);
}

#[test]
fn a_control_and_metrics_flood_does_not_disturb_forwarding() {
    let Some((mut lab, t, x)) = nat_lab("a_control_and_metrics_flood", 83) else { return };
    let vip = t.sock(0, 100, 80);
    let sock = lab.socket(x).to_path_buf();
    let stop = Arc::new(AtomicBool::new(false));
    let asked = Arc::new(AtomicU64::new(0));
    let mut flood = Vec::new();
    // Control socket: 4 clients, each request a listing, as fast as they go.
    for _ in 0..4 {
        let (sock, stop, asked) = (sock.clone(), stop.clone(), asked.clone());
        flood.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut s) = std::os::unix::net::UnixStream::connect(&sock) {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ = s.write_all(b"{\"ipvsadm\":{\"list\":{}}}\n\"ping\"\n");
                    let mut b = [0u8; 4096];
                    let _ = s.read(&mut b);
                }
                asked.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Metrics: 2 scrapers in the director's namespace.
    for _ in 0..2 {
        let (ns, stop, asked) = (t.director.clone(), stop.clone(), asked.clone());
        flood.push(std::thread::spawn(move || {
            lab::enter(&ns);
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut s) = TcpStream::connect_timeout(&"127.0.0.1:9477".parse().unwrap(), Duration::from_secs(1)) {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
                    let mut v = Vec::new();
                    let _ = s.read_to_end(&mut v);
                }
                asked.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let load = Load::start(&t.client, vip, 2);
    std::thread::sleep(Duration::from_secs(4));
    let (ok, failed, first) = load.stop();
    stop.store(true, Ordering::Relaxed);
    for h in flood {
        let _ = h.join();
    }
    let c = lab.stop_xvs(x);
    let n = asked.load(Ordering::Relaxed);
    println!("{n} control requests and scrapes; {ok} answers, {failed} failures through the VIP\n{}", c.text);
    assert!(n > 100, "the flood did not flood: {n}");
    assert_eq!(failed, 0, "forwarding disturbed by the flood: {first:?}");
    assert!(ok > 20, "too little traffic to say anything: {ok}");
}

/// An HTTP server in `ns` on :8080 answering `<name> <peer>`, that the
/// test can kill: its listener and every connection close at once.
struct Killable {
    stop: Arc<AtomicBool>,
}

impl Killable {
    fn start(ns: &str, name: &str) -> Killable {
        let stop = Arc::new(AtomicBool::new(false));
        let (ns, name, stop2) = (ns.to_string(), name.to_string(), stop.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            lab::enter(&ns);
            let l = std::net::TcpListener::bind("0.0.0.0:8080").expect("bind :8080");
            l.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            while !stop2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, peer)) => {
                        let (name, stop3) = (name.clone(), stop2.clone());
                        std::thread::spawn(move || {
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
                            let mut req = Vec::new();
                            let mut b = [0u8; 512];
                            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                                if stop3.load(Ordering::Relaxed) {
                                    return;
                                }
                                match s.read(&mut b) {
                                    Ok(0) => return,
                                    Ok(n) => req.extend_from_slice(&b[..n]),
                                    Err(_) => continue,
                                }
                            }
                            let _ = s.write_all(format!("HTTP/1.0 200 OK\r\n\r\n{name} {peer}").as_bytes());
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        rx.recv().unwrap();
        Killable { stop }
    }

    fn kill(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for Killable {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn a_dead_and_a_blackholed_real_server_are_taken_out_and_the_others_serve_on() {
    let Some(mut lab) = Lab::new("a_dead_and_a_blackholed_real_server") else { return };
    let net = 84;
    let t = lab::two_legs(&mut lab, net, 2, 3, true);
    let servers: Vec<Killable> = t.rs.iter().enumerate().map(|(i, r)| Killable::start(r, &format!("rs{}", i + 1))).collect();
    let dest = |i: u8| {
        format!(
            r#"
  [[service.real_server]]
  ip = "10.{net}.1.{i}"
  port = 8080
  mode = "nat"
  [service.real_server.check]
  type = "tcp"
  interval = "300ms"
  timeout = "300ms"
  rise = 1
  fall = 2
"#
        )
    };
    let conf = format!("[[service]]\nproto = \"tcp\"\nvip = \"10.{net}.0.100\"\nport = 80\nscheduler = \"rr\"\n{}{}{}", dest(11), dest(12), dest(13));
    let x = lab.xvs(&t.director, &conf, &["-i", "d0", "-i", "d1", "--workers", "2"]);
    let vip = t.sock(0, 100, 80);
    let load = Load::start(&t.client, vip, 2);
    std::thread::sleep(Duration::from_secs(1));
    // rs2 vanishes without a word (its link goes down: no RST, no ICMP);
    // rs3's server dies (its port refuses: RST).
    sh(&["ip", "-n", &t.rs[1], "link", "set", "eth0", "down"]).unwrap();
    servers[2].kill();
    let t_fault = Instant::now();
    // Both are taken out: the health checker logs them down.
    let mut down_after = None;
    while t_fault.elapsed() < Duration::from_secs(10) {
        let log = lab.log(x);
        if log.contains(&format!("10.{net}.1.12:8080 is down")) && log.contains(&format!("10.{net}.1.13:8080 is down")) {
            down_after = Some(t_fault.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ok_during, failed_during, _) = load.stop();
    // From then on, every request is answered, by rs1.
    let after = lab::in_ns(&t.client, move || (0..30).map(|_| get(vip, Duration::from_secs(3))).collect::<Vec<_>>());
    let log = lab.log(x);
    let c = lab.stop_xvs(x);
    println!("{log}\ntaken out {down_after:?} after the faults; meanwhile {ok_during} answers, {failed_during} failures\n{}", c.text);
    let down_after = down_after.unwrap_or_else(|| panic!("rs2 and rs3 were not both taken out within 10 s:\n{log}"));
    for a in &after {
        let body = a.as_ref().unwrap_or_else(|e| panic!("a request failed after the dead servers were taken out: {e}"));
        assert!(body.contains("rs1 "), "answered by {body:?}, not the live server");
    }
    assert!(down_after < Duration::from_secs(5), "taking them out took {down_after:?}");
    assert_eq!(c.get("health_downs"), 2, "{}", c.text);
    assert!(c.get("new_conns") >= 30, "{}", c.text);
}

/// Waits until a fetch through `vip` from `ns` succeeds: the time it took.
fn flows_again(ns: &str, vip: SocketAddr, within: Duration) -> Option<Duration> {
    lab::in_ns(ns, move || {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if get(vip, Duration::from_millis(500)).is_ok_and(|b| b.contains("rs")) {
                return Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    })
}

/// The source MACs of the TCP frames from port `sport` (or to port
/// `dport`) that reach namespace `ns` during `within` (an AF_PACKET
/// socket on all its interfaces).
fn source_macs(ns: &str, sport: Option<u16>, dport: Option<u16>, within: Duration) -> std::thread::JoinHandle<std::collections::BTreeSet<[u8; 6]>> {
    let ns = ns.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        lab::enter(&ns);
        let mut seen = std::collections::BTreeSet::new();
        // SAFETY: a packet socket owned by this thread and closed below;
        // the buffer and timeval outlive the calls.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, (libc::ETH_P_ALL as u16).to_be() as i32);
            assert!(fd >= 0, "packet socket: {}", std::io::Error::last_os_error());
            let tv = libc::timeval { tv_sec: 0, tv_usec: 50_000 };
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv as *const _ as *const libc::c_void, std::mem::size_of::<libc::timeval>() as libc::socklen_t);
            tx.send(()).unwrap();
            let mut buf = [0u8; 2048];
            let t0 = Instant::now();
            while t0.elapsed() < within {
                let n = libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0);
                if n <= 0 {
                    continue;
                }
                let f = &buf[..n as usize];
                let Ok(m) = xvs::wire::parse(f) else { continue };
                if m.proto == xvs::wire::proto::TCP && sport.map_or(true, |p| m.sport == p) && dport.map_or(true, |p| m.dport == p) {
                    seen.insert(f[6..12].try_into().unwrap());
                }
            }
            libc::close(fd);
        }
        seen
    });
    rx.recv_timeout(Duration::from_secs(5)).expect("capture started");
    h
}

#[test]
fn the_directors_interface_going_down_and_up_and_changing_mtu_is_survived() {
    let Some((mut lab, t, x)) = nat_lab("the_directors_interface_going_down_and_up", 85) else { return };
    let vip = t.sock(0, 100, 80);
    let d = t.director.clone();
    let mut took = Vec::new();
    for (what, cmds) in [
        ("d1 down and up", vec![vec!["link", "set", "d1", "down"], vec!["link", "set", "d1", "up"]]),
        ("d0 down and up", vec![vec!["link", "set", "d0", "down"], vec!["link", "set", "d0", "up"]]),
        ("d1 mtu 1400", vec![vec!["link", "set", "d1", "mtu", "1400"]]),
        ("d1 mtu 1500", vec![vec!["link", "set", "d1", "mtu", "1500"]]),
        // A new MAC: the real servers still address the old one until
        // their neighbour entry is renewed, xvs sends from the new one.
        ("d1 mac changed", vec![vec!["link", "set", "d1", "address", "02:00:5e:00:d1:01"]]),
        // (d0's MAC, the clients' side, is not changed: since main's L2
        // check, frames to the old MAC are dropped as another host's until
        // the clients' neighbour entries expire, tens of seconds.)
    ] {
        let load = Load::start(&t.client, vip, 1);
        std::thread::sleep(Duration::from_millis(500));
        for c in &cmds {
            let mut args = vec!["ip", "-n", d.as_str()];
            args.extend(c.iter().copied());
            sh(&args).unwrap();
            std::thread::sleep(Duration::from_millis(300));
        }
        let (ok, failed, _) = load.stop();
        let back = flows_again(&t.client, vip, Duration::from_secs(15));
        println!("{what}: {ok} answers, {failed} failures meanwhile; traffic again after {back:?}");
        took.push((what, back));
    }
    // xvs sends to the real servers from d1's new MAC.
    let to_rs = source_macs(&t.rs[0], None, Some(8080), Duration::from_millis(600));
    let answers = lab::in_ns(&t.client, move || (0..6).filter(|_| get(vip, Duration::from_secs(2)).is_ok()).count());
    let to_rs = to_rs.join().unwrap();
    let log = lab.log(x);
    let c = lab.stop_xvs(x);
    println!("{log}\n{}", c.text);
    assert!(answers > 0, "no answer after the MAC changes");
    assert_eq!(to_rs.into_iter().collect::<Vec<_>>(), [[2, 0, 0x5e, 0, 0xd1, 1]], "frames to rs1 not from d1's new MAC");
    for (what, back) in took {
        let back = back.unwrap_or_else(|| panic!("after {what}, no answer through the VIP within 15 s:\n{log}"));
        assert!(back < Duration::from_secs(10), "after {what}, traffic took {back:?} to flow again");
    }
}
