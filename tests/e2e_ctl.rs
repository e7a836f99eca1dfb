//! The control plane on a running `xvs run`: while a client keeps one TCP
//! connection open and a loop of new HTTP requests running, `xvsadm`
//! adds and removes services and real servers, changes weights and
//! schedulers, and the configuration is reloaded (SIGHUP and
//! `xvsadm --reload`): 100 changes in all. No request may fail and the
//! open connection must still answer at the end. Then the listings, the
//! workers' statistics and the Prometheus endpoint are read live.
//!
//! Topology (`lab::lan`, DR): client 10.53.0.2–.9 — director d0 10.53.0.1
//! (VIP 10.53.0.100) — r1 .11, r2 .12, r3 .13, each serving HTTP on :80
//! and a line echo on :9000.

mod lab;

use lab::{xvsadm, Lab};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const METRICS: &str = "127.0.0.1:9477";

fn config() -> String {
    r#"
[global]
metrics = "127.0.0.1:9477"
# The churn adds and removes 10.53.0.13 while clients connect: a SYN the
# director gave it just before its removal would otherwise have its
# retransmissions dropped (dest_gone, as IPVS does with the sysctl off)
# until the connect times out; on, they are scheduled afresh. (It is
# quiesced before it is removed, so no answered connection is cut.)
expire_nodest_conn = true

[[service]]
proto = "tcp"
vip = "10.53.0.100"
port = 80
scheduler = "wrr"
  [[service.real_server]]
  ip = "10.53.0.11"
  mode = "dr"
  [[service.real_server]]
  ip = "10.53.0.12"
  mode = "dr"

[[service]]
proto = "tcp"
vip = "10.53.0.100"
port = 9000
scheduler = "rr"
  [[service.real_server]]
  ip = "10.53.0.11"
  mode = "dr"
"#
    .to_string()
}

fn ok(socket: &Path, args: &str) -> String {
    let (code, out, err) = xvsadm(socket, args);
    assert_eq!(code, 0, "xvsadm {args}: {err}");
    out
}

