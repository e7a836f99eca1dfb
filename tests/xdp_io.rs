//! End-to-end tests of the AF_XDP driver in network namespaces.
//!
//! Lab: namespace `xvs-xdp-<pid>-<n>-c` (client) and `...-d` (director)
//! joined by a veth pair. The client routes the VIPs via the director's
//! address. The director runs the steering program and a reflector on
//! `io::xdp`: each steered frame is sent back with MACs, addresses and
//! ports swapped (a TCP SYN is answered with RST+ACK), every other one
//! moved 64 bytes into the headroom first, so sending from another offset
//! is exercised too. Only traffic inside these namespaces is sent.
//!
//! The tests need root and AF_XDP; without them they print SKIP and pass.

use std::io::{BufRead, BufReader, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use xvs::io::xdp::{
    self, AttachMode, Fate, PollMode, QueueIo, Rule, Steering, XdpConfig, XdpError, XdpIo,
};
use xvs::ipvs::Proto;
use xvs::wire::{self, checksum, tcp_flags, Frame};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 199, 0, 1);
const DIRECTOR: Ipv4Addr = Ipv4Addr::new(10, 199, 0, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 199, 1, 100);
const LIP: Ipv4Addr = Ipv4Addr::new(10, 199, 1, 200);
const CLIENT6: &str = "fd00:199::1";
const DIRECTOR6: &str = "fd00:199::2";
const VIP6: &str = "fd00:199:1::100";
const IF_C: &str = "xvs-xdp-c";
const IF_D: &str = "xvs-xdp-d";
/// Director's second interface and the real server's, with fixed MACs.
const IF_E: &str = "xvs-xdp-e";
const IF_R: &str = "xvs-xdp-r";
const MAC_E: &str = "02:00:00:00:0e:01";
const MAC_R: &str = "02:00:00:00:0e:02";

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Two namespaces and a veth pair; removed on drop, whatever happened.
struct Lab {
    c: String,
    d: String,
    /// Namespace of the real server (`Opts::server`).
    r: String,
}

/// Extras of a lab.
#[derive(Default)]
struct Opts {
    /// Queues on the client-director veth pair.
    queues: u32,
    /// A third namespace (real server) behind a second director interface.
    server: bool,
}

impl Lab {
    fn new(test: &str) -> Option<Lab> {
        Lab::with(test, Opts::default())
    }

    fn with(test: &str, o: Opts) -> Option<Lab> {
        if !xdp::is_root() {
            println!("SKIP {test}: needs root (AF_XDP, XDP and network namespaces)");
            return None;
        }
        if let Err(e) = xdp::af_xdp_available() {
            println!("SKIP {test}: {e}");
            return None;
        }
        if Command::new("ip").arg("-V").output().is_err() {
            println!("SKIP {test}: iproute2 (`ip`) is not installed");
            return None;
        }
        static N: AtomicU64 = AtomicU64::new(0);
        let base = format!(
            "xvs-xdp-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let lab = Lab {
            c: format!("{base}-c"),
            d: format!("{base}-d"),
            r: format!("{base}-r"),
        };
        let (c, d, r) = (lab.c.as_str(), lab.d.as_str(), lab.r.as_str());
        let nq = o.queues.max(1).to_string();
        #[rustfmt::skip]
        let mut steps: Vec<Vec<&str>> = vec![
            vec!["ip", "netns", "add", c],
            vec!["ip", "netns", "add", d],
            vec!["ip", "-n", c, "link", "add", IF_C, "numtxqueues", &nq, "numrxqueues", &nq, "type", "veth",
                 "peer", "name", IF_D, "numtxqueues", &nq, "numrxqueues", &nq, "netns", d],
            vec!["ip", "-n", c, "link", "set", "lo", "up"],
            vec!["ip", "-n", d, "link", "set", "lo", "up"],
            vec!["ip", "-n", c, "addr", "add", "10.199.0.1/24", "dev", IF_C],
            vec!["ip", "-n", d, "addr", "add", "10.199.0.2/24", "dev", IF_D],
            vec![
                "ip",
                "-n",
                c,
                "-6",
                "addr",
                "add",
                "fd00:199::1/64",
                "dev",
                IF_C,
                "nodad",
            ],
            vec![
                "ip",
                "-n",
                d,
                "-6",
                "addr",
                "add",
                "fd00:199::2/64",
                "dev",
                IF_D,
                "nodad",
            ],
            vec!["ip", "-n", c, "link", "set", IF_C, "up"],
            vec!["ip", "-n", d, "link", "set", IF_D, "up"],
            vec![
                "ip",
                "-n",
                c,
                "route",
                "add",
                "10.199.1.0/24",
                "via",
                "10.199.0.2",
            ],
            vec![
                "ip",
                "-n",
                c,
                "-6",
                "route",
                "add",
                "fd00:199:1::/64",
                "via",
                DIRECTOR6,
            ],
        ];
        if o.server {
            #[rustfmt::skip]
            steps.extend([
                vec!["ip", "netns", "add", r],
                vec!["ip", "-n", d, "link", "add", IF_E, "address", MAC_E, "type", "veth",
                     "peer", "name", IF_R, "address", MAC_R, "netns", r],
                vec!["ip", "-n", r, "link", "set", "lo", "up"],
                vec!["ip", "-n", d, "addr", "add", "10.199.2.1/24", "dev", IF_E],
                vec!["ip", "-n", r, "addr", "add", "10.199.2.2/24", "dev", IF_R],
                vec!["ip", "-n", r, "addr", "add", "10.199.1.100/32", "dev", "lo"],
                vec!["ip", "-n", d, "link", "set", IF_E, "up"],
                vec!["ip", "-n", r, "link", "set", IF_R, "up"],
                vec!["ip", "-n", r, "route", "add", "10.199.0.0/24", "via", "10.199.2.1"],
                vec!["ip", "netns", "exec", d, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
            ]);
        }
        for s in steps {
            if let Err(e) = sh(&s) {
                panic!("lab setup: {e}");
            }
        }
        Some(lab)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace destroys its veth end (and the pair) with it.
        let _ = sh(&["ip", "netns", "del", &self.c]);
        let _ = sh(&["ip", "netns", "del", &self.d]);
        if Command::new("ip")
            .args(["netns", "pids", &self.r])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            let _ = sh(&["ip", "netns", "del", &self.r]);
        }
    }
}

