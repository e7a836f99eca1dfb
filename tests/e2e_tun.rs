//! TUN end to end: `xvs run` encapsulates the client's packets in IP-in-IP
//! to two real kernel TCP servers, which decapsulate them and answer the
//! client directly.
//!
//! Topology (`lab::lan`): one LAN; client 10.43.0.2, director 10.43.0.1
//! (+ VIP 10.43.0.100, so its kernel answers ARP for the VIP), rs1
//! 10.43.0.11 and rs2 10.43.0.12 with the VIP on lo. This kernel has no
//! ipip module: the real servers decapsulate with a tc ingress program of
//! the tests' own (`tests/lab/ipip_decap.bpf.c`, built with clang). The
//! director's kernel does not forward.

mod lab;

use lab::{http_gets, peer_ip, who, Lab};

const CONFIG: &str = r#"
[[service]]
proto = "tcp"
vip = "10.43.0.100"
port = 80
scheduler = "rr"

  [[service.real_server]]
  ip = "10.43.0.11"
  mode = "tun"

  [[service.real_server]]
  ip = "10.43.0.12"
  mode = "tun"
"#;

#[test]
fn tun_real_servers_decapsulate_and_answer_directly() {
    let test = "tun_real_servers_decapsulate_and_answer_directly";
    let Some(mut lab) = Lab::new(test) else {
        return;
    };
    if let Err(e) = lab::ipip_decap_object() {
        println!("SKIP {test}: {e}");
        return;
    }
    let t = lab::lan(&mut lab, 43, 1, 2);
    for (i, r) in t.rs.clone().iter().enumerate() {
        lab.ipip_decap(r, "eth0");
        // The decapsulated packet arrives on eth0 for an address on lo.
        lab.sysctl(r, "net.ipv4.conf.all.rp_filter=0");
        lab.sysctl(r, "net.ipv4.conf.eth0.rp_filter=0");
        lab.http_server(r, "0.0.0.0:80".parse().unwrap(), &format!("rs{}", i + 1));
    }
    let x = lab.xvs(&t.director, CONFIG, &["-i", "d0"]);
    let answers = http_gets(&t.client, t.sock(0, 100, 80), 10);
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
        // The inner packet is the client's own.
        assert_eq!(peer_ip(body).to_string(), t.addr(0, 2), "{body}");
    }
    assert_eq!(seen, [5, 5], "rr over two real servers, one worker");
    assert_eq!(c.get("new_conns"), 10);
    assert!(c.get("fwd_tun_in") >= 10 * 3, "{}", c.text);
    // Replies bypass the director.
    assert_eq!(c.get("fwd_tun_out"), 0);
    assert_eq!(c.get("drop_too_big"), 0, "{}", c.text);
}
