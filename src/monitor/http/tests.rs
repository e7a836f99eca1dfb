//! The monitor's HTTP layer on a real director (no workers, no TLS unless
//! the test is about TLS): sessions, roles, CSRF, the rate limit, and
//! changes that say what xvsadm says.

use super::*;
use crate::ctl::config;
use crate::daemon::control::{DaemonHandler, Reloader};
use crate::daemon::stats::StatsHub;
use crate::daemon::Director;
use crate::monitor::conf::TlsSource;
use http_body_util::Full;
use std::io::{Read, Write};
use std::path::Path;

const CONF: &str = r#"
[[interface]]
name = "eth0"
mac = "02:00:00:00:00:10"
addresses = ["10.0.0.1/24"]
[[neighbour]]
ip = "10.0.0.2"
mac = "02:00:00:00:00:02"
[[neighbour]]
ip = "10.0.0.3"
mac = "02:00:00:00:00:03"
[[service]]
proto = "tcp"
vip = "10.0.0.100"
port = 80
scheduler = "sh"
flags = ["sh-port"]
persistence = 600
  [[service.real_server]]
  ip = "10.0.0.2"
  port = 8080
  mode = "nat"
  weight = 2
  proxy_protocol = "v2"
  [[service.real_server]]
  ip = "10.0.0.3"
  port = 8080
  mode = "nat"
  upper_threshold = 100
  lower_threshold = 50
"#;

/// Hashes are slow on purpose: make them once per test process.
fn hashes() -> &'static (String, String) {
    static H: OnceLock<(String, String)> = OnceLock::new();
    H.get_or_init(|| (auth::hash_password("alice-pw").unwrap(), auth::hash_password("victor-pw").unwrap()))
}

fn conf() -> MonitorConf {
    let (a, v) = hashes().clone();
    MonitorConf {
        users: vec![
            User { name: "alice".into(), role: Role::Admin, password_hash: a },
            User { name: "victor".into(), role: Role::Viewer, password_hash: v },
        ],
        login_burst: 3,
        ..MonitorConf::default()
    }
}

fn ctx() -> Ctx {
    let d = Arc::new(Director::new(config::load_str(CONF, "t").unwrap(), 1).unwrap());
    let hub = Arc::new(StatsHub::new(d.clone()));
    let reload: Reloader = Box::new(|| Err("no reload in tests".into()));
    let handler = Arc::new(DaemonHandler::new(d.clone(), hub.clone(), Path::new("t.toml"), reload));
    Ctx { director: d, hub, handler, health: None }
}

fn app_with(c: &MonitorConf) -> Arc<App> {
    let app = Arc::new(App::new(c, ctx()));
    app.sample_now();
    app
}

const PEER: &str = "192.0.2.10:50000";

fn peer() -> SocketAddr {
    PEER.parse().unwrap()
}

struct Call<'a> {
    method: &'a str,
    path: &'a str,
    cookie: Option<&'a str>,
    csrf: Option<&'a str>,
    json: Option<String>,
    origin: Option<&'a str>,
}

fn call<'a>(method: &'a str, path: &'a str) -> Call<'a> {
    Call { method, path, cookie: None, csrf: None, json: None, origin: None }
}

impl Call<'_> {
    fn request(&self) -> Request<Full<Bytes>> {
        let mut b = Request::builder().method(self.method).uri(self.path).header("host", "127.0.0.1:9443");
        if let Some(c) = self.cookie {
            b = b.header("cookie", format!("other=1; {COOKIE}={c}"));
        }
        if let Some(t) = self.csrf {
            b = b.header("x-csrf-token", t);
        }
        if let Some(o) = self.origin {
            b = b.header("origin", o);
        }
        let body = match &self.json {
            Some(j) => {
                b = b.header("content-type", "application/json");
                Bytes::from(j.clone())
            }
            None => Bytes::new(),
        };
        b.body(Full::new(body)).unwrap()
    }
}

