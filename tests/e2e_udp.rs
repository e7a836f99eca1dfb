//! UDP end to end through `xvs run` in NAT mode: datagrams from a real
//! kernel UDP client reach two real kernel UDP servers on another port,
//! and their answers come back from the VIP:port the client asked.
//!
//! Topology (`lab::two_legs`): client 10.45.0.2 — director (VIP
//! 10.45.0.100:53) — rs1 10.45.1.11:5353, rs2 10.45.1.12:5353, whose
//! default route is the director. Two workers.

mod lab;

use lab::{peer_ip, rs_index, udp_ask, Lab};

const CONFIG: &str = r#"
[timeouts]
udp = 30

[[service]]
proto = "udp"
vip = "10.45.0.100"
port = 53
scheduler = "rr"

  [[service.real_server]]
  ip = "10.45.1.11"
  port = 5353
  mode = "nat"

  [[service.real_server]]
  ip = "10.45.1.12"
  port = 5353
  mode = "nat"
"#;

#[test]
fn udp_datagrams_are_balanced_and_answered_from_the_vip() {
    let Some(mut lab) = Lab::new("udp_datagrams_are_balanced_and_answered_from_the_vip") else {
        return;
    };
    let t = lab::two_legs(&mut lab, 45, 2, 2, true);
    for (i, r) in t.rs.clone().iter().enumerate() {
        lab.udp_server(r, "0.0.0.0:5353".parse().unwrap(), &format!("rs{}", i + 1));
    }
    let x = lab.xvs(
        &t.director,
        CONFIG,
        &["-i", "d0", "-i", "d1", "--workers", "2"],
    );
    let vip = t.sock(0, 100, 53);
    let asked = udp_ask(&t.client, vip, 20);
    let c = lab.stop_xvs(x);
    println!("{}\n{}", lab.log(x), c.text);

    let mut seen = [0usize; 2];
    for a in &asked.answers {
        let (body, from) = a.as_ref().unwrap_or_else(|e| panic!("{e}\n{}", c.text));
        assert_eq!(*from, vip, "the answer comes from the VIP:port asked");
        assert_eq!(peer_ip(body).to_string(), t.addr(0, 2), "{body}");
        seen[rs_index(body)] += 1;
    }
    assert!(
        seen[0] > 0 && seen[1] > 0,
        "both real servers answer: {seen:?}"
    );
    assert_eq!(
        c.get("new_conns"),
        20,
        "one UDP connection per client socket:\n{}",
        c.text
    );
    // Every datagram sent is forwarded (a question asked again after a
    // late answer is one more), and every answer the clients got came
    // back through xvs (a late answer to a repeat may still be on its way
    // when xvs stops).
    assert_eq!(c.get("fwd_nat_in"), asked.sent as u64, "{}", c.text);
    let out = c.get("fwd_nat_out");
    assert!((20..=asked.sent as u64).contains(&out), "{out} answers for {} sent:\n{}", asked.sent, c.text);
}
