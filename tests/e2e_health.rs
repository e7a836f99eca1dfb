//! Health checks end to end: `xvs run` in the namespace lab checks real
//! servers that really fail, and the traffic of a steady client follows.
//!
//! - Failover (NAT, three real servers running `python3 -m http.server`,
//!   two workers, clients from eight addresses): the test kills one
//!   server's HTTP process; within interval × fall (+ one interval, + slack
//!   for this loaded machine) the director publishes a snapshot without
//!   it, after which no new connection goes to it and no request fails;
//!   restarted, it gets traffic again within interval × rise (+ slack).
//! - Agent and sorry server (NAT, a TCP check on each of two servers, an
//!   HAProxy-style agent on one): `drain` takes it out of new connections
//!   and `ready` brings it back, `down # reason` fails it with the
//!   agent's reason; when both HTTP processes die the sorry server answers
//!   every request, and leaves when one server comes back.
//! - Every kind of check (ICMP, TCP, HTTP, exec, agent, UDP, DNS; HTTPS
//!   is covered by the checker's unit tests) runs from the director's
//!   namespace against real servers in theirs and passes; a UDP check of
//!   a closed port takes its server down; a check shared by two services
//!   runs once (`users=2`).
//!
//! Times come from the xvs log (`<unix time> LEVEL target: message`, the
//! line `health: snapshot N published: ...` is written once the snapshot
//! is live) and the client's clock (same machine). Namespaces, processes
//! and threads are cleaned up by guards, also when an assertion fails.

mod lab;

use lab::Lab;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Seconds since the epoch (to compare with [`logged_at`]).
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The time of the first xvs log line containing `what` (its RFC 3339
/// stamp, as seconds since the epoch).
fn logged_at(log: &str, what: &str) -> Option<f64> {
    log.lines()
        .find(|l| l.contains(what))
        .and_then(|l| l.split_whitespace().next())
        .and_then(xvs::health::logger::parse_rfc3339)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
}

/// Why the HTTP servers of these tests cannot run here, if they cannot.
fn no_python() -> Option<String> {
    match Command::new("python3").arg("--version").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("`python3` is not installed (make deps)".into()),
    }
}

