//! The monitor's HTTPS server: the accept loop, the routes, sessions on
//! every request, changes through the control handler.
//!
//! Routes (everything else is 404; a known path with another method 405):
//!
//! | method | path            | session | what |
//! |--------|-----------------|---------|------|
//! | GET    | `/login`, `/assets/*`, `/favicon.ico` | no | the login page and static assets (no data) |
//! | POST   | `/api/login`    | no      | `{user, password}` → cookie, `{user, role, csrf}`; 401 wrong, 429 limited |
//! | GET    | `/`             | yes (else 303 to `/login`) | the console |
//! | GET    | `/api/session`  | yes     | `{user, role, csrf, expires_in}` |
//! | GET    | `/api/state`    | yes     | the latest [`Frame`](super::state::Frame) |
//! | GET    | `/api/history`  | yes     | the last 15 minutes of points |
//! | GET    | `/api/events`   | yes     | server-sent events: `frame` once a second, `logout` when the session ends |
//! | GET    | `/api/conns`    | yes     | connection entries (`-L -c`), filtered and paged |
//! | GET    | `/api/audit`    | yes     | the last audit entries |
//! | POST   | `/api/logout`   | yes + CSRF | ends the session |
//! | POST   | `/api/change`   | admin + CSRF | a change (see [`change_words`]) |
//!
//! Without a session an `/api/*` request gets 401 and a JSON error, never
//! data. POST bodies must be JSON (`Content-Type: application/json`, at
//! most [`MAX_BODY`] bytes), and a request carrying an `Origin` must come
//! from the monitor's own origin.

use super::assets;
use super::audit::{now_ms, Audit, Entry};
use super::auth::{self, RateLimiter, Session, Sessions};
use super::conf::{MonitorConf, Role, User};
use super::state::{self, History, Sampler};
use super::Ctx;
use crate::ctl::control::{ControlHandler, Request as CtlRequest};
use crate::ctl::ipvsadm::{self, ConnEntry};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame as BodyFrame, SizeHint};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Semaphore};

