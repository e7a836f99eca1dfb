//! Egress by route and link, end to end: real kernel clients and servers
//! through `xvs run`.
//!
//! - A NAT real server behind a static route: the director reaches it
//!   through a router namespace (`ip route add 10.63.9.0/24 via
//!   10.63.1.254` on the director, added while xvs runs: it follows the
//!   kernel's main table over netlink).
//! - A NAT real server on VLAN 20 of the director's d1: with the kernel's
//!   own `d1.20` device when the kernel has 802.1Q (found over netlink,
//!   xvs bound to d1); and, on any kernel, with the VLAN given in the
//!   config (the real server's side is an access port made by a tc
//!   program, `tests/lab/vlan_tag.bpf.c`). Frames to the real server must
//!   carry tag 20 (it drops anything else), its replies arrive tagged and
//!   leave untagged towards the client.
//!
//! Client 10.N.0.2 — d0 10.N.0.1 (+ VIP 10.N.0.100) [director] d1. The
//! director's kernel does not forward: every answer went through xvs.

mod lab;

use lab::{http_gets, peer_ip, sh, who, Lab, Topo};
use std::path::PathBuf;
use std::time::Duration;

/// The client and the director's client side; the rest is the test's.
fn client_side(lab: &mut Lab, net: u8) -> Topo {
    let c = lab.ns("c");
    let d = lab.ns("d");
    let t = Topo { client: c.clone(), director: d.clone(), switch: String::new(), rs: Vec::new(), net };
    lab.veth(&d, "d0", &c, "c0", 1);
    lab.ip(&c, &["addr", "add", &format!("{}/24", t.addr(0, 2)), "dev", "c0"]);
    lab.ip(&d, &["addr", "add", &format!("{}/24", t.addr(0, 1)), "dev", "d0"]);
    lab.ip(&d, &["addr", "add", &format!("{}/32", t.addr(0, 100)), "dev", "d0"]);
    lab.sysctl(&d, "net.ipv4.ip_forward=0");
    t
}

/// A router namespace on the director's d1 (10.N.1.1 — 10.N.1.254) and a
/// real server behind it (10.N.9.254 — 10.N.9.11, its eth0); the router
/// forwards. Returns (router, real server).
fn behind_router(lab: &mut Lab, t: &Topo) -> (String, String) {
    let (rt, r) = (lab.ns("rt"), lab.ns("r1"));
    lab.veth(&t.director, "d1", &rt, "r0", 1);
    lab.veth(&rt, "r1", &r, "eth0", 1);
    lab.ip(&t.director, &["addr", "add", &format!("{}/24", t.addr(1, 1)), "dev", "d1"]);
    lab.ip(&rt, &["addr", "add", &format!("{}/24", t.addr(1, 254)), "dev", "r0"]);
    lab.ip(&rt, &["addr", "add", &format!("{}/24", t.addr(9, 254)), "dev", "r1"]);
    lab.sysctl(&rt, "net.ipv4.ip_forward=1");
    lab.ip(&r, &["addr", "add", &format!("{}/24", t.addr(9, 11)), "dev", "eth0"]);
    (rt, r)
}

fn nat_service(t: &Topo, rs: &str) -> String {
    format!(
        "[[service]]\nproto = \"tcp\"\nvip = \"{}\"\nport = 80\nscheduler = \"rr\"\n  [[service.real_server]]\n  ip = \"{rs}\"\n  port = 8080\n  mode = \"nat\"\n",
        t.addr(0, 100)
    )
}

