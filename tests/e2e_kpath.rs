//! What the steering program sends to the workers but is not theirs to
//! forward goes back to the kernel (the kernel path, a TAP device per
//! interface), and fragments of tracked flows are forwarded.
//!
//! Topology (`lab::two_legs`): client 10.7x.0.2 (and an upstream server
//! 10.7x.0.50 in the same namespace) — d0 10.7x.0.1 (+ VIP .0.100)
//! [director] d1 10.7x.1.1 — rs1 10.7x.1.11, whose default route is the
//! director.

mod lab;

use lab::{http_get, in_ns, peer_ip, who, Lab};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

const KPATH_CONFIG: &str = r#"
[[service]]
proto = "udp"
vip = "10.70.0.100"
port = 53
scheduler = "rr"

  [[service.real_server]]
  ip = "10.70.1.11"
  port = 53
  mode = "nat"

[[service]]
proto = "tcp"
vip = "10.70.0.100"
port = 0
persistence = 60
scheduler = "rr"

  [[service.real_server]]
  ip = "10.70.1.11"
  port = 0
  mode = "nat"
"#;

/// Sends `msg` from `sock` to `to` until an answer comes (three tries).
fn ask(sock: &UdpSocket, to: SocketAddr, msg: &[u8]) -> Result<(Vec<u8>, SocketAddr), String> {
    sock.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    let mut buf = vec![0u8; 65536];
    for _ in 0..3 {
        sock.send_to(msg, to).map_err(|e| format!("send to {to}: {e}"))?;
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            return Ok((buf[..n].to_vec(), from));
        }
    }
    Err(format!("no answer from {to}"))
}

/// A NAT real server's own traffic through the director: a DNS server
/// asking an upstream server from its service port (53), and a TCP
/// connection out of a server behind a port-0 service. The steering
/// program gives both to the workers (they come from a real server's
/// service port); no connection and no service match, so the worker hands
/// them to the kernel, which routes them as it would without xvs (IPVS
/// lets the kernel route them). The answers are not the workers' and
/// reach the real server through the kernel too.
#[test]
fn a_nat_real_server_reaches_an_upstream_server_through_the_director() {
    let Some(mut lab) = Lab::new("a_nat_real_server_reaches_an_upstream_server_through_the_director") else {
        return;
    };
    let t = lab::two_legs(&mut lab, 70, 1, 1, true);
    let rs = t.rs[0].clone();
    // The upstream server, beyond the director on the client's side.
    lab.ip(&t.client, &["addr", "add", "10.70.0.50/24", "dev", "c0"]);
    lab.ip(&t.client, &["route", "add", "10.70.1.0/24", "via", "10.70.0.1"]);
    lab.udp_server(&t.client, "10.70.0.50:5300".parse().unwrap(), "upstream");
    lab.http_server(&t.client, "10.70.0.50:9000".parse().unwrap(), "upstream");
    lab.http_server(&rs, "0.0.0.0:8080".parse().unwrap(), "rs1");
    // The director routes what is not service traffic, as an IPVS NAT
    // director does.
    lab.sysctl(&t.director, "net.ipv4.ip_forward=1");
    let x = lab.xvs(&t.director, KPATH_CONFIG, &["-i", "d0", "-i", "d1"]);
    assert!(lab.log(x).contains("kernel path: xvsk"), "{}", lab.log(x));

    // The service itself still works (port 0: any port of the VIP).
    let body = http_get(&t.client, t.sock(0, 100, 8080));
    // The real server's kernel leaves partial checksums to "hardware", as
    // a veth's default does (the lab keeps the defaults): they must reach
    // the upstream server complete.
    // From the DNS service's own socket (port 53) to the upstream server.
    let up: SocketAddr = "10.70.0.50:5300".parse().unwrap();
    let dns = in_ns(&rs, move || {
        let s = UdpSocket::bind("0.0.0.0:53").map_err(|e| e.to_string())?;
        ask(&s, up, b"upstream?")
    });
    // A TCP connection out of the port-0 service's server.
    let tcp = http_get(&rs, "10.70.0.50:9000".parse().unwrap());
    let c = lab.stop_xvs(x);
    println!("{}\n{}", lab.log(x), c.text);

    let body = body.unwrap_or_else(|e| panic!("GET through the VIP: {e}\n{}", c.text));
    assert_eq!(who(&body), "rs1");
    let (answer, from) = dns.unwrap_or_else(|e| panic!("the real server's query upstream: {e}\n{}", c.text));
    assert_eq!(from, up);
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert_eq!(peer_ip(&answer).to_string(), "10.70.1.11", "the upstream server saw the real server: {answer}");
    assert!(answer.ends_with(":53"), "from its service port: {answer}");
    let tcp = tcp.unwrap_or_else(|e| panic!("the real server's TCP connection upstream: {e}\n{}", c.text));
    assert_eq!(peer_ip(&tcp).to_string(), "10.70.1.11", "{tcp}");
    // The worker gave them to the kernel: the query and the client side of
    // the TCP connection (SYN, request, ACKs, FIN).
    assert!(c.get("pass_not_service") >= 4, "{}", c.text);
    assert!(c.get("kernel_sent") >= c.get("pass_not_service"), "{}", c.text);
    assert_eq!(c.get("drop_kernel_full"), 0, "{}", c.text);
    assert_eq!(c.get("kernel_errors"), 0, "{}", c.text);
    // Their partial checksums arrived and were completed by the worker
    // before it handed the frames over (xvs completes every TCP/UDP
    // partial checksum first); the kernel path's marking is for anything
    // handed over before that.
    assert!(c.get("csum_completed") + c.get("kernel_partial_csum") > 0, "partial checksums were completed or marked for the kernel: {}", c.text);
}

