//! The monitor's HTTP handling (`App::handle`): method, path and query,
//! the session cookie, the CSRF token, the origin, the content type and
//! the body, from the fuzzer's bytes, as an admin or a viewer.
//!
//! The password check is left out (an argon2 hash per input would make
//! the target a hash benchmark): sessions are opened directly, and a
//! `POST /api/login` is sent as a `GET` (its refusal is tested by hand in
//! `src/monitor/http/tests.rs`).
//!
//! Beyond "no panic": no answer is a server error (500), and every
//! answer carries a content type.

use super::control::handler;
use super::Bytes as In;
use crate::monitor::conf::{MonitorConf, Role, User};
use crate::monitor::http::App;
use crate::monitor::Ctx;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, StatusCode};
use std::sync::{Arc, OnceLock};

const PATHS: &[&str] = &[
    "/", "/login", "/api/login", "/api/logout", "/api/session", "/api/state", "/api/history", "/api/events",
    "/api/conns", "/api/audit", "/api/change", "/app.js", "/style.css", "/nope",
];

const CHANGES: &[&str] = &[
    r#"{"op":"weight","service":"-t 10.0.0.100:80","dest":"10.0.1.1:80","weight":"5"}"#,
    r#"{"op":"drain","service":"-t 10.0.0.100:80","dest":"10.0.1.3:8080"}"#,
    r#"{"op":"restore","service":"-t 10.0.0.100:80","dest":"10.0.1.3:8080"}"#,
    r#"{"op":"add","service":"-t 10.0.0.100:443","dest":"10.0.1.5:8443","fwd":"nat","weight":"1"}"#,
    r#"{"op":"remove","service":"-t 10.0.0.100:443","dest":"10.0.1.9:443"}"#,
    r#"{"op":"scheduler","service":"-u 10.0.0.100:53","sched":"sh"}"#,
];

fn runtime() -> &'static tokio::runtime::Runtime {
    static R: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    R.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime"))
}

fn text(r: &mut In<'_>, n: usize) -> String {
    String::from_utf8_lossy(r.take(n)).into_owned()
}

/// Runs requests made from the fuzzer's bytes through a fresh monitor.
/// Panics when an invariant breaks (see the module docs).
pub fn run(data: &[u8]) {
    let mut r = In::new(data);
    let (d, hub, h) = handler();
    let h = Arc::new(h);
    let conf = MonitorConf {
        users: vec![
            User { name: "alice".into(), role: Role::Admin, password_hash: String::new() },
            User { name: "victor".into(), role: Role::Viewer, password_hash: String::new() },
        ],
        ..MonitorConf::default()
    };
    let app = Arc::new(App::new(&conf, Ctx { director: d, hub, handler: h, health: None }));
    app.sample_now();
    let (admin, admin_csrf) = app.open_session("alice", Role::Admin);
    let (viewer, viewer_csrf) = app.open_session("victor", Role::Viewer);
    let peer = "192.0.2.10:50000".parse().expect("an address");
    for _ in 0..8 {
        if r.is_empty() {
            break;
        }
        let method = r.pick(&["GET", "GET", "POST", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"]);
        let mut path = match r.u8() % 4 {
            0 => text(&mut r, 48),
            _ => PATHS[r.u8() as usize % PATHS.len()].to_string(),
        };
        if r.u8() % 4 == 0 {
            path.push('?');
            path.push_str(&text(&mut r, 64));
        }
        let method = if method == "POST" && path.starts_with("/api/login") { "GET" } else { method };
        let mut b = Request::builder().method(method).uri(path.as_str()).header("host", "127.0.0.1:9443");
        let (cookie, csrf) = match r.u8() % 4 {
            0 => (Some(admin.clone()), admin_csrf.clone()),
            1 => (Some(viewer.clone()), viewer_csrf.clone()),
            2 => (Some(text(&mut r, 70)), text(&mut r, 40)),
            _ => (None, String::new()),
        };
        if let Some(c) = cookie {
            b = b.header("cookie", format!("xvs_session={c}"));
        }
        match r.u8() % 3 {
            0 => b = b.header("x-csrf-token", csrf),
            1 => b = b.header("x-csrf-token", text(&mut r, 40)),
            _ => {}
        }
        match r.u8() % 4 {
            0 => b = b.header("origin", "https://127.0.0.1:9443"),
            1 => b = b.header("origin", text(&mut r, 32)),
            _ => {}
        }
        if r.u8() % 4 != 0 {
            b = b.header("content-type", "application/json");
        }
        let body = match r.u8() % 3 {
            0 => CHANGES[r.u8() as usize % CHANGES.len()].as_bytes().to_vec(),
            1 => {
                let n = r.u16() as usize % 4096;
                r.take(n).to_vec()
            }
            _ => Vec::new(),
        };
        let Ok(req) = b.body(Full::new(Bytes::from(body))) else { continue };
        let resp = runtime().block_on(app.handle(req, peer));
        assert!(resp.status() != StatusCode::INTERNAL_SERVER_ERROR, "a 500 for {method} {path}");
        assert!(resp.headers().contains_key("content-type") || resp.status().is_redirection() || resp.status() == StatusCode::NO_CONTENT, "no content type for {method} {path}: {}", resp.status());
    }
}
