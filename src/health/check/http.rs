//! Layer 7: HTTP and HTTPS GET (keepalived's HTTP_GET / SSL_GET).
//!
//! A small HTTP/1.1 client of our own: one `GET` with `Connection: close`,
//! the status line checked against the accepted codes, then — only when a
//! digest or regex is configured — the body read (Content-Length, chunked
//! or until close, at most [`MAX_BODY`] bytes) and its MD5 / regex checked.
//!
//! HTTPS uses rustls with the ring provider and does NOT verify the
//! server's certificate chain or name, like keepalived's SSL_GET without a
//! CA: a health check asks "does the server answer", and real servers often
//! carry certificates for the VIP's name, self-signed ones, or none valid
//! for their own address. The handshake signature is still verified, so
//! the server must hold the key of the certificate it shows.

use super::{up, within, Failure, Outcome};
use crate::health::config::HttpProbe;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::sync::{Arc, OnceLock};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Largest response head (status line + headers) accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest body read for a digest or regex.
pub const MAX_BODY: usize = 1024 * 1024;

/// Checks `p.target` with one GET.
pub async fn check(p: &HttpProbe, deadline: Instant) -> Outcome {
    let tcp = within(deadline, "connect", TcpStream::connect(p.target)).await?;
    if !p.tls {
        return exchange(tcp, p, deadline).await;
    }
    let name = match &p.sni {
        Some(n) => ServerName::try_from(n.clone())
            .map_err(|_| Failure::new(format!("bad TLS server name '{n}'")))?,
        None => ServerName::IpAddress(p.target.ip().into()),
    };
    let connector = tokio_rustls::TlsConnector::from(tls_config());
    let tls = within(deadline, "TLS handshake", connector.connect(name, tcp)).await?;
    exchange(tls, p, deadline).await
}

/// The shared client configuration: ring provider, no chain verification.
fn tls_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("the ring provider supports the default TLS versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoChainVerify(provider)))
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// Accepts any certificate chain (see the module docs) but checks the
/// handshake signatures with the provider's algorithms.
#[derive(Debug)]
struct NoChainVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoChainVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The request we send.
pub(crate) fn request(p: &HttpProbe) -> String {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: xvs-health\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        p.path, p.host
    )
}

/// A response head, parsed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub status: u16,
    pub framing: Framing,
}

/// How the body is delimited.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
    None,
}

/// Reads from a stream into a buffer, with the check's deadline.
struct Reader<S> {
    s: S,
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
    deadline: Instant,
}

impl<S: AsyncRead + Unpin> Reader<S> {
    /// Reads more bytes; false at end of stream. A TLS stream closed
    /// without close_notify counts as end of stream (many servers do it).
    async fn fill(&mut self, what: &str) -> Result<bool, Failure> {
        if self.eof {
            return Ok(false);
        }
        let mut chunk = [0u8; 8192];
        let r = tokio::time::timeout_at(self.deadline, self.s.read(&mut chunk)).await;
        let n = match r {
            Err(_) => return Err(Failure::new(format!("{what}: timed out"))),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Ok(Err(e)) => return Err(Failure::new(format!("{what}: {}", super::io_reason(&e)))),
            Ok(Ok(n)) => n,
        };
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(true)
    }