/// Fetches `n` times through the VIP and checks that every answer came
/// from `rs` and saw the client's own address.
fn fetch(lab: &mut Lab, t: &Topo, x: usize, n: usize) -> lab::Counters {
    let answers = http_gets(&t.client, t.sock(0, 100, 80), n);
    let c = lab.stop_xvs(x);
    println!("{}\n{}", lab.log(x), c.text);
    for a in &answers {
        let body = a.as_ref().unwrap_or_else(|e| panic!("GET through the VIP failed: {e}\n{}", c.text));
        assert_eq!(who(body), "rs", "{body}");
        assert_eq!(peer_ip(body).to_string(), t.addr(0, 2), "NAT keeps the client's address: {body}");
    }
    assert_eq!(c.get("new_conns"), n as u64, "{}", c.text);
    assert!(c.get("fwd_nat_in") >= 3 * n as u64 && c.get("fwd_nat_out") >= 2 * n as u64, "{}", c.text);
    assert_eq!(c.get("drop_no_conn") + c.get("drop_other_host") + c.get("drop_unknown_vlan"), 0, "{}", c.text);
    c
}

#[test]
fn a_real_server_behind_a_static_route_is_reached_through_the_router() {
    let Some(mut lab) = Lab::new("a_real_server_behind_a_static_route_is_reached_through_the_router") else {
        return;
    };
    let t = client_side(&mut lab, 63);
    let (rt, r) = behind_router(&mut lab, &t);
    // Replies to the client go back through the director (NAT).
    lab.ip(&rt, &["route", "add", "default", "via", &t.addr(1, 1)]);
    lab.ip(&r, &["route", "add", "default", "via", &t.addr(9, 254)]);
    lab.http_server(&r, "0.0.0.0:8080".parse().unwrap(), "rs");
    let rs = t.addr(9, 11);
    // Without the route the real server has no next hop; the kernel's
    // route, added while xvs runs, gives it the router's MAC.
    let x = lab.xvs(&t.director, &nat_service(&t, &rs), &["-i", "d0", "-i", "d1"]);
    lab.ip(&t.director, &["route", "add", &format!("{}/24", t.addr(9, 0)), "via", &t.addr(1, 254)]);
    lab.wait_log(x, &format!("next hop {} on d1 resolved", t.addr(1, 254)), Duration::from_secs(5));
    let c = fetch(&mut lab, &t, x, 4);
    assert_eq!(c.dest(&rs, "conns"), 4);
}

/// Compiles `tests/lab/vlan_tag.bpf.c` for VLAN 20 (once per process).
fn vlan_tag_object() -> Result<PathBuf, String> {
    static OBJ: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    OBJ.get_or_init(|| {
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/lab/vlan_tag.bpf.c");
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("vlan_tag-{}.o", std::process::id()));
        sh(&["clang", "-O2", "-target", "bpf", "-DVID=20", "-c", src.to_str().unwrap(), "-o", out.to_str().unwrap()])
            .map_err(|e| format!("clang: {e}"))?;
        Ok(out)
    })
    .clone()
}

/// A real server namespace `r1` on the director's d1, with its MAC
/// `02:00:00:00:14:0b` and `10.N.20.11/24` on eth0; `access` makes eth0
/// a VLAN-20 access port (tc), else the test gives it a VLAN device.
fn vlan_real_server(lab: &mut Lab, t: &Topo) -> String {
    let r = lab.ns("r1");
    lab.veth(&t.director, "d1", &r, "eth0", 1);
    lab.ip(&r, &["link", "set", "eth0", "address", "02:00:00:00:14:0b"]);
    // Tags written into the frame, where XDP on the director sees them
    // (a veth's VLAN offload would carry them beside it).
    lab.exec(&r, &["ethtool", "-K", "eth0", "txvlan", "off"]);
    r
}

