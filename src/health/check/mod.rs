//! The checkers: one async function per kind of check, each taking its
//! validated probe and a deadline and returning an [`Outcome`].
//!
//! Contract: a checker never panics and never outlives its deadline by
//! more than the engine's small margin; every failure carries a reason an
//! operator can act on (what was tried, what came back, what was wanted).
//! Checkers open a fresh socket (or process) per run and hold no state
//! between runs, so a run is independent of the previous one.

pub mod agent;
pub mod dns;
pub mod exec;
pub mod http;
pub mod icmp;
pub mod tcp;
pub mod udp;

use super::config::Probe;
use std::fmt;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// A change of a real server's dynamic weight reported by a check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightUpdate {
    /// Keep whatever dynamic weight is in force.
    #[default]
    Keep,
    /// Replace the configured weight (keepalived's `misc_dynamic`).
    Absolute(u32),
    /// Scale the configured weight by this percentage (HAProxy agent `75%`;
    /// 0 = `drain`).
    Percent(u32),
    /// Back to the configured weight (HAProxy agent `ready`).
    Reset,
}

/// A passed check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Success {
    pub weight: WeightUpdate,
}

/// A failed check and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
}

impl Failure {
    /// A failure with `reason`.
    pub fn new(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// What one run of a check found.
pub type Outcome = Result<Success, Failure>;

/// The outcome of a plain success.
pub(crate) fn up() -> Outcome {
    Ok(Success::default())
}

/// A duration as operators write it (`1s`, `250ms`).
pub(crate) fn fmt_dur(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Runs one step of a check (`what`: "connect", "read the reply", ...)
/// with the check's deadline: an I/O error or the deadline passing become
/// a [`Failure`] that says which step failed.
pub(crate) async fn within<T, F>(deadline: Instant, what: &str, fut: F) -> Result<T, Failure>
where
    F: Future<Output = std::io::Result<T>>,
{
    match tokio::time::timeout_at(deadline, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::new(format!("{what}: {}", io_reason(&e)))),
        Err(_) => Err(Failure::new(format!("{what}: timed out"))),
    }
}

/// An I/O error as a short reason ("connection refused", not the OS's
/// "Connection refused (os error 111)").
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset".into(),
        TimedOut => "timed out".into(),
        UnexpectedEof => "connection closed early".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_lowercase(),
                None => s,
            }
        }
    }
}

/// Runs `probe` once; the engine bounds it with the check's timeout.
pub async fn run(probe: &Probe, deadline: Instant) -> Outcome {
    match probe {
        Probe::Icmp { addr } => icmp::check(*addr, deadline).await,
        Probe::Tcp { target } => tcp::check(*target, deadline).await,
        Probe::Http(p) => http::check(p, deadline).await,
        Probe::Udp(p) => udp::check(p, deadline).await,
        Probe::Dns(p) => dns::check(p, deadline).await,
        Probe::Exec(p) => exec::check(p, deadline).await,
        Probe::Agent(p) => agent::check(p, deadline).await,
    }
}

/// Helpers for the checkers' tests: local servers on loopback.
#[cfg(test)]
pub(crate) mod testutil {
    use std::future::Future;
    use std::net::SocketAddr;
    use std::time::Duration;
    use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
    use tokio::task::JoinHandle;
    use tokio::time::Instant;

    /// Runs a check against a closed UDP port until the kernel's ICMP port
    /// unreachable gets through: ICMP errors are rate-limited per network
    /// namespace, and other tests on the machine share the budget. Every
    /// attempt must fail; returns the reasons.
    pub async fn refused_udp<F, Fut>(mut attempt: F) -> Vec<String>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = super::Outcome>,
    {
        let mut reasons = Vec::new();
        for _ in 0..5 {
            let r = attempt()
                .await
                .expect_err("a closed port never passes")
                .reason;
            let refused = r.ends_with("connection refused");
            reasons.push(r);
            if refused {
                break;
            }
        }
        reasons
    }

    /// A deadline `ms` milliseconds from now.
    pub fn deadline(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    /// A loopback TCP address where nothing listens (connections are
    /// refused): bind a port, then free it.
    pub async fn refused_tcp() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    }

    /// A loopback UDP address where nothing listens (datagrams get an ICMP
    /// port unreachable, see [`refused_udp`]): bind a port, then free it.
    pub async fn closed_udp() -> SocketAddr {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.local_addr().unwrap()
    }

    /// A loopback UDP server that answers every datagram with the
    /// datagrams `reply` makes of it (none: silence), until aborted.
    pub async fn udp_server<F>(mut reply: F) -> (SocketAddr, JoinHandle<()>)
    where
        F: FnMut(&[u8]) -> Vec<Vec<u8>> + Send + 'static,
    {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        let h = tokio::spawn(async move {
            let mut b = [0u8; 512];
            loop {
                let (n, from) = s.recv_from(&mut b).await.unwrap();
                for r in reply(&b[..n]) {
                    s.send_to(&r, from).await.unwrap();
                }
            }
        });
        (addr, h)
    }

    /// A loopback TCP server that accepts one connection and hands it to
    /// `serve`; the handle yields what `serve` returns.
    pub async fn tcp_server<F, Fut>(serve: F) -> (SocketAddr, JoinHandle<Fut::Output>)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let h = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            serve(s).await
        });
        (addr, h)
    }

    /// A listener whose accept queue is full, so that further connects get
    /// no answer to their SYN and hang: backlog 0 plus one queued,
    /// never-accepted connection. Keep the returned values alive.
    pub async fn hanging_tcp() -> (TcpListener, TcpStream, SocketAddr) {
        let s = TcpSocket::new_v4().unwrap();
        s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let l = s.listen(0).unwrap();
        let addr = l.local_addr().unwrap();
        let filler = TcpStream::connect(addr).await.unwrap();
        (l, filler, addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_reasons_are_short() {
        let e = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(io_reason(&e), "connection refused");
        let e = std::io::Error::from_raw_os_error(libc::EHOSTUNREACH);
        assert_eq!(io_reason(&e), "no route to host");
        assert_eq!(fmt_dur(Duration::from_secs(2)), "2s");
        assert_eq!(fmt_dur(Duration::from_millis(1500)), "1500ms");
    }

    #[tokio::test]
    async fn within_names_the_step() {
        let r: Result<(), Failure> = within(
            Instant::now() + Duration::from_millis(20),
            "read",
            std::future::pending(),
        )
        .await;
        assert_eq!(r.unwrap_err().reason, "read: timed out");
        let r: Result<(), Failure> = within(Instant::now(), "write", async {
            Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
        })
        .await;
        assert_eq!(r.unwrap_err().reason, "write: connection reset");
    }
}