/// Runs `f` on a fresh thread inside namespace `ns` and returns its result.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        xdp::enter_netns(&ns).expect("enter netns");
        f()
    })
    .join()
    .expect("namespace thread panicked")
}

/// Counters of the reflector.
#[derive(Default)]
struct Reflected {
    frames: AtomicU64,
    shifted: AtomicU64,
    /// Reflected frames whose every checksum verified from scratch.
    verified: AtomicU64,
}

/// Turns a received frame into its reply in place. False when it is not a
/// frame we answer.
fn reflect(f: &mut Frame<'_>, shift: bool) -> bool {
    let Ok(m) = wire::parse(f.data()) else {
        return false;
    };
    let d = f.data_mut();
    // The client's veth keeps its default TX checksum offload: its kernel
    // leaves the pseudo-header sum for "hardware" to finish, and XDP sees
    // it raw. Finish it first, as the worker does.
    if m.partial {
        checksum::complete(d, &m);
    }
    let (src, dst) = (wire::src_mac(d), wire::dst_mac(d));
    wire::set_macs(d, &src, &dst);
    // Swapping two fields of a one's complement sum leaves it unchanged.
    let (l3, l4) = (m.l3 as usize, m.l4 as usize);
    let (so, alen) = if m.v6 { (8, 16) } else { (12, 4) };
    for i in 0..alen {
        d.swap(l3 + so + i, l3 + so + alen + i);
    }
    if m.proto == wire::proto::TCP || m.proto == wire::proto::UDP {
        d.swap(l4, l4 + 2);
        d.swap(l4 + 1, l4 + 3);
    }
    if m.proto == wire::proto::TCP && m.tcp_flags & tcp_flags::SYN != 0 {
        // Answer the SYN with RST+ACK (ack = seq + 1): connect() fails with
        // "refused", which proves the round trip.
        let old: [u8; 10] = d[l4 + 4..l4 + 14].try_into().unwrap();
        let seq = u32::from_be_bytes(old[0..4].try_into().unwrap());
        let mut new = old;
        new[0..4].copy_from_slice(&0u32.to_be_bytes());
        new[4..8].copy_from_slice(&seq.wrapping_add(1).to_be_bytes());
        new[9] = tcp_flags::RST | tcp_flags::ACK;
        d[l4 + 4..l4 + 14].copy_from_slice(&new);
        let c = m.l4_csum_off().unwrap();
        let hc = checksum::update_bytes(wire::be16(d, c), &old, &new);
        wire::put16(d, c, hc);
    }
    if shift {
        assert!(
            f.head >= 64 + wire::frame::HEADROOM,
            "driver headroom too small: {}",
            f.head
        );
        f.buf.copy_within(f.head..f.head + f.len, f.head - 64);
        f.head -= 64;
    }
    true
}

/// The reflector thread and the director's `XdpIo`; stopped on drop.
struct Director {
    io: Option<XdpIo>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Option<QueueIo>>>,
    counts: Arc<Reflected>,
}

impl Director {
    /// Opens the driver on the director's veth and starts the reflector.
    fn start(ns: &str, cfg: XdpConfig) -> Result<Director, XdpError> {
        Director::start_with(ns, cfg, |f, port, n| reflect(f, n % 2 == 0).then_some(port))
    }

