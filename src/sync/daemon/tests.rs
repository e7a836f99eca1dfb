//! Two sync services in one process, talking unicast over loopback, each
//! with a worker thread that runs the real worker and its sync port.

use super::*;
use crate::ctl::config;
use crate::gen::packet::tcp4;
use crate::wire::tcp_flags::{ACK, SYN};
use crate::worker::{SyncPort, Worker};
use std::sync::mpsc;

use crate::daemon::DR_CONF as CONF;

fn snapshot() -> Arc<Snapshot> {
    Arc::new(Snapshot::build(&config::load_str(CONF, "t").unwrap(), None).unwrap())
}

/// A worker on its own thread, serving its sync port; frames are fed
/// through `tx`, the table size read from `conns`.
struct FakeWorker {
    tx: mpsc::Sender<Vec<Vec<u8>>>,
    conns: Arc<AtomicU64>,
    seen: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl FakeWorker {
    fn start(link: Arc<Link>) -> FakeWorker {
        let (tx, rx) = mpsc::channel::<Vec<Vec<u8>>>();
        let conns = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c2, s2, g2) = (conns.clone(), stop.clone(), seen.clone());
        let handle = std::thread::spawn(move || {
            let mut w = Worker::new(0, 1, snapshot(), 1_000_000_000);
            let mut port = SyncPort::new(link);
            while !s2.load(Ordering::Relaxed) {
                if let Ok(frames) = rx.try_recv() {
                    for f in frames {
                        let mut b = crate::io::mem::Batch::new();
                        b.push(&f, 0).unwrap();
                        b.process(&mut w, 1_000_000_000, |_, _| {});
                    }
                }
                port.serve(&mut w);
                c2.store(w.conns() as u64, Ordering::Relaxed);
                g2.store(port.params_seen(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(300));
            }
        });
        FakeWorker { tx, conns, seen, stop, handle: Some(handle) }
    }

    /// `n` established connections from 192.0.2.1, ports `from..`.
    fn connect(&self, from: u16, n: u16) {
        let mut f = Vec::new();
        for p in from..from + n {
            f.push(tcp4([192, 0, 2, 1], p, [10, 0, 0, 100], 80, SYN, b""));
            f.push(tcp4([192, 0, 2, 1], p, [10, 0, 0, 100], 80, ACK, b""));
        }
        self.tx.send(f).unwrap();
    }

    fn conns(&self) -> u64 {
        self.conns.load(Ordering::Relaxed)
    }
}

impl Drop for FakeWorker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A free UDP port and `N` free TCP ports on loopback, all different and
/// below the ephemeral range (a bulk pull's client port must not take a
/// bulk port another service of the test binds later).
fn ports<const N: usize>() -> (u16, [u16; N]) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = 20000 + (std::process::id() as u64 * 37) % 8000;
    let take = || loop {
        let p = (base + NEXT.fetch_add(1, Ordering::Relaxed) % 4000) as u16;
        if TcpListener::bind(("::", p)).is_ok() && UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    };
    let u = take();
    let mut out = [0; N];
    for o in out.iter_mut() {
        *o = take();
    }
    (u, out)
}

fn node(conf: SyncConf) -> (SyncService, FakeWorker) {
    let link = Arc::new(Link::default());
    let w = FakeWorker::start(link.clone());
    let s = SyncService::start(vec![link.clone()], Box::new(snapshot), conf).unwrap();
    // The worker runs with the daemon's parameters before traffic comes.
    wait("the worker's parameters", 5, || link.params_gen() > 0 && w.seen.load(Ordering::Relaxed) == link.params_gen());
    (s, w)
}

fn daemon(port: u16, syncid: u8) -> DaemonConf {
    DaemonConf { interface: "lo".into(), syncid, port: Some(port), ..DaemonConf::default() }
}