/// A line echo server in `ns` on `addr`, one thread per connection; stops
/// with `stop`.
fn echo_server(ns: &str, addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let ns = ns.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        lab::enter(&ns);
        let l = TcpListener::bind(addr).unwrap();
        l.set_nonblocking(true).unwrap();
        tx.send(()).unwrap();
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((s, _)) => {
                    let stop = stop.clone();
                    std::thread::spawn(move || {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                        let mut w = s.try_clone().unwrap();
                        let mut r = BufReader::new(s);
                        let mut line = String::new();
                        while !stop.load(Ordering::Relaxed) {
                            match r.read_line(&mut line) {
                                Ok(0) => return,
                                Ok(_) => {
                                    let _ = w.write_all(format!("echo {line}").as_bytes());
                                    line.clear();
                                }
                                Err(e)
                                    if e.kind() == std::io::ErrorKind::WouldBlock
                                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                                Err(_) => return,
                            }
                        }
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    rx.recv().unwrap();
    h
}

/// One line over the open connection and its echo.
fn ask(r: &mut BufReader<TcpStream>, line: &str) -> String {
    r.get_mut()
        .write_all(format!("{line}\n").as_bytes())
        .unwrap();
    let mut got = String::new();
    r.read_line(&mut got).unwrap();
    got
}

/// `GET /metrics` from inside the director's namespace.
fn scrape(ns: &str) -> String {
    lab::in_ns(ns, || {
        use std::io::Read;
        let mut s = TcpStream::connect(METRICS).expect("metrics endpoint");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        body.to_string()
    })
}

#[test]
fn live_changes_and_reloads_drop_nothing_and_statistics_are_live() {
    let Some(mut lab) = Lab::new("live_changes_and_reloads_drop_nothing_and_statistics_are_live")
    else {
        return;
    };
    let t = lab::lan(&mut lab, 53, 1, 3);
    let stop = Arc::new(AtomicBool::new(false));
    let mut echo = Vec::new();
    for (i, r) in t.rs.clone().iter().enumerate() {
        lab.http_server(r, "0.0.0.0:80".parse().unwrap(), &format!("rs{}", i + 1));
        echo.push(echo_server(
            r,
            "0.0.0.0:9000".parse().unwrap(),
            stop.clone(),
        ));
    }
    let x = lab.xvs(&t.director, &config(), &["-i", "d0", "--workers", "1"]);
    let sock = lab.socket(x).to_path_buf();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sock).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the control socket is root's only");

    // The connection that stays open through every change.
    let echo_addr = t.sock(0, 100, 9000);
    let mut open = BufReader::new(lab::in_ns(&t.client, move || {
        TcpStream::connect_timeout(&echo_addr, Duration::from_secs(5)).unwrap()
    }));
    open.get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(ask(&mut open, "hello"), "echo hello\n");

    // New requests all the time, from every client address.
    let (done, fails, total) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(AtomicUsize::new(0)),
    );
    let loader = {
        let (done, fails, total) = (done.clone(), fails.clone(), total.clone());
        let (client, srcs, vip) = (t.client.clone(), t.clients(), t.sock(0, 100, 80));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                for r in lab::http_gets_from(&client, srcs.clone(), vip, 8) {
                    total.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = r {
                        fails.lock().unwrap().push(e);
                    }
                }
            }
        })
    };

    let reloads = |lab: &Lab| lab.log(x).matches("applied (snapshot").count();
    let steps = [
        "-A -t 10.53.0.100:81 -s rr",
        "-a -t 10.53.0.100:81 -r 10.53.0.12 -g -w 2",
        "-e -t 10.53.0.100:80 -r 10.53.0.12 -g -w 3",
        "-E -t 10.53.0.100:80 -s wlc",
        "-a -t 10.53.0.100:80 -r 10.53.0.13 -g -w 1",
        "-e -t 10.53.0.100:80 -r 10.53.0.11 -g -w 5",
        // Taken out as an operator does under load: quiesced, drained,
        // then deleted. Deleted at once, a connection it had just
        // answered would lose its request (its next packet finds the
        // server gone; IPVS too then drops it or resets it).
        "-e -t 10.53.0.100:80 -r 10.53.0.13 -g -w 0",
        "-d -t 10.53.0.100:80 -r 10.53.0.13",
        "-D -t 10.53.0.100:81",
        "--reload",
        "SIGHUP",
    ];
    let t0 = Instant::now();
    let mut changes = 0;
    while changes < 100 {
        for step in steps {
            if step == "SIGHUP" {
                let before = reloads(&lab);
                lab.signal(x, "HUP");
                let t1 = Instant::now();
                while reloads(&lab) == before {
                    assert!(
                        t1.elapsed() < Duration::from_secs(5),
                        "no reload after SIGHUP: {}",
                        lab.log(x)
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
            } else {
                let out = ok(&sock, step);
                if step == "--reload" {
                    assert!(out.contains("applied (snapshot"), "{out}");
                }
                if step.ends_with("-w 0") {
                    // Its requests (a few milliseconds each) end.
                    std::thread::sleep(Duration::from_millis(300));
                }
            }
            changes += 1;
            std::thread::sleep(Duration::from_millis(40));
        }
    }
    // Garbage and an oversized request on the socket get errors, while
    // the requests keep flowing (checked below with the rest).
    {
        use std::os::unix::net::UnixStream;
        let mut c = UnixStream::connect(&sock).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"nonsense\n").unwrap();
        let mut r = BufReader::new(c.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.contains("\"bad_request\""), "{line}");
        let big = vec![b'x'; 2 << 20];
        let _ = c.write_all(&big); // the server may close mid-way
        line.clear();
        r.read_line(&mut line).unwrap();
        assert!(line.contains("\"too_large\""), "{line}");
    }
    // A refused change names the problem and changes nothing.
    let before = ok(&sock, "-S -n");
    let (code, _, err) = xvsadm(&sock, "-a -t 10.53.0.100:80 -r 10.53.0.11 -g");
    assert_eq!((code, err.trim()), (1, "Destination already exists"));
    let (code, _, err) = xvsadm(&sock, "-E -t 10.53.0.100:80 -s nosuch");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nosuch"), "{err}");
    assert_eq!(ok(&sock, "-S -n"), before);
    let churn = t0.elapsed();

    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::Relaxed);
    loader.join().unwrap();
    let n = total.load(Ordering::Relaxed);
    {
        // One guard: the message's arguments must not lock again (a failed
        // run hung here instead of saying what failed).
        let fails = fails.lock().unwrap();
        assert!(fails.is_empty(), "{} of {n} requests failed: {:?}", fails.len(), *fails);
    }
    assert!(n >= 50, "only {n} requests during {churn:?}");
    assert_eq!(
        ask(&mut open, "still there?"),
        "echo still there?\n",
        "the open connection survives"
    );

    // The state is the file's again (the last change was a reload).
    assert_eq!(
        ok(&sock, "-S -n"),
        "-A -t 10.53.0.100:80 -s wrr\n-a -t 10.53.0.100:80 -r 10.53.0.11:80 -g -w 1\n-a -t 10.53.0.100:80 -r 10.53.0.12:80 -g -w 1\n\
         -A -t 10.53.0.100:9000 -s rr\n-a -t 10.53.0.100:9000 -r 10.53.0.11:9000 -g -w 1\n"
    );

    // Live statistics: the reports are at most 100 ms old.
    std::thread::sleep(Duration::from_millis(300));
    let stats = ok(&sock, "-L -n --stats");
    let svc_conns = |text: &str, svc: &str| -> u64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("TCP  {svc}")))
            .unwrap_or_else(|| panic!("{svc} in {text}"));
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    assert!(
        svc_conns(&stats, "10.53.0.100:80") >= n as u64 / 2,
        "{stats}"
    );
    assert_eq!(svc_conns(&stats, "10.53.0.100:9000"), 1, "{stats}");
    let conns = ok(&sock, "-L -n -c");
    assert!(
        conns.lines().any(|l| l.contains("ESTABLISHED")
            && l.contains("10.53.0.100:9000")
            && l.contains("10.53.0.11:9000")),
        "{conns}"
    );
    let daemon = ok(&sock, "--stats");
    assert!(
        daemon.contains("All workers:") && daemon.contains("burst time"),
        "{daemon}"
    );
    ok(&sock, "-Z");
    assert_eq!(
        svc_conns(&ok(&sock, "-L -n --stats"), "10.53.0.100:9000"),
        0
    );

    // The Prometheus endpoint: well-formed text with the same figures,
    // raw (never zeroed).
    let text = scrape(&t.director);
    let samples = xvs::stats::prom::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let get = |name: &str, labels: &[(&str, &str)]| {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(a, b)| a == k && b == v))
            })
            .map(|s| s.2)
    };
    assert_eq!(
        get(
            "xvs_service_connections_total",
            &[("service", "TCP 10.53.0.100:9000")]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        get("xvs_rx_packets_total", &[("worker", "0")]).unwrap_or(0.0) > n as f64,
        "{text}"
    );
    assert!(
        get("xvs_burst_duration_seconds_count", &[]).unwrap_or(0.0) > 0.0,
        "{text}"
    );

    assert_eq!(ask(&mut open, "bye"), "echo bye\n");
    drop(open);
    stop.store(true, Ordering::Relaxed);
    for h in echo {
        h.join().unwrap();
    }
    let c = lab.stop_xvs(x);
    assert!(c.get("rx_packets") > 0, "{}", c.text);
    // 10.53.0.13 came in while the kernel did not know its MAC yet: the
    // schedulers passed over it until then, no SYN was scheduled to it
    // and lost.
    assert_eq!(c.get("drop_no_neighbour"), 0, "{}", c.text);
}

