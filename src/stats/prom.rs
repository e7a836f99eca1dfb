//! Metrics in the Prometheus text exposition format (version 0.0.4), and a
//! small HTTP endpoint that serves them (bound to localhost by default).
//!
//! Everything `xvsadm --stats` and `ipvsadm -L --stats/--rate` show is
//! here: per-worker packet counters, forwarding per method and direction,
//! drops and passes by reason, connection-table sizes, the per-burst
//! processing time percentiles, and per service / per real server
//! connections, packets, bytes, rates and active/inactive/persistent
//! counts. The HTTP side runs on a control-plane thread and never touches
//! a worker.

use super::{DropReason, PassReason, WorkerCounters};
use crate::stats::Figures;
use crate::ipvs::FwdMethod;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::Read as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The `at` labels of `xvs_umem_chunks`, in the order of
/// [`WorkerSample::umem`]: free in the worker's pool, returning (freed by
/// another worker), in the kernel's rings, the worker's whole share.
pub const UMEM_AT: [&str; 4] = ["free", "returning", "kernel", "total"];

/// One worker's published figures.
#[derive(Clone, Debug, Default)]
pub struct WorkerSample {
    pub counters: WorkerCounters,
    /// Connections and templates in its table.
    pub conns: u64,
    /// Bytes its connection table holds.
    pub conn_memory: u64,
    /// Generation of the snapshot it forwards with.
    pub generation: u64,
    /// Its I/O driver's event counters, `(name, value)` (AF_XDP: tx ring
    /// full, wake-ups, sleeps, ...).
    pub io: Vec<(&'static str, u64)>,
    /// Where its UMEM chunks are, in the order of [`UMEM_AT`].
    pub umem: [u64; 4],
    /// Its per-burst processing time in nanoseconds.
    pub burst_ns: Option<hdrhistogram::Histogram<u64>>,
}

/// What the metrics describe.
#[derive(Clone, Copy, Debug)]
pub struct MetricsView<'a> {
    pub workers: &'a [WorkerSample],
    /// (service, figures), the service as ipvsadm names it (`TCP 10.0.0.100:80`).
    pub services: &'a [(String, Figures)],
    /// (service, real server `addr:port`, figures).
    pub dests: &'a [(String, String, Figures)],
    /// Per-burst processing time in nanoseconds, all workers.
    pub burst_ns: Option<&'a hdrhistogram::Histogram<u64>>,
}

/// Escapes a label value (backslash, double quote, newline).
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", esc(val));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {v}");
    }
}