fn wait(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn base(peers: bool, bulk: u16) -> SyncConf {
    SyncConf {
        peers: if peers { vec!["127.0.0.1".parse().unwrap()] } else { vec![] },
        bulk_port: bulk,
        send_delay: Duration::from_millis(5),
        hello: Duration::from_millis(50),
        pull_timeout: Duration::from_secs(1),
        ..SyncConf::default()
    }
}

#[test]
fn a_starting_backup_pulls_the_table_then_follows_the_master() {
    let (p, [bulk_a, bulk_b]) = ports();
    let (a, wa) = node(SyncConf { master: Some(daemon(p, 5)), ..base(true, bulk_a) });
    wa.connect(1000, 40);
    wait("the master's connections", 5, || wa.conns() == 40);
    // A master alone with peers pulls too; its peer (the same address,
    // its own bulk port) is itself: in sync with nothing to pull.
    wait("the master in sync", 5, || a.in_sync());
    let (b, wb) = node(SyncConf { backup: Some(daemon(p, 5)), ..base(true, bulk_b) });
    assert!(!b.in_sync());
    // B's configured peer is 127.0.0.1 at its own bulk port (itself):
    // it learns A's from A's hellos and pulls from there.
    wait("the backup in sync", 10, || b.in_sync());
    assert_eq!(wb.conns(), 40, "{}", b.status_text());
    assert!(b.status_text().starts_with("sync: in sync (pulled 40 connection(s))"), "{}", b.status_text());
    assert_eq!(get(&a.stats().served_records), 40);
    // New connections follow live.
    wa.connect(2000, 10);
    wait("live updates", 5, || wb.conns() == 50);
    assert!(get(&a.stats().msgs_sent) > 0 && get(&b.stats().msgs_received) > 0);
    assert_eq!(a.list(), "master sync daemon (mcast=lo, syncid=5, maxlen=1472, group=224.0.0.81, port=".to_string() + &p.to_string() + ", ttl=1)\n");
    // Another sync id is ignored (after the new daemon's own pull).
    b.stop_daemon(Role::Backup).unwrap();
    // At once: the bulk port is free again (no TIME_WAIT on this side).
    b.start_daemon(Role::Backup, daemon(p, 6)).unwrap();
    wait("the backup in sync again", 10, || b.in_sync());
    wa.connect(3000, 5);
    wait("the other syncid counted", 5, || get(&b.stats().other_syncid) > 0);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(wb.conns(), 50);
    assert!(b.start_daemon(Role::Backup, daemon(p, 6)).unwrap_err().contains("already running"));
    assert!(a.stop_daemon(Role::Backup).unwrap_err().contains("No backup sync daemon is running"));
    a.stop_daemon(Role::Master).unwrap();
    assert!(!a.in_sync(), "no daemon, not in sync");
    assert_eq!(a.list(), "");
}

/// A backup of sync id 0 alone, for tests that send it messages by hand:
/// its sync port, the service and its worker.
fn lone_backup() -> (u16, SyncService, FakeWorker) {
    let (p, [bulk]) = ports();
    let (b, wb) = node(SyncConf { backup: Some(daemon(p, 0)), ..base(true, bulk) });
    (p, b, wb)
}

/// A DR connection 192.0.2.9:9 -> 10.0.0.100:80 (CONF's service) as a
/// master syncs it, for the tests that write sync messages by hand.
fn dr_conn() -> SyncConn {
    SyncConn {
        caddr: "192.0.2.9".parse().unwrap(),
        vaddr: "10.0.0.100".parse().unwrap(),
        daddr: "10.0.0.2".parse().unwrap(),
        laddr: "0.0.0.0".parse().unwrap(),
        cport: 9,
        vport: 80,
        dport: 80,
        lport: 0,
        proto: 6,
        state: 1,
        fwd: crate::ipvs::FwdMethod::Dr,
        template: false,
        inactive: false,
        timeout: 60,
        seqadj: None,
    }
}

fn key_file(dir: &std::path::Path, name: &str, key: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, key).unwrap();
    p
}