const FRAG_CONFIG: &str = r#"
[[service]]
proto = "udp"
vip = "10.71.0.100"
port = 53
scheduler = "rr"

  [[service.real_server]]
  ip = "10.71.1.11"
  port = 5353
  mode = "nat"
"#;

/// A datagram bigger than the MTU through NAT: the client's kernel
/// fragments it, xvs forwards every fragment to the real server (whose
/// kernel reassembles it), and the answer, bigger still, comes back in
/// fragments the real server's kernel made, rewritten to come from the
/// VIP.
#[test]
fn a_large_udp_datagram_through_nat_is_answered_in_fragments() {
    let Some(mut lab) = Lab::new("a_large_udp_datagram_through_nat_is_answered_in_fragments") else {
        return;
    };
    let t = lab::two_legs(&mut lab, 71, 2, 1, true);
    let rs = t.rs[0].clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        lab::enter(&rs);
        let s = UdpSocket::bind("0.0.0.0:5353").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = vec![0u8; 65536];
        let mut answered = Vec::new();
        while let Ok((n, peer)) = s.recv_from(&mut buf) {
            // 5000 bytes: the peer first, then a pattern.
            let mut a = format!("rs1 {peer} {n} ").into_bytes();
            a.extend((0..5000 - a.len()).map(|i| (i % 251) as u8));
            let _ = s.send_to(&a, peer);
            answered.push(n);
        }
        answered
    });
    ready_rx.recv().unwrap();
    let x = lab.xvs(&t.director, FRAG_CONFIG, &["-i", "d0", "-i", "d1", "--workers", "2"]);
    let vip = t.sock(0, 100, 53);
    let res = in_ns(&t.client, move || {
        let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        let q: Vec<u8> = (0..3000).map(|i| (i % 253) as u8).collect();
        ask(&s, vip, &q)
    });
    let c = lab.stop_xvs(x);
    println!("{}\n{}", lab.log(x), c.text);
    let answered = server.join().unwrap();

    let (a, from) = res.unwrap_or_else(|e| panic!("{e}\n{}", c.text));
    assert_eq!(from, vip, "the answer comes from the VIP");
    assert_eq!(a.len(), 5000);
    let head = String::from_utf8_lossy(&a[..40]).to_string();
    assert!(head.starts_with("rs1 10.71.0.2:"), "the real server saw the client: {head}");
    assert!(head.contains(" 3000 "), "and the whole 3000-byte query: {head}");
    // Every byte of the reassembled answer is the server's.
    let start = head.find(" 3000 ").unwrap() + 6;
    assert!(a[start..].iter().enumerate().all(|(i, b)| *b == (i % 251) as u8), "the answer's bytes");
    assert!(!answered.is_empty() && answered.iter().all(|n| *n == 3000), "{answered:?}");
    // Three fragments in (1480 + 1480 + 48 bytes of UDP), four out.
    assert!(c.get("fwd_nat_in") >= 3, "{}", c.text);
    assert!(c.get("fwd_nat_out") >= 4, "{}", c.text);
    assert_eq!(c.get("drop_frag_no_head"), 0, "{}", c.text);
}

/// An ICMP echo request from `src` (MAC `smac`) to `dst` (MAC `dmac`),
/// checksums set.
fn echo(smac: [u8; 6], src: [u8; 4], dmac: [u8; 6], dst: [u8; 4]) -> Vec<u8> {
    let mut f = xvs::gen::packet::icmp4_echo(src, dst);
    f[0..6].copy_from_slice(&dmac);
    f[6..12].copy_from_slice(&smac);
    f
}