#[test]
fn a_real_server_on_a_kernel_vlan_sub_interface() {
    let Some(mut lab) = Lab::new("a_real_server_on_a_kernel_vlan_sub_interface") else {
        return;
    };
    let t = client_side(&mut lab, 64);
    let r = vlan_real_server(&mut lab, &t);
    if let Err(e) = sh(&["ip", "-n", &t.director, "link", "add", "link", "d1", "name", "d1.20", "type", "vlan", "id", "20"]) {
        println!("SKIP a_real_server_on_a_kernel_vlan_sub_interface: this kernel has no 802.1Q VLAN devices ({e}); see a_real_server_on_a_configured_vlan");
        return;
    }
    lab.ip(&t.director, &["link", "set", "d1.20", "up"]);
    lab.ip(&t.director, &["addr", "add", &format!("{}/24", t.addr(20, 1)), "dev", "d1.20"]);
    lab.ip(&r, &["link", "add", "link", "eth0", "name", "eth0.20", "type", "vlan", "id", "20"]);
    lab.ip(&r, &["link", "set", "eth0.20", "up"]);
    lab.ip(&r, &["addr", "add", &format!("{}/24", t.addr(20, 11)), "dev", "eth0.20"]);
    lab.ip(&r, &["route", "add", "default", "via", &t.addr(20, 1)]);
    lab.http_server(&r, "0.0.0.0:8080".parse().unwrap(), "rs");
    let rs = t.addr(20, 11);
    // xvs runs on d1 and finds d1.20 itself; the kernel resolves the real
    // server on d1.20.
    let x = lab.xvs(&t.director, &nat_service(&t, &rs), &["-i", "d0", "-i", "d1"]);
    let c = fetch(&mut lab, &t, x, 4);
    assert_eq!(c.dest(&rs, "conns"), 4);
    refused_on(&t.director, "d1.20", "d1");
}

/// `xvs run -i <sub>` stops at once, naming the port to use instead.
fn refused_on(ns: &str, sub: &str, port: &str) {
    let cfg = std::env::temp_dir().join(format!("xvs-refused-{}-{sub}.toml", std::process::id()));
    std::fs::write(&cfg, "").unwrap();
    let bin = env!("CARGO_BIN_EXE_xvs");
    let r = sh(&["timeout", "20", "ip", "netns", "exec", ns, bin, "run", "--config", cfg.to_str().unwrap(), "-i", sub]);
    let _ = std::fs::remove_file(&cfg);
    let e = r.expect_err("xvs run on a sub-interface must fail");
    assert!(e.contains(&format!("'{sub}' is a sub-interface (VLAN or macvlan) of '{port}': run xvs on '{port}' (-i {port})")), "{e}");
}

#[test]
fn a_sub_interface_is_refused_as_a_port() {
    let Some(mut lab) = Lab::new("a_sub_interface_is_refused_as_a_port") else {
        return;
    };
    let t = client_side(&mut lab, 66);
    // A macvlan (what keepalived's use_vmac makes); the same for a VLAN.
    lab.ip(&t.director, &["link", "add", "link", "d0", "name", "vrrp.51", "type", "macvlan"]);
    refused_on(&t.director, "vrrp.51", "d0");
}

#[test]
fn a_real_server_on_a_configured_vlan() {
    let Some(mut lab) = Lab::new("a_real_server_on_a_configured_vlan") else {
        return;
    };
    let obj = match vlan_tag_object() {
        Ok(o) => o,
        Err(e) => {
            println!("SKIP a_real_server_on_a_configured_vlan: {e}");
            return;
        }
    };
    let t = client_side(&mut lab, 65);
    let r = vlan_real_server(&mut lab, &t);
    let o = obj.to_str().unwrap();
    lab.exec(&r, &["tc", "qdisc", "add", "dev", "eth0", "clsact"]);
    lab.exec(&r, &["tc", "filter", "add", "dev", "eth0", "ingress", "bpf", "direct-action", "obj", o, "sec", "tc"]);
    lab.exec(&r, &["tc", "filter", "add", "dev", "eth0", "egress", "bpf", "direct-action", "obj", o, "sec", "tc_egress"]);
    lab.ip(&r, &["addr", "add", &format!("{}/24", t.addr(20, 11)), "dev", "eth0"]);
    lab.ip(&r, &["route", "add", "default", "via", &t.addr(20, 1)]);
    // The director's kernel has no VLAN 20 to answer ARP on.
    let d1_mac = lab.exec(&t.director, &["cat", "/sys/class/net/d1/address"]);
    lab.ip(&r, &["neigh", "add", &t.addr(20, 1), "lladdr", d1_mac.trim(), "dev", "eth0", "nud", "permanent"]);
    lab.http_server(&r, "0.0.0.0:8080".parse().unwrap(), "rs");
    let rs = t.addr(20, 11);
    let config = format!(
        "[[interface]]\nname = \"d0\"\n\n[[interface]]\nname = \"d1\"\n\n\
         [[interface]]\nname = \"d1.20\"\nlink = \"d1\"\nvlan = 20\naddresses = [\"{}/24\"]\n\n\
         [[neighbour]]\nip = \"{rs}\"\nmac = \"02:00:00:00:14:0b\"\n\n{}",
        t.addr(20, 1),
        nat_service(&t, &rs)
    );
    let x = lab.xvs(&t.director, &config, &["-i", "d0", "-i", "d1"]);
    let c = fetch(&mut lab, &t, x, 4);
    assert_eq!(c.dest(&rs, "conns"), 4);
}