/// Renders the view as Prometheus text.
pub fn render(v: &MetricsView<'_>) -> String {
    let mut o = Out(String::new());
    type Get = fn(&WorkerCounters) -> u64;
    let per_worker: [(&str, &str, Get); 25] = [
        ("xvs_rx_packets_total", "Frames received.", |c| c.rx_packets),
        ("xvs_rx_bytes_total", "Bytes received.", |c| c.rx_bytes),
        ("xvs_tx_packets_total", "Frames transmitted.", |c| c.tx_packets),
        ("xvs_tx_bytes_total", "Bytes transmitted.", |c| c.tx_bytes),
        ("xvs_new_connections_total", "Connections scheduled.", |c| c.new_conns),
        ("xvs_expired_connections_total", "Connections expired.", |c| c.expired_conns),
        ("xvs_reused_connections_total", "Connections ended early by a client SYN reusing their ports (conn_reuse_mode), the SYN scheduled afresh.", |c| c.reused_conns),
        ("xvs_sloppy_connections_total", "Connections made from a TCP packet other than a SYN (sloppy_tcp: a flow moved here in mid-connection); also in xvs_new_connections_total.", |c| c.sloppy_conns),
        ("xvs_evicted_connections_total", "Embryonic (SYN_RECV) connections evicted to make room in a full table (drop_entry).", |c| c.evicted_conns),
        ("xvs_toa_added_total", "FULLNAT handshake ACKs given the client's address in a TOA option.", |c| c.toa_added),
        ("xvs_toa_skipped_total", "FULLNAT handshake ACKs sent without TOA: no option space, MTU or headroom.", |c| c.toa_skipped),
        ("xvs_proxy_headers_total", "Client segments given the PROXY protocol header.", |c| c.proxy_headers),
        ("xvs_proxy_cut_total", "Segments given the PROXY protocol header whose payload tail was left out for the MTU.", |c| c.proxy_cut),
        ("xvs_synproxy_syn_total", "SYNs to synproxy services answered with a cookie SYN-ACK.", |c| c.synproxy_syn),
        ("xvs_synproxy_ack_total", "Valid cookie ACKs: synproxy connections opened to a real server.", |c| c.synproxy_ack),
        ("xvs_synproxy_spliced_total", "Synproxy connections spliced (the real server's SYN-ACK answered).", |c| c.synproxy_spliced),
        ("xvs_templates_created_total", "Persistence templates created.", |c| c.templates_created),
        ("xvs_templates_expired_total", "Persistence templates expired.", |c| c.templates_expired),
        ("xvs_icmp_relayed_total", "ICMP errors about connections translated and relayed.", |c| c.icmp_relayed),
        ("xvs_icmp_sent_total", "ICMP errors sent by xvs (fragmentation needed, unreachable).", |c| c.icmp_sent),
        ("xvs_icmp_limited_total", "ICMP errors xvs did not send: over their rate limit (icmp_msgs_per_sec).", |c| c.icmp_limited),
        ("xvs_frags_made_total", "Fragments made beyond the first of tunnelled datagrams too big for their egress MTU (outer fragmentation).", |c| c.frags_made),
        ("xvs_handoffs_total", "Frames handed to the worker owning their flow.", |c| c.handoffs),
        ("xvs_csum_completed_total", "TCP/UDP frames that arrived with a partial checksum (TX checksum offload of a veth or virtual NIC sender) and were completed in software.", |c| c.csum_completed),
        ("xvs_handed_in_total", "Frames other workers handed to this one.", |c| c.handed_in),
    ];
    for (name, help, get) in per_worker {
        o.family(name, "counter", help);
        for (i, w) in v.workers.iter().enumerate() {
            o.sample(name, &[("worker", &i.to_string())], get(&w.counters));
        }
    }
    o.family("xvs_forwarded_packets_total", "counter", "Frames forwarded, per forwarding method and direction.");
    for (i, w) in v.workers.iter().enumerate() {
        for m in FwdMethod::ALL {
            for (d, dir) in ["in", "out"].iter().enumerate() {
                o.sample(
                    "xvs_forwarded_packets_total",
                    &[("worker", &i.to_string()), ("method", m.name()), ("direction", dir)],
                    w.counters.fwd[m.idx()][d],
                );
            }
        }
    }
    o.family("xvs_dropped_packets_total", "counter", "Frames dropped, per reason.");
    for (i, w) in v.workers.iter().enumerate() {
        for r in DropReason::ALL {
            o.sample("xvs_dropped_packets_total", &[("worker", &i.to_string()), ("reason", r.name())], w.counters.drops[*r as usize]);
        }
    }
    o.family("xvs_passed_packets_total", "counter", "Frames left to the kernel, per reason.");
    for (i, w) in v.workers.iter().enumerate() {
        for r in PassReason::ALL {
            o.sample("xvs_passed_packets_total", &[("worker", &i.to_string()), ("reason", r.name())], w.counters.passes[*r as usize]);
        }
    }
    o.family("xvs_connections", "gauge", "Connections and templates in a worker's table.");
    for (i, w) in v.workers.iter().enumerate() {
        o.sample("xvs_connections", &[("worker", &i.to_string())], w.conns);
    }
    o.family("xvs_connection_table_bytes", "gauge", "Memory held by a worker's connection table.");
    for (i, w) in v.workers.iter().enumerate() {
        o.sample("xvs_connection_table_bytes", &[("worker", &i.to_string())], w.conn_memory);
    }
    o.family("xvs_worker_snapshot_generation", "gauge", "Generation of the configuration snapshot a worker forwards with.");
    for (i, w) in v.workers.iter().enumerate() {
        o.sample("xvs_worker_snapshot_generation", &[("worker", &i.to_string())], w.generation);
    }
    o.family("xvs_io_events_total", "counter", "I/O driver events per worker (AF_XDP rings and wake-ups).");
    for (i, w) in v.workers.iter().enumerate() {
        for (event, n) in &w.io {
            o.sample("xvs_io_events_total", &[("worker", &i.to_string()), ("event", event)], n);
        }
    }
    o.family("xvs_umem_chunks", "gauge", "UMEM chunks per worker by where they are: free, returning (freed by another worker), kernel (fill/RX/TX/completion rings), total (its share).");
    for (i, w) in v.workers.iter().enumerate() {
        for (at, n) in UMEM_AT.iter().zip(&w.umem) {
            o.sample("xvs_umem_chunks", &[("worker", &i.to_string()), ("at", at)], n);
        }
    }
    if let Some(h) = v.burst_ns {
        let name = "xvs_burst_duration_seconds";
        o.family(name, "summary", "Time a worker spends on one burst of frames, all workers.");
        summary(&mut o, name, &[], h);
    }
    if v.workers.iter().any(|w| w.burst_ns.is_some()) {
        let name = "xvs_worker_burst_duration_seconds";
        o.family(name, "summary", "Time a worker spends on one burst of frames, per worker.");
        for (i, w) in v.workers.iter().enumerate() {
            if let Some(h) = &w.burst_ns {
                summary(&mut o, name, &[("worker", &i.to_string())], h);
            }
        }
    }
    figures(&mut o, "service", v.services.iter().map(|(s, f)| (vec![("service", s.as_str())], f)));
    figures(&mut o, "dest", v.dests.iter().map(|(s, d, f)| (vec![("service", s.as_str()), ("dest", d.as_str())], f)));
    o.0
}

