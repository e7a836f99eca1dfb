//! UDP send/expect (keepalived's UDP_CHECK).
//!
//! A connected UDP socket sends the payload; an ICMP port unreachable
//! comes back as "connection refused" on the next receive. With
//! `require_reply` (the default) a reply must arrive before the deadline
//! and start with the expected bytes; without it, silence until the
//! deadline counts as up and only an ICMP error fails.

use super::{up, within, Failure, Outcome};
use crate::health::config::UdpProbe;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// Largest reply read.
const MAX_REPLY: usize = 65536;

/// A UDP socket connected to `target`.
pub(crate) async fn connected(target: SocketAddr, deadline: Instant) -> Result<UdpSocket, Failure> {
    let any: IpAddr = if target.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let s = within(
        deadline,
        "open a UDP socket",
        UdpSocket::bind(SocketAddr::new(any, 0)),
    )
    .await?;
    within(deadline, "connect", s.connect(target)).await?;
    Ok(s)
}

/// Sends the payload to `p.target` and judges the reply.
pub async fn check(p: &UdpProbe, deadline: Instant) -> Outcome {
    let s = connected(p.target, deadline).await?;
    within(deadline, "send", s.send(&p.payload)).await?;
    let mut buf = vec![0u8; MAX_REPLY];
    let n = match tokio::time::timeout_at(deadline, s.recv(&mut buf)).await {
        Err(_) if !p.require_reply => return up(),
        Err(_) => return Err(Failure::new("no reply: timed out")),
        Ok(Err(e)) => return Err(Failure::new(format!("receive: {}", super::io_reason(&e)))),
        Ok(Ok(n)) => n,
    };
    let reply = &buf[..n];
    if !reply.starts_with(&p.expect) {
        return Err(Failure::new(format!(
            "reply {} ({n} bytes) does not start with {}",
            show(&reply[..n.min(p.expect.len().max(16))]),
            show(&p.expect)
        )));
    }
    up()
}

/// Bytes for a reason: text when printable, hex otherwise.
pub(crate) fn show(b: &[u8]) -> String {
    if !b.is_empty() && b.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
        format!("'{}'", String::from_utf8_lossy(b))
    } else {
        format!("0x{}", super::http::hex(b))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{closed_udp, deadline, refused_udp, udp_server};
    use super::*;

    fn probe(target: SocketAddr, expect: &[u8], require_reply: bool) -> UdpProbe {
        UdpProbe {
            target,
            payload: b"ping".to_vec(),
            expect: expect.to_vec(),
            require_reply,
        }
    }

    /// A UDP server that answers `ping` with `reply` (or stays silent).
    async fn server(reply: Option<&'static [u8]>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        udp_server(move |q| {
            assert_eq!(q, b"ping");
            reply.iter().map(|r| r.to_vec()).collect()
        })
        .await
    }

    #[tokio::test]
    async fn right_wrong_hang_refuse() {
        let (addr, h) = server(Some(b"pong!")).await;
        assert_eq!(
            check(&probe(addr, b"pong", true), deadline(2000)).await,
            up()
        );
        assert_eq!(
            check(&probe(addr, b"", true), deadline(2000)).await,
            up(),
            "any reply"
        );
        let e = check(&probe(addr, b"PONG", true), deadline(2000))
            .await
            .unwrap_err();
        assert_eq!(
            e.reason,
            "reply 'pong!' (5 bytes) does not start with 'PONG'"
        );
        let e = check(&probe(addr, &[0, 1], true), deadline(2000))
            .await
            .unwrap_err();
        assert!(
            e.reason.ends_with("does not start with 0x0001"),
            "{}",
            e.reason
        );
        h.abort();

        let (addr, h) = server(None).await;
        let e = check(&probe(addr, b"", true), deadline(150))
            .await
            .unwrap_err();
        assert_eq!(e.reason, "no reply: timed out");
        assert_eq!(
            check(&probe(addr, b"", false), deadline(150)).await,
            up(),
            "silence is fine without require_reply"
        );
        h.abort();

        // Nothing bound: the kernel answers ICMP port unreachable.
        let free = closed_udp().await;
        for require_reply in [true, false] {
            // Without require_reply, only the ICMP error fails the check.
            let p = probe(free, b"", require_reply);
            let reasons = refused_udp(|| check(&p, deadline(300))).await;
            assert_eq!(
                reasons.last().unwrap(),
                "receive: connection refused",
                "{reasons:?}"
            );
        }
    }
}
