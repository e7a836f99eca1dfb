//! The namespace lab of the end-to-end tests: network namespaces, veth
//! pairs, a bridge, real kernel TCP/UDP servers and clients, and the real
//! `xvs run` binary in the director's namespace.
//!
//! - Every namespace is `xvs-lab-<pid>-<n>-<role>`; [`Lab`]'s `Drop` stops
//!   `xvs` (SIGTERM, so it detaches its XDP programs; SIGKILL after 5 s),
//!   stops the servers and deletes the namespaces — also when the test
//!   panics.
//! - veth pairs keep the kernel's defaults, TX checksum offload on, as
//!   users build them: a kernel TCP/UDP sender leaves a partial checksum
//!   (the pseudo-header sum) that XDP sees raw and xvs completes
//!   (docs/afxdp.md). [`Lab::full_checksums`] turns the offload off on
//!   the veths made after it, for a lab of senders that put full
//!   checksums on the wire, as real NICs deliver them.
//! - Servers and clients are threads of the test process that entered a
//!   namespace (`setns`): their sockets are ordinary kernel sockets of that
//!   namespace. An HTTP server answers `GET` with `<name> <peer ip>:<peer
//!   port>`; a UDP server answers every datagram the same way.
//! - Only traffic inside these namespaces is sent.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Runs a command; `Err` with its stderr when it fails.
pub fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) -> String {
    sh(args).unwrap_or_else(|e| panic!("lab setup: {e}"))
}

/// Enters namespace `ns` (the calling thread only).
pub fn enter(ns: &str) {
    xvs::io::xdp::enter_netns(ns).unwrap_or_else(|e| panic!("entering namespace {ns}: {e}"));
}

/// Runs `f` on a new thread inside namespace `ns` and returns its result.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter(&ns);
        f()
    })
    .join()
    .expect("thread in a namespace panicked")
}

/// Why a lab cannot run here (printed as SKIP), or `None`.
pub fn unavailable() -> Option<String> {
    if !xvs::io::xdp::is_root() {
        return Some("needs root (AF_XDP, XDP and network namespaces)".into());
    }
    if let Err(e) = xvs::io::xdp::af_xdp_available() {
        return Some(e.to_string());
    }
    for tool in ["ip", "ethtool"] {
        if Command::new(tool).arg("-V").output().is_err() {
            return Some(format!("`{tool}` is not installed (make deps)"));
        }
    }
    None
}

/// A running `xvs run`.
pub struct Xvs {
    child: Child,
    /// stderr lines so far.
    log: Arc<Mutex<Vec<String>>>,
    stdout: Option<std::process::ChildStdout>,
    config: PathBuf,
    /// Its control socket (each lab xvs has its own: the path is shared by
    /// every namespace).
    socket: PathBuf,
}

/// A server thread in a namespace ([`serve_in`]); stopped (and joined)
/// by [`Server::stop`] or on drop.
pub struct Server {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Server {
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a server thread in namespace `ns`: it opens its socket with
/// `open` (a bind, in `ns`), then calls `step` with it until stopped; a
/// step must return within a few milliseconds when idle (a non-blocking
/// accept, a read timeout). Returns once the socket is open; failing to
/// open it fails the test, naming `what` and `ns`.
pub fn serve_in<S: 'static>(
    ns: &str,
    what: String,
    open: impl FnOnce() -> std::io::Result<S> + Send + 'static,
    mut step: impl FnMut(&S) + Send + 'static,
) -> Server {
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let (ns2, stop2) = (ns.to_string(), stop.clone());
    let handle = std::thread::spawn(move || {
        enter(&ns2);
        let s = match open() {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Err(format!("{what} in {ns2}: {e}")));
                return;
            }
        };
        let _ = tx.send(Ok(()));
        while !stop2.load(Ordering::Relaxed) {
            step(&s);
        }
    });
    rx.recv().unwrap().unwrap_or_else(|e| panic!("{e}"));
    Server { stop, handle: Some(handle) }
}

/// A non-blocking TCP listener on `addr`, for a [`serve_in`] step that
/// accepts or sleeps.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let l = TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// A UDP socket on `addr` whose reads time out after 20 ms, for a
/// [`serve_in`] step.
pub fn udp_bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = UdpSocket::bind(addr)?;
    s.set_read_timeout(Some(Duration::from_millis(20)))?;
    Ok(s)
}

/// What `xvs run` logs once every worker forwards (`daemon::notify`).
pub const READY: &str = xvs::daemon::LOG_READY;

/// The lab. See the module docs.
pub struct Lab {
    base: String,
    namespaces: Vec<String>,
    servers: Vec<Server>,
    xvs: Vec<Xvs>,
    files: Vec<PathBuf>,
    /// `ethtool -K <if> tx off` on every new veth end.
    tx_off: bool,
    /// Put before the xvs binary and added to its environment (see
    /// [`Lab::wrap_xvs`]).
    wrap: Vec<String>,
    env: Vec<(String, String)>,
}