/// The samples of one summary: quantiles, `_sum` and `_count`.
fn summary(o: &mut Out, name: &str, labels: &[(&str, &str)], h: &hdrhistogram::Histogram<u64>) {
    for q in [0.5, 0.9, 0.99, 0.999] {
        let secs = h.value_at_quantile(q) as f64 / 1e9;
        let qs = q.to_string();
        let mut l = labels.to_vec();
        l.push(("quantile", &qs));
        o.sample(name, &l, secs);
    }
    o.sample(&format!("{name}_sum"), labels, h.mean() * h.len() as f64 / 1e9);
    o.sample(&format!("{name}_count"), labels, h.len());
}

/// The per service / per real server families (`what` = service | dest).
fn figures<'a>(o: &mut Out, what: &str, rows: impl Iterator<Item = (Vec<(&'a str, &'a str)>, &'a Figures)> + Clone) {
    type Get = fn(&Figures) -> u64;
    let fams: [(&str, &str, &str, Get); 13] = [
        ("connections_total", "counter", "Connections scheduled.", |f| f.stats.conns),
        ("in_packets_total", "counter", "Packets client -> real server.", |f| f.stats.inpkts),
        ("out_packets_total", "counter", "Packets real server -> client (NAT/FULLNAT).", |f| f.stats.outpkts),
        ("in_bytes_total", "counter", "Bytes client -> real server.", |f| f.stats.inbytes),
        ("out_bytes_total", "counter", "Bytes real server -> client (NAT/FULLNAT).", |f| f.stats.outbytes),
        ("active_connections", "gauge", "Connections in ESTABLISHED (ActiveConn).", |f| f.active as u64),
        ("inactive_connections", "gauge", "Other connections (InActConn).", |f| f.inactive as u64),
        ("persistent_connections", "gauge", "Persistence templates (PersistConn).", |f| f.persist as u64),
        ("connections_per_second", "gauge", "IPVS estimator rate (CPS).", |f| f.rate.cps),
        ("in_packets_per_second", "gauge", "IPVS estimator rate (InPPS).", |f| f.rate.inpps),
        ("out_packets_per_second", "gauge", "IPVS estimator rate (OutPPS).", |f| f.rate.outpps),
        ("in_bytes_per_second", "gauge", "IPVS estimator rate (InBPS).", |f| f.rate.inbps),
        ("out_bytes_per_second", "gauge", "IPVS estimator rate (OutBPS).", |f| f.rate.outbps),
    ];
    for (suffix, kind, help, get) in fams {
        let name = format!("xvs_{what}_{suffix}");
        o.family(&name, kind, help);
        for (labels, f) in rows.clone() {
            o.sample(&name, &labels, get(f));
        }
    }
}

