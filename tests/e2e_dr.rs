//! DR end to end: a real kernel TCP client fetches through `xvs run` from
//! two real kernel TCP servers that hold the VIP on lo; the replies go
//! straight from the real servers to the client.
//!
//! Topology (`lab::lan`): one LAN; client 10.41.0.2, director 10.41.0.1
//! with the VIP 10.41.0.100 on its interface (its kernel answers ARP for
//! the VIP), rs1 10.41.0.11 and rs2 10.41.0.12 with the VIP on lo
//! (arp_ignore=1, arp_announce=2). The director's interface has two queues
//! and xvs runs two workers, but the LAN delivers everything on queue 0:
//! worker 1 only gets its flows by hand-off.

mod lab;

use lab::{http_gets_from, peer_ip, rs_index, Lab};

const CONFIG: &str = r#"
[[service]]
proto = "tcp"
vip = "10.41.0.100"
port = 80
scheduler = "rr"

  [[service.real_server]]
  ip = "10.41.0.11"
  mode = "dr"

  [[service.real_server]]
  ip = "10.41.0.12"
  mode = "dr"
"#;

#[test]
fn dr_real_servers_answer_the_client_directly() {
    let Some(mut lab) = Lab::new("dr_real_servers_answer_the_client_directly") else {
        return;
    };
    let t = lab::lan(&mut lab, 41, 2, 2);
    for (i, r) in t.rs.clone().iter().enumerate() {
        lab.http_server(r, "0.0.0.0:80".parse().unwrap(), &format!("rs{}", i + 1));
    }
    let x = lab.xvs(&t.director, CONFIG, &["-i", "d0", "--workers", "2"]);
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
        // DR keeps the packet: the server sees the client itself.
        assert_eq!(peer_ip(body), clients[i % clients.len()], "{body}");
    }
    assert!(
        seen[0] > 0 && seen[1] > 0,
        "both real servers answer: {seen:?}"
    );
    assert_eq!(c.get("new_conns"), 20, "{}", c.text);
    // veth has no RSS to follow (the ethtool ioctl answers EOPNOTSUPP):
    // two workers own flows by the client hash, and the log says so.
    assert!(
        lab.log(x).contains("ownership: hash (the client address's hash): d0: the driver has no RSS hash configuration (EOPNOTSUPP)"),
        "{}",
        lab.log(x)
    );
    assert!(
        c.get("fwd_dr_in") >= 20 * 3,
        "SYN, ACK, request, FIN... per connection:\n{}",
        c.text
    );
    // The replies bypass the director: xvs never saw one (it has no path
    // for DR replies) and the director's kernel does not forward.
    assert_eq!(c.get("fwd_dr_out"), 0);
    assert_eq!(c.get("drop_no_conn"), 0, "{}", c.text);
    assert_eq!(
        c.dest("10.41.0.11", "conns") + c.dest("10.41.0.12", "conns"),
        20
    );
    // Offloads at their defaults: the client's kernel leaves partial
    // checksums, which DR would otherwise carry unchanged to the real
    // servers, whose kernels drop them.
    assert!(c.get("csum_completed") >= 20, "{}", c.text);
    assert!(
        c.get("handoffs") > 0,
        "worker 1's flows arrive on queue 0 and are handed over:\n{}",
        c.text
    );
}