impl Lab {
    /// A new, empty lab; `None` (after printing SKIP) when the machine
    /// cannot run it.
    pub fn new(test: &str) -> Option<Lab> {
        if let Some(why) = unavailable() {
            println!("SKIP {test}: {why}");
            return None;
        }
        static N: AtomicU64 = AtomicU64::new(0);
        let base = format!(
            "xvs-lab-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        Some(Lab {
            base,
            namespaces: Vec::new(),
            servers: Vec::new(),
            xvs: Vec::new(),
            files: Vec::new(),
            tx_off: false,
            wrap: Vec::new(),
            env: Vec::new(),
        })
    }

    /// Creates namespace `<base>-<role>` with lo up; returns its name.
    pub fn ns(&mut self, role: &str) -> String {
        let name = format!("{}-{role}", self.base);
        must(&["ip", "netns", "add", &name]);
        self.namespaces.push(name.clone());
        must(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// From now on, veth ends are made with TX checksum offload off, so
    /// their senders put full TCP/UDP checksums on the wire as a real
    /// NIC delivers them (the default leaves partial ones).
    pub fn full_checksums(&mut self) {
        self.tx_off = true;
    }

    /// A veth pair `a_if` (in `a`) — `b_if` (in `b`), both up, offloads
    /// at the kernel's defaults (unless [`Lab::full_checksums`]);
    /// `queues` RX/TX queues on the `a` end (the `b` end keeps one, so
    /// everything it sends lands on queue 0).
    pub fn veth(&mut self, a: &str, a_if: &str, b: &str, b_if: &str, queues: u32) {
        let q = queues.max(1).to_string();
        #[rustfmt::skip]
        must(&["ip", "-n", a, "link", "add", "name", a_if, "numtxqueues", &q, "numrxqueues", &q, "type", "veth",
               "peer", "name", b_if, "numtxqueues", "1", "numrxqueues", "1", "netns", b]);
        for (ns, i) in [(a, a_if), (b, b_if)] {
            if self.tx_off {
                must(&["ip", "netns", "exec", ns, "ethtool", "-K", i, "tx", "off"]);
            }
            must(&["ip", "-n", ns, "link", "set", i, "up"]);
        }
    }

    /// A bridge `br0` in namespace `ns` with `ports` (already in `ns`).
    pub fn bridge(&mut self, ns: &str, ports: &[&str]) {
        must(&["ip", "-n", ns, "link", "add", "br0", "type", "bridge"]);
        must(&["ip", "-n", ns, "link", "set", "br0", "up"]);
        for p in ports {
            must(&["ip", "-n", ns, "link", "set", p, "master", "br0"]);
        }
    }

    /// `ip -n <ns> <args...>`.
    pub fn ip(&self, ns: &str, args: &[&str]) {
        let mut v = vec!["ip", "-n", ns];
        v.extend_from_slice(args);
        must(&v);
    }

    /// `ip netns exec <ns> <args...>`, its stdout.
    pub fn exec(&self, ns: &str, args: &[&str]) -> String {
        let mut v = vec!["ip", "netns", "exec", ns];
        v.extend_from_slice(args);
        must(&v)
    }

    /// True when an XDP program is attached to `iface` in `ns`.
    pub fn xdp_attached(&self, ns: &str, iface: &str) -> bool {
        let out = must(&["ip", "-n", ns, "-d", "link", "show", "dev", iface]);
        out.split_whitespace().any(|w| w == "xdp" || w.starts_with("xdp/") || w == "xdpgeneric" || w == "prog/xdp")
    }

    /// `sysctl -qw <kv>` in `ns`.
    pub fn sysctl(&self, ns: &str, kv: &str) {
        self.exec(ns, &["sysctl", "-qw", kv]);
    }

    /// Makes `ns` a DR/TUN real server for `vip`: the VIP on lo, and no
    /// ARP answers for it (arp_ignore=1, arp_announce=2).
    pub fn real_server_vip(&self, ns: &str, vip: &str) {
        self.ip(ns, &["addr", "add", &format!("{vip}/32"), "dev", "lo"]);
        for k in ["all", "default"] {
            self.sysctl(ns, &format!("net.ipv4.conf.{k}.arp_ignore=1"));
            self.sysctl(ns, &format!("net.ipv4.conf.{k}.arp_announce=2"));
        }
    }

    /// An HTTP server in `ns` on `addr` answering `GET` with
    /// `<name> <peer ip>:<peer port>\n`.
    pub fn http_server(&mut self, ns: &str, addr: SocketAddr, name: &str) {
        let name = name.to_string();
        let server = serve_in(ns, format!("bind {addr}"), move || listen(addr), move |l: &TcpListener| match l.accept() {
            Ok((s, peer)) => serve_http(s, peer, &name),
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        });
        self.servers.push(server);
    }

    /// A UDP server in `ns` on `addr` answering each datagram with
    /// `<name> <peer ip>:<peer port>`.
    pub fn udp_server(&mut self, ns: &str, addr: SocketAddr, name: &str) {
        let name = name.to_string();
        let mut buf = [0u8; 2048];
        let server = serve_in(ns, format!("bind udp {addr}"), move || udp_bind(addr), move |s: &UdpSocket| {
            if let Ok((_, peer)) = s.recv_from(&mut buf) {
                let _ = s.send_to(format!("{name} {peer}").as_bytes(), peer);
            }
        });
        self.servers.push(server);
    }

    /// Starts the xvs processes that follow wrapped in `wrap` (a command
    /// that ends by running its arguments, e.g. `setpriv --reuid ...`),
    /// with `env` added to their environment.
    pub fn wrap_xvs(&mut self, wrap: &[&str], env: &[(&str, &str)]) {
        self.wrap = wrap.iter().map(|s| s.to_string()).collect();
        self.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    }

    /// Starts `xvs run` in `ns` with `config` (TOML text) and `args`, and
    /// waits until it runs and has resolved every next hop.
    pub fn xvs(&mut self, ns: &str, config: &str, args: &[&str]) -> usize {
        self.xvs_until(ns, config, args, xvs::daemon::LOG_HOPS_RESOLVED)
    }

    /// As [`Lab::xvs`], waiting for a log line containing `ready`.
    pub fn xvs_until(&mut self, ns: &str, config: &str, args: &[&str], ready: &str) -> usize {
        self.xvs_with(ns, Some(config), args, &[], ready)
    }

    /// Starts `xvs run` in `ns` with `config` (TOML text; `None`: no
    /// `--config` at all), `args` and the environment variables `env`,
    /// and waits for a log line containing `ready`.
    pub fn xvs_with(&mut self, ns: &str, config: Option<&str>, args: &[&str], env: &[(&str, &str)], ready: &str) -> usize {
        let path = std::env::temp_dir().join(format!("{}-{}.toml", self.base, self.files.len()));
        if let Some(config) = config {
            std::fs::write(&path, config).unwrap();
        }
        self.files.push(path.clone());
        let bin = env!("CARGO_BIN_EXE_xvs");
        let socket = std::env::temp_dir().join(format!("{}-{}.sock", self.base, self.files.len()));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .args(&self.wrap)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args([bin, "run"]);
        if config.is_some() {
            cmd.arg("--config").arg(&path);
        }
        cmd.arg("--counters").args(args).envs(env.iter().copied());
        if !args.contains(&"--socket") {
            cmd.arg("--socket").arg(&socket);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning xvs");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log2.lock().unwrap().push(line);
            }
        });
        let stdout = child.stdout.take();
        self.xvs.push(Xvs {
            child,
            log,
            stdout,
            config: path,
            socket,
        });
        let i = self.xvs.len() - 1;
        self.wait_log(i, ready, Duration::from_secs(10));
        // And until every worker runs its loop (what READY=1 tells
        // systemd): each faults its presized connection index in first,
        // which takes seconds when several labs start at once, and a SYN
        // sent before then waits in the RX ring past the client's timeout.
        self.wait_log(i, READY, Duration::from_secs(30));
        i
    }

    /// Waits until xvs `i` logged a line containing `what`.
    pub fn wait_log(&mut self, i: usize, what: &str, timeout: Duration) {
        let t0 = Instant::now();
        loop {
            if self.xvs[i]
                .log
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(what))
            {
                return;
            }
            if let Ok(Some(st)) = self.xvs[i].child.try_wait() {
                panic!(
                    "xvs exited ({st}) before logging '{what}':\n{}",
                    self.log(i)
                );
            }
            if t0.elapsed() > timeout {
                panic!(
                    "xvs did not log '{what}' within {timeout:?}:\n{}",
                    self.log(i)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Replaces xvs `i`'s config file (for a SIGHUP reload) atomically,
    /// as careful tools do (a new file renamed over the old): a reload
    /// racing an in-place write could read it truncated, and an empty
    /// file is a valid configuration without services.
    pub fn rewrite_config(&self, i: usize, config: &str) {
        let path = &self.xvs[i].config;
        let tmp = path.with_extension("toml.new");
        std::fs::write(&tmp, config).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    /// xvs `i`'s control socket (unless the test gave `--socket`).
    pub fn socket(&self, i: usize) -> &std::path::Path {
        &self.xvs[i].socket
    }

    /// xvs `i`'s process id (`ip netns exec` and a wrapper such as
    /// setpriv exec it: the child's).
    pub fn pid(&self, i: usize) -> u32 {
        self.xvs[i].child.id()
    }

    /// xvs `i`'s stderr so far.
    pub fn log(&self, i: usize) -> String {
        self.xvs[i].log.lock().unwrap().join("\n")
    }

    /// Sends a signal to xvs `i` (`ip netns exec` runs it as a direct
    /// child: its pid is the child's).
    pub fn signal(&self, i: usize, sig: &str) {
        must(&[
            "kill",
            &format!("-{sig}"),
            &self.xvs[i].child.id().to_string(),
        ]);
    }

    /// Waits up to `timeout` for xvs `i` to end by itself: its exit
    /// status and stdout (panics when it is still running).
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> (std::process::ExitStatus, String) {
        let t0 = Instant::now();
        let status = loop {
            if let Some(st) = self.xvs[i].child.try_wait().unwrap() {
                break st;
            }
            if t0.elapsed() > timeout {
                panic!("xvs did not exit within {timeout:?}:\n{}", self.log(i));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        if let Some(mut s) = self.xvs[i].stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        (status, out)
    }

    /// Stops xvs `i` with SIGTERM and returns its exit status and the
    /// `--counters` output as (name, value) pairs plus the `dest` lines.
    /// Checks that every worker's counters balance (see
    /// [`Counters::check_balance`]).
    pub fn stop_xvs(&mut self, i: usize) -> Counters {
        let c = self.stop_xvs_unchecked(i);
        if let Err(e) = c.check_balance() {
            panic!("{e}\n{}", self.log(i));
        }
        c
    }

    /// [`Lab::stop_xvs`] without the balance check.
    pub fn stop_xvs_unchecked(&mut self, i: usize) -> Counters {
        self.try_stop_xvs(i).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Stops xvs `i` (SIGTERM) and reads its counters; an error when it
    /// does not stop within 10 s or exits with a failure.
    fn try_stop_xvs(&mut self, i: usize) -> Result<Counters, String> {
        let _ = sh(&["kill", "-TERM", &self.xvs[i].child.id().to_string()]);
        let t0 = Instant::now();
        let status = loop {
            match self.xvs[i].child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) => {}
                Err(e) => return Err(format!("waiting for xvs: {e}")),
            }
            if t0.elapsed() > Duration::from_secs(10) {
                let _ = self.xvs[i].child.kill();
                return Err(format!("xvs did not stop within 10 s:\n{}", self.log(i)));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        if let Some(mut s) = self.xvs[i].stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        if !status.success() {
            return Err(format!("xvs exited with {status}:\n{}\n{out}", self.log(i)));
        }
        Ok(Counters::parse(&out))
    }
}

/// What `xvs run --counters` prints at exit.
#[derive(Debug, Default)]
pub struct Counters {
    pub values: Vec<(String, u64)>,
    /// `dest ...` lines.
    pub dests: Vec<String>,
    /// Each worker's balance terms (`worker N rx=.. made=.. ...`).
    pub workers: Vec<(u32, Vec<(String, u64)>)>,
    pub text: String,
}

impl Counters {
    fn parse(out: &str) -> Counters {
        let mut c = Counters {
            text: out.to_string(),
            ..Counters::default()
        };
        for line in out.lines() {
            if line.starts_with("dest ") {
                c.dests.push(line.to_string());
            } else if let Some(rest) = line.strip_prefix("worker ") {
                let mut words = rest.split_whitespace();
                let Some(id) = words.next().and_then(|w| w.parse().ok()) else {
                    continue;
                };
                let terms = words
                    .filter_map(|w| w.split_once('='))
                    .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
                    .collect();
                c.workers.push((id, terms));
            } else if let Some((k, v)) = line.split_once('=') {
                if let Ok(v) = v.trim().parse() {
                    c.values.push((k.to_string(), v));
                }
            }
        }
        c
    }

    /// Counter `name` (panics when xvs did not print it).
    pub fn get(&self, name: &str) -> u64 {
        self.values
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no counter {name} in:\n{}", self.text))
    }

    /// The counters' promise (docs/operations.md, "Counters that
    /// balance"): in every worker, `rx + made = tx + dropped + to_kernel
    /// + handed_off`, and every frame given to the kernel path was written
    /// to the kernel or failed to be (`kernel_sent + kernel_errors`).
    pub fn check_balance(&self) -> Result<(), String> {
        if self.workers.is_empty() {
            return Err(format!("no worker balance lines in:\n{}", self.text));
        }
        for (id, terms) in &self.workers {
            let t = |k: &str| terms.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
            let (Some(rx), Some(made), Some(tx), Some(dropped), Some(kernel), Some(off)) =
                (t("rx"), t("made"), t("tx"), t("dropped"), t("to_kernel"), t("handed_off"))
            else {
                return Err(format!("worker {id}: incomplete balance line in:\n{}", self.text));
            };
            if rx + made != tx + dropped + kernel + off {
                return Err(format!(
                    "worker {id}: counters do not balance: rx {rx} + made {made} != tx {tx} + dropped {dropped} + to_kernel {kernel} + handed_off {off}\n{}",
                    self.text
                ));
            }
        }
        let passed: u64 = self
            .values
            .iter()
            .filter(|(k, _)| k.starts_with("pass_"))
            .map(|(_, v)| v)
            .sum();
        let written = self.get("kernel_sent") + self.get("kernel_errors");
        if passed != written {
            return Err(format!(
                "{passed} frames passed to the kernel, but the kernel path wrote {written}\n{}",
                self.text
            ));
        }
        Ok(())
    }

    /// Value of `key=` in the `dest` line of `addr` (e.g. `conns`).
    pub fn dest(&self, addr: &str, key: &str) -> u64 {
        let line = self
            .dests
            .iter()
            .find(|l| {
                l.split_whitespace()
                    .nth(3)
                    .is_some_and(|a| a.starts_with(&format!("{addr}:")))
            })
            .unwrap_or_else(|| panic!("no dest {addr} in:\n{}", self.text));
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // An xvs the test left running is stopped here, and its counters
        // must balance as well (unless the test already failed).
        if !std::thread::panicking() {
            let mut unbalanced = Vec::new();
            for i in 0..self.xvs.len() {
                if matches!(self.xvs[i].child.try_wait(), Ok(None)) && self.xvs[i].stdout.is_some() {
                    if let Err(e) = self.try_stop_xvs(i).and_then(|c| c.check_balance()) {
                        unbalanced.push(format!("xvs {i}: {e}"));
                    }
                }
            }
            if !unbalanced.is_empty() {
                self.cleanup();
                panic!("{}", unbalanced.join("\n"));
            }
        }
        self.cleanup();
    }
}

impl Lab {
    /// Stops every xvs and server and removes what the lab made.
    fn cleanup(&mut self) {
        for x in &mut self.xvs {
            let _ = Command::new("kill")
                .args(["-TERM", &x.child.id().to_string()])
                .output();
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = x.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = x.child.kill();
            let _ = x.child.wait();
            let _ = std::fs::remove_file(&x.config);
            let _ = std::fs::remove_file(&x.socket);
        }
        for s in &mut self.servers {
            s.stop();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

fn serve_http(mut s: TcpStream, peer: SocketAddr, name: &str) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
        if req.len() > 16384 {
            return;
        }
    }
    let body = format!("{name} {peer}\n");
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes());
}

/// One HTTP GET from namespace `ns` to `addr`: the body, or why it failed.
pub fn http_get(ns: &str, addr: SocketAddr) -> Result<String, String> {
    http_gets(ns, addr, 1).pop().unwrap()
}

/// `n` HTTP GETs in a row (new connection each) from namespace `ns`.
pub fn http_gets(ns: &str, addr: SocketAddr, n: usize) -> Vec<Result<String, String>> {
    in_ns(ns, move || (0..n).map(|_| get_once(addr)).collect())
}

/// `n` HTTP GETs in a row from namespace `ns`, connection `i` from source
/// address `srcs[i % srcs.len()]`.
pub fn http_gets_from(
    ns: &str,
    srcs: Vec<IpAddr>,
    addr: SocketAddr,
    n: usize,
) -> Vec<Result<String, String>> {
    in_ns(ns, move || {
        (0..n)
            .map(|i| {
                let s = connect_from(srcs[i % srcs.len()], 0, addr, Some(Duration::from_secs(5)))?;
                exchange(s, addr)
            })
            .collect()
    })
}

/// A TCP connection to `to` from the local address `from` and port
/// `port` (0: the kernel picks one), bound before connecting, which std's
/// TcpStream cannot do; with `timeout`, the connect gives up after it
/// (Linux bounds a blocking connect by SO_SNDTIMEO).
pub fn connect_from(from: IpAddr, port: u16, to: SocketAddr, timeout: Option<Duration>) -> Result<TcpStream, String> {
    use std::os::fd::FromRawFd;
    let (IpAddr::V4(f), SocketAddr::V4(t)) = (from, to) else {
        return Err("connect_from: IPv4 only".into());
    };
    let sa = |a: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: a fresh socket fd is owned by the TcpStream on success and
    // closed on every failure; the structs outlive the calls.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        let fail = |what: &str| {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            Err(format!("{what}: {e}"))
        };
        if let Some(timeout) = timeout {
            let tv = libc::timeval {
                tv_sec: timeout.as_secs() as libc::time_t,
                tv_usec: timeout.subsec_micros() as libc::suseconds_t,
            };
            if libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_SNDTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            ) != 0
            {
                return fail("SO_SNDTIMEO");
            }
        }
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let local = sa(f, port);
        if libc::bind(fd, &local as *const _ as *const libc::sockaddr, len) != 0 {
            return fail(&format!("bind {from}"));
        }
        let remote = sa(*t.ip(), t.port());
        if libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len) != 0 {
            return fail(&format!("connect {to} from {from}"));
        }
        Ok(TcpStream::from_raw_fd(fd))
    }
}

fn get_once(addr: SocketAddr) -> Result<String, String> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    exchange(s, addr)
}

fn exchange(mut s: TcpStream, addr: SocketAddr) -> Result<String, String> {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)
        .map_err(|e| format!("read: {e}"))?;
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP response: {resp:?}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("status: {head}"));
    }
    Ok(body.trim().to_string())
}

