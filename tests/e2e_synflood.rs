//! A SYN flood on a full connection table, end to end: spoofed SYNs
//! fill every worker's table with embryonic connections while real
//! kernel TCP clients fetch through the VIP.
//! With `drop_entry` (the default) each real SYN evicts an embryonic
//! connection and every request is answered; without it the table stays
//! full of the flood's entries (SYN_RECV lives 60 s) and a real client
//! cannot connect.
//!
//! Topology (`lab::lan`, DR): client 10.<net>.0.2-9, director .1 with the
//! VIP .100, rs1 .11 and rs2 .12. The flood comes from the client's
//! namespace through a raw socket, with sources 10.<net>.0.150-249 that
//! no host holds (the real servers' SYN-ACKs to them go nowhere).

mod lab;

use lab::{http_gets_from, who, Flood, Lab};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

fn config(net: u8, max_conns: usize, drop_entry: bool) -> String {
    format!(
        r#"
[global]
max_conns = {max_conns}
drop_entry = {drop_entry}

[[service]]
proto = "tcp"
vip = "10.{net}.0.100"
port = 80
scheduler = "rr"

  [[service.real_server]]
  ip = "10.{net}.0.11"
  mode = "dr"

  [[service.real_server]]
  ip = "10.{net}.0.12"
  mode = "dr"
"#
    )
}

/// The DR lab on `10.<net>.0.0/24` with two HTTP real servers and xvs
/// running two workers with `max_conns` and `drop_entry`; `None` when
/// the machine cannot run it.
fn flooded_lab(name: &str, net: u8, max_conns: usize, drop_entry: bool) -> Option<(Lab, lab::Topo, usize)> {
    let mut lab = Lab::new(name)?;
    let t = lab::lan(&mut lab, net, 2, 2);
    for (i, r) in t.rs.clone().iter().enumerate() {
        lab.http_server(r, "0.0.0.0:80".parse().unwrap(), &format!("rs{}", i + 1));
    }
    let x = lab.xvs(&t.director, &config(net, max_conns, drop_entry), &["-i", "d0", "--workers", "2"]);
    Some((lab, t, x))
}

#[test]
fn real_clients_get_through_a_syn_flood_on_a_full_table() {
    // 2 × 2000 entries: at the flood's 10 k SYNs per second an embryonic
    // connection lives about 0.4 s before it is evicted, time enough for
    // a real client's handshake on this loaded machine.
    let Some((mut lab, t, x)) = flooded_lab("real_clients_get_through_a_syn_flood_on_a_full_table", 70, 2000, true) else {
        return;
    };
    // The flood fills both tables first...
    let mut flood = Flood::start(&t.client, [10, 70, 0, 100], 80, 0);
    flood.wait_sent(6000);
    // ...and goes on while the clients fetch.
    let answers = http_gets_from(&t.client, t.clients(), t.sock(0, 100, 80), 20);
    let sent = flood.stop();
    let c = lab.stop_xvs(x);
    println!("{}\n{}\nflood: {sent} SYNs", lab.log(x), c.text);
    for a in &answers {
        let body = a
            .as_ref()
            .unwrap_or_else(|e| panic!("GET through the VIP during the flood failed: {e}\n{}", c.text));
        assert!(matches!(who(body), "rs1" | "rs2"), "{body}");
    }
    assert!(sent >= 6000);
    // The flood got in by evicting its own earlier SYNs; so did the
    // clients.
    assert!(c.get("evicted_conns") > 1000, "{}", c.text);
    assert!(c.get("new_conns") > 4000, "{}", c.text);
    assert_eq!(c.get("drop_table_full"), 0, "{}", c.text);
    // Established connections are never evicted: none of the real
    // clients' segments met a missing connection.
    assert_eq!(c.get("drop_no_conn"), 0, "{}", c.text);
}

#[test]
fn without_drop_entry_a_flooded_table_locks_clients_out() {
    let Some((mut lab, t, x)) = flooded_lab("without_drop_entry_a_flooded_table_locks_clients_out", 71, 40, false) else {
        return;
    };
    let mut flood = Flood::start(&t.client, [10, 71, 0, 100], 80, 300);
    let sent = flood.stop();
    // Every table is full of SYN_RECV entries for the next 60 s: a real
    // client's SYNs (and its retransmission a second later) are dropped.
    let vip: SocketAddr = t.sock(0, 100, 80);
    let res = lab::in_ns(&t.client, move || TcpStream::connect_timeout(&vip, Duration::from_millis(1500)).map(|_| ()));
    let c = lab.stop_xvs(x);
    println!("{}\n{}\nflood: {sent} SYNs", lab.log(x), c.text);
    assert!(res.is_err(), "a client connected through a full table without drop_entry: {}", c.text);
    assert!(c.get("drop_table_full") > 0, "{}", c.text);
    assert_eq!(c.get("evicted_conns"), 0, "{}", c.text);
}
