//! Layer 4: a TCP connect (keepalived's TCP_CHECK). The server is up when
//! the three-way handshake completes within the deadline; the connection is
//! closed at once.

use super::{up, within, Outcome};
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Connects to `target`.
pub async fn check(target: SocketAddr, deadline: Instant) -> Outcome {
    let stream = within(deadline, "connect", TcpStream::connect(target)).await?;
    drop(stream);
    up()
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn connect_refuse_hang() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        assert_eq!(check(l.local_addr().unwrap(), deadline(2000)).await, up());
        let l6 = match TcpListener::bind("[::1]:0").await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("SKIP tcp check over IPv6: cannot bind ::1 ({e})");
                None
            }
        };
        if let Some(l6) = l6 {
            assert_eq!(check(l6.local_addr().unwrap(), deadline(2000)).await, up());
        }
        let r = check(refused_tcp().await, deadline(2000)).await;
        assert_eq!(r.unwrap_err().reason, "connect: connection refused");
        let (_l, _filler, addr) = hanging_tcp().await;
        let r = check(addr, deadline(150)).await;
        assert_eq!(r.unwrap_err().reason, "connect: timed out");
    }
}