/// Sends `n` datagrams from `ns` to `addr`, each from a socket (and port)
/// of its own, and waits for each answer: (its text, the address it came
/// from).
pub fn udp_ask(ns: &str, addr: SocketAddr, n: usize) -> UdpAsked {
    in_ns(ns, move || {
        // Every socket stays open until all have asked: a closed one's
        // port could be the kernel's next pick, and two "clients" would
        // then share one 4-tuple (one UDP connection at the director).
        let mut open = Vec::with_capacity(n);
        let mut sent = 0;
        let answers = (0..n)
            .map(|i| {
                let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                let mut buf = [0u8; 512];
                let mut answer = Err(format!("no answer from {addr}"));
                // A lost datagram (e.g. the first one while a neighbour is
                // resolved) or a late answer (a loaded machine) is asked
                // again, as a DNS client would.
                for _ in 0..3 {
                    s.send_to(format!("ping {i}").as_bytes(), addr)
                        .map_err(|e| e.to_string())?;
                    sent += 1;
                    if let Ok((len, from)) = s.recv_from(&mut buf) {
                        answer = Ok((String::from_utf8_lossy(&buf[..len]).into_owned(), from));
                        break;
                    }
                }
                open.push(s);
                answer
            })
            .collect();
        UdpAsked { answers, sent }
    })
}

