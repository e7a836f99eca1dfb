//! FULLNAT end to end: `xvs run` rewrites both ends, so the real servers
//! see the director's local address as the client and need no route back
//! to the client at all; replies come back through the director.
//!
//! Topology (`lab::two_legs` without the real servers' default route):
//! client 10.44.0.2 — d0 10.44.0.1 (+ VIP 10.44.0.100) [director] d1
//! 10.44.1.1 (+ local address 10.44.1.200) — LAN — rs1 10.44.1.11:8080,
//! rs2 10.44.1.12:8080. Two workers: a reply is owned by the worker its
//! local port names, and all frames arrive on queue 0.

mod lab;

use lab::{http_gets_from, peer_ip, who, Lab};

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
    // From eight client addresses: flows spread over both workers.
    let clients = t.clients();
    let answers = http_gets_from(&t.client, clients.clone(), t.sock(0, 100, 80), 20);
    let c = lab.stop_xvs(x);
    println!("{}\n{}", lab.log(x), c.text);

    let mut seen = [0usize; 2];
    for a in &answers {
        let body = a
            .as_ref()
            .unwrap_or_else(|e| panic!("GET through the VIP failed: {e}\n{}", c.text));
        match who(body) {
            "rs1" => seen[0] += 1,
            "rs2" => seen[1] += 1,
            other => panic!("unexpected answer {other:?}"),
        }
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
}