/// `python3 -m http.server` in a namespace, serving an index.html that
/// says its name. Killed (SIGKILL) by [`HttpProc::kill`] or on drop.
struct HttpProc {
    ns: String,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl HttpProc {
    fn start(ns: &str, port: u16, name: &str) -> HttpProc {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("xvs-hc-{}-{ns}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), format!("{name}\n")).unwrap();
        let mut p = HttpProc {
            ns: ns.to_string(),
            port,
            dir,
            child: None,
        };
        p.restart();
        p
    }

    /// Starts the process and waits until it accepts connections.
    fn restart(&mut self) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "python3", "-m", "http.server"])
            .arg(self.port.to_string())
            .args(["--bind", "0.0.0.0", "--directory"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning python3");
        self.child = Some(child);
        let port = self.port;
        let t0 = Instant::now();
        loop {
            let up = lab::in_ns(&self.ns, move || {
                TcpStream::connect_timeout(
                    &SocketAddr::from(([127, 0, 0, 1], port)),
                    Duration::from_millis(200),
                )
                .is_ok()
            });
            if up {
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("python3 http.server in {} exited: {st}", self.ns);
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "python3 http.server in {} did not start",
                self.ns
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (`ip netns exec` execs python: the child is python).
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for HttpProc {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The next client port: every connection of the client loops gets its
/// own, so a request's port names it (the failover test reuses the ports
/// of chosen earlier requests on purpose).
fn next_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(20000);
    let p = NEXT.fetch_add(1, Ordering::Relaxed);
    assert!(p < 60000, "out of client ports");
    p
}

/// One GET through `vip` from `from`:`port`: the server's name (the body).
fn get(from: IpAddr, port: u16, vip: SocketAddr) -> Result<String, String> {
    let mut s = lab::connect_from(from, port, vip, Some(Duration::from_secs(2)))?;
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {vip}\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)
        .map_err(|e| format!("read: {e}"))?;
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP response: {resp:?}"))?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(format!("status: {head}"));
    }
    Ok(body.trim().to_string())
}

/// One request of the client loop.
#[derive(Clone, Debug)]
struct Req {
    start: f64,
    end: f64,
    from: IpAddr,
    port: u16,
    res: Result<String, String>,
}

/// A client in a namespace running GETs in a steady loop (from each of
/// `from` in turn, `gap` apart) until dropped or [`Client::stop`]ped.
struct Client {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Req>>>,
    handle: Option<JoinHandle<()>>,
}

impl Client {
    fn start(ns: &str, from: Vec<IpAddr>, vip: SocketAddr, gap: Duration) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ns, stop2, log2) = (ns.to_string(), stop.clone(), log.clone());
        let handle = std::thread::spawn(move || {
            lab::enter(&ns);
            let mut i = 0;
            while !stop2.load(Ordering::Relaxed) {
                let src = from[i % from.len()];
                i += 1;
                let start = now();
                let port = next_port();
                let res = get(src, port, vip);
                log2.lock().unwrap().push(Req {
                    start,
                    end: now(),
                    from: src,
                    port,
                    res,
                });
                std::thread::sleep(gap);
            }
        });
        Client {
            stop,
            log,
            handle: Some(handle),
        }
    }

    fn requests(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }

    fn stop(&mut self) -> Vec<Req> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.requests()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until the client has made `n` more requests.
fn wait_requests(c: &Client, n: usize) {
    let have = c.requests().len();
    let t0 = Instant::now();
    while c.requests().len() < have + n {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the client loop stalled"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Renders requests for a failure message.
fn show(reqs: &[&Req], t0: f64) -> String {
    reqs.iter()
        .map(|r| {
            format!(
                "  {:+.3}..{:+.3} from {}: {:?}",
                r.start - t0,
                r.end - t0,
                r.from,
                r.res
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// Check timing of these tests: a short interval, fall 2, rise 2. Slack for
// a loaded 2-CPU machine is added to every bound, separately.
const INTERVAL: f64 = 0.3;
const FALL: f64 = 2.0;
const RISE: f64 = 2.0;
/// The jitter the checks are configured with (10%, the default).
const JITTER: f64 = 0.1;
/// Scheduling delays on this machine: threads of the engine, the
/// manager, the director, python starting up.
const SLACK: f64 = 0.8;
/// From "published" to every worker forwarding with the new snapshot
/// (workers switch between bursts; an adaptive worker sleeps ≤ 50 ms).
const SWITCH: f64 = 0.1;

fn http_check(port: u16) -> String {
    format!(
        r#"
    [service.real_server.check]
    type = "http"
    port = {port}
    path = "/"
    status = [200]
    regex = "^rs"
    interval = "{}ms"
    timeout = "250ms"
    fall = {}
    rise = {}
"#,
        (INTERVAL * 1000.0) as u32,
        FALL as u32,
        RISE as u32
    )
}

fn nat_rs(ip: &str, extra: &str) -> String {
    format!(
        r#"
  [[service.real_server]]
  ip = "{ip}"
  port = 8080
  mode = "nat"
{extra}"#
    )
}

#[test]
fn a_killed_server_leaves_rotation_and_comes_back() {
    let name = "a_killed_server_leaves_rotation_and_comes_back";
    if let Some(why) = no_python() {
        println!("SKIP {name}: {why}");
        return;
    }
    let Some(mut lab) = Lab::new(name) else {
        return;
    };
    let t = lab::two_legs(&mut lab, 60, 2, 3, true);
    let mut rs: Vec<HttpProc> = (0..3)
        .map(|i| HttpProc::start(&t.rs[i], 8080, &format!("rs{}", i + 1)))
        .collect();
    let mut config = r#"
[[service]]
proto = "tcp"
vip = "10.60.0.100"
port = 80
scheduler = "rr"
"#
    .to_string();
    for i in 0..3 {
        config += &nat_rs(&t.addr(1, 11 + i), &http_check(8080));
    }
    let x = lab.xvs(
        &t.director,
        &config,
        &["-i", "d0", "-i", "d1", "--workers", "2"],
    );
    let mut client = Client::start(
        &t.client,
        t.clients(),
        t.sock(0, 100, 80),
        Duration::from_millis(10),
    );
    wait_requests(&client, 60);

    let t_kill = now();
    rs[0].kill();
    lab.wait_log(x, "10.60.1.11:8080 down", Duration::from_secs(15));
    let log = lab.log(x);
    let t_down = logged_at(&log, "10.60.1.11:8080 down").unwrap();
    wait_requests(&client, 100);
    // Port reuse while rs1 is down: clients SYN again from the ports of
    // finished connections that rs1 served (still in the director's table,
    // in TIME_WAIT). IPVS's conn_reuse_mode (1, the default) ends those
    // connections and schedules the SYNs afresh: they must reach rs2 or
    // rs3, not the old, dead server.
    let served_by_rs1: Vec<(IpAddr, u16)> = client
        .requests()
        .iter()
        .filter(|r| r.end < t_kill && r.res.as_deref() == Ok("rs1"))
        .take(6)
        .map(|r| (r.from, r.port))
        .collect();
    assert!(served_by_rs1.len() >= 3, "rs1 served {} requests before the kill", served_by_rs1.len());
    let vip = t.sock(0, 100, 80);
    let again = lab::in_ns(&t.client, {
        let ports = served_by_rs1.clone();
        move || ports.iter().map(|&(from, port)| (from, port, get(from, port, vip))).collect::<Vec<_>>()
    });
    for (from, port, res) in &again {
        assert!(
            matches!(res.as_deref(), Ok("rs2" | "rs3")),
            "a SYN from {from}:{port} (a finished connection to rs1) got {res:?}"
        );
    }

    rs[0].restart();
    let t_listen = now();
    lab.wait_log(x, "10.60.1.11:8080 up", Duration::from_secs(15));
    let log = lab.log(x);
    let t_up = logged_at(&log, "10.60.1.11:8080 up").unwrap();
    wait_requests(&client, 60);
    let reqs = client.stop();
    let c = lab.stop_xvs(x);
    let log = lab.log(x);
    println!("{log}\n{}", c.text);

    let all: Vec<&Req> = reqs.iter().collect();
    let detect = t_down - t_kill;
    let back = t_up - t_listen;
    println!(
        "{} requests; down published {detect:.3} s after the kill, up {back:.3} s after the restart",
        reqs.len()
    );
    // Detection: the first failing run within one interval of the kill,
    // `fall` failures in a row, each interval ± jitter.
    let detect_bound = INTERVAL * (1.0 + JITTER) * (FALL + 1.0) + SLACK;
    assert!(
        detect > 0.0 && detect <= detect_bound,
        "down published {detect:.3} s after the kill, bound {detect_bound:.3} s"
    );
    let rise_bound = INTERVAL * (1.0 + JITTER) * (RISE + 1.0) + SLACK;
    assert!(
        back > 0.0 && back <= rise_bound,
        "up published {back:.3} s after the restart, bound {rise_bound:.3} s"
    );
    // Before the kill: every request answered, by all three.
    let before: Vec<&Req> = all.iter().copied().filter(|r| r.end < t_kill).collect();
    let bad: Vec<&Req> = before.iter().copied().filter(|r| r.res.is_err()).collect();
    assert!(
        bad.is_empty(),
        "failures before the kill:\n{}",
        show(&bad, t_kill)
    );
    for n in ["rs1", "rs2", "rs3"] {
        assert!(
            before.iter().any(|r| r.res.as_deref() == Ok(n)),
            "{n} answered before the kill"
        );
    }
    // From the published snapshot on (and so from the detection deadline
    // on, which is later): no failure at all, and rs1 answers nothing
    // until it is back.
    let after: Vec<&Req> = all
        .iter()
        .copied()
        .filter(|r| r.start > t_down + SWITCH)
        .collect();
    assert!(after.len() > 50, "{} requests after detection", after.len());
    let bad: Vec<&Req> = after.iter().copied().filter(|r| r.res.is_err()).collect();
    assert!(
        bad.is_empty(),
        "failures after the down snapshot ({} requests in flight at the kill or before detection may fail):\n{}",
        all.iter().filter(|r| r.end >= t_kill && r.start <= t_down + SWITCH && r.res.is_err()).count(),
        show(&bad, t_kill)
    );
    let to_dead: Vec<&Req> = after
        .iter()
        .copied()
        .filter(|r| r.end < t_up && r.res.as_deref() == Ok("rs1"))
        .collect();
    assert!(
        to_dead.is_empty(),
        "rs1 answered while down:\n{}",
        show(&to_dead, t_kill)
    );
    let between: Vec<&Req> = after.iter().copied().filter(|r| r.end < t_up).collect();
    assert!(
        between.iter().any(|r| r.res.as_deref() == Ok("rs2"))
            && between.iter().any(|r| r.res.as_deref() == Ok("rs3")),
        "rs2 and rs3 took over"
    );
    // Back: rs1 answers again, soon after the up snapshot.
    let first_back = all
        .iter()
        .find(|r| r.start > t_up + SWITCH && r.res.as_deref() == Ok("rs1"))
        .unwrap_or_else(|| panic!("rs1 never answered after coming back"));
    assert!(
        first_back.start - t_up <= 1.0,
        "rs1's first answer started {:.3} s after the up snapshot",
        first_back.start - t_up
    );
    // Counted: one down, one up, in the counters printed at stop.
    assert_eq!(c.get("health_downs"), 1, "{}", c.text);
    assert_eq!(c.get("health_ups"), 1, "{}", c.text);
    assert_eq!(c.get("health_checked"), 3, "{}", c.text);
    assert_eq!(c.get("health_down"), 0, "{}", c.text);
    assert!(c.get("health_check_failures") >= 2, "{}", c.text);
    // The transition was logged with its reason.
    assert!(
        log.contains("real server 10.60.1.11:8080 is down: http 10.60.1.11:8080/: connect: connection refused (2 failed in a row)"),
        "{log}"
    );
    assert!(log.contains("real server 10.60.1.11:8080 is up (weight 1): http 10.60.1.11:8080/: 2 passed in a row"), "{log}");
    assert_eq!(c.get("drop_no_conn"), 0, "{}", c.text);
    assert_eq!(c.get("reused_conns"), again.len() as u64, "{}", c.text);
}

/// An HAProxy-style agent in a namespace: answers every connection with
/// the current line of its `Arc<Mutex<String>>` and closes. Dropping it
/// stops the listener and waits for its thread.
struct Agent {
    answer: Arc<Mutex<String>>,
    _server: lab::Server,
}

impl Agent {
    fn start(ns: &str, addr: SocketAddr, first: &str) -> Agent {
        let answer = Arc::new(Mutex::new(first.to_string()));
        let answer2 = answer.clone();
        let server = lab::serve_in(ns, format!("bind {addr}"), move || lab::listen(addr), move |l: &std::net::TcpListener| match l.accept() {
            Ok((mut s, _)) => {
                let line = format!("{}\n", answer2.lock().unwrap());
                let _ = s.set_nonblocking(false);
                let _ = s.write_all(line.as_bytes());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        });
        Agent { answer, _server: server }
    }

    fn say(&self, line: &str) {
        *self.answer.lock().unwrap() = line.to_string();
    }
}

/// `n` GETs through `vip` from the lab's client addresses: who answered
/// each (the first word of the body), failures as `Err`.
fn who_answers(
    ns: &str,
    from: Vec<IpAddr>,
    vip: SocketAddr,
    n: usize,
) -> Vec<Result<String, String>> {
    lab::in_ns(ns, move || {
        (0..n)
            .map(|i| get(from[i % from.len()], next_port(), vip).map(|b| lab::who(&b).to_string()))
            .collect()
    })
}

/// Waits until xvs `x` logged a `snapshot N published:` line containing
/// `then` after the first line containing `first`: the snapshot of one
/// particular verdict (one publication may carry several).
fn wait_published_after(lab: &Lab, x: usize, first: &str, then: &str, timeout: Duration) {
    let t0 = Instant::now();
    loop {
        let log = lab.log(x);
        let mut lines = log.lines().skip_while(|l| !l.contains(first));
        if lines.next().is_some() && lines.any(|l| l.contains("published:") && l.contains(then)) {
            return;
        }
        assert!(
            t0.elapsed() < timeout,
            "no '{then}' after '{first}' in:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts every answer is `Ok` and from one of `names`; returns the
/// names that answered.
fn only(answers: &[Result<String, String>], names: &[&str], when: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for a in answers {
        match a {
            Ok(n) if names.contains(&n.as_str()) => {
                if !seen.contains(n) {
                    seen.push(n.clone());
                }
            }
            _ => panic!("{when}: want only {names:?}, got {answers:?}"),
        }
    }
    seen.sort();
    seen
}

#[test]
fn agent_weights_and_the_sorry_server() {
    let name = "agent_weights_and_the_sorry_server";
    if let Some(why) = no_python() {
        println!("SKIP {name}: {why}");
        return;
    }
    let Some(mut lab) = Lab::new(name) else {
        return;
    };
    let t = lab::two_legs(&mut lab, 61, 2, 3, true);
    let mut rs: Vec<HttpProc> = (0..2)
        .map(|i| HttpProc::start(&t.rs[i], 8080, &format!("rs{}", i + 1)))
        .collect();
    // The sorry server: the lab's HTTP server (answers `sorry <peer>`).
    let sorry = t.sock(1, 13, 8080);
    lab.http_server(&t.rs[2], sorry, "sorry");
    let agent = Agent::start(&t.rs[0], t.sock(1, 11, 9000), "up");
    let tcp = |extra: &str| {
        format!(
            r#"
    [[service.real_server.check]]
    type = "tcp"
    interval = "200ms"
    timeout = "150ms"
    rise = 2
    fall = 2
{extra}"#
        )
    };
    let agent_check = r#"
    [[service.real_server.check]]
    type = "agent"
    port = 9000
    interval = "200ms"
    timeout = "150ms"
    rise = 1
    fall = 1
"#;
    let config = format!(
        r#"
[[service]]
proto = "tcp"
vip = "10.61.0.100"
port = 80
scheduler = "rr"

  [service.sorry_server]
  addr = "10.61.1.13"
  port = 8080
  fwd = "nat"
{}{}"#,
        nat_rs(&t.addr(1, 11), &tcp(agent_check)),
        nat_rs(&t.addr(1, 12), &tcp(""))
    );
    let x = lab.xvs(
        &t.director,
        &config,
        &["-i", "d0", "-i", "d1", "--workers", "2"],
    );
    let vip = t.sock(0, 100, 80);
    let ask = |n| who_answers(&t.client, t.clients(), vip, n);
    let settle = || std::thread::sleep(Duration::from_secs_f64(SWITCH * 2.0));
    let wait = Duration::from_secs(15);

    // Both up: both answer, the sorry server does not.
    assert_eq!(only(&ask(24), &["rs1", "rs2"], "both up"), ["rs1", "rs2"]);

    // The agent drains rs1: weight 0, rs2 takes every new connection.
    agent.say("drain");
    lab.wait_log(x, "10.61.1.11:8080 weight 0", wait);
    settle();
    assert_eq!(only(&ask(24), &["rs2"], "rs1 drained"), ["rs2"]);
    // "ready": the configured weight again.
    agent.say("ready");
    lab.wait_log(x, "10.61.1.11:8080 weight 1", wait);
    settle();
    assert_eq!(only(&ask(24), &["rs1", "rs2"], "rs1 ready"), ["rs1", "rs2"]);
    // "down # reason": the agent fails rs1 (fall 1) with its reason.
    agent.say("down # db gone");
    lab.wait_log(x, "10.61.1.11:8080 down", wait);
    settle();
    assert_eq!(only(&ask(24), &["rs2"], "agent says down"), ["rs2"]);
    agent.say("up");
    lab.wait_log(x, "10.61.1.11:8080 up", wait);

    // Both HTTP processes die: the sorry server takes the new connections.
    rs[0].kill();
    rs[1].kill();
    for a in ["11", "12"] {
        let down = format!(
            "real server 10.61.1.{a}:8080 is down: tcp 10.61.1.{a}:8080: connect: connection refused"
        );
        let published = format!("10.61.1.{a}:8080 down");
        wait_published_after(&lab, x, &down, &published, wait);
    }
    settle();
    assert_eq!(only(&ask(24), &["sorry"], "all down"), ["sorry"]);

    // rs2 comes back: it takes over, the sorry server leaves.
    rs[1].restart();
    lab.wait_log(x, "10.61.1.12:8080 up", wait);
    settle();
    assert_eq!(only(&ask(24), &["rs2"], "rs2 back"), ["rs2"]);

    drop(agent);
    let c = lab.stop_xvs(x);
    let log = lab.log(x);
    println!("{log}\n{}", c.text);
    assert!(
        log.contains(
            "real server 10.61.1.11:8080 is down: agent 10.61.1.11:9000: agent says down: db gone"
        ),
        "the agent's reason is logged:\n{log}"
    );
    assert_eq!(c.get("health_downs"), 3, "{}", c.text);
    assert_eq!(c.get("health_ups"), 2, "{}", c.text);
    assert!(c.get("health_weight_changes") >= 2, "{}", c.text);
    assert_eq!(c.get("health_down"), 1, "rs1 is still down: {}", c.text);
    assert_eq!(
        c.get("drop_no_neighbour"),
        0,
        "the sorry server's next hop is resolved before it is needed: {}",
        c.text
    );
}

/// A minimal DNS server in a namespace: answers every query (its first
/// question) with one A record, `answer`. Dropping it stops the thread.
struct Dns {
    _server: lab::Server,
}

impl Dns {
    fn start(ns: &str, addr: SocketAddr, answer: [u8; 4]) -> Dns {
        let mut buf = [0u8; 512];
        let server = lab::serve_in(ns, format!("bind udp {addr}"), move || lab::udp_bind(addr), move |s: &std::net::UdpSocket| {
            let Ok((len, peer)) = s.recv_from(&mut buf) else {
                return;
            };
            // Header (12 bytes), then the question: labels, type, class.
            let q = &buf[..len];
            let Some(end) = q.iter().skip(12).position(|&b| b == 0) else {
                return;
            };
            let qend = 12 + end + 1 + 4;
            if len < qend {
                return;
            }
            let mut r = Vec::with_capacity(qend + 16);
            r.extend_from_slice(&q[..2]); // the query's id
            r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
            r.extend_from_slice(&q[12..qend]);
            // The answer: a pointer to the question's name, A, IN,
            // TTL 60, 4 bytes of address.
            r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            r.extend_from_slice(&answer);
            let _ = s.send_to(&r, peer);
        });
        Dns { _server: server }
    }
}

/// The `health_check <name> ...` line printed at stop for check `name`.
fn check_line<'a>(text: &'a str, name: &str) -> &'a str {
    let want = format!("health_check {name} ");
    text.lines()
        .find(|l| l.starts_with(&want))
        .unwrap_or_else(|| panic!("no line for check '{name}' in:\n{text}"))
}

/// A field `key=value` of a `health_check` line.
fn field(line: &str, key: &str) -> u64 {
    let want = format!("{key}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&want))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in '{line}'"))
}

/// A TLS web server in a namespace: python3's http.server wrapped in
/// `ssl`, with a self-signed certificate made by openssl (the HTTPS check,
/// like keepalived's SSL_GET, does not verify the certificate).
struct Https(std::process::Child);

impl Https {
    fn start(ns: &str, port: u16, test: &str) -> Https {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("https-{test}"));
        std::fs::create_dir_all(&dir).expect("cert dir");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let st = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=rs2"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("running openssl (make deps installs it)");
        assert!(st.success(), "openssl req failed: {st}");
        let code = format!(
            "import http.server,ssl\n\
             s=http.server.HTTPServer(('0.0.0.0',{port}),http.server.SimpleHTTPRequestHandler)\n\
             c=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n\
             c.load_cert_chain({:?},{:?})\n\
             s.socket=c.wrap_socket(s.socket,server_side=True)\n\
             s.serve_forever()\n",
            cert.display().to_string(),
            key.display().to_string()
        );
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-c", &code])
            .current_dir(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawning the https server");
        // Listening before the checks start, or their first run fails.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("ip").args(["netns", "exec", ns, "ss", "-Hltn"]).output().expect("ss");
            if String::from_utf8_lossy(&out.stdout).contains(&format!(":{port} ")) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the https server in {ns} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Https(child)
    }
}

impl Drop for Https {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_kind_of_check_runs_in_the_lab() {
    let name = "every_kind_of_check_runs_in_the_lab";
    if let Some(why) = no_python() {
        println!("SKIP {name}: {why}");
        return;
    }
    let Some(mut lab) = Lab::new(name) else {
        return;
    };
    let t = lab::two_legs(&mut lab, 62, 2, 3, true);
    let _rs: Vec<HttpProc> = (0..3)
        .map(|i| HttpProc::start(&t.rs[i], 8080, &format!("rs{}", i + 1)))
        .collect();
    lab.udp_server(&t.rs[1], t.sock(1, 12, 7000), "udp2");
    let _dns = Dns::start(&t.rs[1], t.sock(1, 12, 53), [192, 0, 2, 1]);
    let _https = Https::start(&t.rs[1], 8443, name);
    let _agent = Agent::start(&t.rs[0], t.sock(1, 11, 9000), "up 100%");
    let timing = r#"
    interval = "200ms"
    timeout = "150ms"
    rise = 2
    fall = 2"#;
    let check = |body: &str| format!("\n    [[service.real_server.check]]\n{body}{timing}\n");
    // rs1: ICMP, TCP (shared with service 81), HTTP, exec, agent.
    let rs1 = [
        check("    type = \"icmp\""),
        check("    type = \"tcp\""),
        check("    type = \"http\"\n    path = \"/\"\n    regex = \"^rs1\""),
        check(
            "    type = \"exec\"\n    command = [\"/bin/sh\", \"-c\", \"test \\\"$XVS_CHECK_ADDR:$XVS_CHECK_PORT\\\" = 10.62.1.11:8080\"]",
        ),
        check("    type = \"agent\"\n    port = 9000"),
    ]
    .concat();
    // rs2: UDP send/expect, DNS and HTTPS.
    let rs2 = [
        check("    type = \"https\"\n    port = 8443\n    path = \"/\""),
        check("    type = \"udp\"\n    port = 7000\n    payload = \"ping\"\n    expect = \"udp2\""),
        check("    type = \"dns\"\n    port = 53\n    name = \"www.example.org\""),
    ]
    .concat();
    // rs3: UDP to a port nobody listens on: down.
    let rs3 = check("    type = \"udp\"\n    port = 7001\n    payload = \"ping\"");
    let config = format!(
        r#"
[[service]]
proto = "tcp"
vip = "10.62.0.100"
port = 80
scheduler = "rr"
{}{}{}
[[service]]
proto = "tcp"
vip = "10.62.0.100"
port = 81
scheduler = "rr"
{}"#,
        nat_rs(&t.addr(1, 11), &rs1),
        nat_rs(&t.addr(1, 12), &rs2),
        nat_rs(&t.addr(1, 13), &rs3),
        nat_rs(&t.addr(1, 11), &check("    type = \"tcp\"")),
    );
    let x = lab.xvs(
        &t.director,
        &config,
        &["-i", "d0", "-i", "d1", "--workers", "2"],
    );
    let wait = Duration::from_secs(15);
    lab.wait_log(
        x,
        "real server 10.62.1.13:8080 is down: udp 10.62.1.13:7001",
        wait,
    );
    lab.wait_log(x, "10.62.1.13:8080 down", wait);
    // Every other check has had time for several runs.
    std::thread::sleep(Duration::from_secs(2));
    let vip = t.sock(0, 100, 80);
    let answers = who_answers(&t.client, t.clients(), vip, 24);
    assert_eq!(only(&answers, &["rs1", "rs2"], "rs3 down"), ["rs1", "rs2"]);
    let c = lab.stop_xvs(x);
    let log = lab.log(x);
    println!("{log}\n{}", c.text);
    // Four checked (service, real server) pairs; only rs3 is down, and
    // it went down once; nothing else ever did.
    assert_eq!(c.get("health_checked"), 4, "{}", c.text);
    assert_eq!(c.get("health_down"), 1, "{}", c.text);
    assert_eq!(c.get("health_downs"), 1, "{log}");
    // Nine unique checks: rs1's TCP check is shared by both services.
    assert_eq!(c.get("health_checks"), 9, "{}", c.text);
    let tcp = check_line(&c.text, "tcp 10.62.1.11:8080");
    assert_eq!(field(tcp, "users"), 2, "{tcp}");
    for name in [
        "icmp 10.62.1.11",
        "tcp 10.62.1.11:8080",
        "http 10.62.1.11:8080/",
        "exec /bin/sh",
        "agent 10.62.1.11:9000",
        "udp 10.62.1.12:7000",
        "dns 10.62.1.12:53 A www.example.org",
        "https 10.62.1.12:8443/",
    ] {
        let l = check_line(&c.text, name);
        assert!(l.contains(" up "), "{l}");
        assert!(field(l, "runs") >= 4, "{l}");
        assert_eq!(field(l, "failures"), 0, "{l}");
    }
    let l = check_line(&c.text, "udp 10.62.1.13:7001");
    assert!(l.contains(" down ") && field(l, "failures") >= 2, "{l}");
}
