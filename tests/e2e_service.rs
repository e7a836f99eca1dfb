//! xvs as the packaged unit runs it (debian/xvs.service), end to end: an
//! unprivileged user with only the capabilities of `xvs(8)` (setpriv,
//! as `AmbientCapabilities=` gives them), talking the systemd notify
//! protocol to a fake service manager (a unix datagram socket in
//! `$NOTIFY_SOCKET`, a watchdog in `$WATCHDOG_USEC`), its locks in
//! `$RUNTIME_DIRECTORY`, forwarding real traffic in a NAT lab; a worker
//! thread held stopped (ptrace) stops the watchdog's feed.
//!
//! Topology (`lab::two_legs`): client 10.70.0.2 — d0 [director] d1 —
//! rs1 10.70.1.11:8080, rs2 10.70.1.12:8080.

mod lab;

use lab::{http_gets, who, Lab};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[[service]]
proto = "tcp"
vip = "10.70.0.100"
port = 80
scheduler = "rr"

  [[service.real_server]]
  ip = "10.70.1.11"
  port = 8080
  mode = "nat"

  [[service.real_server]]
  ip = "10.70.1.12"
  port = 8080
  mode = "nat"
"#;

/// The capabilities xvs(8) documents, as setpriv writes them.
const CAPS: &str = "+net_admin,+net_raw,+bpf,+perfmon,+ipc_lock";
/// The user and group it runs as here (nobody / nogroup: no passwd entry
/// needed, nothing else of this machine runs with it in the lab).
const UID: &str = "65534";