/// What [`udp_ask`] got: an answer (its text and where it came from) or
/// why not, per client socket, and how many datagrams were sent in all
/// (more than one per socket when an answer was late or lost).
pub struct UdpAsked {
    pub answers: Vec<Result<(String, SocketAddr), String>>,
    pub sent: usize,
}

/// Runs xvsadm against `socket` with `args` (split at white space):
/// (exit code, stdout, stderr).
pub fn xvsadm(socket: &std::path::Path, args: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xvsadm"))
        .arg("--socket")
        .arg(socket)
        .args(args.split_whitespace())
        .output()
        .expect("running xvsadm");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The resident set of process `pid` in KiB (0 when it cannot be read).
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// The server name in an answer `<name> <peer>`.
pub fn who(body: &str) -> &str {
    body.split_whitespace().next().unwrap_or("")
}

/// Which of two real servers named `rs1` and `rs2` answered, as an index
/// (rs1: 0); any other answer fails the test.
pub fn rs_index(body: &str) -> usize {
    match who(body) {
        "rs1" => 0,
        "rs2" => 1,
        other => panic!("unexpected answer {other:?}"),
    }
}

/// The peer address the server saw in an answer `<name> <peer>`.
pub fn peer_ip(body: &str) -> IpAddr {
    let p: SocketAddr = body
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no peer in {body:?}"));
    p.ip()
}

/// The namespaces of a topology.
pub struct Topo {
    pub client: String,
    pub director: String,
    pub switch: String,
    pub rs: Vec<String>,
    /// `10.<net>.` — the topology's address prefix.
    pub net: u8,
}

impl Topo {
    /// `10.<net>.<a>.<b>`.
    pub fn addr(&self, a: u8, b: u8) -> String {
        format!("10.{}.{a}.{b}", self.net)
    }

    /// `10.<net>.<a>.<b>:<port>` as a socket address.
    pub fn sock(&self, a: u8, b: u8, port: u16) -> SocketAddr {
        format!("10.{}.{a}.{b}:{port}", self.net).parse().unwrap()
    }

    /// The client's addresses, `10.<net>.0.2` to `.9` (the first is its
    /// primary: the kernel's choice of source). Workers shard flows by
    /// client address, so spreading connections over several addresses
    /// spreads them over workers.
    pub fn clients(&self) -> Vec<IpAddr> {
        (CLIENT_FIRST..=CLIENT_LAST)
            .map(|b| self.addr(0, b).parse().unwrap())
            .collect()
    }
}

const CLIENT_FIRST: u8 = 2;
const CLIENT_LAST: u8 = 9;

/// Gives the client namespace its extra addresses (`.3` to `.9`; `.2` is
/// set by the topology).
fn client_addrs(lab: &Lab, t: &Topo) {
    for b in CLIENT_FIRST + 1..=CLIENT_LAST {
        lab.ip(
            &t.client,
            &["addr", "add", &format!("{}/24", t.addr(0, b)), "dev", "c0"],
        );
    }
}

/// DR and TUN: one LAN (a bridge) with the client `.2`, the director `.1`
/// (interface `d0`, `queues` queues, holding the VIP `.100` so its kernel
/// answers ARP for it) and `n` real servers `.11`, `.12`, ... (interface
/// `eth0`) holding the VIP on lo without answering ARP for it. All in
/// `10.<net>.0.0/24`. The director's kernel does not forward
/// (ip_forward=0): whatever reaches the real servers went through xvs, and
/// replies can only reach the client directly.
pub fn lan(lab: &mut Lab, net: u8, queues: u32, n: usize) -> Topo {
    let c = lab.ns("c");
    let d = lab.ns("d");
    let sw = lab.ns("sw");
    let t = Topo {
        client: c.clone(),
        director: d.clone(),
        switch: sw.clone(),
        rs: Vec::new(),
        net,
    };
    lab.veth(&d, "d0", &sw, "sw-d", queues);
    lab.veth(&c, "c0", &sw, "sw-c", 1);
    let mut ports = vec!["sw-d".to_string(), "sw-c".to_string()];
    let vip = t.addr(0, 100);
    lab.ip(
        &c,
        &["addr", "add", &format!("{}/24", t.addr(0, 2)), "dev", "c0"],
    );
    lab.ip(
        &d,
        &["addr", "add", &format!("{}/24", t.addr(0, 1)), "dev", "d0"],
    );
    lab.ip(&d, &["addr", "add", &format!("{vip}/32"), "dev", "d0"]);
    lab.sysctl(&d, "net.ipv4.ip_forward=0");
    let mut t = t;
    for i in 0..n {
        let r = lab.ns(&format!("r{}", i + 1));
        let sp = format!("sw-r{}", i + 1);
        lab.veth(&r, "eth0", &sw, &sp, 1);
        lab.ip(
            &r,
            &[
                "addr",
                "add",
                &format!("{}/24", t.addr(0, 11 + i as u8)),
                "dev",
                "eth0",
            ],
        );
        lab.real_server_vip(&r, &vip);
        ports.push(sp);
        t.rs.push(r);
    }
    let p: Vec<&str> = ports.iter().map(String::as_str).collect();
    lab.bridge(&sw, &p);
    client_addrs(lab, &t);
    t
}

/// NAT and FULLNAT: the client `10.<net>.0.2` on its own link to the
/// director (`d0`, `10.<net>.0.1`, holding the VIP `.0.100`), the real
/// servers `10.<net>.1.11`, `.12`, ... on a LAN (a bridge) behind the
/// director's `d1` (`10.<net>.1.1`). With `rs_via_director` the real
/// servers' default route is the director (NAT); without, they have no
/// route to the client at all (FULLNAT: they only ever talk to the local
/// address). The director's kernel does not forward (ip_forward=0).
pub fn two_legs(lab: &mut Lab, net: u8, queues: u32, n: usize, rs_via_director: bool) -> Topo {
    let c = lab.ns("c");
    let d = lab.ns("d");
    let sw = lab.ns("sw");
    let mut t = Topo {
        client: c.clone(),
        director: d.clone(),
        switch: sw.clone(),
        rs: Vec::new(),
        net,
    };
    lab.veth(&d, "d0", &c, "c0", queues);
    lab.veth(&d, "d1", &sw, "sw-d", queues);
    lab.ip(
        &c,
        &["addr", "add", &format!("{}/24", t.addr(0, 2)), "dev", "c0"],
    );
    lab.ip(
        &d,
        &["addr", "add", &format!("{}/24", t.addr(0, 1)), "dev", "d0"],
    );
    lab.ip(
        &d,
        &[
            "addr",
            "add",
            &format!("{}/32", t.addr(0, 100)),
            "dev",
            "d0",
        ],
    );
    lab.ip(
        &d,
        &["addr", "add", &format!("{}/24", t.addr(1, 1)), "dev", "d1"],
    );
    lab.sysctl(&d, "net.ipv4.ip_forward=0");
    let mut ports = vec!["sw-d".to_string()];
    for i in 0..n {
        let r = lab.ns(&format!("r{}", i + 1));
        let sp = format!("sw-r{}", i + 1);
        lab.veth(&r, "eth0", &sw, &sp, 1);
        lab.ip(
            &r,
            &[
                "addr",
                "add",
                &format!("{}/24", t.addr(1, 11 + i as u8)),
                "dev",
                "eth0",
            ],
        );
        if rs_via_director {
            lab.ip(&r, &["route", "add", "default", "via", &t.addr(1, 1)]);
        }
        ports.push(sp);
        t.rs.push(r);
    }
    let p: Vec<&str> = ports.iter().map(String::as_str).collect();
    lab.bridge(&sw, &p);
    client_addrs(lab, &t);
    t
}

/// Compiles `tests/lab/ipip_decap.bpf.c` (once per test process); `Err`
/// says why it cannot be (no clang).
pub fn ipip_decap_object() -> Result<PathBuf, String> {
    static OBJ: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    OBJ.get_or_init(|| {
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/lab/ipip_decap.bpf.c");
        // Cargo's scratch directory for integration tests: kept with the
        // build, not littering /tmp.
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("ipip_decap-{}.o", std::process::id()));
        let o = out.to_str().unwrap().to_string();
        let s = src.to_str().unwrap().to_string();
        sh(&["clang", "-O2", "-target", "bpf", "-c", &s, "-o", &o])
            .map_err(|e| format!("clang: {e}"))?;
        Ok(out)
    })
    .clone()
}