    fn avail(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// One line (without its CRLF / LF), at most `max` bytes.
    async fn line(&mut self, what: &str, max: usize) -> Result<Vec<u8>, Failure> {
        loop {
            if let Some(i) = self.avail().iter().position(|b| *b == b'\n') {
                let mut l = self.avail()[..i].to_vec();
                self.pos += i + 1;
                if l.last() == Some(&b'\r') {
                    l.pop();
                }
                return Ok(l);
            }
            if self.avail().len() > max {
                return Err(Failure::new(format!(
                    "{what}: line longer than {max} bytes"
                )));
            }
            if !self.fill(what).await? {
                return Err(Failure::new(format!("{what}: connection closed early")));
            }
        }
    }

    /// Exactly `n` bytes.
    async fn exact(&mut self, what: &str, n: usize) -> Result<Vec<u8>, Failure> {
        while self.avail().len() < n {
            if !self.fill(what).await? {
                return Err(Failure::new(format!(
                    "{what}: connection closed after {} of {n} bytes",
                    self.avail().len()
                )));
            }
        }
        let v = self.avail()[..n].to_vec();
        self.pos += n;
        Ok(v)
    }

    /// The response head.
    async fn head(&mut self) -> Result<Head, Failure> {
        let status_line = self.line("read the status line", MAX_HEAD).await?;
        // Judge the status line first: a server that is not speaking HTTP
        // is reported as such, not as a short header section.
        parse_status(&status_line)?;
        let mut headers = Vec::new();
        let mut total = status_line.len();
        loop {
            let l = self.line("read the headers", MAX_HEAD).await?;
            total += l.len() + 2;
            if total > MAX_HEAD {
                return Err(Failure::new(format!(
                    "response head exceeds {MAX_HEAD} bytes"
                )));
            }
            if l.is_empty() {
                break;
            }
            headers.push(l);
        }
        parse_head(&status_line, &headers)
    }

    /// The body, delimited as the head says.
    async fn body(&mut self, framing: &Framing) -> Result<Vec<u8>, Failure> {
        match framing {
            Framing::None => Ok(Vec::new()),
            Framing::Length(n) => {
                if *n > MAX_BODY {
                    return Err(Failure::new(format!(
                        "body of {n} bytes exceeds {MAX_BODY}"
                    )));
                }
                self.exact("read the body", *n).await
            }
            Framing::UntilClose => {
                while self.fill("read the body").await? {
                    if self.avail().len() > MAX_BODY {
                        return Err(Failure::new(format!("body exceeds {MAX_BODY} bytes")));
                    }
                }
                Ok(self.avail().to_vec())
            }
            Framing::Chunked => {
                let mut body = Vec::new();
                loop {
                    let l = self.line("read a chunk size", 1024).await?;
                    let text = String::from_utf8_lossy(&l);
                    let size_txt = text.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(size_txt, 16).map_err(|_| {
                        Failure::new(format!(
                            "bad chunk size '{}'",
                            text.chars().take(40).collect::<String>()
                        ))
                    })?;
                    if size == 0 {
                        // Trailers up to the empty line; a close instead is tolerated.
                        while !self.avail().is_empty() || !self.eof {
                            match self.line("read the trailers", MAX_HEAD).await {
                                Ok(l) if l.is_empty() => break,
                                Ok(_) => {}
                                Err(_) if self.eof => break,
                                Err(e) => return Err(e),
                            }
                        }
                        return Ok(body);
                    }
                    if body.len() + size > MAX_BODY {
                        return Err(Failure::new(format!("body exceeds {MAX_BODY} bytes")));
                    }
                    body.extend(self.exact("read a chunk", size).await?);
                    let crlf = self.line("read a chunk end", 2).await?;
                    if !crlf.is_empty() {
                        return Err(Failure::new("chunk not followed by CRLF"));
                    }
                }
            }
        }
    }
}

/// Parses the status line: the status code.
pub(crate) fn parse_status(status_line: &[u8]) -> Result<u16, Failure> {
    let sl = String::from_utf8_lossy(status_line);
    let short: String = sl.chars().take(60).collect();
    let mut parts = sl.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(Failure::new(format!("not an HTTP/1.x response: '{short}'")));
    }
    let code = parts.next().unwrap_or("");
    let status: u16 = match code.parse() {
        Ok(c) if code.len() == 3 && (100..=599).contains(&c) => c,
        _ => return Err(Failure::new(format!("bad status line '{short}'"))),
    };
    Ok(status)
}