    /// As `start`, with `handle(frame, in_port, n)` deciding the out port
    /// (None: recycle). `n` counts frames from 1.
    fn start_with(
        ns: &str,
        cfg: XdpConfig,
        handle: fn(&mut Frame<'_>, u8, u64) -> Option<u8>,
    ) -> Result<Director, XdpError> {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Reflected::default());
        let (tx, rx) = mpsc::channel();
        let (ns, stop2, counts2) = (ns.to_string(), stop.clone(), counts.clone());
        let thread = std::thread::spawn(move || {
            xdp::enter_netns(&ns).expect("enter netns");
            let (io, mut queues) = match XdpIo::open(&cfg) {
                Ok(v) => v,
                Err(e) => {
                    tx.send(Err(e)).unwrap();
                    return None;
                }
            };
            tx.send(Ok(io)).unwrap();
            let mut q = queues.remove(0);
            let mut n = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                let got = q.burst(64, |frames, ports, fates| {
                    for (i, f) in frames.iter_mut().enumerate() {
                        n += 1;
                        let head = f.head;
                        if let Some(port) = handle(f, ports[i], n) {
                            fates[i] = Fate::Tx { port };
                            counts2.frames.fetch_add(1, Ordering::Relaxed);
                            if f.head != head {
                                counts2.shifted.fetch_add(1, Ordering::Relaxed);
                            }
                            if xvs::gen::packet::verify(f.data()) {
                                counts2.verified.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                });
                q.idle(got, Duration::from_millis(5));
            }
            Some(q)
        });
        match rx.recv().expect("director thread reports") {
            Ok(io) => Ok(Director {
                io: Some(io),
                stop,
                thread: Some(thread),
                counts,
            }),
            Err(e) => {
                let _ = thread.join();
                Err(e)
            }
        }
    }

    fn io(&mut self) -> &mut XdpIo {
        self.io.as_mut().unwrap()
    }

    fn set_rules(&mut self, rules: &[Rule]) {
        self.io().set_rules(rules).expect("set rules");
    }

    /// Stops the reflector, returns its QueueIo (still open).
    fn stop(&mut self) -> Option<QueueIo> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok().flatten())
    }
}

impl Drop for Director {
    fn drop(&mut self) {
        let _ = self.stop();
        self.io.take();
    }
}

fn small_cfg() -> XdpConfig {
    XdpConfig {
        interfaces: vec![IF_D.to_string()],
        queues: vec![0],
        rx_ring: 256,
        tx_ring: 256,
        fill_ring: 256,
        comp_ring: 256,
        poll: PollMode::default(),
        ..XdpConfig::default()
    }
}

/// Sends one UDP datagram from `from` to `to` in the client namespace and
/// waits briefly for the reflected reply; true when it came back intact
/// from `to`.
fn udp_roundtrip(ns: &str, from: SocketAddr, to: SocketAddr, wait: Duration) -> bool {
    in_ns(ns, move || {
        let s = UdpSocket::bind(from).expect("bind client");
        s.set_read_timeout(Some(wait)).unwrap();
        let msg = format!("xvs-xdp {to}");
        s.send_to(msg.as_bytes(), to).expect("send");
        let mut buf = [0u8; 256];
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            match s.recv_from(&mut buf) {
                Ok((n, peer)) if peer == to && &buf[..n] == msg.as_bytes() => return true,
                Ok(_) => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return false
                }
                Err(e) => panic!("recv: {e}"),
            }
        }
        false
    })
}

fn v4(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ip), port)
}

fn vip_udp(port: u16) -> Rule {
    Rule::Vip {
        proto: Proto::Udp,
        addr: IpAddr::V4(VIP),
        port,
    }
}

const ANSWER: Duration = Duration::from_secs(3);
const SILENCE: Duration = Duration::from_millis(400);

#[test]
fn udp_and_tcp_to_a_vip_come_back_through_af_xdp() {
    let Some(lab) = Lab::new("udp_and_tcp_to_a_vip_come_back_through_af_xdp") else {
        return;
    };
    let mut dir = Director::start(&lab.d, small_cfg()).expect("open AF_XDP on veth");
    dir.set_rules(&[
        vip_udp(7000),
        Rule::Vip {
            proto: Proto::Tcp,
            addr: IpAddr::V4(VIP),
            port: 80,
        },
    ]);

    for i in 0..10 {
        assert!(
            udp_roundtrip(&lab.c, v4(CLIENT, 0), v4(VIP, 7000), ANSWER),
            "UDP round trip {i}"
        );
    }
    // TCP: the reflected RST+ACK refuses the connection.
    let refused = in_ns(&lab.c, || {
        TcpStream::connect_timeout(&v4(VIP, 80), Duration::from_secs(3)).map_err(|e| e.kind())
    });
    assert_eq!(refused.err(), Some(ErrorKind::ConnectionRefused));

    let c = &dir.counts;
    let frames = c.frames.load(Ordering::Relaxed);
    assert!(frames >= 11, "reflected {frames}");
    assert!(
        c.shifted.load(Ordering::Relaxed) >= 5,
        "some replies were sent from a moved start"
    );
    assert_eq!(
        c.verified.load(Ordering::Relaxed),
        frames,
        "every reflected frame has valid checksums"
    );
    let st = dir.io().steering().stats(0).unwrap();
    assert!(st.redirected >= frames, "{st:?}");
    let q = dir.stop().expect("queue back");
    assert!(
        q.stats().tx >= frames && q.stats().tx_full == 0,
        "{:?}",
        q.stats()
    );
    assert!(!q.zerocopy(0), "veth has no zero-copy AF_XDP");
}