impl Lab {
    /// Decapsulates IP-in-IP arriving on `iface` in `ns` (tc ingress,
    /// `tests/lab/ipip_decap.bpf.c`).
    pub fn ipip_decap(&self, ns: &str, iface: &str) {
        let obj = ipip_decap_object().unwrap_or_else(|e| panic!("{e}"));
        self.exec(ns, &["tc", "qdisc", "add", "dev", iface, "clsact"]);
        #[rustfmt::skip]
        self.exec(ns, &["tc", "filter", "add", "dev", iface, "ingress", "bpf", "direct-action",
                        "obj", obj.to_str().unwrap(), "sec", "tc"]);
    }
}

/// A TCP server answering every line with its name, one thread per
/// connection.
pub fn name_echo_server(ns: &str, at: SocketAddr, name: &str, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    let (ns, name) = (ns.to_string(), name.to_string());
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        enter(&ns);
        let l = TcpListener::bind(at).unwrap_or_else(|e| panic!("bind {at} in {ns}: {e}"));
        l.set_nonblocking(true).unwrap();
        tx.send(()).unwrap();
        let mut conns = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((s, _)) => {
                    let (name, stop) = (name.clone(), stop.clone());
                    conns.push(std::thread::spawn(move || {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                        let mut w = s.try_clone().unwrap();
                        let mut r = BufReader::new(s);
                        let mut line = String::new();
                        while !stop.load(Ordering::Relaxed) {
                            line.clear();
                            match r.read_line(&mut line) {
                                Ok(0) => return,
                                Ok(_) => {
                                    if w.write_all(format!("{name}\n").as_bytes()).is_err() {
                                        return;
                                    }
                                }
                                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                                Err(_) => return,
                            }
                        }
                    }));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
            conns.retain(|c| !c.is_finished());
        }
        for c in conns {
            let _ = c.join();
        }
    });
    rx.recv_timeout(Duration::from_secs(5)).expect("echo server started");
    h
}

