//! Scale-out behind ECMP end to end (issue 15, docs/scale-out.md): a
//! router running BIRD with ECMP into its kernel, directors each running
//! BIRD (configs/bird/xvs-director.conf) and `xvs run` (DR, mh,
//! sloppy_tcp, `[announce]`), three real servers, and a client whose
//! long-lived connections exchange a line every 100 ms.
//!
//! Topology (10.60.0.0/24 is bridge `br0` in the router's namespace):
//!
//! ```text
//!  client c0 10.60.9.2 ── rt-c 10.60.9.1  router (BIRD, ECMP, L4 hash)
//!                                  br0 10.60.0.1
//!       ├── d1..d4 d0 10.60.0.11-.14   xvs -i d0 + BIRD (BGP + BFD to .1)
//!       └── r1..r3 eth0 10.60.0.21-.23 VIP 10.60.100.1 on lo (DR)
//! ```
//!
//! Each director announces the VIP (a /32 in table 100 out of its
//! `xvs-announce` device, learned by BIRD's kernel protocol, exported by
//! BGP); the router merges the equal BGP paths into one multipath route.
//! Events, each under traffic, with the connections broken counted:
//! steady state (all three directors forward: their counters), SIGKILL of
//! director 1's xvs and BIRD (BFD withdraws it: the time is printed), its
//! return and a fourth director, and the real servers' health checks
//! failing on director 2 alone (it withdraws the VIP; the others keep it),
//! director 3's link going down and up (BFD), and a clean stop of
//! director 4 (SIGTERM: it withdraws first).
//! The figures are printed as `scale:` lines (docs/scale-out.md).

mod lab;

use lab::{connect_from, Lab};
use std::io::BufReader;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const VIP: &str = "10.60.100.1";
/// Long-lived client connections (each its own source port).
const CONNS: usize = 200;

fn bird_missing() -> bool {
    Command::new("bird").arg("--version").output().is_err()
}

/// BIRD processes, killed on drop.
#[derive(Default)]
struct Birds(Vec<(String, Child, PathBuf)>);

/// SIGKILL, and its files removed.
fn end_bird(c: &mut Child, base: &Path) {
    let _ = c.kill();
    let _ = c.wait();
    for ext in ["conf", "ctl", "log"] {
        let _ = std::fs::remove_file(base.with_extension(ext));
    }
}

impl Birds {
    fn kill(&mut self, ns: &str) {
        for (n, c, base) in self.0.iter_mut() {
            if n == ns {
                end_bird(c, base);
            }
        }
        self.0.retain(|(n, _, _)| n != ns);
    }
}

impl Drop for Birds {
    fn drop(&mut self) {
        for (_, c, base) in self.0.iter_mut() {
            end_bird(c, base);
        }
    }
}

struct Scale {
    birds: Birds,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    lab: Lab,
    rt: String,
    client: String,
    /// Director namespaces (d1..d4) and the lab's index of their xvs.
    d: Vec<String>,
    xvs: Vec<Option<usize>>,
    dir: PathBuf,
}

