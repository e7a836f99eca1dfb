//! DNS query over UDP: one A or AAAA question (recursion desired); the
//! server is up when the answer is NOERROR with at least one record of the
//! type asked for.
//!
//! The encoder and decoder are ours and small (RFC 1035 section 4): the
//! decoder bounds-checks every read, follows compression pointers only
//! backwards with a hop limit, and returns a reason for anything odd.

use super::{up, within, Failure, Outcome};
use crate::health::config::DnsProbe;
use std::sync::atomic::{AtomicU16, Ordering};
use tokio::time::Instant;

/// RCODE names (RFC 1035, RFC 2136).
fn rcode_name(r: u8) -> &'static str {
    match r {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        _ => "error",
    }
}

/// A query id: a counter mixed with the clock, so consecutive checks and
/// several checks in flight use different ids.
fn next_id() -> u16 {
    static N: AtomicU16 = AtomicU16::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    N.fetch_add(0x9e37, Ordering::Relaxed) ^ (t as u16) ^ ((t >> 16) as u16)
}

/// Encodes a query for `name` (already validated: labels of 1..=63 bytes).
pub(crate) fn encode_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // 1 question
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // IN
    q
}

fn u16_at(b: &[u8], i: usize) -> Result<u16, Failure> {
    match b.get(i..i + 2) {
        Some(s) => Ok(u16::from_be_bytes([s[0], s[1]])),
        None => Err(Failure::new("truncated DNS message")),
    }
}

/// Skips the (possibly compressed) name at `i`; returns the offset after it.
fn skip_name(b: &[u8], mut i: usize) -> Result<usize, Failure> {
    // The name occupies bytes only up to its first pointer (or root).
    for _ in 0..128 {
        let len = *b.get(i).ok_or_else(|| Failure::new("truncated DNS name"))?;
        match len {
            0 => return Ok(i + 1),
            l if l & 0xc0 == 0xc0 => {
                let ptr = (u16_at(b, i)? & 0x3fff) as usize;
                if ptr >= i {
                    return Err(Failure::new("DNS compression pointer points forward"));
                }
                return Ok(i + 2);
            }
            l if l & 0xc0 != 0 => {
                return Err(Failure::new(format!("bad DNS label type 0x{l:02x}")))
            }
            l => i += 1 + l as usize,
        }
    }
    Err(Failure::new("DNS name has too many labels"))
}

/// Counts the answer records of type `qtype` in the response `b` to query
/// `id`.
///
/// # Errors
/// Anything that makes the response not a positive answer to our query.
pub(crate) fn count_answers(b: &[u8], id: u16, qtype: u16) -> Result<usize, Failure> {
    if b.len() < 12 {
        return Err(Failure::new(format!(
            "DNS reply of {} bytes is shorter than a header",
            b.len()
        )));
    }
    if u16_at(b, 0)? != id {
        return Err(Failure::new("DNS reply has another query id"));
    }
    let flags = u16_at(b, 2)?;
    if flags & 0x8000 == 0 {
        return Err(Failure::new("DNS reply is a query (QR bit clear)"));
    }
    let rcode = (flags & 0xf) as u8;
    if rcode != 0 {
        return Err(Failure::new(format!(
            "DNS answer {} (rcode {rcode})",
            rcode_name(rcode)
        )));
    }
    let qd = u16_at(b, 4)?;
    let an = u16_at(b, 6)?;
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(b, i)? + 4;
    }
    let mut found = 0;
    for _ in 0..an {
        i = skip_name(b, i)?;
        let rtype = u16_at(b, i)?;
        let rdlen = u16_at(b, i + 8)? as usize;
        i += 10 + rdlen;
        if i > b.len() {
            return Err(Failure::new("truncated DNS record"));
        }
        if rtype == qtype {
            found += 1;
        }
    }
    Ok(found)
}