/// A running metrics endpoint; stops when dropped.
pub struct Endpoint {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// The address it listens on.
    pub addr: std::net::SocketAddr,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves `GET /metrics` (and `/`) on `listener` with whatever `render`
/// returns at request time; other paths get 404, other methods 405. One
/// request per connection, small and slow requests bounded (8 KiB, 2 s).
///
/// # Errors
/// When the listener cannot be made non-blocking.
pub fn serve(listener: TcpListener, render: impl Fn() -> String + Send + 'static) -> std::io::Result<Endpoint> {
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stop);
    let thread = std::thread::Builder::new().name("xvs-metrics".into()).spawn(move || {
        while !s2.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((conn, _)) => {
                    let _ = answer(conn, &render);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    })?;
    Ok(Endpoint { stop, thread: Some(thread), addr })
}

fn answer(conn: TcpStream, render: &impl Fn() -> String) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut r = BufReader::new(conn.try_clone()?.take(8192));
    let mut line = String::new();
    r.read_line(&mut line)?;
    // Drain the headers (bounded by the take above).
    let mut h = String::new();
    while r.read_line(&mut h)? > 2 {
        h.clear();
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics" | "/") => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", render()),
        ("GET", _) => ("404 Not Found", "text/plain", "not found: try /metrics\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain", "only GET\n".to_string()),
    };
    let mut w = conn;
    write!(w, "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())?;
    w.flush()
}

