//! FULLNAT end to end: `xvs run` rewrites both ends, so the real servers
//! see the director's local address as the client and need no route back
//! to the client at all; replies come back through the director.
//!
//! Topology (`lab::two_legs` without the real servers' default route):
//! client 10.44.0.2 — d0 10.44.0.1 (+ VIP 10.44.0.100) [director] d1
//! 10.44.1.1 (+ local address 10.44.1.200) — LAN — rs1 10.44.1.11:8080,
//! rs2 10.44.1.12:8080. Two workers: a reply is owned by the worker its
//! local port names, and all frames arrive on queue 0. Each real server
//! also captures what reaches it: every connection's handshake ACK
//! carries the client's address and port in a TOA option.

mod lab;

use lab::{http_gets_from, peer_ip, rs_index, Lab};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The TOA options on TCP segments to port 8080 that reach namespace
/// `ns` (an AF_PACKET socket on all its interfaces), until stopped.
struct ToaCapture {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<(u16, Ipv4Addr)>>>,
}

impl ToaCapture {
    fn start(ns: &str) -> ToaCapture {
        let stop = Arc::new(AtomicBool::new(false));
        let (ns, stop2) = (ns.to_string(), stop.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            lab::enter(&ns);
            let mut seen = Vec::new();
            // SAFETY: a packet socket owned by this thread and closed
            // below; the buffer and timeval outlive the calls.
            unsafe {
                let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, (libc::ETH_P_ALL as u16).to_be() as i32);
                assert!(fd >= 0, "packet socket: {}", std::io::Error::last_os_error());
                let tv = libc::timeval { tv_sec: 0, tv_usec: 50_000 };
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    &tv as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                );
                tx.send(()).unwrap();
                let mut buf = [0u8; 2048];
                while !stop2.load(Ordering::Relaxed) {
                    let n = libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0);
                    if n <= 0 {
                        continue;
                    }
                    let f = &buf[..n as usize];
                    let Ok(m) = xvs::wire::parse(f) else { continue };
                    if m.proto != xvs::wire::proto::TCP || m.dport != 8080 || m.v6 {
                        continue;
                    }
                    if let Some((port, a)) = xvs::wire::toa::find(&f[m.l4 as usize..]) {
                        seen.push((port, Ipv4Addr::new(a[0], a[1], a[2], a[3])));
                    }
                }
                libc::close(fd);
            }
            seen
        });
        rx.recv_timeout(Duration::from_secs(5)).expect("capture started");
        ToaCapture { stop, handle: Some(handle) }
    }

    fn stop(&mut self) -> Vec<(u16, Ipv4Addr)> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().map_or_else(Vec::new, |h| h.join().expect("capture thread"))
    }
}

impl Drop for ToaCapture {
    fn drop(&mut self) {
        self.stop();
    }
}

const CONFIG: &str = r#"
[[service]]
proto = "tcp"
vip = "10.44.0.100"
port = 80
scheduler = "rr"
local_addresses = ["10.44.1.200"]

  [[service.real_server]]
  ip = "10.44.1.11"
  port = 8080
  mode = "fullnat"

  [[service.real_server]]
  ip = "10.44.1.12"
  port = 8080
  mode = "fullnat"
"#;

#[test]
fn fullnat_real_servers_see_the_local_address() {
    let Some(mut lab) = Lab::new("fullnat_real_servers_see_the_local_address") else {
        return;
    };
    let t = lab::two_legs(&mut lab, 44, 2, 2, false);
    // The director's kernel answers ARP for the local address.
    lab.ip(&t.director, &["addr", "add", "10.44.1.200/32", "dev", "d1"]);
    for (i, r) in t.rs.clone().iter().enumerate() {
        lab.http_server(r, "0.0.0.0:8080".parse().unwrap(), &format!("rs{}", i + 1));
    }
    let x = lab.xvs(
        &t.director,
        CONFIG,
        &["-i", "d0", "-i", "d1", "--workers", "2"],
    );
    let mut caps: Vec<ToaCapture> = t.rs.iter().map(|r| ToaCapture::start(r)).collect();
    // From eight client addresses: flows spread over both workers.
    let clients = t.clients();
    let answers = http_gets_from(&t.client, clients.clone(), t.sock(0, 100, 80), 20);
    std::thread::sleep(Duration::from_millis(100));
    let toas: Vec<(u16, Ipv4Addr)> = caps.iter_mut().flat_map(|c| c.stop()).collect();
    // d1's own address as a local address would swallow the answers to
    // the kernel's health checks: refused live, by xvsadm and by a reload.
    let xvsadm = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_xvsadm"))
            .arg("--socket")
            .arg(lab.socket(x))
            .args(args)
            .output()
            .expect("running xvsadm");
        (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let why = "local address 10.44.1.1 is the source the director's kernel uses to reach real server 10.44.1.11";
    let (okay, err) = xvsadm(&["--add-laddr", "-t", "10.44.0.100:80", "-z", "10.44.1.1"]);
    assert!(!okay && err.contains(why), "{err}");
    lab.rewrite_config(x, &CONFIG.replace("\"10.44.1.200\"", "\"10.44.1.200\", \"10.44.1.1\""));
    let (okay, err) = xvsadm(&["--reload"]);
    assert!(!okay && err.contains(why) && err.contains("the running configuration stays"), "{err}");
    let c = lab.stop_xvs(x);
    println!("{}\n{}", lab.log(x), c.text);

    let mut seen = [0usize; 2];
    for a in &answers {
        let body = a
            .as_ref()
            .unwrap_or_else(|e| panic!("GET through the VIP failed: {e}\n{}", c.text));
        seen[rs_index(body)] += 1;
        assert_eq!(
            peer_ip(body).to_string(),
            "10.44.1.200",
            "the server sees the local address: {body}"
        );
    }
    assert!(
        seen[0] > 0 && seen[1] > 0,
        "both real servers answer: {seen:?}"
    );
    assert_eq!(c.get("new_conns"), 20);
    assert!(c.get("fwd_fullnat_in") >= 20 * 3, "{}", c.text);
    assert!(c.get("fwd_fullnat_out") >= 20 * 2, "{}", c.text);
    assert!(c.get("handoffs") > 0, "{}", c.text);
    assert_eq!(c.get("drop_no_conn"), 0, "{}", c.text);
    // TOA: one option per connection reached the real servers, naming
    // the client addresses the requests came from (ports of the client's
    // kernel, 1024 and up).
    println!("TOA seen by the real servers: {toas:?}");
    assert_eq!(c.get("toa_added"), 20, "{}", c.text);
    assert_eq!(c.get("toa_skipped"), 0, "{}", c.text);
    assert_eq!(toas.len(), 20, "{toas:?}");
    let mut from: Vec<IpAddr> = toas.iter().map(|&(_, a)| IpAddr::V4(a)).collect();
    from.sort();
    from.dedup();
    let mut want = clients.clone();
    want.sort();
    assert_eq!(from, want, "TOA names every client address used");
    assert!(toas.iter().all(|&(p, _)| p >= 1024), "{toas:?}");
}
