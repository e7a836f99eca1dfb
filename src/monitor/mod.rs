//! The monitor: a browser console of `xvs run` over HTTPS, to watch the
//! director live and manage its real servers (docs/monitor.md).
//!
//! # Contract
//!
//! - Served by `xvs run` itself when `[monitor]` is configured (or
//!   `--monitor ADDR:PORT` given), on its own thread (`xvs-monitor`) with a
//!   current-thread tokio runtime: HTTPS only (TLS 1.2 and 1.3, rustls;
//!   [`tls`]), hyper HTTP/1.1. There is no plain-HTTP listener. Nothing
//!   on a worker thread is touched: the monitor reads the director's read
//!   side (models, the statistics hub, the health checker's report), and
//!   asks the workers for connection entries only as `xvsadm -L -c` does
//!   (bounded, sliced by the workers).
//! - Every asset (HTML, JS, CSS, icon) is compiled into the binary
//!   ([`assets`]); the page loads nothing from elsewhere (its
//!   Content-Security-Policy says `'self'` only).
//! - Users and roles come from the config ([`conf`]); sessions, CSRF
//!   tokens and the login rate limit from [`auth`]. Every endpoint but the
//!   login page, its assets and `POST /api/login` answers 401 without a
//!   session, with no data. Every change needs the session's CSRF token
//!   (`X-CSRF-Token`) and the admin role (403 otherwise).
//! - A change is an ipvsadm command line built from the request and the
//!   configured model (`-e -t VIP:PORT -r RIP:PORT -m -w 3`), parsed by
//!   [`crate::ctl::ipvsadm::parse`] and carried out by the control
//!   socket's own [`DaemonHandler`]: the same validation, the same
//!   messages as `xvsadm`, the same lock. Every attempt goes to the
//!   [`audit`] log with the user, the source address and the command.
//! - Live figures: a sampler task builds a [`state::Frame`] once a second
//!   (on the runtime's blocking pool) and publishes it as JSON; pages get
//!   it by server-sent events (`/api/events`) and the last 15 minutes of
//!   points from `/api/history`.

pub mod assets;
pub mod audit;
pub mod auth;
pub mod conf;
pub mod http;
pub mod state;
pub mod tls;

use crate::daemon::control::DaemonHandler;
use crate::daemon::health::HealthCtl;
use crate::daemon::stats::StatsHub;
use crate::daemon::Director;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::watch;

pub use conf::{MonitorConf, Role, User};

/// What the monitor reads and changes: the running director's parts.
#[derive(Clone)]
pub struct Ctx {
    pub director: Arc<Director>,
    pub hub: Arc<StatsHub>,
    /// Changes go through the control socket's handler.
    pub handler: Arc<DaemonHandler>,
    pub health: Option<Arc<HealthCtl>>,
}

/// A running monitor; stops when dropped.
pub struct Monitor {
    /// Where it listens (the port the kernel chose for port 0).
    pub addr: SocketAddr,
    /// SHA-256 of its certificate.
    pub fingerprint: String,
    /// The certificate was made at this start.
    pub generated: bool,
    /// The certificate file.
    pub cert_path: std::path::PathBuf,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl Monitor {
    /// Loads or makes the certificate, binds `conf.listen` and starts
    /// serving.
    ///
    /// # Errors
    /// The monitor is off, the certificate cannot be had, the address
    /// cannot be bound, or the thread cannot start.
    pub fn start(conf: &MonitorConf, ctx: Ctx) -> Result<Monitor, String> {
        let listen = conf.listen.ok_or("the monitor is off")?;
        if conf.users.is_empty() {
            return Err("monitor: no [[monitor.user]] in the configuration: nobody could log in".into());
        }
        let tls = tls::load(&conf.tls, Some(listen)).map_err(|e| format!("monitor certificate: {e}"))?;
        let l = std::net::TcpListener::bind(listen).map_err(|e| format!("monitor {listen}: {e}"))?;
        l.set_nonblocking(true).map_err(|e| format!("monitor {listen}: {e}"))?;
        let addr = l.local_addr().map_err(|e| format!("monitor {listen}: {e}"))?;
        let (stop, stop_rx) = watch::channel(false);
        let app = Arc::new(http::App::new(conf, ctx));
        let config = tls.config.clone();
        let thread = std::thread::Builder::new()
            .name("xvs-monitor".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        log::error!(target: "xvs::monitor", "no runtime ({e}); the monitor is not serving");
                        return;
                    }
                };
                rt.block_on(async move {
                    let l = match tokio::net::TcpListener::from_std(l) {
                        Ok(l) => l,
                        Err(e) => {
                            log::error!(target: "xvs::monitor", "{addr}: {e}; the monitor is not serving");
                            return;
                        }
                    };
                    tokio::spawn(http::sample_loop(app.clone(), stop_rx.clone()));
                    http::serve(l, config, app, stop_rx).await;
                });
                // Open connections (event streams) end with the runtime.
                rt.shutdown_timeout(std::time::Duration::from_secs(1));
            })
            .map_err(|e| format!("starting the monitor thread: {e}"))?;
        Ok(Monitor {
            addr,
            fingerprint: tls.fingerprint,
            generated: tls.generated,
            cert_path: tls.cert_path,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