fn fmt_mac(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn mac_of(lab: &Lab, ns: &str, iface: &str) -> [u8; 6] {
    let out = lab.exec(ns, &["ip", "-o", "link", "show", iface]);
    let hex = out.split("link/ether ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or_else(|| panic!("no MAC in {out}"));
    let v: Vec<u8> = hex.split(':').map(|h| u8::from_str_radix(h, 16).unwrap()).collect();
    v.try_into().unwrap()
}

/// `Icmp: ... OutEchoReps` of the calling thread's namespace.
fn echo_replies() -> u64 {
    let t = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap();
    let mut icmp = t.lines().filter(|l| l.starts_with("Icmp:"));
    let (names, vals) = (icmp.next().unwrap(), icmp.next().unwrap());
    let i = names.split_whitespace().position(|n| n == "OutEchoReps").unwrap();
    vals.split_whitespace().nth(i).unwrap().parse().unwrap()
}

/// The kernel path alone, in both of its modes: a frame a worker gives
/// back is received by the kernel as from the interface — here an echo
/// request, which the kernel answers out of that interface.
#[test]
fn the_kernel_path_delivers_in_both_modes() {
    use xvs::io::xdp::kpath::{KernelMode, KernelPath, KernelPort};
    let Some(mut lab) = Lab::new("the_kernel_path_delivers_in_both_modes") else {
        return;
    };
    let a = lab.ns("a");
    let b = lab.ns("b");
    lab.veth(&a, "va", &b, "vb", 1);
    lab.ip(&a, &["addr", "add", "10.72.0.1/24", "dev", "va"]);
    lab.ip(&b, &["addr", "add", "10.72.0.2/24", "dev", "vb"]);
    let (ma, mb) = (mac_of(&lab, &a, "va"), mac_of(&lab, &b, "vb"));
    lab.ip(&a, &["neigh", "replace", "10.72.0.2", "lladdr", &fmt_mac(mb), "dev", "va"]);
    let ifindex = in_ns(&a, || xvs::io::xdp::ifindex("va").unwrap());
    // Gives the kernel path in `mode` one echo request from vb and
    // returns (frames written, echo replies the kernel sent).
    let run = |mode: KernelMode, wait: Duration| {
        let frame = echo(mb, [10, 72, 0, 2], ma, [10, 72, 0, 1]);
        in_ns(&a, move || {
            let port = KernelPort { name: "va".into(), ifindex, mac: ma, mtu: 1500 };
            let (kp, mut tx) = KernelPath::open(&[port], 1, mode).unwrap();
            assert_eq!(kp.taps(), &[format!("xvsk{ifindex}")]);
            let before = echo_replies();
            assert!(tx[0].push(0, &frame));
            tx[0].flush();
            let t0 = std::time::Instant::now();
            while (echo_replies() == before || kp.stats().sent == 0) && t0.elapsed() < wait {
                std::thread::sleep(Duration::from_millis(10));
            }
            (kp.stats().sent, echo_replies() - before)
        })
    };
    // Re-injected at va's ingress, the frame passes even strict reverse
    // path filtering: for the kernel it came in on va.
    lab.sysctl(&a, "net.ipv4.conf.all.rp_filter=1");
    lab.sysctl(&a, "net.ipv4.conf.va.rp_filter=1");
    assert_eq!(run(KernelMode::Ingress, Duration::from_secs(3)), (1, 1), "ingress mode: the kernel answered");
    // Received on the TAP itself (the fallback beside generic XDP), which
    // has no address, it fails any reverse path filter (the kernel's
    // fib_validate_source refuses address-less devices), strict or loose,
    // and passes without one, as documented.
    assert_eq!(run(KernelMode::Tap, Duration::from_millis(300)), (1, 0), "tap mode, strict rp_filter");
    lab.sysctl(&a, "net.ipv4.conf.all.rp_filter=2");
    assert_eq!(run(KernelMode::Tap, Duration::from_millis(300)), (1, 0), "tap mode, loose rp_filter");
    lab.sysctl(&a, "net.ipv4.conf.all.rp_filter=0");
    assert_eq!(run(KernelMode::Tap, Duration::from_secs(3)), (1, 1), "tap mode, no rp_filter");
    // The TAP went away with the kernel path.
    let links = lab.exec(&a, &["ip", "-o", "link"]);
    assert!(!links.contains("xvsk"), "{links}");
}