#[test]
fn with_a_key_only_signed_fresh_messages_are_taken() {
    let dir = tempfile::tempdir().unwrap();
    let good = key_file(dir.path(), "good", b"0123456789abcdef0123456789abcdef\n");
    let bad = key_file(dir.path(), "bad", b"fedcba9876543210fedcba9876543210");
    let (p, [bulk_a, bulk_b, bulk_c]) = ports();
    let signed = |k: &std::path::Path, bulk| SyncConf { auth_key_file: Some(k.into()), ..base(true, bulk) };
    let (b, wb) = node(SyncConf { backup: Some(daemon(p, 0)), ..signed(&good, bulk_b) });
    // A spoofer with the wrong key, and one with none.
    let (_c, wc) = node(SyncConf { master: Some(daemon(p, 0)), ..signed(&bad, bulk_c) });
    wc.connect(1000, 20);
    let (_d, wd) = node(SyncConf { master: Some(daemon(p, 0)), ..base(true, 0) });
    wd.connect(5000, 20);
    wait("spoofed messages refused", 5, || get(&b.stats().auth_failed) >= 2);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(wb.conns(), 0, "nothing inserted: {}", b.status_text());
    // The right key works.
    let (_a, wa) = node(SyncConf { master: Some(daemon(p, 0)), ..signed(&good, bulk_a) });
    wa.connect(3000, 10);
    wait("signed updates", 5, || wb.conns() == 10);
    // A signed message played again is refused.
    let auth = Some(Arc::new(Auth::new(b"0123456789abcdef0123456789abcdef").unwrap()));
    let mut m = MsgBuilder::new(0, 1472);
    let sc = dr_conn();
    m.push(&sc.to_record(), TRAILER_LEN + MAC_LEN).unwrap();
    let t = Trailer { kind: Kind::Data, bulk_port: 0, sender: 77, seq: 1, time_ms: now_ms(), total: 0 };
    let msg = m.finish(Some(&t), true);
    sign(&auth, msg);
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(msg, ("127.0.0.1", p)).unwrap();
    wait("the first copy", 5, || wb.conns() == 11);
    let before = get(&b.stats().replayed);
    s.send_to(msg, ("127.0.0.1", p)).unwrap();
    wait("the replay counted", 5, || get(&b.stats().replayed) == before + 1);
    // An old message (beyond the clock skew) is refused too.
    m.clear();
    m.push(&sc.to_record(), TRAILER_LEN + MAC_LEN).unwrap();
    let t = Trailer { kind: Kind::Data, bulk_port: 0, sender: 78, seq: 1, time_ms: now_ms() - 60_000, total: 0 };
    let msg = m.finish(Some(&t), true);
    sign(&auth, msg);
    s.send_to(msg, ("127.0.0.1", p)).unwrap();
    wait("the skew counted", 5, || get(&b.stats().skewed) == 1);
    assert_eq!(wb.conns(), 11);
}

#[test]
fn a_flood_of_garbage_is_counted_and_the_backup_keeps_working() {
    let (p, b, wb) = lone_backup();
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut sent = 0;
    for i in 0..3000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 300) as usize;
        let mut g: Vec<u8> = (0..len).map(|k| (x >> (k % 56)) as u8).collect();
        // Half of them pass the header checks and fail deeper.
        if i % 2 == 0 && len >= 8 {
            g[0] = 0;
            g[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            g[5] = 1;
            g[6] = 0;
            g[7] = 0;
        }
        if s.send_to(&g, ("127.0.0.1", p)).is_ok() {
            sent += 1;
        }
        // Paced, so the socket's buffer is not what drops them.
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let counted = || b.stats().decode_errors.iter().map(get).sum::<u64>() + get(&b.stats().msgs_received);
    wait("the flood counted", 10, || counted() >= sent * 9 / 10);
    assert_eq!(wb.conns(), 0, "{}", b.status_text());
    // Still taking real messages.
    let (_a, wa) = node(SyncConf { master: Some(daemon(p, 0)), ..base(true, 0) });
    wa.connect(1000, 5);
    wait("real updates after the flood", 5, || {
        if wb.conns() == 5 {
            return true;
        }
        eprintln!("{}", b.status_text());
        false
    });
}

