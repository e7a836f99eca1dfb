//! The SYN proxy end to end: a spoofed SYN flood against synproxy
//! services (FULLNAT on :80, NAT on :81) while real kernel TCP clients
//! fetch through both. The director answers every SYN with a cookie and
//! keeps nothing for it; only the clients' valid ACKs open connections,
//! so the connection table grows by the real connections alone — not
//! one entry for the flood — and every fetch succeeds.
//!
//! Topology (`lab::two_legs`, the real servers routed through the
//! director for NAT): client 10.77.0.2-9 — d0 [director, VIP .0.100,
//! local address 10.77.1.200] d1 — rs1 10.77.1.11, rs2 .12. The flood
//! comes from the client's namespace through a raw socket with sources
//! 10.77.0.150-249 that no host holds (the cookie SYN-ACKs to them go
//! nowhere).

mod lab;

use lab::{http_gets_from, peer_ip, who, Flood, Lab};

const CONFIG: &str = r#"
[[service]]
proto = "tcp"
vip = "10.77.0.100"
port = 80
scheduler = "rr"
local_addresses = ["10.77.1.200"]
synproxy = true

  [[service.real_server]]
  ip = "10.77.1.11"
  mode = "fullnat"

  [[service.real_server]]
  ip = "10.77.1.12"
  mode = "fullnat"

[[service]]
proto = "tcp"
vip = "10.77.0.100"
port = 81
scheduler = "rr"
synproxy = true

  [[service.real_server]]
  ip = "10.77.1.11"
  port = 80
  mode = "nat"

  [[service.real_server]]
  ip = "10.77.1.12"
  port = 80
  mode = "nat"
"#;

#[test]
fn real_clients_connect_through_a_spoofed_syn_flood_and_the_table_stays_flat() {
    let Some(mut lab) = Lab::new("real_clients_connect_through_a_spoofed_syn_flood_and_the_table_stays_flat") else {
        return;
    };
    let t = lab::two_legs(&mut lab, 77, 2, 2, true);
    lab.ip(&t.director, &["addr", "add", "10.77.1.200/32", "dev", "d1"]);
    for (i, r) in t.rs.clone().iter().enumerate() {
        lab.http_server(r, "0.0.0.0:80".parse().unwrap(), &format!("rs{}", i + 1));
    }
    let x = lab.xvs(&t.director, CONFIG, &["-i", "d0", "-i", "d1", "--workers", "2"]);
    let mut flood = Flood::start(&t.client, [10, 77, 0, 100], 80, 0);
    flood.wait_sent(3000);
    const N: usize = 20;
    let fullnat = http_gets_from(&t.client, t.clients(), t.sock(0, 100, 80), N);
    let nat = http_gets_from(&t.client, t.clients(), t.sock(0, 100, 81), N);
    let sent = flood.stop();
    let c = lab.stop_xvs(x);
    println!("{}\n{}\nflood: {sent} SYNs", lab.log(x), c.text);
    for (answers, what) in [(&fullnat, "fullnat"), (&nat, "nat")] {
        for a in answers {
            let body = a.as_ref().unwrap_or_else(|e| panic!("{what}: GET through the SYN proxy during the flood failed: {e}\n{}", c.text));
            assert!(matches!(who(body), "rs1" | "rs2"), "{body}");
            // FULLNAT: the server sees the local address; NAT: the client
            let peer = peer_ip(body).to_string();
            if what == "fullnat" {
                assert_eq!(peer, "10.77.1.200", "{body}");
            } else {
                assert!(peer.starts_with("10.77.0."), "{body}");
            }
        }
    }
    assert!(sent >= 3000);
    // Every connection the table ever held is a real client's: the flood
    // made none.
    let real = 2 * N as u64;
    assert_eq!(c.get("new_conns"), real, "{}", c.text);
    assert_eq!(c.get("synproxy_ack"), real, "{}", c.text);
    assert_eq!(c.get("synproxy_spliced"), real, "{}", c.text);
    assert!(c.get("synproxy_syn") >= real + sent / 2, "the flood's SYNs were answered: {}", c.text);
    assert_eq!(c.get("drop_synproxy_bad_ack"), 0, "{}", c.text);
    assert_eq!(c.get("drop_no_conn"), 0, "{}", c.text);
}