/// The director commands of the seeds' three labs (the ipvsadm usage
/// document: lvs-nat, lvs-dr with public addresses, lvs-dr with one public
/// address), run verbatim with `ipvsadm` replaced by `xvsadm` (the socket
/// comes from `$XVS_SOCKET`), each on a cleared director whose interface
/// holds the labs' networks. Then `-L -n` must print ipvsadm's layout and
/// `-S -n` must restore the same state.
#[test]
fn the_seeds_ipvsadm_labs_run_verbatim_against_xvs_run() {
    let Some(mut lab) = Lab::new("the_seeds_ipvsadm_labs_run_verbatim_against_xvs_run") else {
        return;
    };
    let d = lab.ns("d");
    let peer = lab.ns("p");
    lab.veth(&d, "d0", &peer, "p0", 1);
    for a in [
        "172.16.29.1/24",
        "172.16.29.4/32",
        "192.168.95.1/24",
        "192.168.95.20/32",
        "10.0.0.1/24",
    ] {
        lab.ip(&d, &["addr", "add", a, "dev", "d0"]);
    }
    // Started from ipvsadm-save rules rather than TOML.
    let rules = "-A -u 10.0.0.1:53 -s rr\n-a -u 10.0.0.1:53 -r 10.0.0.10:53 -m -w 1\n";
    // Nobody answers ARP for the real servers here: ready once it serves.
    let x = lab.xvs_until(
        &d,
        rules,
        &["-i", "d0", "--workers", "1", "--metrics", "off"],
        "control socket",
    );
    let sock = lab.socket(x).to_path_buf();
    let run = |line: &str| {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[0], "xvsadm");
        let out = Command::new(env!("CARGO_BIN_EXE_xvsadm"))
            .env("XVS_SOCKET", &sock)
            .args(&words[1..])
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(out.status.success(), "{line}: {stderr}");
        stdout
    };
    let row = |addr: &str, fwd: &str, w: u32| {
        format!("  -> {addr:<28} {fwd:<7} {w:<6} {:<10} {:<10}\n", 0, 0)
    };
    let head = "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n";
    let labs: [(&str, String, &str); 3] = [
        (
            "xvsadm -A -t 172.16.29.4:80 -s wrr
             xvsadm -a -t 172.16.29.4:80 -r 192.168.95.2 -m -w 1
             xvsadm -a -t 172.16.29.4:80 -r 192.168.95.3 -m -w 2",
            format!("TCP  172.16.29.4:80 wrr\n{}{}", row("192.168.95.2:80", "Masq", 1), row("192.168.95.3:80", "Masq", 2)),
            "-A -t 172.16.29.4:80 -s wrr\n-a -t 172.16.29.4:80 -r 192.168.95.2:80 -m -w 1\n-a -t 172.16.29.4:80 -r 192.168.95.3:80 -m -w 2\n",
        ),
        (
            "xvsadm -A -t 172.16.29.4:80 -s wrr
             xvsadm -a -t 172.16.29.4:80 -r 172.16.29.10 -g -w 1
             xvsadm -a -t 172.16.29.4:80 -r 172.16.29.20 -g -w 2",
            format!("TCP  172.16.29.4:80 wrr\n{}{}", row("172.16.29.10:80", "Route", 1), row("172.16.29.20:80", "Route", 2)),
            "-A -t 172.16.29.4:80 -s wrr\n-a -t 172.16.29.4:80 -r 172.16.29.10:80 -g -w 1\n-a -t 172.16.29.4:80 -r 172.16.29.20:80 -g -w 2\n",
        ),
        (
            "xvsadm -A -t 192.168.95.20:80 -s wrr
             xvsadm -a -t 192.168.95.20:80 -r 10.0.0.10 -g -w 2
             xvsadm -a -t 192.168.95.20:80 -r 10.0.0.20 -g -w 2",
            format!("TCP  192.168.95.20:80 wrr\n{}{}", row("10.0.0.10:80", "Route", 2), row("10.0.0.20:80", "Route", 2)),
            "-A -t 192.168.95.20:80 -s wrr\n-a -t 192.168.95.20:80 -r 10.0.0.10:80 -g -w 2\n-a -t 192.168.95.20:80 -r 10.0.0.20:80 -g -w 2\n",
        ),
    ];
    assert_eq!(run("xvsadm -S -n"), rules);
    for (commands, table, save) in &labs {
        run("xvsadm -C");
        for line in commands.lines() {
            run(line.trim());
        }
        let list = run("xvsadm -L -n");
        let (version, rest) = list.split_once('\n').unwrap();
        assert_eq!(
            version, "IP Virtual Server version 1.2.1 (size=4096)",
            "{list}"
        );
        assert_eq!(rest, format!("{head}{table}"), "{commands}");
        let saved = run("xvsadm -S -n");
        assert_eq!(saved, *save);
        // -S output restores the same state.
        run("xvsadm -C");
        let mut child = Command::new(env!("CARGO_BIN_EXE_xvsadm"))
            .env("XVS_SOCKET", &sock)
            .arg("-R")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(saved.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(run("xvsadm -L -n"), list, "restored from -S");
    }
    // The config file may be ipvsadm-save rules too: a reload reads them.
    lab.rewrite_config(x, labs[2].2);
    assert!(run("xvsadm --reload").contains("applied (snapshot"));
    assert_eq!(run("xvsadm -S -n"), labs[2].2);
    lab.rewrite_config(
        x,
        "-A -t 192.168.95.20:80 -s wrr\n-a -t 192.168.95.20:81 -r 10.0.0.10 -g\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_xvsadm"))
        .env("XVS_SOCKET", &sock)
        .arg("--reload")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("line 2: Service not defined")
            && err.contains("the running configuration stays"),
        "{err}"
    );
    assert_eq!(run("xvsadm -S -n"), labs[2].2);
    lab.stop_xvs(x);
}
