//! IPv6 end to end: real kernel TCP clients fetch through an IPv6 VIP
//! from real kernel servers, in NAT and in FULLNAT (with the client's
//! IPv6 address in the 20-byte TOA option), and in DR and TUN
//! (IPv6-in-IPv6) on one LAN.
//!
//! Topology (like `lab::two_legs`, IPv6 only; `nodad` so addresses are
//! usable at once): client fd00:<net>::2 — d0 fd00:<net>::1 (+ VIP
//! fd00:<net>::100/128) [director] d1 fd00:<net>:1::1 — LAN — rs1
//! fd00:<net>:1::11, rs2 fd00:<net>:1::12 on port 8080. NAT: the real
//! servers' default route is the director. FULLNAT: they have no route to
//! the client; the local address fd00:<net>:1::200 is on d1 (/128,
//! deprecated so the kernel never uses it as a source) so the director's
//! kernel answers neighbour solicitations for it. The
//! director's kernel does not forward: every answer went through xvs.

mod lab;

use lab::{http_gets, peer_ip, rs_index, who, Lab};
use std::net::SocketAddr;

struct V6Topo {
    client: String,
    director: String,
    rs: Vec<String>,
}

fn topo(lab: &mut Lab, net: u8, rs_via_director: bool) -> V6Topo {
    let c = lab.ns("c");
    let d = lab.ns("d");
    let sw = lab.ns("sw");
    lab.veth(&d, "d0", &c, "c0", 2);
    lab.veth(&d, "d1", &sw, "sw-d", 2);
    let a = |s: &str| format!("fd00:{net}:{s}");
    lab.ip(&c, &["-6", "addr", "add", &format!("{}/64", a(":2")), "dev", "c0", "nodad"]);
    lab.ip(&d, &["-6", "addr", "add", &format!("{}/64", a(":1")), "dev", "d0", "nodad"]);
    lab.ip(&d, &["-6", "addr", "add", &format!("{}/128", a(":100")), "dev", "d0", "nodad"]);
    lab.ip(&d, &["-6", "addr", "add", &format!("{}/64", a("1::1")), "dev", "d1", "nodad"]);
    lab.sysctl(&d, "net.ipv6.conf.all.forwarding=0");
    let mut ports = vec!["sw-d".to_string()];
    let mut rs = Vec::new();
    for i in 0..2 {
        let r = lab.ns(&format!("r{}", i + 1));
        let sp = format!("sw-r{}", i + 1);
        lab.veth(&r, "eth0", &sw, &sp, 1);
        lab.ip(&r, &["-6", "addr", "add", &format!("{}/64", a(&format!("1::1{}", i + 1))), "dev", "eth0", "nodad"]);
        if rs_via_director {
            lab.ip(&r, &["-6", "route", "add", "default", "via", &a("1::1")]);
        }
        ports.push(sp);
        rs.push(r);
    }
    let p: Vec<&str> = ports.iter().map(String::as_str).collect();
    lab.bridge(&sw, &p);
    V6Topo { client: c, director: d, rs }
}

fn config(net: u8, mode: &str) -> String {
    let laddrs = if mode == "fullnat" { format!("local_addresses = [\"fd00:{net}:1::200\"]") } else { String::new() };
    format!(
        r#"
[[service]]
proto = "tcp"
vip = "fd00:{net}::100"
port = 80
scheduler = "rr"
{laddrs}

  [[service.real_server]]
  ip = "fd00:{net}:1::11"
  port = 8080
  mode = "{mode}"

  [[service.real_server]]
  ip = "fd00:{net}:1::12"
  port = 8080
  mode = "{mode}"
"#
    )
}

/// Runs `n` GETs through the VIP in `mode`; returns the answers' bodies
/// and the counters xvs printed.
fn run(name: &str, net: u8, mode: &str, n: usize) -> Option<(Vec<String>, lab::Counters)> {
    let mut lab = Lab::new(name)?;
    let t = topo(&mut lab, net, mode == "nat");
    if mode == "fullnat" {
        // Deprecated at once (preferred_lft 0): the kernel still answers
        // neighbour solicitations for it but never picks it as the source
        // of its own traffic (RFC 6724 rule 3), which xvs would refuse.
        lab.ip(
            &t.director,
            &["-6", "addr", "add", &format!("fd00:{net}:1::200/128"), "dev", "d1", "nodad", "preferred_lft", "0"],
        );
    }
    for (i, r) in t.rs.iter().enumerate() {
        lab.http_server(r, "[::]:8080".parse().unwrap(), &format!("rs{}", i + 1));
    }
    let x = lab.xvs(&t.director, &config(net, mode), &["-i", "d0", "-i", "d1", "--workers", "2"]);
    let vip: SocketAddr = format!("[fd00:{net}::100]:80").parse().unwrap();
    let answers = http_gets(&t.client, vip, n);
    let c = lab.stop_xvs(x);
    println!("{}\n{}", lab.log(x), c.text);
    let bodies = answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|e| panic!("GET through [fd00:{net}::100]:80 failed: {e}\n{}", c.text)))
        .collect();
    Some((bodies, c))
}

#[test]
fn ipv6_nat_through_the_director() {
    let Some((bodies, c)) = run("ipv6_nat_through_the_director", 72, "nat", 10) else {
        return;
    };
    let mut seen = [0; 2];
    for b in &bodies {
        seen[rs_index(b)] += 1;
        assert_eq!(peer_ip(b).to_string(), "fd00:72::2", "NAT keeps the client's address: {b}");
    }
    assert_eq!(seen, [5, 5], "rr over both servers");
    assert_eq!(c.get("new_conns"), 10, "{}", c.text);
    assert!(c.get("fwd_nat_in") >= 30 && c.get("fwd_nat_out") >= 20, "{}", c.text);
    assert_eq!(c.get("drop_no_conn"), 0, "{}", c.text);
}