/// The session cookie (`__Host-`: Secure, path `/`, no domain).
pub const COOKIE: &str = "__Host-xvs_session";
/// Largest request body accepted.
pub const MAX_BODY: usize = 16 * 1024;
/// Connections served at once (more are closed at accept).
pub const MAX_CONNS: usize = 128;
/// A TLS handshake must be done within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection listing is reused.
const CONNS_FRESH: Duration = Duration::from_secs(2);
/// Entries per page of the connection list at most.
pub const MAX_PAGE: usize = 500;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A response body: whole, or a stream of server-sent events.
pub enum Body {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<BodyFrame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(BodyFrame::data(b)))),
            Body::Stream(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(BodyFrame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

impl Body {
    /// The whole body (tests; a stream yields what is buffered now).
    pub async fn bytes(self) -> Bytes {
        match self {
            Body::Full(b) => b.unwrap_or_default(),
            Body::Stream(mut rx) => {
                let mut v = Vec::new();
                while let Ok(b) = rx.try_recv() {
                    v.extend_from_slice(&b);
                }
                v.into()
            }
        }
    }
}

type Resp = Response<Body>;

fn respond(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Body::Full(Some(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", HeaderValue::from_static(ctype));
    r
}

fn json_resp(status: StatusCode, v: &impl serde::Serialize) -> Resp {
    let mut r = respond(status, "application/json", serde_json::to_vec(v).unwrap_or_default());
    r.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

fn error(status: StatusCode, msg: &str) -> Resp {
    json_resp(status, &json!({ "error": msg }))
}

/// Headers every response carries.
fn secure(mut r: Resp) -> Resp {
    let h = r.headers_mut();
    h.insert("strict-transport-security", HeaderValue::from_static("max-age=31536000"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    r
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `%XX` and `+` decoding of a query value (invalid escapes stay as they
/// are).
pub fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query string as a map (the first of repeated keys wins).
pub fn query(q: Option<&str>) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for kv in q.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        m.entry(url_decode(k)).or_insert_with(|| url_decode(v));
    }
    m
}

/// The latest frame, as JSON.
#[derive(Clone, Debug, Default)]
pub struct Feed {
    pub json: Bytes,
}

/// A connection listing and when it was taken.
struct ConnSet {
    at: Instant,
    entries: Vec<ConnEntry>,
    warning: Option<String>,
}

/// The server's state. See the module docs.
pub struct App {
    users: Vec<User>,
    ctx: Ctx,
    sessions: Mutex<Sessions>,
    limiter: Mutex<RateLimiter>,
    pub audit: Audit,
    sampler: Mutex<Sampler>,
    history: Mutex<History>,
    feed: watch::Sender<Arc<Feed>>,
    /// Weight before a drain, by `service-id dest-id`.
    drained: Mutex<HashMap<String, u32>>,
    conns: tokio::sync::Mutex<Option<Arc<ConnSet>>>,
    /// Verified for unknown users, so they cost what a wrong password does.
    dummy_hash: OnceLock<String>,
}

/// What `POST /api/login` reads.
#[derive(Deserialize)]
struct Login {
    user: String,
    password: String,
}

/// What `POST /api/change` reads. `op`: `weight`, `drain`, `restore`,
/// `add`, `remove`, `scheduler`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Change {
    pub op: String,
    /// The service's ipvsadm selector, e.g. `-t 10.0.0.100:80`.
    pub service: String,
    /// `addr:port` of the real server.
    #[serde(default)]
    pub dest: String,
    #[serde(default)]
    pub weight: String,
    /// `dr`, `tun`, `nat`, `fullnat` (add).
    #[serde(default)]
    pub fwd: String,
    #[serde(default)]
    pub sched: String,
}

/// A word from the request: no option look-alikes, no blanks, short.
fn word(field: &str, v: &str) -> Result<String, String> {
    if v.is_empty() {
        return Err(format!("{field}: missing"));
    }
    if v.starts_with('-') || v.len() > 64 || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{field}: '{}' is not a value", v.escape_debug()));
    }
    Ok(v.to_string())
}

/// The service selector words (`-t ADDR:PORT`, `-u ADDR:PORT`, `-f MARK
/// [-6]`), checked for shape only: ipvsadm's parser checks the rest.
fn service_words(id: &str) -> Result<Vec<String>, String> {
    let w: Vec<&str> = id.split(' ').collect();
    let ok = match w.as_slice() {
        ["-t" | "-u", a] => !a.starts_with('-') && a.len() <= 64,
        ["-f", m] => m.bytes().all(|b| b.is_ascii_digit()) && !m.is_empty() && m.len() <= 10,
        ["-f", m, "-6"] => m.bytes().all(|b| b.is_ascii_digit()) && !m.is_empty() && m.len() <= 10,
        _ => false,
    };
    if !ok {
        return Err(format!("service: '{}' is not a service (-t|-u ADDR:PORT or -f MARK)", id.escape_debug()));
    }
    Ok(w.iter().map(|s| s.to_string()).collect())
}

/// The ipvsadm words of a real server's line in `-S` output, as `-e`
/// (its method and thresholds kept), or `None` when it has none.
fn edit_dest_words(model: &crate::ctl::model::Model, svc: &[String], dest: &str) -> Option<Vec<String>> {
    let prefix = format!("-a {} -r {dest} ", svc.join(" "));
    let line = ipvsadm::save(model).lines().find(|l| l.starts_with(&prefix))?.to_string();
    let mut w: Vec<String> = line.split_whitespace().map(String::from).collect();
    w[0] = "-e".into();
    Some(w)
}

fn set_opt(w: &mut Vec<String>, opt: &str, v: &str) {
    match w.iter().position(|x| x == opt) {
        Some(i) if i + 1 < w.len() => w[i + 1] = v.to_string(),
        _ => {
            w.push(opt.to_string());
            w.push(v.to_string());
        }
    }
}

/// The ipvsadm words of a change, from the configured `model`.
/// `drained` holds weights before a drain (restore reads it).
///
/// # Errors
/// A field is missing or malformed (named); ipvsadm's own checks come
/// after, in its parser and in the handler.
pub fn change_words(model: &crate::ctl::model::Model, c: &Change, drained: Option<u32>) -> Result<Vec<String>, String> {
    let svc = service_words(&c.service)?;
    let edit = |weight: &str| -> Result<Vec<String>, String> {
        let dest = word("dest", &c.dest)?;
        let mut w = match edit_dest_words(model, &svc, &dest) {
            Some(w) => w,
            // Not there: ipvsadm's own "No such destination" follows.
            None => [vec!["-e".to_string()], svc.clone(), vec!["-r".into(), dest]].concat(),
        };
        set_opt(&mut w, "-w", weight);
        Ok(w)
    };
    Ok(match c.op.as_str() {
        "weight" => edit(&word("weight", &c.weight)?)?,
        "drain" => edit("0")?,
        "restore" => edit(&drained.unwrap_or(1).to_string())?,
        "remove" => [vec!["-d".to_string()], svc, vec!["-r".into(), word("dest", &c.dest)?]].concat(),
        "add" => {
            let fwd = match c.fwd.as_str() {
                "dr" | "" => "-g",
                "tun" => "-i",
                "nat" => "-m",
                "fullnat" => "--fullnat",
                other => return Err(format!("fwd: '{}' is not a forwarding method (dr, tun, nat, fullnat)", other.escape_debug())),
            };
            let weight = if c.weight.is_empty() { "1".to_string() } else { word("weight", &c.weight)? };
            [vec!["-a".to_string()], svc, vec!["-r".into(), word("dest", &c.dest)?, fwd.into(), "-w".into(), weight]].concat()
        }
        "scheduler" => {
            let sched = word("sched", &c.sched)?;
            let prefix = format!("-A {} -s ", svc.join(" "));
            let mut w: Vec<String> = match ipvsadm::save(model).lines().find(|l| l.starts_with(&prefix)) {
                Some(l) => l.split_whitespace().map(String::from).collect(),
                None => [vec!["-A".to_string()], svc].concat(),
            };
            w[0] = "-E".into();
            set_opt(&mut w, "-s", &sched);
            // Flags belong to the old scheduler (sh-port means nothing to rr).
            if let Some(i) = w.iter().position(|x| x == "-b") {
                w.drain(i..(i + 2).min(w.len()));
            }
            w
        }
        other => return Err(format!("op: '{}' is not a change (weight, drain, restore, add, remove, scheduler)", other.escape_debug())),
    })
}

fn sse(event: &str, data: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(data.len() + 32);
    v.extend_from_slice(b"event: ");
    v.extend_from_slice(event.as_bytes());
    v.extend_from_slice(b"\ndata: ");
    v.extend_from_slice(data);
    v.extend_from_slice(b"\n\n");
    v.into()
}

fn is_json(h: &HeaderMap) -> bool {
    h.get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")))
}

/// A request with an `Origin` must come from the monitor itself.
fn same_origin(h: &HeaderMap) -> bool {
    let Some(origin) = h.get("origin").and_then(|v| v.to_str().ok()) else { return true };
    let host = h.get("host").and_then(|v| v.to_str().ok()).unwrap_or("");
    !host.is_empty() && origin == format!("https://{host}")
}

impl App {
    pub fn new(conf: &MonitorConf, ctx: Ctx) -> App {
        let (feed, _) = watch::channel(Arc::new(Feed::default()));
        App {
            users: conf.users.clone(),
            ctx,
            sessions: Mutex::new(Sessions::new(conf.session_ttl)),
            limiter: Mutex::new(RateLimiter::new(conf.login_burst, conf.login_refill)),
            audit: Audit::new(conf.audit_log.clone()),
            sampler: Mutex::new(Sampler::new()),
            history: Mutex::new(History::default()),
            feed,
            drained: Mutex::new(HashMap::new()),
            conns: tokio::sync::Mutex::new(None),
            dummy_hash: OnceLock::new(),
        }
    }

    /// Opens a session as a login would, without the password check:
    /// (token, CSRF token). For the fuzzing harness (`src/fuzz/monitor.rs`),
    /// which cannot afford an argon2 hash per input.
    #[doc(hidden)]
    pub fn open_session(&self, user: &str, role: Role) -> (String, String) {
        let (token, s) = lock(&self.sessions).create(user, role, Instant::now());
        (token, s.csrf)
    }

    /// Takes a frame now: publishes it and adds its point to the history.
    pub fn sample_now(&self) {
        let frame = lock(&self.sampler).sample(&self.ctx, now_ms());
        let json = serde_json::to_vec(&frame).unwrap_or_default();
        lock(&self.history).push(frame.point);
        self.feed.send_replace(Arc::new(Feed { json: json.into() }));
    }

    fn session(&self, h: &HeaderMap) -> Option<(String, Session)> {
        let token = cookie(h, COOKIE)?;
        if token.len() != 64 {
            return None;
        }
        lock(&self.sessions).get(token, Instant::now()).map(|s| (token.to_string(), s))
    }

    fn audit(&self, user: &str, peer: SocketAddr, what: &str, result: &str) {
        self.audit.record(Entry { t: now_ms(), user: user.to_string(), from: peer.ip(), what: what.to_string(), result: result.to_string() });
    }

    /// Serves one request.
    pub async fn handle<B>(self: &Arc<Self>, req: Request<B>, peer: SocketAddr) -> Resp
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        secure(self.route(req, peer).await)
    }

    async fn route<B>(self: &Arc<Self>, req: Request<B>, peer: SocketAddr) -> Resp
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = req.uri().path().to_string();
        let m = req.method().clone();
        // Open to anyone: the login page, the assets, the login itself.
        if let Some(a) = assets::get(&path).filter(|a| !a.private) {
            return if m == Method::GET || m == Method::HEAD { asset(a) } else { error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed") };
        }
        if path == "/api/login" {
            return if m == Method::POST { self.login(req, peer).await } else { error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed") };
        }
        let Some((token, sess)) = self.session(req.headers()) else {
            if path == "/" && m == Method::GET {
                let mut r = respond(StatusCode::SEE_OTHER, "text/plain", "log in at /login\n");
                r.headers_mut().insert("location", HeaderValue::from_static("/login"));
                return r;
            }
            return error(StatusCode::UNAUTHORIZED, "not logged in");
        };
        match (m, path.as_str()) {
            (Method::GET, "/") => asset(assets::INDEX),
            (Method::GET, "/api/session") => self.session_info(&sess),
            (Method::GET, "/api/state") => {
                let f = self.feed.borrow().clone();
                if f.json.is_empty() {
                    return error(StatusCode::SERVICE_UNAVAILABLE, "no figures yet: try again in a second");
                }
                respond_json_bytes(f.json.clone())
            }
            (Method::GET, "/api/history") => json_resp(StatusCode::OK, &json!({ "points": lock(&self.history).points() })),
            (Method::GET, "/api/events") => self.events(token),
            (Method::GET, "/api/conns") => {
                let q = query(req.uri().query());
                self.conns(&q).await
            }
            (Method::GET, "/api/audit") => json_resp(StatusCode::OK, &json!({ "entries": self.audit.recent() })),
            (Method::POST, "/api/logout") => {
                if let Err(why) = self.csrf(&req, &sess) {
                    return error(StatusCode::FORBIDDEN, why);
                }
                lock(&self.sessions).remove(&token);
                self.audit(&sess.user, peer, "logout", "ok");
                let mut r = json_resp(StatusCode::OK, &json!({ "ok": true }));
                r.headers_mut().insert(
                    "set-cookie",
                    HeaderValue::from_str(&format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")).expect("ascii"),
                );
                r
            }
            (Method::POST, "/api/change") => self.change(req, &sess, peer).await,
            (_, "/" | "/api/session" | "/api/state" | "/api/history" | "/api/events" | "/api/conns" | "/api/audit" | "/api/logout" | "/api/change") => {
                error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }
            _ => error(StatusCode::NOT_FOUND, "no such page"),
        }
    }

    /// The CSRF and origin checks of a change.
    /// `Err`: why the request is refused (403).
    fn csrf<B>(&self, req: &Request<B>, sess: &Session) -> Result<(), &'static str> {
        if !same_origin(req.headers()) {
            return Err("cross-origin request refused");
        }
        let sent = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok());
        if !auth::csrf_ok(sent, &sess.csrf) {
            return Err("missing or wrong CSRF token");
        }
        Ok(())
    }

    fn session_info(&self, s: &Session) -> Resp {
        json_resp(
            StatusCode::OK,
            &json!({ "user": s.user, "role": s.role.name(), "csrf": s.csrf, "version": env!("CARGO_PKG_VERSION"),
                     "schedulers": crate::ipvs::sched::names() }),
        )
    }

    async fn body<B>(req: Request<B>) -> Result<Bytes, Resp>
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if !is_json(req.headers()) {
            return Err(error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "the body must be application/json"));
        }
        match http_body_util::Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(c) => Ok(c.to_bytes()),
            Err(e) => Err(error(StatusCode::PAYLOAD_TOO_LARGE, &format!("request body: {e}"))),
        }
    }

    async fn login<B>(self: &Arc<Self>, req: Request<B>, peer: SocketAddr) -> Resp
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if !same_origin(req.headers()) {
            return error(StatusCode::FORBIDDEN, "cross-origin request refused");
        }
        if let Err(wait) = lock(&self.limiter).check(peer.ip(), Instant::now()) {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, &format!("too many failed logins from {}: try again in {} s", peer.ip(), wait.as_secs().max(1)));
            r.headers_mut().insert("retry-after", HeaderValue::from(wait.as_secs().max(1)));
            return r;
        }
        let body = match Self::body(req).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let Ok(l) = serde_json::from_slice::<Login>(&body) else {
            return error(StatusCode::BAD_REQUEST, "expected {\"user\": ..., \"password\": ...}");
        };
        let user = self.users.iter().find(|u| u.name == l.user).cloned();
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let (app, pw) = (self.clone(), l.password);
        let ok = tokio::task::spawn_blocking(move || {
            let hash = hash.unwrap_or_else(|| app.dummy_hash.get_or_init(|| auth::hash_password("no such user").unwrap_or_default()).clone());
            auth::verify_password(&hash, &pw)
        })
        .await
        .unwrap_or(false);
        let name: String = l.user.chars().take(64).collect();
        match user {
            Some(u) if ok => {
                let (token, s) = lock(&self.sessions).create(&u.name, u.role, Instant::now());
                self.audit(&u.name, peer, "login", "ok");
                let ttl = lock(&self.sessions).ttl().as_secs();
                let mut r = json_resp(StatusCode::OK, &json!({ "user": s.user, "role": s.role.name(), "csrf": s.csrf }));
                r.headers_mut().insert(
                    "set-cookie",
                    HeaderValue::from_str(&format!("{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={ttl}")).expect("hex token"),
                );
                r
            }
            _ => {
                lock(&self.limiter).fail(peer.ip(), Instant::now());
                self.audit(&name, peer, "login", "failed: wrong user name or password");
                error(StatusCode::UNAUTHORIZED, "wrong user name or password")
            }
        }
    }

    fn events(self: &Arc<Self>, token: String) -> Resp {
        let (tx, rx) = mpsc::channel::<Bytes>(4);
        let mut feed = self.feed.subscribe();
        let app = self.clone();
        tokio::spawn(async move {
            let first = feed.borrow_and_update().clone();
            if !first.json.is_empty() && tx.send(sse("frame", &first.json)).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    r = feed.changed() => {
                        if r.is_err() {
                            break;
                        }
                        if lock(&app.sessions).get(&token, Instant::now()).is_none() {
                            let _ = tx.send(sse("logout", b"{}")).await;
                            break;
                        }
                        let f = feed.borrow_and_update().clone();
                        // A slow reader skips frames rather than queueing them.
                        match tx.try_send(sse("frame", &f.json)) {
                            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                            Err(mpsc::error::TrySendError::Closed(_)) => break,
                        }
                    }
                    () = tx.closed() => break,
                }
            }
        });
        let mut r = Response::new(Body::Stream(rx));
        let h = r.headers_mut();
        h.insert("content-type", HeaderValue::from_static("text/event-stream"));
        h.insert("cache-control", HeaderValue::from_static("no-store"));
        r
    }

    async fn conns(self: &Arc<Self>, q: &HashMap<String, String>) -> Resp {
        let set = {
            let mut cached = self.conns.lock().await;
            match cached.as_ref() {
                Some(s) if s.at.elapsed() < CONNS_FRESH => s.clone(),
                _ => {
                    let hub = self.ctx.hub.clone();
                    let l = tokio::task::spawn_blocking(move || hub.conns()).await;
                    let Ok(l) = l else { return error(StatusCode::INTERNAL_SERVER_ERROR, "the listing failed") };
                    let warning = l.warning(crate::daemon::conns::SAMPLE_MAX);
                    let s = Arc::new(ConnSet { at: Instant::now(), entries: l.entries, warning });
                    *cached = Some(s.clone());
                    s
                }
            }
        };
        let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
        let per = get("per").parse::<usize>().unwrap_or(50).clamp(1, MAX_PAGE);
        let page = get("page").parse::<usize>().unwrap_or(0);
        let (proto, state, client, vip, dest) = (get("proto"), get("state"), get("client"), get("vip"), get("dest"));
        let matching: Vec<&ConnEntry> = set
            .entries
            .iter()
            .filter(|e| proto.is_empty() || e.proto.name().eq_ignore_ascii_case(proto))
            .filter(|e| state.is_empty() || e.state.eq_ignore_ascii_case(state))
            .filter(|e| client.is_empty() || e.client.to_string().contains(client))
            .filter(|e| vip.is_empty() || e.vip.to_string().contains(vip))
            .filter(|e| dest.is_empty() || e.dest.to_string().contains(dest))
            .collect();
        let rows: Vec<serde_json::Value> = matching
            .iter()
            .skip(page.saturating_mul(per))
            .take(per)
            .map(|e| {
                json!({ "proto": e.proto.name(), "client": e.client.to_string(), "vip": e.vip.to_string(),
                        "dest": e.dest.to_string(), "state": e.state, "expire": e.expire })
            })
            .collect();
        json_resp(
            StatusCode::OK,
            &json!({ "total": matching.len(), "all": set.entries.len(), "page": page, "per": per, "entries": rows,
                     "warning": set.warning, "age_ms": set.at.elapsed().as_millis() as u64 }),
        )
    }

    async fn change<B>(self: &Arc<Self>, req: Request<B>, sess: &Session, peer: SocketAddr) -> Resp
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let Err(why) = self.csrf(&req, sess) {
            self.audit(&sess.user, peer, "change", &format!("forbidden: {why}"));
            return error(StatusCode::FORBIDDEN, why);
        }
        let body = match Self::body(req).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let parsed = serde_json::from_slice::<Change>(&body).map_err(|e| format!("change: {e}"));
        let model = self.ctx.director.model();
        let key = parsed.as_ref().map(|c| format!("{} {}", c.service, c.dest)).unwrap_or_default();
        let drained = lock(&self.drained).get(&key).copied();
        let words = parsed.as_ref().map_err(Clone::clone).and_then(|c| change_words(&model, c, drained));
        if sess.role != Role::Admin {
            // Refused whatever it asks; the audit says what it was.
            let what = words.as_ref().map_or_else(|_| "change (malformed)".to_string(), |w| format!("xvsadm {}", w.join(" ")));
            self.audit(&sess.user, peer, &what, "forbidden: role viewer");
            return error(StatusCode::FORBIDDEN, &format!("user {} (viewer) may not change the configuration", sess.user));
        }
        let (c, words) = match (parsed, words) {
            (Ok(c), Ok(w)) => (c, w),
            (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, &e),
        };
        let command = format!("xvsadm {}", words.join(" "));
        // Remember the weight a drain replaces (for restore).
        let before = model
            .services
            .iter()
            .find(|s| state::service_id(&model, &s.key) == c.service)
            .and_then(|s| s.dests.iter().find(|d| crate::ctl::snapshot::fmt_sock(d.addr, d.port) == c.dest))
            .map(|d| d.weight);
        let cmd = match ipvsadm::parse(&words) {
            Ok(cmd) => cmd,
            Err(e) => {
                self.audit(&sess.user, peer, &command, &format!("refused: {}", e.message));
                return json_resp(StatusCode::UNPROCESSABLE_ENTITY, &json!({ "error": e.message, "command": command }));
            }
        };
        let handler = self.ctx.handler.clone();
        let r = tokio::task::spawn_blocking(move || handler.handle(CtlRequest::Ipvsadm(cmd))).await;
        let r = match r {
            Ok(r) => r,
            Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "the change failed"),
        };
        if let Some(e) = r.error {
            self.audit(&sess.user, peer, &command, &format!("refused: {}", e.message));
            return json_resp(StatusCode::UNPROCESSABLE_ENTITY, &json!({ "error": e.message, "command": command }));
        }
        match c.op.as_str() {
            "drain" => {
                if let Some(w) = before.filter(|w| *w > 0) {
                    lock(&self.drained).insert(key, w);
                }
            }
            "restore" | "weight" | "remove" => {
                lock(&self.drained).remove(&key);
            }
            _ => {}
        }
        self.audit(&sess.user, peer, &command, "ok");
        // The page sees the change at once.
        let app = self.clone();
        let _ = tokio::task::spawn_blocking(move || app.sample_now()).await;
        json_resp(StatusCode::OK, &json!({ "ok": true, "command": command }))
    }
}

