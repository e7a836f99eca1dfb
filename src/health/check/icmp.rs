//! Layer 3: ICMP / ICMPv6 echo (keepalived's ICMP_CHECK).
//!
//! Prefers the unprivileged ping socket (`SOCK_DGRAM`, allowed by
//! `net.ipv4.ping_group_range`) and falls back to a raw socket (root /
//! `CAP_NET_RAW`). Either socket is connected to the target, so the kernel
//! only hands us packets from it; we still match the reply's sequence
//! number and payload (and, on a raw socket, the identifier) and skip
//! anything else, such as our own request looped back. On a raw socket an
//! ICMP error quoting our request (destination unreachable, time exceeded)
//! fails the check at once.
//!
//! The socket is a `tokio::net::UdpSocket` over the ICMP descriptor: the
//! datagram calls it makes (connect, send, recv) are exactly the ones an
//! ICMP socket needs, and it keeps this file free of `unsafe`.

use super::{up, within, Failure, Outcome};
use crate::health::sys::{self, IcmpSocketKind};
use crate::wire::checksum;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::net::UdpSocket;
use tokio::time::Instant;

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;
/// Payload marker, so a reply is recognisably ours.
const MAGIC: &[u8; 10] = b"xvs-health";

/// An identifier and sequence number for the next echo.
fn next_ids() -> (u16, u16) {
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let n = N.fetch_add(1, Ordering::Relaxed);
    ((std::process::id() as u16) ^ (t as u16), n as u16)
}

/// An echo request: header + MAGIC + a 6-byte nonce from the ids.
pub(crate) fn echo_request(v6: bool, ident: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 }, 0, 0, 0];
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(MAGIC);
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0x5a, 0xa5]);
    // ICMPv6 checksums cover a pseudo header: the kernel fills them in
    // (and it rewrites IPv4 ones on ping sockets; raw IPv4 needs ours).
    if !v6 {
        let c = checksum::checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// What a received packet is to us.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The echo reply we wait for.
    Echo,
    /// An ICMP error about our request.
    Error(String),
    /// Something else: keep waiting.
    Other,
}

/// Classifies a received packet. `raw`: from a raw socket (IPv4 packets
/// then start with the IP header; the identifier is ours to check).
pub(crate) fn classify(pkt: &[u8], v6: bool, raw: bool, ident: u16, seq: u16) -> Reply {
    let icmp = if raw && !v6 {
        match pkt.first() {
            Some(b) if b >> 4 == 4 && pkt.len() >= ((b & 0xf) as usize) * 4 => {
                &pkt[((b & 0xf) as usize) * 4..]
            }
            _ => return Reply::Other,
        }
    } else {
        pkt
    };
    if icmp.len() < 8 {
        return Reply::Other;
    }
    let (ty, code) = (icmp[0], icmp[1]);
    let is_ours = |h: &[u8]| -> bool {
        let id_ok = !raw || h[4..6] == ident.to_be_bytes();
        id_ok && h[6..8] == seq.to_be_bytes()
    };
    let want_reply = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
    if ty == want_reply {
        let want = echo_request(v6, ident, seq);
        return if is_ours(icmp) && icmp[8..] == want[8..] {
            Reply::Echo
        } else {
            Reply::Other
        };
    }
    // Errors quote our request: IP header + the echo header.
    let what = match (v6, ty) {
        (false, 3) | (true, 1) => "destination unreachable",
        (false, 11) | (true, 3) => "time exceeded",
        _ => return Reply::Other,
    };
    let quoted = &icmp[8..];
    let inner = if v6 {
        if quoted.len() < 48 || quoted[0] >> 4 != 6 || quoted[6] != 58 {
            return Reply::Other;
        }
        &quoted[40..]
    } else {
        let ihl = quoted.first().map_or(0, |b| ((b & 0xf) as usize) * 4);
        if ihl < 20 || quoted.len() < ihl + 8 || quoted[0] >> 4 != 4 || quoted[9] != 1 {
            return Reply::Other;
        }
        &quoted[ihl..]
    };
    let req = if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 };
    if inner[0] == req && is_ours(inner) {
        Reply::Error(format!("{what} (code {code})"))
    } else {
        Reply::Other
    }
}