#[test]
fn ipv6_service_traffic_is_steered_and_ndp_still_works() {
    let Some(lab) = Lab::new("ipv6_service_traffic_is_steered_and_ndp_still_works") else {
        return;
    };
    let mut dir = Director::start(&lab.d, small_cfg()).expect("open AF_XDP on veth");
    let vip6: Ipv6Addr = VIP6.parse().unwrap();
    dir.set_rules(&[Rule::Vip {
        proto: Proto::Udp,
        addr: IpAddr::V6(vip6),
        port: 0,
    }]);
    let from = SocketAddr::new(CLIENT6.parse().unwrap(), 0);
    // Reaching the VIP needs the director's MAC: neighbour discovery
    // (ICMPv6, not an error) must pass to the kernel.
    assert!(udp_roundtrip(
        &lab.c,
        from,
        SocketAddr::new(IpAddr::V6(vip6), 5353),
        ANSWER
    ));
    assert!(udp_roundtrip(
        &lab.c,
        from,
        SocketAddr::new(IpAddr::V6(vip6), 9),
        ANSWER
    ));
    assert!(dir.counts.verified.load(Ordering::Relaxed) >= 2);
}

#[test]
fn non_service_traffic_reaches_the_kernel() {
    let Some(lab) = Lab::new("non_service_traffic_reaches_the_kernel") else {
        return;
    };
    let mut dir = Director::start(&lab.d, small_cfg()).expect("open AF_XDP on veth");
    dir.set_rules(&[vip_udp(7000)]);

    // ARP and ICMP echo to the director's own address: answered by its kernel.
    sh(&[
        "ip",
        "netns",
        "exec",
        &lab.c,
        "ping",
        "-c",
        "2",
        "-W",
        "2",
        "10.199.0.2",
    ])
    .expect("ping the director");
    sh(&[
        "ip", "netns", "exec", &lab.c, "ping", "-6", "-c", "1", "-W", "2", DIRECTOR6,
    ])
    .expect("ping6 the director");

    // UDP to the director's address on the service's port is not service
    // traffic: a kernel socket in the director namespace gets it.
    let (tx, rx) = mpsc::channel();
    let d = lab.d.clone();
    let server = std::thread::spawn(move || {
        xdp::enter_netns(&d).unwrap();
        let s = UdpSocket::bind(v4(DIRECTOR, 7000)).unwrap();
        s.set_read_timeout(Some(ANSWER)).unwrap();
        tx.send(()).unwrap();
        let mut buf = [0u8; 64];
        s.recv_from(&mut buf).map(|(n, _)| buf[..n].to_vec())
    });
    rx.recv().unwrap();
    in_ns(&lab.c, || {
        UdpSocket::bind(v4(CLIENT, 0))
            .unwrap()
            .send_to(b"to-the-kernel", v4(DIRECTOR, 7000))
            .unwrap();
    });
    let got = server
        .join()
        .unwrap()
        .expect("kernel socket received the datagram");
    assert_eq!(got, b"to-the-kernel");
    assert_eq!(
        dir.counts.frames.load(Ordering::Relaxed),
        0,
        "nothing was steered"
    );
    let st = dir.io().steering().stats(0).unwrap();
    assert!(st.passed >= 5 && st.redirected == 0, "{st:?}");
}

#[test]
fn rules_change_at_run_time() {
    let Some(lab) = Lab::new("rules_change_at_run_time") else {
        return;
    };
    let mut dir = Director::start(&lab.d, small_cfg()).expect("open AF_XDP on veth");
    let c = lab.c.clone();
    let rt = |from: SocketAddr, to: SocketAddr, wait| udp_roundtrip(&c, from, to, wait);
    let any = v4(CLIENT, 0);

    // No rules: nothing is steered.
    assert!(!rt(any, v4(VIP, 7000), SILENCE));
    dir.set_rules(&[vip_udp(7000)]);
    assert!(rt(any, v4(VIP, 7000), ANSWER));
    assert!(
        !rt(any, v4(VIP, 7001), SILENCE),
        "only port 7000 is a service"
    );
    // Port 0: every port of the VIP.
    dir.set_rules(&[vip_udp(0)]);
    assert!(rt(any, v4(VIP, 7001), ANSWER));
    // Replies of a NAT real server: matched by source address and port.
    let rs = Rule::RealServer {
        proto: Proto::Udp,
        addr: IpAddr::V4(CLIENT),
        port: 6000,
    };
    dir.set_rules(&[rs]);
    assert!(rt(v4(CLIENT, 6000), v4(DIRECTOR, 9999), ANSWER));
    assert!(
        !rt(v4(CLIENT, 6001), v4(DIRECTOR, 9999), SILENCE),
        "other source port"
    );
    assert!(
        !rt(any, v4(VIP, 7001), SILENCE),
        "the VIP rule was replaced"
    );
    // ...except what it sends to an address of the director's own (the
    // director's health checks): that is the kernel's.
    dir.set_rules(&[rs, Rule::Local(IpAddr::V4(DIRECTOR))]);
    assert!(
        !rt(v4(CLIENT, 6000), v4(DIRECTOR, 9999), SILENCE),
        "to a local address"
    );
    dir.set_rules(&[rs, Rule::Local(IpAddr::V4(VIP))]);
    assert!(
        rt(v4(CLIENT, 6000), v4(DIRECTOR, 9999), ANSWER),
        "another local address changes nothing"
    );
    // FULLNAT local address.
    dir.set_rules(&[Rule::LocalAddr(IpAddr::V4(LIP))]);
    assert!(rt(any, v4(LIP, 40000), ANSWER));
    dir.set_rules(&[]);
    assert!(!rt(any, v4(LIP, 40000), SILENCE));
    assert_eq!(dir.io().steering().rule_keys(), 0);
}

