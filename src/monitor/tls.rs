//! The monitor's TLS: a certificate from the config, or a self-signed one
//! made at the first start and kept; TLS 1.2 and 1.3 only.
//!
//! - [`TlsSource::Files`]: PEM certificate chain and private key.
//! - [`TlsSource::SelfSigned`]: `monitor-cert.pem` and `monitor-key.pem`
//!   in the state directory; made with rcgen (ECDSA P-256) when missing,
//!   for `localhost`, `127.0.0.1`, `::1`, the host name and the listen
//!   address, the key written with mode 0600. The next start reuses them,
//!   so a browser's exception or a pinned fingerprint stays valid.
//! - Either way the certificate's SHA-256 fingerprint is returned (and
//!   logged by the caller), the value a browser shows to compare.
//! - rustls speaks nothing older than TLS 1.2: an SSLv3/TLS 1.0/1.1 hello
//!   gets a `protocol_version` alert; plain HTTP is not a TLS record and
//!   the connection is closed.

use super::conf::TlsSource;
use ring::digest::{digest, SHA256};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// File names in the state directory.
pub const CERT_FILE: &str = "monitor-cert.pem";
pub const KEY_FILE: &str = "monitor-key.pem";

/// A ready TLS configuration.
pub struct Tls {
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the certificate, `AB:CD:...` as browsers show it.
    pub fingerprint: String,
    /// The certificate file in use.
    pub cert_path: PathBuf,
    /// It was made just now.
    pub generated: bool,
}

/// `AB:CD:...` SHA-256 of a DER certificate.
pub fn fingerprint(der: &[u8]) -> String {
    digest(&SHA256, der).as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let n = String::from_utf8_lossy(&buf[..end]).into_owned();
    (!n.is_empty()).then_some(n)
}

/// Writes `data` to `path` through a temporary file (mode `mode`), so a
/// crash leaves either nothing or the whole file.
fn write_file(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Makes a self-signed certificate and key for `listen` in `dir`.
fn generate(dir: &Path, listen: Option<SocketAddr>) -> Result<(), String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    if let Some(h) = host_name() {
        names.push(h);
    }
    if let Some(a) = listen {
        if !a.ip().is_unspecified() && !names.contains(&a.ip().to_string()) {
            names.push(a.ip().to_string());
        }
    }
    names.dedup();
    let ck = rcgen::generate_simple_self_signed(names).map_err(|e| format!("making a certificate: {e}"))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let key = dir.join(KEY_FILE);
    write_file(&key, ck.key_pair.serialize_pem().as_bytes(), 0o600).map_err(|e| format!("{}: {e}", key.display()))?;
    let cert = dir.join(CERT_FILE);
    write_file(&cert, ck.cert.pem().as_bytes(), 0o644).map_err(|e| format!("{}: {e}", cert.display()))?;
    Ok(())
}

/// Loads (or for a self-signed source first makes) the certificate and
/// builds the server configuration.
///
/// # Errors
/// A file cannot be read or written, holds no certificate or key, or the
/// key does not fit the certificate; the message names the file.
pub fn load(src: &TlsSource, listen: Option<SocketAddr>) -> Result<Tls, String> {
    let (cert_path, key_path, generated) = match src {
        TlsSource::Files { cert, key } => (cert.clone(), key.clone(), false),
        TlsSource::SelfSigned { dir } => {
            let (c, k) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
            let fresh = !c.exists() || !k.exists();
            if fresh {
                generate(dir, listen)?;
            }
            (c, k, fresh)
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| format!("{}: {e}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    let Some(first) = certs.first() else {
        return Err(format!("{}: no certificate in the file", cert_path.display()));
    };
    let fingerprint = fingerprint(first.as_ref());
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| format!("{}: no private key ({e})", key_path.display()))?;
    let config = server_config(certs, key).map_err(|e| format!("{} and {}: {e}", cert_path.display(), key_path.display()))?;
    Ok(Tls { config, fingerprint, cert_path, generated })
}

/// TLS 1.3 and 1.2 with the ring provider, HTTP/1.1 by ALPN.
fn server_config(certs: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("state");
        let src = TlsSource::SelfSigned { dir: sub.clone() };
        let a = load(&src, Some("127.0.0.1:9443".parse().unwrap())).unwrap();
        assert!(a.generated);
        assert_eq!(a.fingerprint.len(), 32 * 3 - 1);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(sub.join(KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key is private");
        let b = load(&src, None).unwrap();
        assert!(!b.generated);
        assert_eq!(a.fingerprint, b.fingerprint, "the same certificate on the next start");
        // Given as files, the same.
        let f = TlsSource::Files { cert: sub.join(CERT_FILE), key: sub.join(KEY_FILE) };
        assert_eq!(load(&f, None).unwrap().fingerprint, a.fingerprint);
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let e = load(&TlsSource::Files { cert: c.clone(), key: k.clone() }, None).err().unwrap();
        assert!(e.contains("c.pem"), "{e}");
        std::fs::write(&c, "not pem").unwrap();
        let e = load(&TlsSource::Files { cert: c.clone(), key: k.clone() }, None).err().unwrap();
        assert!(e.contains("no certificate"), "{e}");
        // A key that is not the certificate's.
        let one = rcgen::generate_simple_self_signed(vec!["a".to_string()]).unwrap();
        let two = rcgen::generate_simple_self_signed(vec!["b".to_string()]).unwrap();
        std::fs::write(&c, one.cert.pem()).unwrap();
        std::fs::write(&k, "junk").unwrap();
        let e = load(&TlsSource::Files { cert: c.clone(), key: k.clone() }, None).err().unwrap();
        assert!(e.contains("k.pem: no private key"), "{e}");
        std::fs::write(&k, two.key_pair.serialize_pem()).unwrap();
        let e = load(&TlsSource::Files { cert: c.clone(), key: k.clone() }, None).err().unwrap();
        assert!(e.contains("c.pem and"), "{e}");
    }
}