fn setpriv_available() -> bool {
    Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// `setpriv` arguments that run a command as [`UID`] with `caps` only.
fn setpriv(caps: &str) -> Vec<String> {
    [
        "setpriv",
        "--reuid",
        UID,
        "--regid",
        UID,
        "--clear-groups",
        "--inh-caps",
        &format!("-all,{caps}"),
        "--ambient-caps",
        &format!("-all,{caps}"),
        "--bounding-set",
        &format!("-all,{caps}"),
        "--",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A directory the unprivileged xvs may write (its RuntimeDirectory).
fn runtime_dir() -> tempfile::TempDir {
    let d = tempfile::Builder::new().prefix("xvs-rt-").tempdir().unwrap();
    std::os::unix::fs::chown(d.path(), Some(65534), Some(65534)).unwrap();
    d
}

/// The fake service manager: every datagram received, with its time.
struct Manager {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    got: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Manager {
    fn new() -> Manager {
        let dir = tempfile::Builder::new().prefix("xvs-notify-").tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        // The unprivileged xvs must be able to send to it.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, st) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !st.load(Ordering::Relaxed) {
                match sock.recv(&mut buf) {
                    Ok(n) => g.lock().unwrap().push((Instant::now(), String::from_utf8_lossy(&buf[..n]).into_owned())),
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                    Err(e) => {
                        g.lock().unwrap().push((Instant::now(), format!("(recv: {e})")));
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        });
        Manager { _dir: dir, path, got, stop }
    }

    fn messages(&self) -> Vec<(Instant, String)> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until a message contains `what`; returns how many came before.
    /// `log` is xvs's, for the failure message.
    fn wait_for(&self, what: &str, after: usize, timeout: Duration, log: impl Fn() -> String) -> usize {
        let t0 = Instant::now();
        loop {
            if let Some(i) = self.messages().iter().skip(after).position(|(_, m)| m.contains(what)) {
                return after + i;
            }
            assert!(t0.elapsed() < timeout, "no {what} within {timeout:?}: {:?}\nxvs:\n{}", self.texts(), log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn texts(&self) -> Vec<String> {
        self.messages().into_iter().map(|(_, m)| m).collect()
    }
}

/// The id of the thread of process `pid` named `name`.
fn thread_id(pid: u32, name: &str) -> i32 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .and_then(|e| e.file_name().to_str()?.parse().ok())
        .unwrap_or_else(|| panic!("no thread {name} in process {pid}"))
}

/// One thread of another process held stopped (ptrace: only that thread
/// stops), released when dropped (or when the test's thread ends).
struct StoppedThread(i32);

impl StoppedThread {
    fn new(tid: i32) -> StoppedThread {
        // SAFETY: plain ptrace/waitpid calls on a thread id; no memory is
        // passed to the kernel but the status integer.
        unsafe {
            assert_eq!(libc::ptrace(libc::PTRACE_SEIZE, tid, 0, 0), 0, "PTRACE_SEIZE {tid}: {}", std::io::Error::last_os_error());
            assert_eq!(libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0), 0, "PTRACE_INTERRUPT: {}", std::io::Error::last_os_error());
            let mut status = 0;
            assert_eq!(libc::waitpid(tid, &mut status, libc::__WALL), tid, "waitpid: {}", std::io::Error::last_os_error());
        }
        StoppedThread(tid)
    }
}

impl Drop for StoppedThread {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe {
            libc::ptrace(libc::PTRACE_DETACH, self.0, 0, 0);
        }
    }
}

/// `Uid:` and `CapEff:` of process `pid`.
fn identity(pid: u32) -> (String, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string()).unwrap_or_default()
    };
    let uid = field("Uid:").split_whitespace().next().unwrap_or("").to_string();
    (uid, u64::from_str_radix(&field("CapEff:"), 16).unwrap_or(u64::MAX))
}

#[test]
fn unprivileged_with_only_its_capabilities_it_forwards_and_speaks_to_systemd() {
    let name = "unprivileged_with_only_its_capabilities_it_forwards_and_speaks_to_systemd";
    if !setpriv_available() {
        println!("SKIP {name}: setpriv (util-linux) is not installed");
        return;
    }
    let rt = runtime_dir();
    let manager = Manager::new();
    let Some(mut lab) = Lab::new(name) else {
        return;
    };
    let t = lab::two_legs(&mut lab, 70, 1, 2, true);
    for (i, r) in t.rs.clone().iter().enumerate() {
        lab.http_server(r, "0.0.0.0:8080".parse().unwrap(), &format!("rs{}", i + 1));
    }
    let wrap = setpriv(CAPS);
    let wrap: Vec<&str> = wrap.iter().map(String::as_str).collect();
    lab.wrap_xvs(
        &wrap,
        &[
            ("RUNTIME_DIRECTORY", rt.path().to_str().unwrap()),
            ("NOTIFY_SOCKET", manager.path.to_str().unwrap()),
            // 400 ms: fed every 200 ms while the worker publishes.
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let x = lab.xvs(&t.director, CONFIG, &["-i", "d0", "-i", "d1", "--metrics", "off"]);

    // It really is the unprivileged user with exactly those capabilities.
    let pid = lab.pid(x);
    let (uid, caps) = identity(pid);
    assert_eq!(uid, UID, "{}", lab.log(x));
    let want = [12u32, 13, 14, 38, 39].iter().fold(0u64, |a, b| a | 1 << b);
    assert_eq!(caps, want, "CapEff {caps:#x}: only NET_ADMIN, NET_RAW, IPC_LOCK, PERFMON, BPF");

    // READY=1 (with its status) once the worker runs, then the watchdog.
    let ready = manager.wait_for("READY=1", 0, Duration::from_secs(5), || lab.log(x));
    assert!(manager.texts()[ready].contains("STATUS=forwarding 1 service(s) on d0, d1"), "{:?}", manager.texts());
    assert!(
        manager.texts()[..ready].iter().all(|m| !m.contains("WATCHDOG=1")),
        "no watchdog before READY: {:?}",
        manager.texts()
    );
    let first_feed = manager.wait_for("WATCHDOG=1", ready, Duration::from_secs(5), || lab.log(x));
    manager.wait_for("WATCHDOG=1", first_feed + 1, Duration::from_secs(5), || lab.log(x));

    // Traffic flows.
    let answers = http_gets(&t.client, t.sock(0, 100, 80), 10);
    for a in &answers {
        let body = a.as_ref().unwrap_or_else(|e| panic!("GET through the VIP failed: {e}\n{}", lab.log(x)));
        assert!(matches!(who(body), "rs1" | "rs2"), "{body}");
    }

    // A stuck worker stops the feed: worker 0's thread alone is stopped
    // (ptrace; a signal would stop the whole process), the main thread
    // goes on but feeds no more; resumed, the feed resumes.
    let tid = thread_id(pid, "xvs-worker-0");
    let stuck = StoppedThread::new(tid);
    let t_stop = Instant::now();
    lab.wait_log(x, "worker 0 has published no report for at least 200ms: the systemd watchdog is no longer fed", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(600));
    let feeds_while_stuck = manager
        .messages()
        .iter()
        .filter(|(t, m)| *t > t_stop && m.contains("WATCHDOG=1"))
        .count();
    // At most one: a report published just before the stop may still
    // be fed once.
    assert!(feeds_while_stuck <= 1, "fed {feeds_while_stuck} times while worker 0 was stopped: {:?}", manager.texts());
    let before = manager.messages().len();
    drop(stuck);
    manager.wait_for("WATCHDOG=1", before, Duration::from_secs(5), || lab.log(x));

    // SIGHUP (ExecReload): RELOADING=1, then READY=1 again.
    let before = manager.messages().len();
    lab.signal(x, "HUP");
    let reloading = manager.wait_for("RELOADING=1", before, Duration::from_secs(5), || lab.log(x));
    manager.wait_for("READY=1", reloading + 1, Duration::from_secs(5), || lab.log(x));

    // Stop: STOPPING=1, and the clean exit of the lab's stop.
    let before = manager.messages().len();
    let c = lab.stop_xvs(x);
    manager.wait_for("STOPPING=1", before, Duration::from_secs(2), || lab.log(x));
    assert_eq!(c.get("new_conns"), 10, "{}", c.text);
    let log = lab.log(x);
    assert!(!log.contains("missing capabilit"), "{log}");
    assert_eq!(log.matches("watchdog is no longer fed").count(), 1, "only the stall we made: {log}");
}

#[test]
fn a_missing_capability_is_named_and_nothing_is_touched() {
    let name = "a_missing_capability_is_named_and_nothing_is_touched";
    if !setpriv_available() {
        println!("SKIP {name}: setpriv (util-linux) is not installed");
        return;
    }
    let Some(mut lab) = Lab::new(name) else {
        return;
    };
    let d = lab.ns("d");
    let c = lab.ns("c");
    lab.veth(&d, "d0", &c, "c0", 1);
    let rt = runtime_dir();
    let cfg = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(cfg.path(), CONFIG).unwrap();
    std::fs::set_permissions(cfg.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    // Everything but CAP_BPF.
    let out = Command::new("ip")
        .args(["netns", "exec", &d])
        .args(setpriv("+net_admin,+net_raw,+perfmon,+ipc_lock"))
        .arg(env!("CARGO_BIN_EXE_xvs"))
        .args(["run", "-i", "d0", "--metrics", "off", "--config"])
        .arg(cfg.path())
        .arg("--socket")
        .arg(rt.path().join("xvs.sock"))
        .env("RUNTIME_DIRECTORY", rt.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("missing capability CAP_BPF: CAP_BPF is needed for loading the XDP steering program"),
        "{err}"
    );
    assert!(!err.contains("CAP_NET_ADMIN is needed"), "only the missing one is named: {err}");
    let link = lab.exec(&d, &["ip", "link", "show", "d0"]);
    assert!(!link.contains("xdp"), "nothing attached: {link}");
}