#[test]
fn sockets_rebind_right_after_close() {
    let Some(lab) = Lab::new("sockets_rebind_right_after_close") else {
        return;
    };
    for round in 0..3 {
        let mut dir =
            Director::start(&lab.d, small_cfg()).unwrap_or_else(|e| panic!("round {round}: {e}"));
        dir.set_rules(&[vip_udp(7000)]);
        assert!(
            udp_roundtrip(&lab.c, v4(CLIENT, 0), v4(VIP, 7000), ANSWER),
            "round {round}"
        );
        // Dropping closes the socket; the kernel frees the queue later.
    }
}

#[test]
fn second_instance_on_an_interface_is_refused() {
    let Some(lab) = Lab::new("second_instance_on_an_interface_is_refused") else {
        return;
    };
    let err = in_ns(&lab.d, || {
        let _first = Steering::attach(&[IF_D], AttachMode::Auto).expect("first attach");
        Steering::attach(&[IF_D], AttachMode::Auto).map(drop)
    });
    match err {
        Err(e @ XdpError::InUse { .. }) => assert!(e.to_string().contains(IF_D)),
        other => panic!("{other:?}"),
    }
    let missing = in_ns(&lab.d, || {
        Steering::attach(&["xvs-xdp-none"], AttachMode::Auto).map(drop)
    });
    assert!(
        matches!(missing, Err(XdpError::NoInterface { .. })),
        "{missing:?}"
    );
    // Both programs are gone again.
    assert!(!in_ns(&lab.d, || xdp::steer::xvs_program_attached(IF_D).unwrap()));
}

#[test]
fn detach_handle_works_without_dropping() {
    let Some(lab) = Lab::new("detach_handle_works_without_dropping") else {
        return;
    };
    in_ns(&lab.d, || {
        let st = Steering::attach(&[IF_D], AttachMode::Generic).expect("attach");
        assert!(xdp::steer::xvs_program_attached(IF_D).unwrap());
        assert!(
            st.detach_handle().detach_now(),
            "netlink detach acknowledged"
        );
        assert!(!xdp::steer::xvs_program_attached(IF_D).unwrap());
        drop(st); // detaching again is harmless
    });
}

/// Child half of `stale_program_of_a_crashed_run_is_removed`: attaches and
/// waits to be killed. Runs only when that test starts it.
#[test]
#[ignore = "helper process of stale_program_of_a_crashed_run_is_removed"]
fn stale_child() {
    let (Ok(ns), Ok(ifname)) = (
        std::env::var("XVS_XDP_STALE_NS"),
        std::env::var("XVS_XDP_STALE_IF"),
    ) else {
        println!(
            "stale_child: only meaningful as a child of stale_program_of_a_crashed_run_is_removed"
        );
        return;
    };
    xdp::enter_netns(&ns).unwrap();
    let st = Steering::attach(&[&ifname], AttachMode::Auto).expect("child attach");
    println!("ATTACHED");
    std::thread::sleep(Duration::from_secs(60));
    drop(st);
}

#[test]
fn stale_program_of_a_crashed_run_is_removed() {
    let Some(lab) = Lab::new("stale_program_of_a_crashed_run_is_removed") else {
        return;
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "stale_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("XVS_XDP_STALE_NS", &lab.d)
        .env("XVS_XDP_STALE_IF", IF_D)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start child");
    let out = BufReader::new(child.stdout.take().unwrap());
    let attached = out
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("ATTACHED"));
    // "Crash": SIGKILL, no cleanup runs.
    let _ = child.kill();
    let _ = child.wait();
    assert!(attached, "child attached its program");
    assert!(
        in_ns(&lab.d, || xdp::steer::xvs_program_attached(IF_D).unwrap()),
        "program outlived the process"
    );

    let removed = in_ns(&lab.d, || {
        let st = Steering::attach(&[IF_D], AttachMode::Auto).expect("attach over a stale program");
        st.stale_removed().to_vec()
    });
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0].0, IF_D);
    assert!(
        !in_ns(&lab.d, || xdp::steer::xvs_program_attached(IF_D).unwrap()),
        "and ours is detached on drop"
    );
}

fn mac(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (b, p) in m.iter_mut().zip(s.split(':')) {
        *b = u8::from_str_radix(p, 16).unwrap();
    }
    m
}