/// Queries `p.target` for `p.name`.
pub async fn check(p: &DnsProbe, deadline: Instant) -> Outcome {
    let s = super::udp::connected(p.target, deadline).await?;
    let id = next_id();
    let qtype = p.qtype.code();
    within(
        deadline,
        "send the query",
        s.send(&encode_query(id, &p.name, qtype)),
    )
    .await?;
    let mut buf = vec![0u8; 4096];
    // A stray datagram with another id is skipped, not fatal.
    loop {
        let n = within(deadline, "wait for the DNS answer", s.recv(&mut buf)).await?;
        match count_answers(&buf[..n], id, qtype) {
            Err(e) if e.reason.contains("another query id") => continue,
            Err(e) => return Err(e),
            Ok(0) => {
                return Err(Failure::new(format!(
                    "DNS answer NOERROR but no {:?} record for {}",
                    p.qtype, p.name
                )))
            }
            Ok(_) => return up(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{closed_udp, deadline, refused_udp, udp_server};
    use super::*;
    use crate::health::config::QueryType;
    use std::net::SocketAddr;

    /// Builds an answer to query `q`: `rcode`, and `n` records of `rtype`
    /// whose names are compression pointers to the question.
    fn answer(q: &[u8], rcode: u8, rtype: u16, n: u16) -> Vec<u8> {
        let mut a = q.to_vec();
        a[2] = 0x81; // QR, RD
        a[3] = 0x80 | rcode; // RA
        a[6..8].copy_from_slice(&n.to_be_bytes());
        for k in 0..n {
            a.extend_from_slice(&[0xc0, 12]);
            a.extend_from_slice(&rtype.to_be_bytes());
            a.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
            let rd: Vec<u8> = if rtype == 28 {
                vec![0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, k as u8]
            } else {
                vec![192, 0, 2, k as u8]
            };
            a.extend_from_slice(&(rd.len() as u16).to_be_bytes());
            a.extend_from_slice(&rd);
        }
        a
    }

    #[test]
    fn encode_and_decode() {
        let q = encode_query(0x1234, "www.example.org", 1);
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..16], b"\x03www");
        assert_eq!(q.len(), 12 + 17 + 4);
        assert_eq!(count_answers(&answer(&q, 0, 1, 2), 0x1234, 1).unwrap(), 2);
        assert_eq!(
            count_answers(&answer(&q, 0, 5, 1), 0x1234, 1).unwrap(),
            0,
            "a CNAME is not an A"
        );
        assert_eq!(
            count_answers(&answer(&q, 3, 1, 0), 0x1234, 1)
                .unwrap_err()
                .reason,
            "DNS answer NXDOMAIN (rcode 3)"
        );
        assert!(count_answers(&answer(&q, 0, 1, 1), 0x9999, 1)
            .unwrap_err()
            .reason
            .contains("another query id"));
        assert!(count_answers(&q, 0x1234, 1)
            .unwrap_err()
            .reason
            .contains("QR bit"));
        assert!(count_answers(&q[..5], 0x1234, 1)
            .unwrap_err()
            .reason
            .contains("shorter than a header"));
        // Every truncation of a valid answer is an error, never a panic.
        let a = answer(&q, 0, 1, 2);
        for cut in 12..a.len() {
            assert!(count_answers(&a[..cut], 0x1234, 1).is_err(), "cut at {cut}");
        }
        // A pointer to itself is refused.
        let mut bad = answer(&q, 0, 1, 1);
        let at = 12 + 17 + 4;
        bad[at + 1] = at as u8;
        assert!(count_answers(&bad, 0x1234, 1)
            .unwrap_err()
            .reason
            .contains("points forward"));
        let mut bad = answer(&q, 0, 1, 1);
        bad[12] = 0x80;
        assert!(count_answers(&bad, 0x1234, 1)
            .unwrap_err()
            .reason
            .contains("label type"));
    }

    #[test]
    fn decoder_survives_garbage() {
        let mut x: u64 = 0x243f6a8885a308d3;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 80) as usize;
            let mut b: Vec<u8> = (0..len).map(|k| (x >> (k % 56)) as u8).collect();
            if b.len() > 3 {
                b[0] = 0;
                b[1] = 7;
                b[2] |= 0x80;
                b[3] &= 0xf0;
            }
            let _ = count_answers(&b, 7, 1);
        }
    }

    /// A DNS server: `mode` 0 answers right, 1 NXDOMAIN, 2 no records,
    /// 3 a stray wrong-id datagram first then right, 4 silent.
    async fn server(mode: u8) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        udp_server(move |q| {
            let n = q.len();
            let qtype = u16::from_be_bytes([q[n - 4], q[n - 3]]);
            match mode {
                0 => vec![answer(q, 0, qtype, 1)],
                1 => vec![answer(q, 3, qtype, 0)],
                2 => vec![answer(q, 0, qtype, 0)],
                3 => {
                    let mut stray = answer(q, 0, qtype, 1);
                    stray[0] ^= 0xff;
                    vec![stray, answer(q, 0, qtype, 1)]
                }
                _ => vec![],
            }
        })
        .await
    }

    fn probe(target: SocketAddr, qtype: QueryType) -> DnsProbe {
        DnsProbe {
            target,
            name: "www.example.org".into(),
            qtype,
        }
    }

    #[tokio::test]
    async fn right_wrong_hang_refuse() {
        for (mode, want) in [
            (0, None),
            (3, None),
            (1, Some("DNS answer NXDOMAIN (rcode 3)")),
            (
                2,
                Some("DNS answer NOERROR but no AAAA record for www.example.org"),
            ),
            (4, Some("wait for the DNS answer: timed out")),
        ] {
            let (addr, h) = server(mode).await;
            let r = check(
                &probe(addr, QueryType::AAAA),
                deadline(if mode == 4 { 150 } else { 2000 }),
            )
            .await;
            match want {
                None => assert_eq!(r, up(), "mode {mode}"),
                Some(w) => assert_eq!(r.unwrap_err().reason, w, "mode {mode}"),
            }
            h.abort();
        }
        let p = probe(closed_udp().await, QueryType::A);
        let reasons = refused_udp(|| check(&p, deadline(300))).await;
        assert_eq!(
            reasons.last().unwrap(),
            "wait for the DNS answer: connection refused",
            "{reasons:?}"
        );
    }
}