/// A TUN real server behind a router whose link to it has a smaller MTU:
/// the client's datagram with DF, once encapsulated, is too big there, the
/// router's "fragmentation needed" goes to the tunnel's source (the
/// director's own address, where the steering program must hand it to
/// xvs, not to the kernel), and xvs tells the client the MTU less the
/// tunnel header, as `ip_vs_in_icmp` does. The client's kernel then
/// knows the path MTU to the VIP. Live, through AF_XDP, default veths.
#[test]
fn a_router_s_fragmentation_needed_about_our_tunnel_reaches_the_client() {
    use std::os::fd::AsRawFd;
    let Some(mut lab) = Lab::new("a_router_s_fragmentation_needed_about_our_tunnel_reaches_the_client") else {
        return;
    };
    let t = client_side(&mut lab, 67);
    let (rt, r) = behind_router(&mut lab, &t);
    lab.ip(&rt, &["link", "set", "r1", "mtu", "1400"]);
    lab.ip(&r, &["link", "set", "eth0", "mtu", "1400"]);
    lab.ip(&t.director, &["route", "add", &format!("{}/24", t.addr(9, 0)), "via", &t.addr(1, 254)]);
    let config = format!(
        "[[service]]\nproto = \"udp\"\nvip = \"{}\"\nport = 5000\nscheduler = \"rr\"\n  [[service.real_server]]\n  ip = \"{}\"\n  mode = \"tun\"\n",
        t.addr(0, 100),
        t.addr(9, 11)
    );
    let x = lab.xvs_until(&t.director, &config, &["-i", "d0", "-i", "d1"], xvs::daemon::LOG_HOPS_RESOLVED);
    let vip = t.sock(0, 100, 5000);
    // 1450 bytes of IP with DF: 1470 once encapsulated, over the router's
    // 1400. Sent until the client's kernel has the path MTU (the first
    // may be lost while a neighbour is resolved), at most 10 times.
    let learnt = lab::in_ns(&t.client, move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let on: libc::c_int = libc::IP_PMTUDISC_DO;
        // SAFETY: on outlives the call; the length is its size.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "IP_MTU_DISCOVER: {}", std::io::Error::last_os_error());
        s.connect(vip).unwrap();
        for _ in 0..10 {
            match s.send(&[0x5a; 1450 - 28]) {
                Ok(_) => std::thread::sleep(Duration::from_millis(300)),
                // The kernel refuses what exceeds the path MTU it learnt.
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => return Ok(()),
                Err(e) => return Err(format!("send: {e}")),
            }
        }
        Err("the client never learnt a smaller path MTU to the VIP".to_string())
    });
    let route = lab.exec(&t.client, &["ip", "route", "get", &t.addr(0, 100)]);
    let c = lab.stop_xvs(x);
    println!("{}\n{}\n{route}", lab.log(x), c.text);
    learnt.unwrap_or_else(|e| panic!("{e}\n{route}\n{}", c.text));
    assert!(route.contains("mtu 1380"), "the router's 1400 less the tunnel's 20: {route}");
    assert!(c.get("icmp_relayed") >= 1, "{}", c.text);
    assert!(c.get("fwd_tun_in") >= 1, "{}", c.text);
}