#[test]
fn a_bad_interface_or_key_is_refused_and_changes_nothing() {
    let (p, [bulk]) = ports();
    let (a, _wa) = node(base(true, bulk));
    let e = a.start_daemon(Role::Master, DaemonConf { interface: "xvs-nosuch0".into(), ..daemon(p, 1) }).unwrap_err();
    assert_eq!(e, "Unknown mcast interface: xvs-nosuch0");
    assert_eq!(a.conf().master, None);
    let dir = tempfile::tempdir().unwrap();
    let short = key_file(dir.path(), "k", b"short");
    let e = a.apply(SyncConf { auth_key_file: Some(short), master: Some(daemon(p, 1)), ..base(true, bulk) }).unwrap_err();
    assert!(e.contains("at least 16"), "{e}");
    assert_eq!(a.conf().master, None);
    a.start_daemon(Role::Master, daemon(p, 1)).unwrap();
    assert!(a.conf().master.is_some());
}

#[test]
fn active_active_each_node_is_master_of_its_syncid_and_backup_of_the_other() {
    // A: master of sync id 1, backup of 2; B the other way round. Each
    // daemon pair has its own port, so unicast over loopback reaches the
    // right backup.
    let (p1, [p2, bulk_a, bulk_b]) = ports();
    let (a, wa) = node(SyncConf { master: Some(daemon(p1, 1)), backup: Some(daemon(p2, 2)), ..base(true, bulk_a) });
    let (b, wb) = node(SyncConf { master: Some(daemon(p2, 2)), backup: Some(daemon(p1, 1)), ..base(true, bulk_b) });
    wait("both in sync", 10, || a.in_sync() && b.in_sync());
    wa.connect(1000, 20);
    wb.connect(5000, 30);
    wait("each node holding both tables", 10, || wa.conns() == 50 && wb.conns() == 50);
    // (A backup's maxlen is what lo's MTU allows, as IPVS computes it.)
    assert_eq!(
        a.list(),
        format!(
            "master sync daemon (mcast=lo, syncid=1, maxlen=1472, group=224.0.0.81, port={p1}, ttl=1)\nbackup sync daemon (mcast=lo, syncid=2, maxlen=65507, group=224.0.0.81, port={p2}, ttl=1)\n"
        )
    );
    // Each backup took only the other's sync id; nothing was refused.
    for (n, s) in [("A", &a), ("B", &b)] {
        assert!(get(&s.stats().msgs_sent) > 0 && get(&s.stats().msgs_received) > 0, "{n}: {}", s.status_text());
        assert_eq!(s.view().refused, 0, "{n}: {}", s.status_text());
        assert_eq!(s.view().roles, vec!["master", "backup"], "{n}");
    }
}

/// A record whose sequence adjustment cannot be (here: on a DR
/// connection, which does not rewrite the stream) is refused alone and
/// counted by its reason; the record beside it is taken.
#[test]
fn a_record_with_an_impossible_offset_is_counted_by_its_reason() {
    let (p, b, wb) = lone_backup();
    let good = dr_conn();
    let bad = SyncConn { cport: 10, seqadj: Some(crate::ipvs::seqadj::SeqAdj { start: 1, out_delta: 0, len: 0, proxy: 0, acked: false, ..Default::default() }), ..good };
    let mut m = MsgBuilder::new(0, 1472);
    m.push(&bad.to_record(), 0).unwrap();
    m.push(&good.to_record(), 0).unwrap();
    let msg = m.finish(None, false);
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(msg, ("127.0.0.1", p)).unwrap();
    wait("the good record taken", 5, || wb.conns() == 1);
    assert_eq!(get(&b.stats().record_errors[3]), 1);
    let text = b.status_text();
    assert!(text.contains("1 unusable records (seq_adj 1)"), "{text}");
}