impl Drop for Scale {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn d_addr(k: usize) -> String {
    format!("10.60.0.{}", 11 + k)
}

impl Scale {
    fn bird(&mut self, ns: &str, conf: &str) {
        let base = self.dir.join(format!("bird-{}-{ns}-{}", std::process::id(), self.birds.0.len()));
        std::fs::write(base.with_extension("conf"), conf).unwrap();
        let log = std::fs::File::create(base.with_extension("log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "bird", "-f", "-c"])
            .arg(base.with_extension("conf"))
            .arg("-s")
            .arg(base.with_extension("ctl"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting bird");
        self.birds.0.push((ns.to_string(), child, base));
    }

    /// Director `k`'s BIRD: the shipped configs/bird/xvs-director.conf with
    /// this lab's addresses defined before it.
    fn director_bird(&mut self, k: usize) {
        let common = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/bird/xvs-director.conf");
        let conf = format!(
            "log stderr all;\nrouter id {a};\ndefine XVS_TABLE = 100;\ndefine LOCAL_AS = 65001;\ndefine ROUTER = 10.60.0.1;\ndefine ROUTER_AS = 65000;\ninclude \"{}\";\n",
            common.display(),
            a = d_addr(k)
        );
        let ns = self.d[k].clone();
        self.bird(&ns, &conf);
    }

    fn start_xvs(&mut self, k: usize) {
        let rs = (0..3)
            .map(|i| {
                format!(
                    "  [[service.real_server]]\n  ip = \"10.60.0.{}\"\n  mode = \"dr\"\n    [service.real_server.check]\n    type = \"tcp\"\n    interval = \"500ms\"\n    timeout = \"400ms\"\n    rise = 1\n    fall = 2\n",
                    21 + i
                )
            })
            .collect::<String>();
        let cfg = format!(
            "[global]\nsloppy_tcp = true\n\n[announce]\ntable = 100\n\n[[service]]\nproto = \"tcp\"\nvip = \"{VIP}\"\nport = 80\nscheduler = \"mh\"\nflags = [\"mh-port\"]\n{rs}"
        );
        let ns = self.d[k].clone();
        self.xvs[k] = Some(self.lab.xvs(&ns, &cfg, &["-i", "d0", "--workers", "1"]));
    }

    fn socket(&self, k: usize) -> PathBuf {
        self.lab.socket(self.xvs[k].unwrap()).to_path_buf()
    }

    fn xvsadm(&self, k: usize, args: &[&str]) -> String {
        let o = Command::new(env!("CARGO_BIN_EXE_xvsadm")).arg("--socket").arg(self.socket(k)).args(args).output().expect("running xvsadm");
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    }

    /// Director `k`'s packets in to the VIP service (`-L --stats`).
    fn inpkts(&self, k: usize) -> u64 {
        let out = self.xvsadm(k, &["-L", "-n", "--stats", "--exact"]);
        out.lines()
            .find(|l| l.starts_with("TCP") && l.contains(VIP))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Director `k`'s connections to the VIP (`-L -c`).
    fn conns(&self, k: usize) -> usize {
        let out = self.xvsadm(k, &["-L", "-n", "-c"]);
        out.lines().filter(|l| l.contains(&format!("{VIP}:80"))).count()
    }

    /// The router's next hops for the VIP.
    fn nexthops(&self) -> Vec<String> {
        let out = self.lab.exec(&self.rt, &["ip", "route", "show", VIP]);
        let mut v: Vec<String> =
            out.split_whitespace().collect::<Vec<_>>().windows(2).filter(|w| w[0] == "via").map(|w| w[1].to_string()).collect();
        v.sort();
        v
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for (n, _, base) in &self.birds.0 {
            let ctl = Command::new("birdc").arg("-s").arg(base.with_extension("ctl")).args(["show", "protocols"]).output();
            let ctl = ctl.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
            s += &format!("---- bird {n}\n{}\n{ctl}\n", std::fs::read_to_string(base.with_extension("log")).unwrap_or_default());
        }
        for (k, x) in self.xvs.iter().enumerate() {
            if let Some(i) = x {
                s += &format!("---- xvs d{}\n{}\n", k + 1, self.lab.log(*i));
            }
        }
        s += &format!("---- router routes\n{}\n", self.lab.exec(&self.rt, &["ip", "route"]));
        s
    }

    fn wait(&self, what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
        let t0 = Instant::now();
        while !f() {
            if t0.elapsed() > limit {
                panic!("timed out waiting for {what}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        t0.elapsed()
    }

    fn wait_nexthops(&self, want: &[usize], limit: Duration) -> Duration {
        let want: Vec<String> = want.iter().map(|&k| d_addr(k)).collect();
        self.wait(&format!("the router's next hops for the VIP to be {want:?}"), limit, || self.nexthops() == want)
    }
}

fn setup(test: &str) -> Option<Scale> {
    if bird_missing() {
        println!("SKIP {test}: bird is not installed (make deps)");
        return None;
    }
    let mut lab = Lab::new(test)?;
    let rt = lab.ns("rt");
    let c = lab.ns("c");
    lab.veth(&c, "c0", &rt, "rt-c", 1);
    lab.ip(&c, &["addr", "add", "10.60.9.2/24", "dev", "c0"]);
    lab.ip(&c, &["route", "add", "default", "via", "10.60.9.1"]);
    lab.ip(&rt, &["addr", "add", "10.60.9.1/24", "dev", "rt-c"]);
    lab.ip(&rt, &["link", "add", "br0", "type", "bridge"]);
    lab.ip(&rt, &["link", "set", "br0", "up"]);
    lab.ip(&rt, &["addr", "add", "10.60.0.1/24", "dev", "br0"]);
    lab.sysctl(&rt, "net.ipv4.ip_forward=1");
    lab.sysctl(&rt, "net.ipv4.fib_multipath_hash_policy=1");
    let d: Vec<String> = (0..4).map(|k| lab.ns(&format!("d{}", k + 1))).collect();
    for (k, dn) in d.iter().enumerate() {
        lab.veth(dn, "d0", &rt, &format!("rt-d{k}"), 1);
        lab.ip(&rt, &["link", "set", &format!("rt-d{k}"), "master", "br0"]);
        lab.ip(dn, &["addr", "add", &format!("{}/24", d_addr(k)), "dev", "d0"]);
        lab.sysctl(dn, "net.ipv4.ip_forward=0");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for i in 0..3u8 {
        let r = lab.ns(&format!("r{}", i + 1));
        lab.veth(&r, "eth0", &rt, &format!("rt-r{i}"), 1);
        lab.ip(&rt, &["link", "set", &format!("rt-r{i}"), "master", "br0"]);
        lab.ip(&r, &["addr", "add", &format!("10.60.0.{}/24", 21 + i), "dev", "eth0"]);
        lab.ip(&r, &["route", "add", "default", "via", "10.60.0.1"]);
        lab.real_server_vip(&r, VIP);
        threads.push(lab::name_echo_server(&r, SocketAddr::from(([0, 0, 0, 0], 80)), &format!("rs{}", i + 1), stop.clone()));
    }
    let mut s = Scale {
        birds: Birds::default(),
        stop,
        threads,
        lab,
        rt: rt.clone(),
        client: c,
        d,
        xvs: vec![None; 4],
        dir: PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
    };
    let common = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/bird/xvs-router.conf");
    let router = format!(
        "log stderr all;\nrouter id 10.60.0.1;\ndefine LOCAL_AS = 65000;\ndefine DIRECTOR_AS = 65001;\ndefine DIRECTORS = 10.60.0.0/24;\ninclude \"{}\";\n",
        common.display()
    );
    s.bird(&rt, &router);
    for k in 0..3 {
        s.start_xvs(k);
        s.director_bird(k);
    }
    let t = s.wait_nexthops(&[0, 1, 2], Duration::from_secs(30));
    println!("scale: three directors announced the VIP {:.1} s after their start", t.as_secs_f64());
    // BGP and BFD run over the very interfaces xvs's steering program is on.
    for k in 0..3 {
        assert!(s.lab.xdp_attached(&s.d[k], "d0"), "no XDP program on director {}'s d0", k + 1);
    }
    Some(s)
}


/// The client: [`CONNS`] connections, one thread each, a line every
/// 100 ms; a connection that fails is recorded and not reopened.
struct Traffic {
    stop: Arc<AtomicBool>,
    /// (connection, what, when)
    broken: Arc<Mutex<Vec<(usize, String, Instant)>>>,
    exchanges: Arc<AtomicUsize>,
    /// Each connection's real server (from its first answer).
    servers: Arc<Mutex<Vec<String>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Traffic {
    fn start(s: &Scale) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let broken = Arc::new(Mutex::new(Vec::new()));
        let exchanges = Arc::new(AtomicUsize::new(0));
        let servers = Arc::new(Mutex::new(vec![String::new(); CONNS]));
        let vip: IpAddr = VIP.parse().unwrap();
        let from: IpAddr = "10.60.9.2".parse().unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let mut threads = Vec::new();
        for i in 0..CONNS {
            let (ns, stop, broken, exchanges, servers, tx) =
                (s.client.clone(), stop.clone(), broken.clone(), exchanges.clone(), servers.clone(), ready_tx.clone());
            threads.push(std::thread::spawn(move || {
                lab::enter(&ns);
                let mut conn = match connect_from(from, 0, SocketAddr::new(vip, 80), Some(Duration::from_secs(5))) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                // Long enough to ride out a withdrawal and TCP's
                // retransmissions; a break is a reset or a wrong answer.
                conn.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let first = lab::one_line(&mut conn, &mut r);
                let _ = tx.send(first.clone().map(|_| ()));
                let Ok(rs) = first else { return };
                servers.lock().unwrap()[i] = rs.clone();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    match lab::one_line(&mut conn, &mut r) {
                        Ok(got) if got == rs => {
                            exchanges.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(other) => {
                            broken.lock().unwrap().push((i, format!("answered by {other}, not {rs}"), Instant::now()));
                            return;
                        }
                        Err(e) => {
                            broken.lock().unwrap().push((i, e, Instant::now()));
                            return;
                        }
                    }
                }
            }));
            // Connections open at about 200 a second.
            std::thread::sleep(Duration::from_millis(5));
        }
        for _ in 0..CONNS {
            if let Err(e) = ready_rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| Err("no answer".into())) {
                panic!("a connection did not start: {e}\n{}", s.logs());
            }
        }
        Traffic { stop, broken, exchanges, servers, threads }
    }

    fn broken(&self) -> usize {
        self.broken.lock().unwrap().len()
    }

    /// Waits until every connection made `n` more exchanges (on average).
    fn settle(&self, rounds: usize) {
        let target = self.exchanges.load(Ordering::Relaxed) + rounds * CONNS;
        let t0 = Instant::now();
        while self.exchanges.load(Ordering::Relaxed) < target && t0.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn three_directors_behind_ecmp_lose_and_gain_one_without_breaking_connections() {
    let Some(mut s) = setup("scale") else { return };
    let traffic = Traffic::start(&s);
    let spread: Vec<String> = {
        let sv = traffic.servers.lock().unwrap();
        (1..=3).map(|i| format!("rs{i} {}", sv.iter().filter(|x| **x == format!("rs{i}")).count())).collect()
    };
    println!("scale: {CONNS} connections open, real servers: {}", spread.join(", "));

    // Steady state: every director forwards.
    let before: Vec<u64> = (0..3).map(|k| s.inpkts(k)).collect();
    traffic.settle(5);
    let after: Vec<u64> = (0..3).map(|k| s.inpkts(k)).collect();
    let carried: Vec<usize> = (0..3).map(|k| s.conns(k)).collect();
    println!("scale: steady state: packets in per director over 5 rounds {:?}, connections {:?}", after.iter().zip(&before).map(|(a, b)| a - b).collect::<Vec<_>>(), carried);
    for k in 0..3 {
        assert!(after[k] > before[k], "director {} forwards nothing: {after:?}\n{}", k + 1, s.logs());
    }
    assert!(
        (1..=3).all(|i| traffic.servers.lock().unwrap().iter().any(|x| *x == format!("rs{i}"))),
        "mh-port spreads one client's connections over every real server"
    );
    assert_eq!(traffic.broken(), 0, "{:?}", traffic.broken.lock().unwrap());

    // Director 1 dies: SIGKILL of its xvs and BIRD.
    let lost = carried[0];
    let t0 = Instant::now();
    s.birds.kill(&s.d[0].clone());
    let pid = s.lab.pid(s.xvs[0].unwrap());
    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    s.wait_nexthops(&[1, 2], Duration::from_secs(15));
    let withdrawal = t0.elapsed();
    println!("scale: director 1 killed: the router withdrew it after {:.2} s", withdrawal.as_secs_f64());
    let _ = s.lab.wait_exit(s.xvs[0].unwrap(), Duration::from_secs(5));
    s.xvs[0] = None;
    // The kernel took the announcing device with the process.
    let devs = s.lab.exec(&s.d[0], &["ip", "-o", "link"]);
    assert!(!devs.contains("xvs-announce"), "{devs}");
    traffic.settle(10);
    let broken_kill = traffic.broken();
    println!(
        "scale: director 1 killed: {broken_kill} of {CONNS} connections broken (it carried {lost}); {:.1} s until every connection answered again",
        t0.elapsed().as_secs_f64()
    );
    assert!(broken_kill * 3 < lost.max(1), "{broken_kill} broken, not under 1/3 of the {lost} director 1 carried: {:?}\n{}", traffic.broken.lock().unwrap(), s.logs());

    // It comes back, and a fourth director joins.
    s.start_xvs(0);
    s.director_bird(0);
    let back = s.wait_nexthops(&[0, 1, 2], Duration::from_secs(30));
    println!("scale: director 1 back in the router's ECMP {:.1} s after its start", back.as_secs_f64());
    traffic.settle(5);
    s.start_xvs(3);
    s.director_bird(3);
    s.wait_nexthops(&[0, 1, 2, 3], Duration::from_secs(30));
    traffic.settle(10);
    let carried4: Vec<usize> = (0..4).map(|k| s.conns(k)).collect();
    let broken_join = traffic.broken() - broken_kill;
    println!("scale: director 1 back and director 4 added: {broken_join} connections broken; connections per director {carried4:?}");
    assert_eq!(broken_join, 0, "{:?}\n{}", traffic.broken.lock().unwrap(), s.logs());
    assert!(carried4[3] > 0, "director 4 took no connection: {carried4:?}");

    // Director 2's health checks fail for every real server: it alone
    // withdraws the VIP.
    s.wait_nexthops(&[0, 1, 2, 3], Duration::from_secs(1));
    s.lab.exec(&s.d[1], &["nft", "add", "table", "inet", "hc"]);
    s.lab.exec(&s.d[1], &["nft", "add", "chain", "inet", "hc", "out", "{ type filter hook output priority 0 ; }"]);
    s.lab.exec(&s.d[1], &["nft", "add", "rule", "inet", "hc", "out", "tcp", "dport", "80", "reject", "with", "tcp", "reset"]);
    let t = s.wait_nexthops(&[0, 2, 3], Duration::from_secs(15));
    println!("scale: director 2's real servers all down (health checks): withdrawn after {:.2} s", t.as_secs_f64());
    traffic.settle(10);
    let broken_hc = traffic.broken() - broken_kill - broken_join;
    println!("scale: director 2 withdrawn by its health checks: {broken_hc} connections broken");
    assert_eq!(broken_hc, 0, "{:?}\n{}", traffic.broken.lock().unwrap(), s.logs());
    s.lab.exec(&s.d[1], &["nft", "delete", "table", "inet", "hc"]);
    s.wait_nexthops(&[0, 1, 2, 3], Duration::from_secs(15));
    traffic.settle(5);

    // Director 3's link goes down (a dead machine: nothing closes its BGP
    // session): BFD withdraws it.
    let before_link = traffic.broken();
    s.lab.ip(&s.d[2], &["link", "set", "d0", "down"]);
    let t = s.wait_nexthops(&[0, 1, 3], Duration::from_secs(15));
    println!("scale: director 3's link down: the router withdrew it after {:.2} s (BFD)", t.as_secs_f64());
    traffic.settle(10);
    let broken_link = traffic.broken() - before_link;
    println!("scale: director 3's link down: {broken_link} connections broken");
    assert_eq!(broken_link, 0, "{:?}\n{}", traffic.broken.lock().unwrap(), s.logs());
    s.lab.ip(&s.d[2], &["link", "set", "d0", "up"]);
    let t = s.wait_nexthops(&[0, 1, 2, 3], Duration::from_secs(30));
    println!("scale: director 3's link up: announced again after {:.1} s", t.as_secs_f64());
    traffic.settle(5);
    assert_eq!(traffic.broken(), before_link, "{:?}\n{}", traffic.broken.lock().unwrap(), s.logs());

    // A clean stop of director 4 (SIGTERM, as systemd stops it): the
    // routes go first, so the router moves its flows before it stops
    // forwarding.
    let t0 = Instant::now();
    let c4 = s.lab.stop_xvs(s.xvs[3].unwrap());
    s.wait_nexthops(&[0, 1, 2], Duration::from_secs(15));
    println!("scale: director 4 stopped (SIGTERM): withdrawn {:.2} s after the signal", t0.elapsed().as_secs_f64());
    s.xvs[3] = None;
    traffic.settle(10);
    let broken_stop = traffic.broken() - before_link;
    println!("scale: director 4 stopped: {broken_stop} connections broken (it had forwarded {} packets)", c4.get("rx_packets"));
    assert_eq!(broken_stop, 0, "{:?}\n{}", traffic.broken.lock().unwrap(), s.logs());
    drop(traffic);
    let sloppy: Vec<String> = (0..3).map(|k| s.xvsadm(k, &["--stats"]).lines().find(|l| l.contains("sloppy")).unwrap_or("").trim().to_string()).collect();
    println!("scale: picked up in mid-connection per director: {sloppy:?}");
}
