//! The monitor in a real browser: `xvs run` in the namespace lab serves
//! its HTTPS console (self-signed certificate made at start); headless
//! chromium, driven by chromedriver in the director's namespace, logs in
//! and uses it while a client sends requests to two real servers.
//!
//! - Both real servers are listed; counters and charts move under load;
//!   the wrr 1:2 share is on the page (one worker: exactly 10 and 20 of 30
//!   connections).
//! - An admin sets a weight in the page and `xvsadm -L -n` shows it; a
//!   refused weight shows xvsadm's own message.
//! - A killed real server turns "down" on the page within its check's
//!   fall time.
//! - A viewer sees no change control, and the server refuses the change
//!   it forges with its own session and CSRF token (403), changing
//!   nothing.
//! - Screenshots of the overview (and the other tabs) are saved in
//!   `target/tmp/monitor-e2e/`.
//!
//! Topology (`lab::two_legs`, NAT): client 10.47.0.2 — director (VIP
//! 10.47.0.100:80, monitor on 127.0.0.1:9443 in its namespace) — rs1
//! 10.47.1.11:8080, rs2 10.47.1.12:8080.

mod browser;
mod lab;

use browser::Browser;
use lab::{http_gets, rs_index, Lab};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const URL: &str = "https://127.0.0.1:9443";
const INTERVAL_MS: u64 = 300;
const FALL: u64 = 2;

/// A real server that can be killed: an HTTP answer `<name> <peer>`, and
/// a refused connection once stopped (the listener is closed).
struct Killable {
    server: lab::Server,
}

impl Killable {
    fn start(ns: &str, addr: SocketAddr, name: &str) -> Killable {
        let name = name.to_string();
        let server = lab::serve_in(ns, format!("bind {addr}"), move || lab::listen(addr), move |l: &TcpListener| match l.accept() {
            Ok((mut s, peer)) => {
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 2048];
                let mut req = Vec::new();
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let body = format!("{name} {peer}\n");
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        });
        Killable { server }
    }

    fn kill(&mut self) {
        self.server.stop();
    }
}

fn config(state_dir: &str, admin_hash: &str, viewer_hash: &str) -> String {
    let check = format!(
        r#"
  [service.real_server.check]
  type = "tcp"
  interval = "{INTERVAL_MS}ms"
  timeout = "200ms"
  fall = {FALL}
  rise = 2
"#
    );
    format!(
        r#"
[[service]]
proto = "tcp"
vip = "10.47.0.100"
port = 80
scheduler = "wrr"

  [[service.real_server]]
  ip = "10.47.1.11"
  port = 8080
  weight = 1
  mode = "nat"
{check}
  [[service.real_server]]
  ip = "10.47.1.12"
  port = 8080
  weight = 2
  mode = "nat"
{check}
[monitor]
listen = "127.0.0.1:9443"
state_dir = "{state_dir}"

[[monitor.user]]
name = "admin"
role = "admin"
password_hash = "{admin_hash}"

[[monitor.user]]
name = "viewer"
role = "viewer"
password_hash = "{viewer_hash}"
"#
    )
}

/// `xvsadm` against the lab's daemon: (stdout, stderr).
fn xvsadm(socket: &std::path::Path, args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xvsadm")).arg("--socket").arg(socket).args(args).output().unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).trim().to_string())
}

/// The weight `xvsadm -L -n` shows for real server `dest`.
fn listed_weight(socket: &std::path::Path, dest: &str) -> String {
    let (list, _) = xvsadm(socket, &["-L", "-n"]);
    let row = list.lines().find(|l| l.contains(dest)).unwrap_or_else(|| panic!("{dest} not in:\n{list}"));
    row.split_whitespace().nth(3).unwrap_or_else(|| panic!("{row}")).to_string()
}

fn artifacts() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("monitor-e2e");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn log_in(b: &Browser, user: &str, pw: &str) {
    b.goto(&format!("{URL}/"));
    b.wait_js("the login page", "return location.pathname === '/login' && !!document.getElementById('user')", Duration::from_secs(10));
    b.type_into("#user", user);
    b.type_into("#password", pw);
    b.click("#submit");
    b.wait_js("the console", "return location.pathname === '/' && document.querySelectorAll('tr[data-dest]').length", Duration::from_secs(10));
}