/// Status, headers and body (a stream: what it holds right away).
async fn send(app: &Arc<App>, c: Call<'_>) -> (StatusCode, HeaderMap, String) {
    send_from(app, c, peer()).await
}

async fn send_from(app: &Arc<App>, c: Call<'_>, from: SocketAddr) -> (StatusCode, HeaderMap, String) {
    let r = app.handle(c.request(), from).await;
    let (parts, body) = r.into_parts();
    if let Body::Stream(_) = &body {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = body.bytes().await;
    (parts.status, parts.headers, String::from_utf8_lossy(&b).into_owned())
}

/// Logs in; (cookie token, CSRF token).
async fn login(app: &Arc<App>, user: &str, pw: &str) -> (String, String) {
    let c = Call { json: Some(format!(r#"{{"user":"{user}","password":"{pw}"}}"#)), ..call("POST", "/api/login") };
    let (st, h, body) = send(app, c).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let cookie = h.get("set-cookie").unwrap().to_str().unwrap().to_string();
    let token = cookie.strip_prefix(&format!("{COOKIE}=")).unwrap().split(';').next().unwrap().to_string();
    let j: serde_json::Value = serde_json::from_str(&body).unwrap();
    (token, j["csrf"].as_str().unwrap().to_string())
}

fn change_json(op: &str, dest: &str, weight: &str) -> String {
    json!({ "op": op, "service": "-t 10.0.0.100:80", "dest": dest, "weight": weight }).to_string()
}

fn weight_of(app: &App, ip: &str) -> u32 {
    let ip: IpAddr = ip.parse().unwrap();
    app.ctx.director.model().services[0].dests.iter().find(|d| d.addr == ip).unwrap().weight
}

use std::net::IpAddr;

const API: &[(&str, &str)] = &[
    ("GET", "/api/session"),
    ("GET", "/api/state"),
    ("GET", "/api/history"),
    ("GET", "/api/events"),
    ("GET", "/api/conns"),
    ("GET", "/api/audit"),
    ("POST", "/api/logout"),
    ("POST", "/api/change"),
    ("GET", "/api/nosuch"),
    ("DELETE", "/api/state"),
];

#[tokio::test]
async fn every_endpoint_without_a_session_is_401_and_shows_nothing() {
    let mut c = conf();
    c.session_ttl = Duration::from_millis(200);
    let app = app_with(&c);
    let (token, csrf) = login(&app, "alice", "alice-pw").await;
    let bogus = "ab".repeat(32);
    tokio::time::sleep(Duration::from_millis(250)).await;
    // No cookie, a made-up one, a cut one, an expired one.
    for cookie in [None, Some(bogus.as_str()), Some(&token[..10]), Some(token.as_str())] {
        for (m, p) in API {
            let call = Call { cookie, csrf: Some(&csrf), json: Some(change_json("weight", "10.0.0.2:8080", "5")), ..call(m, p) };
            let (st, h, body) = send(&app, call).await;
            assert_eq!(st, StatusCode::UNAUTHORIZED, "{m} {p} with {cookie:?}");
            assert_eq!(body, r#"{"error":"not logged in"}"#, "{m} {p}: no data");
            assert_eq!(h.get("set-cookie"), None);
        }
        let (st, h, _) = send(&app, Call { cookie, ..call("GET", "/") }).await;
        assert_eq!((st, h.get("location").unwrap().to_str().unwrap()), (StatusCode::SEE_OTHER, "/login"));
    }
    assert_eq!(weight_of(&app, "10.0.0.2"), 2, "nothing changed");
    // The login page and the assets are open (they hold no data).
    for p in ["/login", "/assets/app.js", "/assets/login.js", "/assets/charts.js", "/assets/style.css", "/favicon.ico"] {
        let (st, h, _) = send(&app, call("GET", p)).await;
        assert_eq!(st, StatusCode::OK, "{p}");
        assert!(h.get("content-security-policy").unwrap().to_str().unwrap().contains("default-src 'none'"));
    }
}

#[tokio::test]
async fn logins_set_a_strict_cookie_and_wrong_ones_get_401() {
    let app = app_with(&conf());
    let c = Call { json: Some(r#"{"user":"alice","password":"alice-pw"}"#.into()), ..call("POST", "/api/login") };
    let (st, h, body) = send(&app, c).await;
    assert_eq!(st, StatusCode::OK);
    let cookie = h.get("set-cookie").unwrap().to_str().unwrap();
    assert!(cookie.starts_with("__Host-xvs_session="), "{cookie}");
    for attr in ["; Path=/", "; Secure", "; HttpOnly", "; SameSite=Strict", "; Max-Age=28800"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    let j: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((j["user"].as_str(), j["role"].as_str(), j["csrf"].as_str().unwrap().len()), (Some("alice"), Some("admin"), 64));

    for (body, want) in [
        (r#"{"user":"alice","password":"wrong"}"#, StatusCode::UNAUTHORIZED),
        (r#"{"user":"mallory","password":"alice-pw"}"#, StatusCode::UNAUTHORIZED),
        (r#"{"user":"alice"}"#, StatusCode::BAD_REQUEST),
        ("not json", StatusCode::BAD_REQUEST),
    ] {
        let (st, h, text) = send(&app, Call { json: Some(body.into()), ..call("POST", "/api/login") }).await;
        assert_eq!(st, want, "{body}: {text}");
        assert_eq!(h.get("set-cookie"), None, "{body}");
        assert!(!text.contains("csrf"), "{text}");
    }
    // Too big.
    let big = format!(r#"{{"user":"alice","password":"{}"}}"#, "x".repeat(MAX_BODY));
    assert_eq!(send(&app, Call { json: Some(big), ..call("POST", "/api/login") }).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    // Not JSON (a cross-site form could send that), or from another origin.
    let form = Request::builder()
        .method("POST")
        .uri("/api/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from("user=alice&password=alice-pw")))
        .unwrap();
    assert_eq!(app.handle(form, peer()).await.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let c = Call { json: Some(r#"{"user":"alice","password":"alice-pw"}"#.into()), origin: Some("https://evil.example"), ..call("POST", "/api/login") };
    assert_eq!(send(&app, c).await.0, StatusCode::FORBIDDEN);
    // The audit log has the failures, without passwords.
    let audit = app.audit.recent();
    assert!(audit.iter().any(|e| e.user == "mallory" && e.result.starts_with("failed")));
    assert!(audit.iter().all(|e| !e.line().contains("alice-pw")));
}

#[tokio::test]
async fn changes_need_the_csrf_token_and_the_admin_role() {
    let app = app_with(&conf());
    let (a_tok, a_csrf) = login(&app, "alice", "alice-pw").await;
    let (v_tok, v_csrf) = login(&app, "victor", "victor-pw").await;
    let body = || Some(change_json("weight", "10.0.0.2:8080", "7"));
    // The viewer reads...
    let (st, _, state) = send(&app, Call { cookie: Some(&v_tok), ..call("GET", "/api/state") }).await;
    assert_eq!(st, StatusCode::OK);
    assert!(state.contains(r#""id":"10.0.0.2:8080","fwd":"nat","proxy_protocol":"v2""#), "{state}");
    assert!(state.contains(r#""id":"10.0.0.3:8080","fwd":"nat","proxy_protocol":null"#), "{state}");
    let (_, _, who) = send(&app, Call { cookie: Some(&v_tok), ..call("GET", "/api/session") }).await;
    assert!(who.contains(r#""role":"viewer""#), "{who}");
    // ...and may not change, even with its own valid token.
    for json in [body(), Some("{\"op\": 1}".to_string())] {
        let (st, _, text) = send(&app, Call { cookie: Some(&v_tok), csrf: Some(&v_csrf), json, ..call("POST", "/api/change") }).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{text}");
        assert!(text.contains("victor (viewer) may not change"), "{text}");
    }
    // The admin without a token, with a wrong one, with the viewer's, from
    // another origin.
    let wrong = "0".repeat(64);
    for (csrf, origin) in [(None, None), (Some(wrong.as_str()), None), (Some(v_csrf.as_str()), None), (Some(a_csrf.as_str()), Some("https://evil.example"))] {
        let (st, _, text) = send(&app, Call { cookie: Some(&a_tok), csrf, origin, json: body(), ..call("POST", "/api/change") }).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{csrf:?} {origin:?}: {text}");
    }
    assert_eq!(weight_of(&app, "10.0.0.2"), 2, "nothing changed");
    // The admin with its token: done, as xvsadm would do it.
    let (st, _, text) = send(&app, Call { cookie: Some(&a_tok), csrf: Some(&a_csrf), origin: Some("https://127.0.0.1:9443"), json: body(), ..call("POST", "/api/change") }).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    assert!(text.contains("xvsadm -e -t 10.0.0.100:80 -r 10.0.0.2:8080 -m -w 7"), "{text}");
    assert_eq!(weight_of(&app, "10.0.0.2"), 7);
    let listing = app.ctx.handler.handle(CtlRequest::Ipvsadm(ipvsadm::parse(&["-L", "-n"]).unwrap())).output;
    assert!(listing.contains("10.0.0.2:8080                Masq    7"), "{listing}");
    // The change kept the server's other options (its PROXY protocol).
    assert!(text.contains("-m -w 7 --proxy-protocol v2"), "{text}");
    assert!(listing.lines().any(|l| l.contains("10.0.0.2:8080") && l.ends_with(" proxy-protocol v2")), "{listing}");
    // Every attempt is audited: who, from where, what, how it ended.
    let audit = app.audit.recent();
    let line = |res: &str| audit.iter().any(|e| e.from.to_string() == "192.0.2.10" && e.result.starts_with(res));
    assert!(line("ok") && line("forbidden: role viewer") && line("forbidden: missing or wrong CSRF"), "{audit:?}");
    assert_eq!(audit[0].user, "alice");
    assert_eq!(audit[0].what, "xvsadm -e -t 10.0.0.100:80 -r 10.0.0.2:8080 -m -w 7 --proxy-protocol v2");
    // The viewer's audit view shows it too.
    let (_, _, a) = send(&app, Call { cookie: Some(&v_tok), ..call("GET", "/api/audit") }).await;
    assert!(a.contains("-w 7"), "{a}");
}

#[tokio::test]
async fn a_refused_change_says_what_xvsadm_says() {
    let app = app_with(&conf());
    let (tok, csrf) = login(&app, "alice", "alice-pw").await;
    let post = |json: String| Call { cookie: Some(&tok), csrf: Some(&csrf), json: Some(json), ..call("POST", "/api/change") };
    // A usage error: ipvsadm's parser's words.
    let (st, _, text) = send(&app, post(change_json("weight", "10.0.0.2:8080", "70000"))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let want = ipvsadm::parse(&["-e", "-t", "10.0.0.100:80", "-r", "10.0.0.2:8080", "-m", "-w", "70000"]).unwrap_err().message;
    let j: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(j["error"].as_str(), Some(want.as_str()));
    // A refusal of the handler: the control socket's reply, word for word.
    let (st, _, text) = send(&app, post(change_json("remove", "10.0.0.9:8080", ""))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let want = app.ctx.handler.handle(CtlRequest::Ipvsadm(ipvsadm::parse(&["-d", "-t", "10.0.0.100:80", "-r", "10.0.0.9:8080"]).unwrap()));
    let j: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(j["error"].as_str(), Some(want.error.unwrap().message.as_str()));
    let sched = json!({ "op": "scheduler", "service": "-t 10.0.0.100:80", "sched": "nosuch" }).to_string();
    let (_, _, text) = send(&app, post(sched)).await;
    assert!(text.contains("Scheduler or persistence engine not found"), "{text}");
    // Malformed requests name the field.
    for (body, want) in [
        (change_json("weight", "10.0.0.2:8080", "-C"), "weight: '-C' is not a value"),
        (change_json("explode", "10.0.0.2:8080", "1"), "op: 'explode' is not a change"),
        (json!({ "op": "weight", "service": "-C", "dest": "10.0.0.2:8080", "weight": "1" }).to_string(), "service: '-C' is not a service"),
        (json!({ "op": "weight", "service": "-t 10.0.0.100:80", "weight": "1" }).to_string(), "dest: missing"),
        (json!({ "op": "weight", "service": "-t 10.0.0.100:80", "extra": 1 }).to_string(), "unknown field `extra`"),
    ] {
        let (st, _, text) = send(&app, post(body.clone())).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
        assert!(text.contains(want), "{body}: {text}");
    }
    let m = app.ctx.director.model();
    assert_eq!(m.services[0].sched, "sh", "nothing changed");
    assert_eq!(m.services[0].dests.len(), 2);
}

#[tokio::test]
async fn admins_drain_restore_add_remove_and_change_schedulers() {
    let app = app_with(&conf());
    let (tok, csrf) = login(&app, "alice", "alice-pw").await;
    let post = |json: String| Call { cookie: Some(&tok), csrf: Some(&csrf), json: Some(json), ..call("POST", "/api/change") };
    let ok = |r: (StatusCode, HeaderMap, String)| assert_eq!(r.0, StatusCode::OK, "{}", r.2);
    ok(send(&app, post(change_json("drain", "10.0.0.2:8080", ""))).await);
    assert_eq!(weight_of(&app, "10.0.0.2"), 0);
    ok(send(&app, post(change_json("restore", "10.0.0.2:8080", ""))).await);
    assert_eq!(weight_of(&app, "10.0.0.2"), 2, "the weight before the drain");
    // Thresholds and the method stay when the weight changes.
    ok(send(&app, post(change_json("weight", "10.0.0.3:8080", "4"))).await);
    let d = app.ctx.director.model().services[0].dests[1].clone();
    assert_eq!((d.weight, d.u_threshold, d.l_threshold, d.fwd), (4, 100, 50, crate::ipvs::FwdMethod::Nat));
    ok(send(&app, post(json!({ "op": "add", "service": "-t 10.0.0.100:80", "dest": "10.0.0.4:8080", "fwd": "nat", "weight": "3" }).to_string())).await);
    assert_eq!(weight_of(&app, "10.0.0.4"), 3);
    ok(send(&app, post(change_json("remove", "10.0.0.4:8080", ""))).await);
    assert_eq!(app.ctx.director.model().services[0].dests.len(), 2);
    // A scheduler change keeps persistence; sh's flags do not carry over.
    ok(send(&app, post(json!({ "op": "scheduler", "service": "-t 10.0.0.100:80", "sched": "wrr" }).to_string())).await);
    let s = app.ctx.director.model().services[0].clone();
    assert_eq!((s.sched.as_str(), s.persistence.map(|p| p.timeout), s.sched_flags.0), ("wrr", Some(600), 0));
    // The next frame shows it.
    let (_, _, state) = send(&app, Call { cookie: Some(&tok), ..call("GET", "/api/state") }).await;
    assert!(state.contains(r#""sched":"wrr""#), "{state}");
}

#[tokio::test]
async fn a_brute_force_is_limited_per_source() {
    let app = app_with(&conf());
    let try_login = |pw: &str, from: &str| {
        let c = Call { json: Some(format!(r#"{{"user":"alice","password":"{pw}"}}"#)), ..call("POST", "/api/login") };
        let app = app.clone();
        let from: SocketAddr = from.parse().unwrap();
        async move { send_from(&app, c, from).await }
    };
    for i in 0..3 {
        assert_eq!(try_login(&format!("guess{i}"), PEER).await.0, StatusCode::UNAUTHORIZED);
    }
    let (st, h, text) = try_login("guess3", PEER).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{text}");
    let wait: u64 = h.get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // Not even the right password gets through now, from there.
    assert_eq!(try_login("alice-pw", PEER).await.0, StatusCode::TOO_MANY_REQUESTS);
    // Another source is not affected.
    assert_eq!(try_login("alice-pw", "198.51.100.1:40000").await.0, StatusCode::OK);
}

#[tokio::test]
async fn logout_ends_the_session_and_events_stream_frames() {
    let app = app_with(&conf());
    let (tok, csrf) = login(&app, "victor", "victor-pw").await;
    let (st, h, body) = send(&app, Call { cookie: Some(&tok), ..call("GET", "/api/events") }).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h.get("content-type").unwrap(), "text/event-stream");
    assert!(body.starts_with("event: frame\ndata: {"), "{body}");
    let (st, _, hist) = send(&app, Call { cookie: Some(&tok), ..call("GET", "/api/history") }).await;
    assert_eq!(st, StatusCode::OK);
    assert!(hist.contains(r#""-t 10.0.0.100:80 10.0.0.2:8080""#), "{hist}");
    // Logout needs the token too.
    assert_eq!(send(&app, Call { cookie: Some(&tok), ..call("POST", "/api/logout") }).await.0, StatusCode::FORBIDDEN);
    let (st, h, _) = send(&app, Call { cookie: Some(&tok), csrf: Some(&csrf), ..call("POST", "/api/logout") }).await;
    assert_eq!(st, StatusCode::OK);
    assert!(h.get("set-cookie").unwrap().to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(send(&app, Call { cookie: Some(&tok), ..call("GET", "/api/state") }).await.0, StatusCode::UNAUTHORIZED);
}

#[test]
fn queries_and_cookies_parse_without_surprises() {
    let q = query(Some("client=10.0.0.2%3A1&state=ESTABLISHED&x=%zz&y=a+b&client=other&%"));
    assert_eq!(q["client"], "10.0.0.2:1");
    assert_eq!(q["state"], "ESTABLISHED");
    assert_eq!(q["x"], "%zz");
    assert_eq!(q["y"], "a b");
    assert_eq!(url_decode("%"), "%");
    assert_eq!(url_decode("%4"), "%4");
    assert_eq!(url_decode("%e2%82%ac"), "€");
    let mut h = HeaderMap::new();
    h.append("cookie", HeaderValue::from_static("a=1; __Host-xvs_session=abc"));
    h.append("cookie", HeaderValue::from_static("b=2"));
    assert_eq!(cookie(&h, COOKIE), Some("abc"));
    assert_eq!(cookie(&h, "b"), Some("2"));
    assert_eq!(cookie(&h, "c"), None);
}

#[test]
fn change_words_are_ipvsadm_commands_from_the_configured_model() {
    let m = config::load_str(CONF, "t").unwrap();
    let c = |op: &str, dest: &str, weight: &str| Change { op: op.into(), service: "-t 10.0.0.100:80".into(), dest: dest.into(), weight: weight.into(), ..Change::default() };
    let words = |ch: &Change, drained| change_words(&m, ch, drained).unwrap().join(" ");
    assert_eq!(words(&c("weight", "10.0.0.3:8080", "9"), None), "-e -t 10.0.0.100:80 -r 10.0.0.3:8080 -m -w 9 -x 100 -y 50");
    // (the real server's other options kept: its PROXY protocol)
    assert_eq!(words(&c("drain", "10.0.0.2:8080", ""), None), "-e -t 10.0.0.100:80 -r 10.0.0.2:8080 -m -w 0 --proxy-protocol v2");
    assert_eq!(words(&c("restore", "10.0.0.2:8080", ""), Some(5)), "-e -t 10.0.0.100:80 -r 10.0.0.2:8080 -m -w 5 --proxy-protocol v2");
    assert_eq!(words(&c("weight", "10.0.0.9:80", "1"), None), "-e -t 10.0.0.100:80 -r 10.0.0.9:80 -w 1", "ipvsadm says what is wrong");
    let sched = Change { op: "scheduler".into(), service: "-t 10.0.0.100:80".into(), sched: "rr".into(), ..Change::default() };
    assert_eq!(words(&sched, None), "-E -t 10.0.0.100:80 -s rr -p 600");
    let add = Change { op: "add".into(), service: "-u [2001:db8::1]:53".into(), dest: "[2001:db8::2]:53".into(), fwd: "tun".into(), ..Change::default() };
    assert_eq!(words(&add, None), "-a -u [2001:db8::1]:53 -r [2001:db8::2]:53 -i -w 1");
    let mark = Change { op: "remove".into(), service: "-f 7 -6".into(), dest: "[2001:db8::2]:53".into(), ..Change::default() };
    assert_eq!(words(&mark, None), "-d -f 7 -6 -r [2001:db8::2]:53");
    for (bad, field) in [
        (Change { service: "-t a b".into(), ..c("weight", "x", "1") }, "service"),
        (Change { service: "-f 1x".into(), ..c("weight", "x", "1") }, "service"),
        (c("weight", "10.0.0.2:8080 -C", "1"), "dest"),
        (c("weight", "10.0.0.2:8080", ""), "weight: missing"),
        (Change { fwd: "bridge".into(), ..c("add", "10.0.0.4:80", "1") }, "fwd: 'bridge'"),
    ] {
        let e = change_words(&m, &bad, None).unwrap_err();
        assert!(e.starts_with(field), "{bad:?}: {e}");
    }
}

// ---- over TLS -------------------------------------------------------------

struct Served {
    m: crate::monitor::Monitor,
    _dir: tempfile::TempDir,
}

fn serve_tls() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let c = MonitorConf { listen: Some("127.0.0.1:0".parse().unwrap()), tls: TlsSource::SelfSigned { dir: dir.path().to_path_buf() }, ..conf() };
    let m = crate::monitor::Monitor::start(&c, ctx()).unwrap();
    Served { m, _dir: dir }
}

/// What the server sends back to `bytes` within a second.
fn answer_to(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// A ClientHello offering only `version` (no supported_versions
/// extension, as clients before TLS 1.3 send it), with suites, groups and
/// signature schemes the server has.
fn hello(version: u16) -> Vec<u8> {
    let mut hs = version.to_be_bytes().to_vec();
    hs.extend_from_slice(&[7u8; 32]);
    hs.push(0); // session id
    hs.extend_from_slice(&[0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x2f]); // ECDHE-ECDSA/RSA-AES128-GCM
    hs.extend_from_slice(&[0x01, 0x00]); // null compression
    let ext: &[u8] = &[
        0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17, // groups: x25519, P-256
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // point formats
        0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01, // signature schemes
    ];
    hs.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    hs.extend_from_slice(ext);
    let mut msg = vec![0x01, 0, (hs.len() >> 8) as u8, hs.len() as u8];
    msg.extend_from_slice(&hs);
    let mut rec = vec![0x16, 0x03, 0x01, (msg.len() >> 8) as u8, msg.len() as u8];
    rec.extend_from_slice(&msg);
    rec
}

fn tls_get(s: &Served, version: &'static rustls::SupportedProtocolVersion, path: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(&s.m.cert_path).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), "localhost".try_into().unwrap()).unwrap();
    let tcp = std::net::TcpStream::connect(s.m.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(tls, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = tls.read_to_string(&mut out);
    assert_eq!(tls.conn.protocol_version(), Some(version.version));
    out
}

#[test]
fn https_only_tls12_and_up_with_a_self_signed_certificate() {
    let s = serve_tls();
    assert!(s.m.generated);
    // TLS 1.3 and 1.2 with the generated certificate as the only root.
    let r = tls_get(&s, &rustls::version::TLS13, "/login");
    assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
    assert!(r.contains("strict-transport-security"), "{r}");
    let r = tls_get(&s, &rustls::version::TLS12, "/api/state");
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    // Plain HTTP gets no HTTP answer.
    let plain = answer_to(s.m.addr, b"GET /login HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(!plain.starts_with(b"HTTP"), "{:?}", String::from_utf8_lossy(&plain));
    // The same hello as TLS 1.2 gets a ServerHello; as TLS 1.1 or 1.0 a
    // protocol_version alert.
    let ok = answer_to(s.m.addr, &hello(0x0303));
    assert_eq!((ok.first(), ok.get(5)), (Some(&0x16), Some(&0x02)), "ServerHello: {ok:02x?}");
    for v in [0x0302, 0x0301] {
        let old = answer_to(s.m.addr, &hello(v));
        assert_eq!((old.first(), old.get(6)), (Some(&0x15), Some(&70)), "{v:04x}: alert protocol_version: {old:02x?}");
    }
}

#[tokio::test]
async fn the_state_shows_the_sync_roles_and_whether_the_node_is_in_sync() {
    use crate::sync::conf::{DaemonConf, Role, SyncConf};
    use crate::sync::daemon::SyncService;
    // Without a sync service: nothing to show.
    let app = app_with(&conf());
    let (tok, _) = login(&app, "victor", "victor-pw").await;
    let (_, _, state) = send(&app, Call { cookie: Some(&tok), ..call("GET", "/api/state") }).await;
    assert!(state.contains(r#""sync":null"#), "{state}");

    // A master daemon on lo (ports of this test's own; nobody to pull
    // from, so in sync once the pull timeout has passed).
    let port = 32000 + (std::process::id() % 1000) as u16 * 2;
    let c = ctx();
    let d = c.director.clone();
    let sconf = SyncConf {
        peers: vec!["127.0.0.1".parse().unwrap()],
        bulk_port: port + 1,
        pull_timeout: std::time::Duration::from_millis(200),
        ..SyncConf::default()
    };
    let links = vec![Arc::new(crate::sync::link::Link::default())];
    let sync = Arc::new(SyncService::start(links, Box::new(move || d.snapshot()), sconf.clone()).unwrap());
    let reload: Reloader = Box::new(|| Err("no reload in tests".into()));
    let handler = DaemonHandler::new(c.director.clone(), c.hub.clone(), Path::new("t.toml"), reload).with_sync(sync.clone(), sconf);
    let app = Arc::new(App::new(&conf(), Ctx { handler: Arc::new(handler), ..c }));
    let (tok, _) = login(&app, "victor", "victor-pw").await;
    let frame = |app: Arc<App>, tok: String| async move {
        app.sample_now();
        let (_, _, state) = send(&app, Call { cookie: Some(&tok), ..call("GET", "/api/state") }).await;
        serde_json::from_str::<serde_json::Value>(&state).unwrap()["sync"].clone()
    };
    let y = frame(app.clone(), tok.clone()).await;
    assert_eq!((y["roles"].as_array().unwrap().len(), y["in_sync"].as_bool()), (0, Some(false)), "{y}");
    assert_eq!(y["note"], "no sync daemon runs", "{y}");
    sync.start_daemon(Role::Master, DaemonConf { interface: "lo".into(), syncid: 3, port: Some(port), ..DaemonConf::default() }).unwrap();
    let t0 = std::time::Instant::now();
    let y = loop {
        let y = frame(app.clone(), tok.clone()).await;
        if y["in_sync"] == true || t0.elapsed() > std::time::Duration::from_secs(10) {
            break y;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(y["roles"], serde_json::json!(["master"]), "{y}");
    assert_eq!(y["in_sync"], true, "{y}");
    assert_eq!(
        y["daemons"],
        serde_json::json!([format!("master sync daemon (mcast=lo, syncid=3, maxlen=1472, group=224.0.0.81, port={port}, ttl=1)")]),
        "{y}"
    );
    assert_eq!((y["sent"].as_u64(), y["events_dropped"].as_u64(), y["ignored"].as_u64()), (Some(0), Some(0), Some(0)), "{y}");
}