fn respond_json_bytes(b: Bytes) -> Resp {
    let mut r = respond(StatusCode::OK, "application/json", b);
    r.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

fn asset(a: &assets::Asset) -> Resp {
    let mut r = respond(StatusCode::OK, a.ctype, Bytes::from_static(a.body));
    r.headers_mut().insert("cache-control", HeaderValue::from_static("no-cache"));
    r
}

/// Takes a frame every second until `stop`.
pub async fn sample_loop(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let a = app.clone();
        let _ = tokio::task::spawn_blocking(move || a.sample_now()).await;
    }
}

/// Accepts TLS connections on `l` and serves them until `stop`.
pub async fn serve(l: tokio::net::TcpListener, tls: Arc<rustls::ServerConfig>, app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(Semaphore::new(MAX_CONNS));
    loop {
        let (tcp, peer) = tokio::select! {
            r = l.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    log::warn!(target: "xvs::monitor", "accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            log::warn!(target: "xvs::monitor", "{peer}: {MAX_CONNS} connections already; closed");
            continue;
        };
        let (acceptor, app, mut stop) = (acceptor.clone(), app.clone(), stop.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    log::debug!(target: "xvs::monitor", "{peer}: TLS handshake failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            let svc = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.handle(req, peer).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .max_buf_size(64 * 1024)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_millis(500), conn).await;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests;
