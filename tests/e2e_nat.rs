//! NAT end to end: a real kernel TCP client fetches through `xvs run` from
//! two real kernel TCP servers on another network; their replies come
//! back through the director, which rewrites their source to the VIP.
//!
//! Topology (`lab::two_legs`): client 10.42.0.2 — d0 10.42.0.1 (+ VIP
//! 10.42.0.100) [director] d1 10.42.1.1 — LAN — rs1 10.42.1.11:8080,
//! rs2 10.42.1.12:8080, whose default route is the director. The
//! director's kernel does not forward: every reply that reaches the client
//! went through xvs. Two workers on two-queue interfaces whose peers send
//! on queue 0 only: worker 1's flows are all handed over. The veths have
//! TX checksum offload off: the clients and servers send full checksums,
//! as behind real NICs.

mod lab;

use lab::{http_gets_from, peer_ip, rs_index, Lab};

const CONFIG: &str = r#"
[[service]]
proto = "tcp"
vip = "10.42.0.100"
port = 80
scheduler = "rr"

  [[service.real_server]]
  ip = "10.42.1.11"
  port = 8080
  mode = "nat"

  [[service.real_server]]
  ip = "10.42.1.12"
  port = 8080
  mode = "nat"
"#;

#[test]
fn nat_replies_come_back_through_the_director() {
    let Some(mut lab) = Lab::new("nat_replies_come_back_through_the_director") else {
        return;
    };
    // The one lab whose senders put full checksums on the wire, as real
    // NICs deliver them (every other lab keeps veth offloads at their
    // defaults: partial checksums).
    lab.full_checksums();
    let t = lab::two_legs(&mut lab, 42, 2, 2, true);
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
    for (i, a) in answers.iter().enumerate() {
        let body = a
            .as_ref()
            .unwrap_or_else(|e| panic!("GET through the VIP failed: {e}\n{}", c.text));
        seen[rs_index(body)] += 1;
        // NAT changes the destination only: the server sees the client.
        assert_eq!(peer_ip(body), clients[i % clients.len()], "{body}");
    }
    assert!(
        seen[0] > 0 && seen[1] > 0,
        "both real servers answer: {seen:?}"
    );
    assert_eq!(c.get("new_conns"), 20, "{}", c.text);
    assert!(c.get("fwd_nat_in") >= 20 * 3, "{}", c.text);
    // Replies pass back through the director (SYN-ACK, response, FIN...).
    assert!(c.get("fwd_nat_out") >= 20 * 2, "{}", c.text);
    assert_eq!(
        c.dest("10.42.1.11", "conns") + c.dest("10.42.1.12", "conns"),
        20
    );
    assert!(
        c.dest("10.42.1.11", "outpkts") > 0 && c.dest("10.42.1.12", "outpkts") > 0,
        "{}",
        c.text
    );
    assert!(c.get("handoffs") > 0, "{}", c.text);
    assert_eq!(c.get("drop_no_conn"), 0, "{}", c.text);
}
