//! The seeds' wrr lab on real connections: rs1 weight 1, rs2 weight 2;
//! over 30 connections exactly 10 go to rs1 and 20 to rs2. One worker
//! (each worker schedules on its own, as each IPVS CPU would share one
//! scheduler; with one worker the split is exact). Then a SIGHUP reload
//! to weights 1:1 changes the split of the next connections, and an
//! invalid file on SIGHUP changes nothing.
//!
//! Topology (`lab::two_legs`, NAT): client 10.46.0.2 — director (VIP
//! 10.46.0.100:80) — rs1 10.46.1.11:8080, rs2 10.46.1.12:8080.

mod lab;

use lab::{http_gets, rs_index, Lab};
use std::time::Duration;

fn config(w1: u32, w2: u32) -> String {
    format!(
        r#"
[[service]]
proto = "tcp"
vip = "10.46.0.100"
port = 80
scheduler = "wrr"

  [[service.real_server]]
  ip = "10.46.1.11"
  port = 8080
  weight = {w1}
  mode = "nat"

  [[service.real_server]]
  ip = "10.46.1.12"
  port = 8080
  weight = {w2}
  mode = "nat"
"#
    )
}

fn split(answers: &[Result<String, String>]) -> [usize; 2] {
    let mut seen = [0usize; 2];
    for a in answers {
        seen[rs_index(a.as_ref().unwrap_or_else(|e| panic!("GET failed: {e}")))] += 1;
    }
    seen
}

#[test]
fn wrr_one_to_two_over_thirty_connections_then_reload() {
    let Some(mut lab) = Lab::new("wrr_one_to_two_over_thirty_connections_then_reload") else {
        return;
    };
    let t = lab::two_legs(&mut lab, 46, 1, 2, true);
    for (i, r) in t.rs.clone().iter().enumerate() {
        lab.http_server(r, "0.0.0.0:8080".parse().unwrap(), &format!("rs{}", i + 1));
    }
    let x = lab.xvs(
        &t.director,
        &config(1, 2),
        &["-i", "d0", "-i", "d1", "--workers", "1"],
    );
    let vip = t.sock(0, 100, 80);
    assert_eq!(split(&http_gets(&t.client, vip, 30)), [10, 20]);

    // An invalid file on SIGHUP is refused whole: still 1:2.
    lab.rewrite_config(x, &config(1, 2).replace("\"wrr\"", "\"nope\""));
    lab.signal(x, "HUP");
    lab.wait_log(x, "the running configuration stays", Duration::from_secs(5));
    assert_eq!(split(&http_gets(&t.client, vip, 30)), [10, 20]);

    // A valid one is applied: 1:1.
    lab.rewrite_config(x, &config(1, 1));
    lab.signal(x, "HUP");
    lab.wait_log(x, "applied (snapshot", Duration::from_secs(5));
    assert_eq!(split(&http_gets(&t.client, vip, 30)), [15, 15]);

    let c = lab.stop_xvs(x);
    assert_eq!(c.dest("10.46.1.11", "conns"), 35, "{}", c.text);
    assert_eq!(c.dest("10.46.1.12", "conns"), 55, "{}", c.text);
    assert!(
        lab.log(x).contains("unknown scheduler 'nope'"),
        "{}",
        lab.log(x)
    );
}