/// One parsed sample: metric name, labels, value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// A strict reader of the text format: every sample belongs to a family
/// declared by HELP and TYPE before it, names and labels are well
/// formed, values parse as floats, no series repeats.
///
/// For tests and tools that check an endpoint's output.
///
/// # Errors
/// The first line that breaks the format, with its number.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut typed: HashSet<String> = HashSet::new();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    for (i, line) in text.lines().enumerate() {
        let ln = i + 1;
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut p = rest.split(' ');
            let (n, k) = (p.next().unwrap_or(""), p.next().unwrap_or(""));
            if !name_ok(n) || !["counter", "gauge", "summary", "histogram", "untyped"].contains(&k) {
                return Err(format!("line {ln}: bad TYPE {rest}"));
            }
            typed.insert(n.to_string());
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').ok_or(format!("line {ln}: no value"))?;
        let v: f64 = value.parse().map_err(|_| format!("line {ln}: bad value {value}"))?;
        let (name, labels) = match series.split_once('{') {
            None => (series, Vec::new()),
            Some((n, l)) => {
                let l = l.strip_suffix('}').ok_or(format!("line {ln}: unclosed labels"))?;
                let mut v = Vec::new();
                for kv in l.split(',') {
                    let (k, val) = kv.split_once('=').ok_or(format!("line {ln}: bad label {kv}"))?;
                    let val = val.strip_prefix('"').and_then(|x| x.strip_suffix('"')).ok_or(format!("line {ln}: unquoted {kv}"))?;
                    if !name_ok(k) {
                        return Err(format!("line {ln}: bad label name {k}"));
                    }
                    v.push((k.to_string(), val.to_string()));
                }
                (n, v)
            }
        };
        let family = name.trim_end_matches("_sum").trim_end_matches("_count");
        if !typed.contains(name) && !typed.contains(family) {
            return Err(format!("line {ln}: {name} has no TYPE"));
        }
        if !seen.insert(series.to_string()) {
            return Err(format!("line {ln}: {series} repeated"));
        }
        out.push((name.to_string(), labels, v));
    }
    Ok(out)
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{DestStats, Rate};
    use std::io::Read;

    type Parts = (Vec<WorkerSample>, Vec<(String, Figures)>, Vec<(String, String, Figures)>, hdrhistogram::Histogram<u64>);

    fn view_parts() -> Parts {
        let mut w0 = WorkerSample { io: vec![("tx_ring_full", 2), ("sleeps", 7)], generation: 3, ..WorkerSample::default() };
        w0.counters.rx_packets = 10;
        w0.counters.drop(DropReason::NoConn);
        w0.counters.fwd[FwdMethod::Nat.idx()][1] = 4;
        w0.conns = 3;
        w0.umem = [5, 1, 2, 8];
        let f = Figures {
            active: 2,
            inactive: 1,
            persist: 0,
            stats: DestStats { conns: 5, inpkts: 50, inbytes: 5000, outpkts: 40, outbytes: 60000 },
            rate: Rate { cps: 1, inpps: 10, outpps: 8, inbps: 1000, outbps: 12000 },
        };
        let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        for v in [1000u64, 2000, 3000, 50_000] {
            h.record(v).unwrap();
        }
        w0.burst_ns = Some(h.clone());
        (
            vec![w0, WorkerSample::default()],
            vec![("TCP 10.0.0.100:80".into(), f)],
            vec![("TCP 10.0.0.100:80".into(), "10.0.1.1:8080".into(), f), ("TCP \"odd\"\\".into(), "[2001:db8::1]:80".into(), f)],
            h,
        )
    }

    #[test]
    fn renders_valid_exposition_format() {
        let (w, s, d, h) = view_parts();
        let text = render(&MetricsView { workers: &w, services: &s, dests: &d, burst_ns: Some(&h) });
        let samples = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let get = |name: &str, want: &[(&str, &str)]| {
            samples
                .iter()
                .find(|(n, l, _)| n == name && want.iter().all(|(k, v)| l.iter().any(|(a, b)| a == k && b == v)))
                .map(|s| s.2)
        };
        assert_eq!(get("xvs_rx_packets_total", &[("worker", "0")]), Some(10.0));
        assert_eq!(get("xvs_umem_chunks", &[("worker", "0"), ("at", "kernel")]), Some(2.0));
        assert_eq!(get("xvs_umem_chunks", &[("worker", "1"), ("at", "total")]), Some(0.0));
        assert_eq!(get("xvs_dropped_packets_total", &[("worker", "0"), ("reason", "no_conn")]), Some(1.0));
        assert_eq!(get("xvs_forwarded_packets_total", &[("method", "nat"), ("direction", "out")]), Some(4.0));
        assert_eq!(get("xvs_connections", &[("worker", "0")]), Some(3.0));
        assert_eq!(get("xvs_service_in_bytes_total", &[("service", "TCP 10.0.0.100:80")]), Some(5000.0));
        assert_eq!(get("xvs_dest_active_connections", &[("dest", "10.0.1.1:8080")]), Some(2.0));
        assert_eq!(get("xvs_dest_out_bytes_per_second", &[("dest", "10.0.1.1:8080")]), Some(12000.0));
        assert_eq!(get("xvs_burst_duration_seconds_count", &[]), Some(4.0));
        assert_eq!(get("xvs_worker_burst_duration_seconds_count", &[("worker", "0")]), Some(4.0));
        assert!(get("xvs_worker_burst_duration_seconds", &[("worker", "0"), ("quantile", "0.5")]).unwrap() > 0.0);
        assert_eq!(get("xvs_worker_burst_duration_seconds_count", &[("worker", "1")]), None, "no histogram, no series");
        assert_eq!(get("xvs_io_events_total", &[("worker", "0"), ("event", "sleeps")]), Some(7.0));
        assert_eq!(get("xvs_worker_snapshot_generation", &[("worker", "0")]), Some(3.0));
        assert!(get("xvs_burst_duration_seconds", &[("quantile", "0.99")]).unwrap() >= 49e-6);
        // every drop reason of every worker is present, zeros included
        let drops = samples.iter().filter(|(n, _, _)| n == "xvs_dropped_packets_total").count();
        assert_eq!(drops, 2 * DropReason::COUNT);
        // escaping survived the round trip
        assert!(text.contains(r#"service="TCP \"odd\"\\""#), "{text}");
    }

    #[test]
    fn the_parser_rejects_what_prometheus_would() {
        assert!(parse("# TYPE a counter\na 1\na 2\n").is_err(), "repeated series");
        assert!(parse("b 1\n").is_err(), "no TYPE");
        assert!(parse("# TYPE a counter\na{x=1} 1\n").is_err(), "unquoted label");
        assert!(parse("# TYPE a counter\na one\n").is_err(), "bad value");
    }

    #[test]
    fn serves_over_http_and_refuses_the_rest() {
        let (w, s, d, h) = view_parts();
        let text = render(&MetricsView { workers: &w, services: &s, dests: &d, burst_ns: Some(&h) });
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let t2 = text.clone();
        let ep = serve(l, move || t2.clone()).unwrap();
        let get = |req: &str| {
            let mut c = TcpStream::connect(ep.addr).unwrap();
            c.write_all(req.as_bytes()).unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).unwrap();
            out
        };
        let r = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: text/plain; version=0.0.4"));
        let body = r.split_once("\r\n\r\n").unwrap().1;
        assert_eq!(body, text);
        parse(body).unwrap();
        assert!(get("GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get("POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        // garbage and a silent client do not stop it
        let _ = get("\x00\x01garbage\r\n\r\n");
        {
            let _silent = TcpStream::connect(ep.addr).unwrap();
        }
        assert!(get("GET / HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 200"));
        drop(ep);
    }
}
