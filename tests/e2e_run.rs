//! `xvs run`'s life, end to end: started without a configuration, as
//! IPVS is, with `xvsadm` filling its table; a control request whose
//! handler panics while traffic flows (forwarding must go on, XDP stay
//! attached); a worker that dies (the process must end non-zero with
//! its XDP programs detached, so a supervisor restarts it).
//!
//! The two panics are injected (`xvs::daemon::fault`): nothing real may
//! panic a running director, so the tests arm a trigger with
//! `XVS_TEST_FAULT`, which exists only in builds with debug assertions —
//! the profile `cargo test` builds the binary in. Under
//! `cargo test --release` those two tests print SKIP.
//!
//! Topology (`lab::lan`, DR, offloads at their defaults): client
//! 10.<net>.0.2–.9 — director d0 .1 (VIP .100) — r1 .11, r2 .12.

mod lab;

use lab::{http_gets_from, rs_index, xvsadm, Lab};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xvs::ctl::control::{Client, Request};

fn config(net: u8) -> String {
    format!(
        r#"
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

fn lan_with_servers(lab: &mut Lab, net: u8) -> lab::Topo {
    let t = lab::lan(lab, net, 1, 2);
    for (i, r) in t.rs.clone().iter().enumerate() {
        lab.http_server(r, "0.0.0.0:80".parse().unwrap(), &format!("rs{}", i + 1));
    }
    t
}

/// `xvs run -i d0` with no configuration starts with an empty table;
/// xvsadm adds a service and two real servers; traffic flows through
/// them, and `xvsadm -S` shows what was added. `--reload` has no file
/// to read and says so.
#[test]
fn starts_empty_and_xvsadm_fills_the_table() {
    let Some(mut lab) = Lab::new("starts_empty_and_xvsadm_fills_the_table") else {
        return;
    };
    let t = lan_with_servers(&mut lab, 61);
    let x = lab.xvs_with(&t.director, None, &["-i", "d0"], &[], xvs::daemon::LOG_HOPS_RESOLVED);
    let sock = lab.socket(x).to_path_buf();
    let (code, out, err) = xvsadm(&sock, "-L -n");
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("10.61.0.100"), "the table starts empty:\n{out}");
    for cmd in [
        "-A -t 10.61.0.100:80 -s rr",
        "-a -t 10.61.0.100:80 -r 10.61.0.11 -g",
        "-a -t 10.61.0.100:80 -r 10.61.0.12 -g",
    ] {
        let (code, _, err) = xvsadm(&sock, cmd);
        assert_eq!(code, 0, "xvsadm {cmd}: {err}\n{}", lab.log(x));
    }
    // The real servers' MACs are resolved after they were added: the
    // first connections may wait for that.
    let vip = t.sock(0, 100, 80);
    let t0 = Instant::now();
    while http_gets_from(&t.client, t.clients(), vip, 1)[0].is_err() {
        assert!(t0.elapsed() < Duration::from_secs(10), "no answer through the VIP:\n{}", lab.log(x));
    }
    let answers = http_gets_from(&t.client, t.clients(), vip, 10);
    let mut seen = [0; 2];
    for a in &answers {
        seen[rs_index(a.as_ref().unwrap_or_else(|e| panic!("GET: {e}\n{}", lab.log(x))))] += 1;
    }
    assert!(seen[0] > 0 && seen[1] > 0, "rr over both: {seen:?}");
    let (_, saved, _) = xvsadm(&sock, "-S -n");
    assert!(saved.contains("-A -t 10.61.0.100:80 -s rr"), "{saved}");
    assert!(saved.contains("-r 10.61.0.12:80 -g"), "{saved}");
    let (code, _, err) = xvsadm(&sock, "--reload");
    assert_ne!(code, 0);
    assert!(err.contains("without --config"), "{err}");
    let c = lab.stop_xvs(x);
    assert!(c.get("new_conns") >= 10, "{}", c.text);
    assert!(c.get("csum_completed") > 0, "a default veth lab sends partial checksums:\n{}", c.text);
}

/// While a client fetches through the VIP in a loop, a control request
/// makes the handler panic: the request fails with an internal error,
/// the XDP program stays attached, every fetch succeeds, the control
/// socket still serves, and xvs stops cleanly.
#[test]
fn a_panicking_control_request_leaves_forwarding_intact() {
    if !cfg!(debug_assertions) {
        println!("SKIP a_panicking_control_request_leaves_forwarding_intact: the fault trigger exists in debug builds only");
        return;
    }
    let Some(mut lab) = Lab::new("a_panicking_control_request_leaves_forwarding_intact") else {
        return;
    };
    let t = lan_with_servers(&mut lab, 62);
    let env = [(xvs::daemon::fault::ENV, xvs::daemon::fault::Fault::ControlPanic.name())];
    let x = lab.xvs_with(&t.director, Some(&config(62)), &["-i", "d0"], &env, xvs::daemon::LOG_HOPS_RESOLVED);
    let sock = lab.socket(x).to_path_buf();
    let vip = t.sock(0, 100, 80);
    // Traffic before, during and after the panic.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (c, clients) = (t.client.clone(), t.clients());
    let (stop2, ok2, failed2) = (stop.clone(), ok.clone(), failed.clone());
    let traffic = std::thread::spawn(move || {
        while !stop2.load(Ordering::Relaxed) {
            for a in http_gets_from(&c, clients.clone(), vip, 4) {
                match a {
                    Ok(_) => ok2.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed2.fetch_add(1, Ordering::Relaxed),
                };
            }
        }
    });
    let wait_ok = |n: usize| {
        let t0 = Instant::now();
        while ok.load(Ordering::Relaxed) < n && t0.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_ok(8);
    let before = ok.load(Ordering::Relaxed);
    let mut cl = Client::connect(&sock, Duration::from_secs(2)).expect("control socket");
    let r = cl.request(&Request::Ping).expect("an answer, not a dropped connection");
    let e = r.error.expect("the handler panicked: an error reply");
    assert!(e.message.contains("internal error"), "{e:?}");
    assert!(lab.xdp_attached(&t.director, "d0"), "the panic detached XDP:\n{}", lab.log(x));
    wait_ok(before + 20);
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    assert!(lab.xdp_attached(&t.director, "d0"));
    let (code, out, err) = xvsadm(&sock, "-L -n");
    assert_eq!(code, 0, "the control socket still serves: {err}");
    assert!(out.contains("10.62.0.100:80"), "{out}");
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let c = lab.stop_xvs(x);
    assert!(ok >= before + 20, "fetches went on after the panic: {ok} ok, {failed} failed\n{}", lab.log(x));
    assert_eq!(failed, 0, "no fetch failed\n{}\n{}", lab.log(x), c.text);
}

/// A worker that dies ends the process: exit status 1, a message naming
/// the worker and its panic, and the XDP program detached (the director's
/// kernel gets its interface back).
#[test]
fn a_dead_worker_ends_the_process_with_xdp_detached() {
    if !cfg!(debug_assertions) {
        println!("SKIP a_dead_worker_ends_the_process_with_xdp_detached: the fault trigger exists in debug builds only");
        return;
    }
    let Some(mut lab) = Lab::new("a_dead_worker_ends_the_process_with_xdp_detached") else {
        return;
    };
    let t = lan_with_servers(&mut lab, 63);
    let env = [(xvs::daemon::fault::ENV, xvs::daemon::fault::Fault::WorkerPanic.name())];
    let x = lab.xvs_with(&t.director, Some(&config(63)), &["-i", "d0"], &env, xvs::daemon::LOG_HOPS_RESOLVED);
    assert!(lab.xdp_attached(&t.director, "d0"));
    // The first frames the worker handles kill it; the fetch may fail.
    let _ = http_gets_from(&t.client, t.clients(), t.sock(0, 100, 80), 1);
    let (status, _) = lab.wait_exit(x, Duration::from_secs(10));
    let log = lab.log(x);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("xvs-worker-0 died: panicked: test fault worker-panic"), "{log}");
    assert!(log.contains("exit status 1"), "{log}");
    assert!(!lab.xdp_attached(&t.director, "d0"), "XDP left attached:\n{log}");
}