/// Opens an ICMP socket of `kind` connected to `addr`.
pub(crate) async fn open(addr: IpAddr, kind: IcmpSocketKind) -> std::io::Result<UdpSocket> {
    let fd = sys::icmp_socket(addr.is_ipv6(), kind)?;
    let s = UdpSocket::from_std(std::net::UdpSocket::from(fd))?;
    // Port 0: ignored by ping sockets, required by raw IPv6 ones.
    s.connect(SocketAddr::new(addr, 0)).await?;
    Ok(s)
}

/// Pings `addr` over `s`.
pub(crate) async fn ping(
    s: &UdpSocket,
    kind: IcmpSocketKind,
    addr: IpAddr,
    deadline: Instant,
) -> Outcome {
    let v6 = addr.is_ipv6();
    let raw = kind == IcmpSocketKind::Raw;
    let (ident, seq) = next_ids();
    within(
        deadline,
        "send the echo request",
        s.send(&echo_request(v6, ident, seq)),
    )
    .await?;
    let mut buf = [0u8; 2048];
    loop {
        let n = within(deadline, "no echo reply", s.recv(&mut buf)).await?;
        match classify(&buf[..n], v6, raw, ident, seq) {
            Reply::Echo => return up(),
            Reply::Error(e) => return Err(Failure::new(e)),
            Reply::Other => {}
        }
    }
}

/// Pings `addr`: ping socket if allowed, raw socket otherwise.
pub async fn check(addr: IpAddr, deadline: Instant) -> Outcome {
    let s = match open(addr, IcmpSocketKind::Dgram).await {
        Ok(s) => (s, IcmpSocketKind::Dgram),
        Err(e1) => match open(addr, IcmpSocketKind::Raw).await {
            Ok(s) => (s, IcmpSocketKind::Raw),
            Err(e2) => {
                return Err(Failure::new(format!(
                "cannot open an ICMP socket (ping socket: {}; raw socket: {}); allow our group in \
                     net.ipv4.ping_group_range or grant CAP_NET_RAW",
                super::io_reason(&e1),
                super::io_reason(&e2)
            )))
            }
        },
    };
    ping(&s.0, s.1, addr, deadline).await
}

#[cfg(test)]
mod tests {
    use super::super::testutil::deadline;
    use super::*;

    fn reply_of(req: &[u8], v6: bool) -> Vec<u8> {
        let mut r = req.to_vec();
        r[0] = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
        r
    }

    fn ipv4_header(proto: u8, payload_len: usize) -> Vec<u8> {
        let mut h = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        h[2..4].copy_from_slice(&((20 + payload_len) as u16).to_be_bytes());
        h
    }

    #[test]
    fn request_checksum_is_valid() {
        let p = echo_request(false, 0x1234, 7);
        assert_eq!(checksum::checksum(&p), 0, "a correct checksum sums to zero");
        assert_eq!(&p[4..8], &[0x12, 0x34, 0, 7]);
        assert_eq!(echo_request(true, 1, 2)[..4], [ECHO_REQUEST_V6, 0, 0, 0]);
    }