#[test]
fn ipv6_fullnat_with_toa() {
    let Some((bodies, c)) = run("ipv6_fullnat_with_toa", 73, "fullnat", 10) else {
        return;
    };
    for b in &bodies {
        assert!(matches!(who(b), "rs1" | "rs2"), "{b}");
        assert_eq!(peer_ip(b).to_string(), "fd00:73:1::200", "the server sees the local address: {b}");
    }
    assert_eq!(c.get("new_conns"), 10, "{}", c.text);
    assert!(c.get("fwd_fullnat_in") >= 30 && c.get("fwd_fullnat_out") >= 20, "{}", c.text);
    assert_eq!(c.get("toa_added"), 10, "every handshake ACK carried the IPv6 TOA: {}", c.text);
    assert_eq!(c.get("drop_no_conn"), 0, "{}", c.text);
}

/// One IPv6 LAN `fd00:<net>::/64` on a bridge: client ::2, director ::1
/// with the VIP ::100/128 (its kernel answers neighbour solicitations for
/// it), rs1 ::11 and rs2 ::12 with the VIP on lo (a Linux host answers
/// solicitations only for the addresses of the link they arrive on, so
/// the VIP on lo stays silent) and an HTTP server on port 80; `tun`: the
/// real servers decapsulate IPv6-in-IPv6 (tests/lab/ipip_decap.bpf.c).
/// Runs xvs in `mode`, 10 GETs, and checks them and the counters.
fn lan_mode(name: &str, net: u8, mode: &str) {
    let Some(mut lab) = Lab::new(name) else {
        return;
    };
    if mode == "tun" {
        if let Err(e) = lab::ipip_decap_object() {
            println!("SKIP {name}: {e}");
            return;
        }
    }
    let (c, d, sw) = (lab.ns("c"), lab.ns("d"), lab.ns("sw"));
    lab.veth(&d, "d0", &sw, "sw-d", 2);
    lab.veth(&c, "c0", &sw, "sw-c", 1);
    let a = |h: &str| format!("fd00:{net}::{h}");
    lab.ip(&c, &["-6", "addr", "add", &format!("{}/64", a("2")), "dev", "c0", "nodad"]);
    lab.ip(&d, &["-6", "addr", "add", &format!("{}/64", a("1")), "dev", "d0", "nodad"]);
    lab.ip(&d, &["-6", "addr", "add", &format!("{}/128", a("100")), "dev", "d0", "nodad"]);
    lab.sysctl(&d, "net.ipv6.conf.all.forwarding=0");
    let mut ports = vec!["sw-d".to_string(), "sw-c".to_string()];
    for i in 0..2 {
        let r = lab.ns(&format!("r{}", i + 1));
        let sp = format!("sw-r{}", i + 1);
        lab.veth(&r, "eth0", &sw, &sp, 1);
        lab.ip(&r, &["-6", "addr", "add", &format!("{}/64", a(&format!("1{}", i + 1))), "dev", "eth0", "nodad"]);
        lab.ip(&r, &["-6", "addr", "add", &format!("{}/128", a("100")), "dev", "lo", "nodad"]);
        if mode == "tun" {
            lab.ipip_decap(&r, "eth0");
        }
        lab.http_server(&r, "[::]:80".parse().unwrap(), &format!("rs{}", i + 1));
        ports.push(sp);
    }
    let p: Vec<&str> = ports.iter().map(String::as_str).collect();
    lab.bridge(&sw, &p);
    let config = format!(
        r#"
[[service]]
proto = "tcp"
vip = "{vip}"
port = 80
scheduler = "rr"

  [[service.real_server]]
  ip = "{rs1}"
  mode = "{mode}"

  [[service.real_server]]
  ip = "{rs2}"
  mode = "{mode}"
"#,
        vip = a("100"),
        rs1 = a("11"),
        rs2 = a("12"),
    );
    let x = lab.xvs(&d, &config, &["-i", "d0", "--workers", "2"]);
    let vip: SocketAddr = format!("[{}]:80", a("100")).parse().unwrap();
    let answers = http_gets(&c, vip, 10);
    let cn = lab.stop_xvs(x);
    println!("{}\n{}", lab.log(x), cn.text);
    let mut seen = [0; 2];
    for r in &answers {
        let b = r.as_ref().unwrap_or_else(|e| panic!("GET through {vip} failed: {e}\n{}", cn.text));
        seen[rs_index(b)] += 1;
        assert_eq!(peer_ip(b).to_string(), a("2"), "{mode} keeps the client's packet: {b}");
    }
    assert_eq!(seen, [5, 5], "rr over both servers");
    assert_eq!(cn.get("new_conns"), 10, "{}", cn.text);
    assert!(cn.get(&format!("fwd_{mode}_in")) >= 30, "{}", cn.text);
    assert_eq!(cn.get(&format!("fwd_{mode}_out")), 0, "replies go straight to the client: {}", cn.text);
    assert_eq!(cn.get("drop_too_big"), 0, "{}", cn.text);
}

#[test]
fn ipv6_dr_real_servers_answer_directly() {
    lan_mode("ipv6_dr_real_servers_answer_directly", 74, "dr");
}

#[test]
fn ipv6_tun_real_servers_decapsulate_and_answer_directly() {
    lan_mode("ipv6_tun_real_servers_decapsulate_and_answer_directly", 75, "tun");
}