/// Direct routing from port 0 to the real server behind port 1: only the
/// MACs change (and the client's partial checksum is completed, as the
/// worker does: the real server's kernel would drop it).
fn to_real_server(f: &mut Frame<'_>, port: u8, _n: u64) -> Option<u8> {
    if port != 0 {
        return None;
    }
    if let Ok(m) = wire::parse(f.data()) {
        if m.partial {
            checksum::complete(f.data_mut(), &m);
        }
    }
    wire::set_macs(f.data_mut(), &mac(MAC_R), &mac(MAC_E));
    Some(1)
}

#[test]
fn frames_cross_interfaces_on_the_shared_umem() {
    let Some(lab) = Lab::with(
        "frames_cross_interfaces_on_the_shared_umem",
        Opts {
            server: true,
            ..Opts::default()
        },
    ) else {
        return;
    };
    let cfg = XdpConfig {
        interfaces: vec![IF_D.into(), IF_E.into()],
        ..small_cfg()
    };
    let mut dir =
        Director::start_with(&lab.d, cfg, to_real_server).expect("open AF_XDP on two veths");
    dir.set_rules(&[vip_udp(7000)]);
    // A kernel UDP echo server on the real server, bound to the VIP (held
    // on its loopback, as DR real servers do).
    let (ready_tx, ready) = mpsc::channel();
    let r = lab.r.clone();
    let server = std::thread::spawn(move || {
        xdp::enter_netns(&r).unwrap();
        let s = UdpSocket::bind(v4(VIP, 7000)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 256];
        let mut echoed = 0;
        while echoed < 5 {
            let Ok((n, peer)) = s.recv_from(&mut buf) else {
                break;
            };
            s.send_to(&buf[..n], peer).unwrap();
            echoed += 1;
        }
        echoed
    });
    ready.recv().unwrap();
    for i in 0..5 {
        // Client → director port 0 → (AF_XDP, same chunk) → port 1 → real
        // server; the reply comes back through the director's kernel.
        assert!(
            udp_roundtrip(&lab.c, v4(CLIENT, 0), v4(VIP, 7000), ANSWER),
            "round trip {i}"
        );
    }
    assert_eq!(server.join().unwrap(), 5);
    assert_eq!(dir.counts.frames.load(Ordering::Relaxed), 5);
    let q = dir.stop().unwrap();
    assert_eq!((q.stats().tx, q.stats().tx_invalid), (5, 0));
}

#[test]
fn vlan_tagged_service_traffic_is_steered() {
    // No 802.1Q devices needed (this kernel may lack the module): the
    // client side is AF_XDP too, sending tagged frames and taking the
    // tagged replies with its own steering rule.
    let Some(lab) = Lab::new("vlan_tagged_service_traffic_is_steered") else {
        return;
    };
    let mut dir = Director::start(&lab.d, small_cfg()).expect("open AF_XDP on veth");
    let vip2 = Ipv4Addr::new(10, 199, 4, 100);
    dir.set_rules(&[Rule::Vip {
        proto: Proto::Udp,
        addr: IpAddr::V4(vip2),
        port: 7000,
    }]);
    let replies = in_ns(&lab.c, move || {
        let cfg = XdpConfig {
            interfaces: vec![IF_C.into()],
            ..small_cfg()
        };
        let (mut io, mut qs) = XdpIo::open(&cfg).expect("client AF_XDP");
        io.set_rules(&[Rule::RealServer {
            proto: Proto::Udp,
            addr: IpAddr::V4(vip2),
            port: 0,
        }])
        .unwrap();
        let q = &mut qs[0];
        let frames: Vec<Vec<u8>> = [7000u16, 7001]
            .iter()
            .map(|&p| {
                xvs::gen::packet::vlan(
                    xvs::gen::packet::udp4(CLIENT.octets(), 5000, vip2.octets(), p, b"tag"),
                    100,
                )
            })
            .collect();
        let sent = q.send_new(0, 2, |i, f| {
            f.buf[f.head..f.head + frames[i].len()].copy_from_slice(&frames[i]);
            f.len = frames[i].len();
            true
        });
        assert_eq!(sent, 2);
        let mut replies = Vec::new();
        let deadline = Instant::now() + ANSWER;
        while Instant::now() < deadline && replies.is_empty() {
            let n = q.burst(64, |fs, _, _| {
                for f in fs.iter() {
                    if let Ok(m) = wire::parse(f.data()) {
                        replies.push((m.vlan, m.sport, m.dport, f.data()[14..16].to_vec()));
                    }
                }
            });
            q.idle(n, Duration::from_millis(10));
        }
        // The untagged-port frame (7001) went to the director's kernel: give
        // a stray reply time to show up (none must).
        std::thread::sleep(SILENCE);
        q.burst(64, |fs, _, _| {
            replies.extend(fs.iter().map(|_| (false, 0, 0, vec![])))
        });
        replies
    });
    assert_eq!(
        replies,
        vec![(true, 7000, 5000, vec![0, 100])],
        "one tagged reply, VLAN 100 kept"
    );
    assert_eq!(dir.counts.verified.load(Ordering::Relaxed), 1);
}