/// Parses the status line and the framing headers.
pub(crate) fn parse_head(status_line: &[u8], headers: &[Vec<u8>]) -> Result<Head, Failure> {
    let status = parse_status(status_line)?;
    let mut length = None;
    let mut chunked = false;
    for h in headers {
        let h = String::from_utf8_lossy(h);
        let Some((name, value)) = h.split_once(':') else {
            return Err(Failure::new(format!(
                "bad header line '{}'",
                h.chars().take(60).collect::<String>()
            )));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| Failure::new(format!("bad Content-Length '{value}'")))?;
            if length.is_some_and(|l| l != n) {
                return Err(Failure::new("conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"));
        }
    }
    // RFC 9112 6.3: no body for 1xx/204/304; chunked wins over a length.
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    Ok(Head { status, framing })
}

/// Lower-case hex of `b`.
pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Sends the request on `s` and judges the response.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    p: &HttpProbe,
    deadline: Instant,
) -> Outcome {
    let req = request(p);
    within(deadline, "send the request", async {
        s.write_all(req.as_bytes()).await?;
        s.flush().await
    })
    .await?;
    let mut r = Reader {
        s,
        buf: Vec::with_capacity(4096),
        pos: 0,
        eof: false,
        deadline,
    };
    let head = r.head().await?;
    if !p.status.accepts(head.status) {
        return Err(Failure::new(format!(
            "status {}, want {}",
            head.status, p.status
        )));
    }
    if p.digest.is_none() && p.regex.is_none() {
        return up();
    }
    let body = r.body(&head.framing).await?;
    if let Some(want) = &p.digest {
        let got = md5::compute(&body).0;
        if &got != want {
            return Err(Failure::new(format!(
                "body digest {} ({} bytes), want {}",
                hex(&got),
                body.len(),
                hex(want)
            )));
        }
    }
    if let Some(re) = &p.regex {
        if !re.re.is_match(&String::from_utf8_lossy(&body)) {
            return Err(Failure::new(format!(
                "body ({} bytes) does not match regex '{}'",
                body.len(),
                re.source
            )));
        }
    }
    up()
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use crate::health::config::{CheckConfig, CheckType, Probe};
    use crate::health::DestId;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;
    use std::net::SocketAddr;

    fn probe(target: SocketAddr, tls: bool, extra: impl FnOnce(&mut CheckConfig)) -> HttpProbe {
        let mut c = CheckConfig::new(if tls {
            CheckType::Https
        } else {
            CheckType::Http
        });
        c.path = Some("/health".into());
        extra(&mut c);
        match c
            .validate(DestId {
                addr: target.ip(),
                port: target.port(),
            })
            .unwrap()
            .0
            .probe
        {
            Probe::Http(h) => h,
            p => panic!("{p:?}"),
        }
    }

    /// A server that answers every connection with `resp` after reading
    /// the request head, and records the first request.
    async fn server(resp: &'static [u8]) -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
        tcp_server(move |mut s| async move {
            let req = read_head(&mut s).await;
            s.write_all(resp).await.unwrap();
            s.shutdown().await.ok();
            req
        })
        .await
    }

    async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
        let mut req = Vec::new();
        let mut b = [0u8; 1024];
        while !req.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut b).await.unwrap();
            if n == 0 {
                break;
            }
            req.extend_from_slice(&b[..n]);
        }
        req
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    // md5("ok")
    const OK_MD5: &str = "444bcb3a3fcf8389296c49467f27e1d6";

    #[tokio::test]
    async fn answers_right() {
        let (addr, h) = server(OK).await;
        let p = probe(addr, false, |c| c.digest = Some(OK_MD5.into()));
        assert_eq!(check(&p, deadline(2000)).await, up());
        let req = String::from_utf8(h.await.unwrap()).unwrap();
        assert!(req.starts_with("GET /health HTTP/1.1\r\n"), "{req}");
        assert!(req.contains(&format!("\r\nHost: {addr}\r\n")), "{req}");

        let (addr, _h) = server(b"HTTP/1.0 204 No Content\r\n\r\n").await;
        assert_eq!(
            check(&probe(addr, false, |_| {}), deadline(2000)).await,
            up()
        );

        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nst\r\n5\r\natus:\r\n3\r\n ok\r\n0\r\nX-T: 1\r\n\r\n";
        let (addr, _h) = server(chunked).await;
        let p = probe(addr, false, |c| {
            c.regex = Some("^status: (ok|fine)$".into())
        });
        assert_eq!(check(&p, deadline(2000)).await, up());

        let (addr, _h) = server(b"HTTP/1.1 503 Busy\r\n\r\nanything until close").await;
        let p = probe(addr, false, |c| {
            c.status = Some(vec![503]);
            c.regex = Some("until close$".into());
        });
        assert_eq!(check(&p, deadline(2000)).await, up());
    }

    #[tokio::test]
    async fn answers_wrong() {
        type Case = (&'static [u8], fn(&mut CheckConfig), &'static str);
        let cases: &[Case] = &[
            (b"HTTP/1.1 500 Oops\r\n\r\n", |_| {}, "status 500, want 2xx"),
            (
                b"HTTP/1.1 200 OK\r\n\r\n",
                |c| c.status = Some(vec![301, 302]),
                "status 200, want 301, 302",
            ),
            (
                OK,
                |c| c.digest = Some("00112233445566778899aabbccddeeff".into()),
                "body digest 444bcb3a3fcf8389296c49467f27e1d6 (2 bytes), want 00112233",
            ),
            (
                OK,
                |c| c.regex = Some("^fine$".into()),
                "does not match regex '^fine$'",
            ),
            (
                b"SSH-2.0-OpenSSH\r\n",
                |_| {},
                "not an HTTP/1.x response: 'SSH-2.0-OpenSSH'",
            ),
            (b"HTTP/1.1 2000 OK\r\n\r\n", |_| {}, "bad status line"),
            (
                b"HTTP/1.1 200 OK\r\nbroken\r\n\r\n",
                |_| {},
                "bad header line 'broken'",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                |_| {},
                "bad Content-Length 'x'",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                |c| c.regex = Some("s".into()),
                "connection closed after 5 of 10 bytes",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n",
                |c| c.regex = Some("s".into()),
                "exceeds",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                |c| c.regex = Some("s".into()),
                "bad chunk size 'zz'",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n",
                |c| c.regex = Some("s".into()),
                "chunk not followed by CRLF",
            ),
            (
                b"HTTP/1.1 200 OK\r\n",
                |_| {},
                "read the headers: connection closed early",
            ),
            (b"", |_| {}, "read the status line: connection closed early"),
        ];
        for (resp, cfg, want) in cases {
            let (addr, _h) = server(resp).await;
            let r = check(&probe(addr, false, cfg), deadline(2000)).await;
            let e = r.expect_err(want).reason;
            assert!(e.contains(want), "'{e}' should contain '{want}'");
        }
    }

    #[tokio::test]
    async fn hangs_and_refuses() {
        // Accepts, reads the request, never answers.
        let (addr, h) = tcp_server(|mut s| async move {
            read_head(&mut s).await;
            std::future::pending::<()>().await;
        })
        .await;
        let r = check(&probe(addr, false, |_| {}), deadline(150)).await;
        assert_eq!(r.unwrap_err().reason, "read the status line: timed out");
        h.abort();
        let (_l, _f, addr) = hanging_tcp().await;
        let r = check(&probe(addr, false, |_| {}), deadline(150)).await;
        assert_eq!(r.unwrap_err().reason, "connect: timed out");
        let r = check(&probe(refused_tcp().await, false, |_| {}), deadline(2000)).await;
        assert_eq!(r.unwrap_err().reason, "connect: connection refused");
        // A server that trickles an endless head is cut at MAX_HEAD.
        let (addr, h) = tcp_server(|mut s| async move {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n").await;
            let line = [b'a'; 1000];
            for _ in 0..100 {
                if s.write_all(&line).await.is_err() {
                    break;
                }
            }
        })
        .await;
        let r = check(&probe(addr, false, |_| {}), deadline(2000)).await;
        assert!(r.unwrap_err().reason.contains("longer than"));
        h.abort();
    }

    fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
        let cert = CertificateDer::from_pem_slice(include_bytes!("../testdata/cert.pem")).unwrap();
        let key = PrivateKeyDer::from_pem_slice(include_bytes!("../testdata/key.pem")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
    }

    /// An HTTPS server answering `resp`; reports the SNI it saw.
    async fn tls_server(
        resp: &'static [u8],
    ) -> (SocketAddr, tokio::task::JoinHandle<Option<String>>) {
        let acc = tls_acceptor();
        tcp_server(move |s| async move {
            let mut s = acc.accept(s).await.unwrap();
            let sni = s.get_ref().1.server_name().map(str::to_string);
            read_head(&mut s).await;
            s.write_all(resp).await.unwrap();
            s.shutdown().await.ok();
            sni
        })
        .await
    }

    #[tokio::test]
    async fn https_right_wrong_and_not_tls() {
        let (addr, h) = tls_server(OK).await;
        let p = probe(addr, true, |c| c.digest = Some(OK_MD5.into()));
        assert_eq!(
            check(&p, deadline(3000)).await,
            up(),
            "self-signed certificate is accepted"
        );
        assert_eq!(h.await.unwrap(), None, "no SNI for an address");

        let (addr, h) = tls_server(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").await;
        let p = probe(addr, true, |c| c.sni = Some("www.example.org".into()));
        assert_eq!(
            check(&p, deadline(3000)).await.unwrap_err().reason,
            "status 404, want 2xx"
        );
        assert_eq!(h.await.unwrap().as_deref(), Some("www.example.org"));

        // A plain HTTP server on the HTTPS port fails the handshake.
        let (addr, _h) = server(OK).await;
        let r = check(&probe(addr, true, |_| {}), deadline(3000)).await;
        assert!(r.unwrap_err().reason.starts_with("TLS handshake: "));
        // Hanging during the handshake.
        let (addr, h) = tcp_server(|s| async move {
            let _open = s;
            std::future::pending::<()>().await;
        })
        .await;
        let r = check(&probe(addr, true, |_| {}), deadline(150)).await;
        assert_eq!(r.unwrap_err().reason, "TLS handshake: timed out");
        h.abort();
    }

    #[test]
    fn head_framing() {
        let h = |s: &str| -> Vec<Vec<u8>> {
            s.split('|')
                .filter(|x| !x.is_empty())
                .map(|x| x.as_bytes().to_vec())
                .collect()
        };
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK", &h("Content-Length: 5"))
                .unwrap()
                .framing,
            Framing::Length(5)
        );
        assert_eq!(
            parse_head(
                b"HTTP/1.1 200 OK",
                &h("content-length: 5|Transfer-Encoding: gzip, chunked")
            )
            .unwrap()
            .framing,
            Framing::Chunked
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 304 Not Modified", &h("Content-Length: 5"))
                .unwrap()
                .framing,
            Framing::None
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 200", &h("")).unwrap(),
            Head {
                status: 200,
                framing: Framing::UntilClose
            }
        );
        assert!(parse_head(
            b"HTTP/1.1 200 OK",
            &h("Content-Length: 5|Content-Length: 6")
        )
        .unwrap_err()
        .reason
        .contains("conflicting"));
        assert!(parse_head(b"HTTP/2 200", &[]).is_err());
        assert!(parse_head(b"HTTP/1.1 099 x", &[]).is_err());
        assert!(parse_head(&[0xff, 0xfe], &[]).is_err());
    }
}
