//! A real server whose MAC nobody knows: xvs asks the kernel to resolve it,
//! never sends anything to another MAC, and schedules no connection to it:
//! every request reaches a live real server at its first SYN (before, one
//! in three SYNs was scheduled to it and dropped as `no_neighbour`, and
//! that client waited a second for its retransmission).
//!
//! Topology (`lab::lan`, DR): client 10.48.0.2, director 10.48.0.1 (+ VIP
//! 10.48.0.100), rs1 10.48.0.11, rs2 10.48.0.12; the config also lists
//! 10.48.0.13, which does not exist.

mod lab;

use lab::{http_gets, who, Lab};
use std::time::Duration;

const CONFIG: &str = r#"
[[service]]
proto = "tcp"
vip = "10.48.0.100"
port = 80
scheduler = "rr"
  [[service.real_server]]
  ip = "10.48.0.11"
  mode = "dr"
  [[service.real_server]]
  ip = "10.48.0.12"
  mode = "dr"
  [[service.real_server]]
  ip = "10.48.0.13"
  mode = "dr"
"#;

#[test]
fn an_unknown_neighbour_is_resolved_by_the_kernel_and_never_guessed() {
    let Some(mut lab) =
        Lab::new("an_unknown_neighbour_is_resolved_by_the_kernel_and_never_guessed")
    else {
        return;
    };
    let t = lab::lan(&mut lab, 48, 1, 2);
    for (i, r) in t.rs.clone().iter().enumerate() {
        lab.http_server(r, "0.0.0.0:80".parse().unwrap(), &format!("rs{}", i + 1));
    }
    let x = lab.xvs_until(
        &t.director,
        CONFIG,
        &["-i", "d0"],
        "next hop 10.48.0.12 on d0 resolved",
    );
    lab.wait_log(
        x,
        "resolving next hop 10.48.0.13 on d0",
        Duration::from_secs(2),
    );
    let answers = http_gets(&t.client, t.sock(0, 100, 80), 4);
    let neigh = lab.exec(&t.director, &["ip", "neigh", "show", "10.48.0.13"]);
    let c = lab.stop_xvs(x);
    println!("{}\n{}\n{neigh}", lab.log(x), c.text);

    for a in &answers {
        let body = a
            .as_ref()
            .unwrap_or_else(|e| panic!("GET failed: {e}\n{}", c.text));
        assert!(matches!(who(body), "rs1" | "rs2"), "{body}");
    }
    assert_eq!(
        c.get("drop_no_neighbour"),
        0,
        "a SYN was scheduled to 10.48.0.13:\n{}",
        c.text
    );
    assert_eq!(
        c.dest("10.48.0.13", "conns"),
        0,
        "no connection to a server without a MAC"
    );
    assert_eq!(c.dest("10.48.0.13", "inpkts"), 0);
    // The kernel tried (and failed) to resolve it: xvs prompted it.
    assert!(
        neigh.contains("10.48.0.13") && !neigh.contains("lladdr"),
        "{neigh}"
    );
}