/// A lab whose director's veth has two queues, and a configuration that
/// opens both (the hand-off tests' set-up).
fn two_queues(name: &str) -> Option<(Lab, XdpConfig)> {
    let lab = Lab::with(
        name,
        Opts {
            queues: 2,
            ..Opts::default()
        },
    )?;
    let cfg = XdpConfig {
        queues: vec![0, 1],
        ..small_cfg()
    };
    Some((lab, cfg))
}

#[test]
fn handoff_moves_frames_between_workers_without_copies() {
    let Some((lab, cfg)) = two_queues("handoff_moves_frames_between_workers_without_copies") else {
        return;
    };
    let free_at_start = (cfg.chunks_per_queue() - cfg.fill_ring) as usize;
    let stop = Arc::new(AtomicBool::new(false));
    let (io_tx, io_rx) = mpsc::channel();
    let (d, stop2) = (lab.d.clone(), stop.clone());
    // Both workers on one thread: every frame a worker receives is handed
    // to the other, which reflects it and sends it on its own socket.
    let workers = std::thread::spawn(move || {
        xdp::enter_netns(&d).unwrap();
        let (mut io, mut qs) = XdpIo::open(&cfg).expect("open two queues");
        io.set_rules(&[vip_udp(0)]).unwrap();
        io_tx.send(io).unwrap();
        let mut inbox: [Vec<xdp::Handed>; 2] = [Vec::with_capacity(64), Vec::with_capacity(64)];
        while !stop2.load(Ordering::Relaxed) {
            let mut got = 0;
            for (w, q) in qs.iter_mut().enumerate() {
                got += q.burst(64, |frames, _, fates| {
                    for fate in fates.iter_mut().take(frames.len()) {
                        *fate = Fate::Handoff {
                            worker: 1 - w as u16,
                        };
                    }
                });
                q.take_handoffs(|to, h| inbox[to as usize].push(h));
            }
            for (q, items) in qs.iter_mut().zip(inbox.iter_mut()) {
                let items = std::mem::take(items);
                got += q.burst_handed(items, |frames, ports, fates| {
                    for (i, f) in frames.iter_mut().enumerate() {
                        if reflect(f, false) {
                            fates[i] = Fate::Tx { port: ports[i] };
                        }
                    }
                });
            }
            std::thread::sleep(Duration::from_micros(if got == 0 { 500 } else { 0 }));
        }
        // Let the last completions come in, then count every chunk.
        std::thread::sleep(Duration::from_millis(50));
        for q in qs.iter_mut() {
            q.burst(0, |_, _, _| {});
        }
        for q in qs.iter_mut() {
            q.collect_returns();
        }
        qs.iter()
            .map(|q| (q.free_chunks(), *q.stats()))
            .collect::<Vec<_>>()
    });
    let io = io_rx.recv().expect("workers started");
    for i in 0..16u16 {
        // Different source ports spread the flows over both queues.
        assert!(
            udp_roundtrip(&lab.c, v4(CLIENT, 20000 + i), v4(VIP, 7000), ANSWER),
            "round trip {i}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let end = workers.join().unwrap();
    drop(io);
    let handed: u64 = end.iter().map(|(_, s)| s.handed_out).sum();
    let sent: u64 = end.iter().map(|(_, s)| s.tx).sum();
    assert_eq!((handed, sent), (16, 16), "{end:?}");
    for (w, (free, _)) in end.iter().enumerate() {
        assert_eq!(*free, free_at_start, "worker {w} got all its chunks back");
    }
}

/// A worker that sleeps with a bound far beyond the test's patience is
/// woken by the frames another worker hands it (`QueueIo::idle_inbox`,
/// `Inbox`): the frames the client sends to queue 0 are handed to worker
/// 1, which may sleep 60 s at a time, and still every round trip is
/// answered within `ANSWER`, and worker 1 counts the wake-ups.
#[test]
fn a_handed_frame_wakes_its_sleeping_owner() {
    let Some((lab, cfg)) = two_queues("a_handed_frame_wakes_its_sleeping_owner") else {
        return;
    };
    let stop = Arc::new(AtomicBool::new(false));
    let inbox: Arc<xdp::Inbox<xdp::Handed>> = Arc::new(xdp::Inbox::new(1024).unwrap());
    let (io_tx, io_rx) = mpsc::channel();
    let (d, stop0, ib0) = (lab.d.clone(), stop.clone(), inbox.clone());
    // Worker 0: hands every frame it receives to worker 1.
    let w0 = std::thread::spawn(move || {
        xdp::enter_netns(&d).unwrap();
        let (mut io, mut qs) = XdpIo::open(&cfg).expect("open two queues");
        io.set_rules(&[vip_udp(0)]).unwrap();
        let q1 = qs.pop().unwrap();
        let mut q0 = qs.pop().unwrap();
        io_tx.send((io, q1)).unwrap();
        let mut out = Vec::with_capacity(64);
        while !stop0.load(Ordering::Relaxed) {
            let got = q0.burst(64, |frames, _, fates| {
                for fate in fates.iter_mut().take(frames.len()) {
                    *fate = Fate::Handoff { worker: 1 };
                }
            });
            q0.take_handoffs(|_, h| out.push(h));
            // Rung only after a push, as the daemon's worker does: a
            // wake-up worker 1 counts is then one a hand-off made.
            let pushed = !out.is_empty();
            for h in out.drain(..) {
                if let Err(h) = ib0.push(h) {
                    q0.recycle_handed(h);
                }
            }
            if pushed {
                ib0.wake();
            }
            q0.idle(got, Duration::from_millis(5));
        }
        *q0.stats()
    });
    let (io, mut q1) = io_rx.recv().expect("worker 0 started");
    // Worker 1: answers its own frames and the handed ones; sleeps up to
    // 60 s when it has none.
    let (stop1, ib1) = (stop.clone(), inbox.clone());
    let w1 = std::thread::spawn(move || {
        let answer = |frames: &mut [Frame<'_>], ports: &[u8], fates: &mut [Fate]| {
            for (i, f) in frames.iter_mut().enumerate() {
                if reflect(f, false) {
                    fates[i] = Fate::Tx { port: ports[i] };
                }
            }
        };
        while !stop1.load(Ordering::Relaxed) {
            let mut got = q1.burst(64, answer);
            got += q1.burst_handed(std::iter::from_fn(|| ib1.pop()).take(64), answer);
            q1.idle_inbox(got, Duration::from_secs(60), &ib1);
        }
        *q1.stats()
    });
    // Stops both workers on every way out: worker 1 is rung out of its
    // sleep (wake() rings only an armed inbox, so it is tried until the
    // worker has seen the flag).
    struct Stop(Arc<AtomicBool>, Arc<xdp::Inbox<xdp::Handed>>, Option<(JoinHandle<xdp::IoStats>, JoinHandle<xdp::IoStats>)>);
    impl Stop {
        fn join(&mut self) -> Option<(xdp::IoStats, xdp::IoStats)> {
            self.0.store(true, Ordering::Relaxed);
            let (a, b) = self.2.take()?;
            while !b.is_finished() {
                self.1.wake();
                std::thread::sleep(Duration::from_millis(1));
            }
            Some((a.join().ok()?, b.join().ok()?))
        }
    }
    impl Drop for Stop {
        fn drop(&mut self) {
            self.join();
        }
    }
    let mut workers = Stop(stop, inbox.clone(), Some((w0, w1)));
    for i in 0..16u16 {
        // Each request finds worker 1 asleep (its inbox armed), however
        // long a loaded machine took to let it get there; otherwise a
        // handed frame can find it still polling and no wake-up is due.
        let t = Instant::now();
        while !inbox.is_armed() {
            assert!(t.elapsed() < Duration::from_secs(10), "worker 1 never went to sleep");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            udp_roundtrip(&lab.c, v4(CLIENT, 21000 + i), v4(VIP, 7000), ANSWER),
            "round trip {i}"
        );
    }
    let (s0, s1) = workers.join().expect("workers ran");
    drop(io);
    assert!(s0.handed_out > 0, "some flows land on queue 0: {s0:?}");
    assert_eq!((s1.rx, s1.tx), (16, 16), "worker 1 answered every frame, handed or its own: {s1:?}");
    assert!(
        s1.handoff_wakeups > 0 && s1.handoff_wakeups <= s1.sleeps,
        "worker 1 slept and hand-offs woke it: {s1:?}"
    );
}

/// Child half of `no_permission_is_a_clear_error`: tries to open the
/// driver and prints the error.
#[test]
#[ignore = "helper process of no_permission_is_a_clear_error"]
fn unprivileged_child() {
    if std::env::var("XVS_XDP_UNPRIV").is_err() {
        println!(
            "unprivileged_child: only meaningful as a child of no_permission_is_a_clear_error"
        );
        return;
    }
    let cfg = XdpConfig {
        interfaces: vec!["lo".into()],
        ..small_cfg()
    };
    match XdpIo::open(&cfg) {
        Ok(_) => println!("RESULT opened"),
        Err(e) => println!("RESULT {e:?} / {e}"),
    }
}

#[test]
fn no_permission_is_a_clear_error() {
    let cfg = XdpConfig {
        interfaces: vec!["lo".into()],
        ..small_cfg()
    };
    let result = if xdp::is_root() {
        if Command::new("setpriv").arg("--version").output().is_err() {
            println!("SKIP no_permission_is_a_clear_error: setpriv (util-linux) is not installed");
            return;
        }
        // Run the driver as nobody, without capabilities.
        let out = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "unprivileged_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("XVS_XDP_UNPRIV", "1")
            .output()
            .expect("run child");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_once("RESULT ")
            .map(|(_, r)| r.lines().next().unwrap_or("").to_string())
            .unwrap_or(text)
    } else {
        match XdpIo::open(&cfg) {
            Ok(_) => "opened".to_string(),
            Err(e) => format!("{e:?} / {e}"),
        }
    };
    assert!(result.starts_with("NoPermission"), "{result}");
    assert!(
        result.contains("on 'lo'") && result.contains("need root"),
        "{result}"
    );
}