    #[test]
    fn classify_replies() {
        for v6 in [false, true] {
            let req = echo_request(v6, 0x1234, 7);
            let rep = reply_of(&req, v6);
            let mut kernel_id = rep.clone();
            kernel_id[4..6].copy_from_slice(&[0xab, 0xcd]);
            assert_eq!(
                classify(&kernel_id, v6, false, 0x1234, 7),
                Reply::Echo,
                "ping socket: the kernel owns the id"
            );
            assert_eq!(
                classify(&kernel_id, v6, true, 0x1234, 7),
                Reply::Other,
                "raw socket: the id is ours"
            );
            assert_eq!(
                classify(&rep, v6, false, 0x1234, 8),
                Reply::Other,
                "another sequence number"
            );
            assert_eq!(
                classify(&req, v6, false, 0x1234, 7),
                Reply::Other,
                "our own request looped back"
            );
            let mut bad = rep.clone();
            *bad.last_mut().unwrap() ^= 1;
            assert_eq!(
                classify(&bad, v6, false, 0x1234, 7),
                Reply::Other,
                "payload differs"
            );
            assert_eq!(
                classify(&rep[..6], v6, false, 0x1234, 7),
                Reply::Other,
                "short"
            );
        }
        // Raw IPv4: IP header first, and the identifier counts.
        let req = echo_request(false, 0x1234, 7);
        let mut pkt = ipv4_header(1, req.len());
        pkt.extend(reply_of(&req, false));
        assert_eq!(classify(&pkt, false, true, 0x1234, 7), Reply::Echo);
        assert_eq!(classify(&pkt, false, true, 0x4321, 7), Reply::Other);
        assert_eq!(classify(&[0x45, 0], false, true, 0x1234, 7), Reply::Other);
        // Raw IPv6: no IP header.
        let req6 = echo_request(true, 0x1234, 7);
        assert_eq!(
            classify(&reply_of(&req6, true), true, true, 0x1234, 7),
            Reply::Echo
        );
    }

    #[test]
    fn classify_errors() {
        // IPv4 destination unreachable (host unreachable) quoting our request.
        let req = echo_request(false, 0x1234, 7);
        let mut err = vec![3, 1, 0, 0, 0, 0, 0, 0];
        err.extend(ipv4_header(1, req.len()));
        err.extend(&req[..8]);
        let mut pkt = ipv4_header(1, err.len());
        pkt.extend(&err);
        assert_eq!(
            classify(&pkt, false, true, 0x1234, 7),
            Reply::Error("destination unreachable (code 1)".into())
        );
        assert_eq!(
            classify(&pkt, false, true, 0x1234, 9),
            Reply::Other,
            "about another request"
        );
        let mut truncated = ipv4_header(1, 20);
        truncated.extend(&err[..20]);
        assert_eq!(classify(&truncated, false, true, 0x1234, 7), Reply::Other);
        // IPv6 time exceeded.
        let req6 = echo_request(true, 0x1234, 7);
        let mut err6 = vec![3, 0, 0, 0, 0, 0, 0, 0, 0x60, 0, 0, 0, 0, 24, 58, 64];
        err6.extend([0u8; 32]);
        err6.extend(&req6);
        assert_eq!(
            classify(&err6, true, true, 0x1234, 7),
            Reply::Error("time exceeded (code 0)".into())
        );
    }

    /// Pings loopback with `kind`, or says why it cannot.
    async fn ping_loopback(addr: &str, kind: IcmpSocketKind) {
        let addr: IpAddr = addr.parse().unwrap();
        let s = match open(addr, kind).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("SKIP icmp check of {addr} with a {kind:?} socket: {e} (needs root or ping_group_range)");
                return;
            }
        };
        assert_eq!(
            ping(&s, kind, addr, deadline(2000)).await,
            up(),
            "{addr} {kind:?}"
        );
    }

    #[tokio::test]
    async fn pings_loopback() {
        ping_loopback("127.0.0.1", IcmpSocketKind::Raw).await;
        ping_loopback("::1", IcmpSocketKind::Raw).await;
        ping_loopback("127.0.0.1", IcmpSocketKind::Dgram).await;
        ping_loopback("::1", IcmpSocketKind::Dgram).await;
        // Whatever is allowed, `check` picks it or explains.
        match check("127.0.0.1".parse().unwrap(), deadline(2000)).await {
            Ok(_) => {}
            Err(e) => {
                assert!(e.reason.starts_with("cannot open an ICMP socket"), "{e}");
                eprintln!("SKIP icmp check: {e}");
            }
        }
    }
}