/// Sends "ping" on a connection to a [`name_echo_server`] and reads its
/// answer line (the server's name).
pub fn one_line(s: &mut TcpStream, r: &mut BufReader<TcpStream>) -> Result<String, String> {
    s.write_all(b"ping\n").map_err(|e| format!("send: {e}"))?;
    let mut l = String::new();
    match r.read_line(&mut l) {
        Ok(0) => Err("closed".into()),
        Ok(_) => Ok(l.trim().to_string()),
        Err(e) => Err(format!("read: {e}")),
    }
}

/// Spoofed SYNs to `vip:port` from namespace `ns` until stopped, about
/// 10 k per second, at least `min` of them, from sources `.150` to `.249`
/// of the VIP's /24 (addresses no host of the labs holds) and ports
/// 1024 on. Stopping returns how many were sent.
pub struct Flood {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    handle: Option<JoinHandle<u64>>,
}

impl Flood {
    pub fn start(ns: &str, vip: [u8; 4], port: u16, min: u64) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let sent_out = Arc::new(AtomicU64::new(0));
        let (ns, stop2, sent2) = (ns.to_string(), stop.clone(), sent_out.clone());
        let handle = std::thread::spawn(move || {
            enter(&ns);
            // SAFETY: a raw socket owned by this thread, closed below; the
            // buffers and sockaddr outlive each call.
            unsafe {
                let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW);
                assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
                let dst = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: 0,
                    sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(vip) },
                    sin_zero: [0; 8],
                };
                let mut sent = 0u64;
                while sent < min || !stop2.load(Ordering::Relaxed) {
                    let src = [vip[0], vip[1], vip[2], 150 + (sent % 100) as u8];
                    let sport = 1024 + (sent / 100 % 60_000) as u16;
                    let frame = xvs::gen::packet::tcp4(src, sport, vip, port, xvs::wire::tcp_flags::SYN, b"");
                    let ip = &frame[14..];
                    let n = libc::sendto(
                        fd,
                        ip.as_ptr() as *const libc::c_void,
                        ip.len(),
                        0,
                        &dst as *const _ as *const libc::sockaddr,
                        std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    );
                    assert_eq!(n, ip.len() as isize, "sendto: {}", std::io::Error::last_os_error());
                    sent += 1;
                    sent2.store(sent, Ordering::Relaxed);
                    if sent % 50 == 0 {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                libc::close(fd);
                sent
            }
        });
        Flood { stop, sent: sent_out, handle: Some(handle) }
    }

    /// Waits until `n` SYNs are out.
    pub fn wait_sent(&self, n: u64) {
        let t0 = std::time::Instant::now();
        while self.sent.load(Ordering::Relaxed) < n {
            assert!(t0.elapsed() < Duration::from_secs(20), "the flood stalled");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().map_or(0, |h| h.join().expect("flood thread"))
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop();
    }
}