/// The text of cell `cls` of real server `dest`'s row.
fn cell_js(dest: &str, cls: &str) -> String {
    format!("const r = document.querySelector('tr[data-dest=\"{dest}\"] td.{cls}'); return r ? r.textContent : null")
}

/// Whether cell `cls` of `dest`'s row reads `want`.
fn cell_is(dest: &str, cls: &str, want: &str) -> String {
    format!("const r = document.querySelector('tr[data-dest=\"{dest}\"] td.{cls}'); return !!r && r.textContent === {want:?}")
}

#[test]
fn the_monitor_in_a_real_browser() {
    let name = "the_monitor_in_a_real_browser";
    if let Some(why) = browser::unavailable() {
        println!("SKIP {name}: {why}");
        return;
    }
    let Some(mut lab) = Lab::new(name) else {
        return;
    };
    let t = lab::two_legs(&mut lab, 47, 1, 2, true);
    let mut rs1 = Killable::start(&t.rs[0], "0.0.0.0:8080".parse().unwrap(), "rs1");
    let mut rs2 = Killable::start(&t.rs[1], "0.0.0.0:8080".parse().unwrap(), "rs2");
    let state = tempfile::tempdir().unwrap();
    let admin_pw = "admin secret";
    let viewer_pw = "viewer secret";
    let admin_hash = xvs::monitor::auth::hash_password(admin_pw).unwrap();
    let viewer_hash = xvs::monitor::auth::hash_password(viewer_pw).unwrap();
    let conf = config(state.path().to_str().unwrap(), &admin_hash, &viewer_hash);
    let x = lab.xvs(&t.director, &conf, &["-i", "d0", "-i", "d1", "--workers", "1", "--metrics", "off"]);
    lab.wait_log(x, "monitor on https://127.0.0.1:9443", Duration::from_secs(5));
    assert!(lab.log(x).contains("self-signed, made now"), "{}", lab.log(x));
    assert!(state.path().join("monitor-cert.pem").exists());
    let socket = lab.socket(x).to_path_buf();
    let art = artifacts();

    let b = Browser::start(&t.director, 1440, 1100, &art.join("chromedriver.log"));
    log_in(&b, "admin", admin_pw);
    // Both real servers, up, with their weights.
    for (d, w) in [("10.47.1.11:8080", "1 / 1"), ("10.47.1.12:8080", "2 / 2")] {
        b.wait_js(&format!("{d} up"), &cell_is(d, "health", "up"), Duration::from_secs(10));
        assert_eq!(b.js(&cell_js(d, "weight"), json!([])), json!(w));
    }
    assert_eq!(b.text("#who"), "admin (admin)");

    // Traffic: 30 connections, 10 to rs1 and 20 to rs2.
    let vip = t.sock(0, 100, 80);
    let answers = http_gets(&t.client, vip, 30);
    let mut seen = [0; 2];
    for a in &answers {
        seen[rs_index(a.as_ref().unwrap_or_else(|e| panic!("GET failed: {e}")))] += 1;
    }
    assert_eq!(seen, [10, 20]);
    // The page counts them, and the share chart says 1:2.
    b.wait_js("rs1's counter", &cell_is("10.47.1.11:8080", "conns", "10"), Duration::from_secs(10));
    b.wait_js("rs2's counter", &cell_is("10.47.1.12:8080", "conns", "20"), Duration::from_secs(10));
    let shares = b.wait_js(
        "the 1:2 share",
        "const s = [...document.querySelectorAll('.c-share .share')].map(e => e.textContent); return s.length === 2 && s[0].endsWith(' 33.3%') && s[1].endsWith(' 66.7%') ? s : null",
        Duration::from_secs(10),
    );
    assert_eq!(shares, json!(["10.47.1.11:8080 33.3%", "10.47.1.12:8080 66.7%"]));
    // XVS_MONITOR_SOAK=<seconds>: keep a client going that long first, for
    // screenshots with a history (docs/monitor.md); not in `make test`.
    let soak: u64 = std::env::var("XVS_MONITOR_SOAK").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    if soak > 0 {
        let t0 = Instant::now();
        let mut i = 0u64;
        while t0.elapsed() < Duration::from_secs(soak) {
            // A varying pace, so the charts have a shape.
            let n = 2 + (i % 7) as usize;
            for r in http_gets(&t.client, vip, n) {
                r.unwrap_or_else(|e| panic!("GET failed: {e}"));
            }
            i += 1;
            std::thread::sleep(Duration::from_millis(150));
        }
    }
    // The charts moved: the new-connections chart has an area above zero.
    let peak = b.js(
        "let m = 1e9; for (const p of document.querySelectorAll('.c-cps polygon')) for (const xy of p.getAttribute('points').split(' ')) m = Math.min(m, +xy.split(',')[1]); return m",
        json!([]),
    );
    assert!(peak.as_f64().unwrap() < 120.0, "the chart's top is at y={peak} (the baseline is 130)");
    // The service's totals in its heading, the workers tab's counters.
    if soak == 0 {
        assert!(b.text(".svc .figs").contains("30 conns"), "{}", b.text(".svc .figs"));
    }
    b.screenshot(&art.join("overview.png"));

    // Connections: the -L -c list, filtered.
    b.goto(&format!("{URL}/#conns"));
    b.wait_js("the connection list", "return document.querySelectorAll('#conns tbody tr').length >= 30", Duration::from_secs(10));
    b.screenshot(&art.join("conns.png"));
    b.type_into("#conn-filter input[name=dest]", "10.47.1.11");
    b.click("#conn-filter button[type=submit]");
    let rows = b.wait_js(
        "the filtered list",
        "const r = [...document.querySelectorAll('#conns tbody tr')].map(t => t.children[5].textContent); return r.length >= 10 && r.every(d => d === '10.47.1.11:8080') ? r.length : 0",
        Duration::from_secs(10),
    );
    if soak == 0 {
        assert_eq!(rows, json!(10));
    }
    if soak == 0 {
        assert!(b.text("#conn-info").starts_with("10 matching of 30 connections"), "{}", b.text("#conn-info"));
    }
    b.goto(&format!("{URL}/#workers"));
    b.wait_js("the workers table", "return document.querySelectorAll('#workers tbody tr').length === 1", Duration::from_secs(10));
    b.screenshot(&art.join("workers.png"));

    // An admin sets a weight in the page: xvsadm sees it at once.
    b.goto(&format!("{URL}/#overview"));
    b.wait_js("the console", "return document.querySelectorAll('tr[data-dest] .w-input').length === 2", Duration::from_secs(10));
    b.type_into("tr[data-dest=\"10.47.1.11:8080\"] .w-input", "3");
    b.click("tr[data-dest=\"10.47.1.11:8080\"] .act-set");
    b.wait_js("the change", "const b = document.getElementById('banner'); return !b.hidden && b.textContent.includes('done')", Duration::from_secs(10));
    assert_eq!(listed_weight(&socket, "10.47.1.11:8080"), "3");
    b.wait_js("weight 3 on the page", &cell_is("10.47.1.11:8080", "weight", "3 / 3"), Duration::from_secs(5));
    // A refused weight: the page shows what xvsadm says.
    b.type_into("tr[data-dest=\"10.47.1.11:8080\"] .w-input", "70000");
    b.click("tr[data-dest=\"10.47.1.11:8080\"] .act-set");
    let shown = b.wait_js("the refusal", "const b = document.getElementById('banner'); return !b.hidden && b.className.includes('error') ? document.getElementById('banner-text').textContent : null", Duration::from_secs(10));
    let (_, said) = xvsadm(&socket, &["-e", "-t", "10.47.0.100:80", "-r", "10.47.1.11:8080", "-m", "-w", "70000"]);
    assert!(!said.is_empty());
    assert_eq!(shown.as_str(), Some(said.lines().next().unwrap()), "xvsadm says:\n{said}");
    assert_eq!(listed_weight(&socket, "10.47.1.11:8080"), "3", "nothing changed");

    // A killed real server turns down on the page within its fall time.
    let t_kill = Instant::now();
    rs2.kill();
    b.wait_js("rs2 down", &cell_is("10.47.1.12:8080", "health", "down"), Duration::from_secs(10));
    let took = t_kill.elapsed();
    // fall runs, each an interval (+10% jitter) apart, the first within one
    // interval; then at most one frame (1 s) to reach the page; slack.
    let bound = Duration::from_millis(INTERVAL_MS * (FALL + 1) * 11 / 10) + Duration::from_millis(1000 + 1500);
    assert!(took < bound, "down on the page {took:?} after the kill (bound {bound:?})");
    let check = b.js(&cell_js("10.47.1.12:8080", "check"), json!([]));
    assert!(check.as_str().unwrap_or("").contains("failed"), "{check}");
    assert_eq!(b.js(&cell_js("10.47.1.12:8080", "weight"), json!([])), json!("2 / 0"), "quiesced");
    b.goto(&format!("{URL}/#health"));
    b.wait_js("the event", "return [...document.querySelectorAll('#events tbody tr')].some(r => r.textContent.includes('10.47.1.12:8080 is down'))", Duration::from_secs(5));
    b.screenshot(&art.join("health.png"));

    // A viewer: no change control, and a forged change is refused.
    b.goto(&format!("{URL}/#overview"));
    b.click("#logout");
    b.wait_js("the login page", "return location.pathname === '/login'", Duration::from_secs(10));
    log_in(&b, "viewer", viewer_pw);
    assert_eq!(b.text("#who"), "viewer (viewer)");
    let controls = b.js("return document.querySelectorAll('.admin, .w-input, button[class^=act-], select.sched-select').length", json!([]));
    assert_eq!(controls, json!(0), "a viewer sees no change control");
    let forged = b.js_async(
        "const done = arguments[arguments.length - 1];
         fetch('/api/session').then(r => r.json()).then(me => fetch('/api/change', {
           method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf},
           body: JSON.stringify({op: 'weight', service: '-t 10.47.0.100:80', dest: '10.47.1.11:8080', weight: '9'})
         })).then(r => r.json().then(j => done([r.status, j.error]))).catch(e => done(String(e)));",
        json!([]),
    );
    assert_eq!(forged[0], json!(403), "{forged}");
    assert!(forged[1].as_str().unwrap().contains("viewer"), "{forged}");
    assert_eq!(listed_weight(&socket, "10.47.1.11:8080"), "3", "nothing changed");
    b.screenshot(&art.join("viewer.png"));
    drop(b);

    rs1.kill();
    let c = lab.stop_xvs(x);
    if soak == 0 {
        assert_eq!(c.dest("10.47.1.11", "conns"), 10, "{}", c.text);
    }
    let log = lab.log(x);
    assert!(log.contains("user=admin") && log.contains("what=\"xvsadm -e -t 10.47.0.100:80 -r 10.47.1.11:8080 -m -w 3\" result=\"ok\""), "{log}");
    assert!(log.contains("user=viewer") && log.contains("result=\"forbidden: role viewer\""), "{log}");
}

/// `xvs passwd` prints a hash that verifies; `xvs run --monitor` without
/// users and a bad `[monitor]` are configuration errors (exit 2) naming
/// what is wrong.
#[test]
fn passwd_and_monitor_configuration_errors() {
    let mut p = Command::new(env!("CARGO_BIN_EXE_xvs"))
        .arg("passwd")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(b"s3cret pass\n").unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(xvs::monitor::auth::verify_password(hash.trim(), "s3cret pass"));
    assert!(!xvs::monitor::auth::verify_password(hash.trim(), "s3cret pass\n"));

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.toml");
    std::fs::write(&f, "[[service]]\nproto = \"tcp\"\nvip = \"10.0.0.1\"\nport = 80\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xvs")).args(["run", "--monitor", "127.0.0.1:9443", "-c"]).arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [[monitor.user]]"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(env!("CARGO_BIN_EXE_xvs")).args(["run", "--monitor", "nowhere", "-c"]).arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'nowhere' is not \"off\" or an address:port"));
    std::fs::write(&f, "[monitor]\nlisten = \"127.0.0.1:9443\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xvs")).arg("check-config").arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("monitor.user"), "{}", String::from_utf8_lossy(&out.stderr));
}
