//! A real headless browser for end-to-end tests: Debian's chromium driven
//! by chromedriver over the W3C WebDriver protocol (JSON over HTTP), with
//! a client small enough to read (no WebDriver crate).
//!
//! - chromedriver and chromium run inside a lab namespace (`ip netns
//!   exec`), so the page reaches what listens there (the monitor on the
//!   director's 127.0.0.1) and nothing else; the client talks to
//!   chromedriver from a thread that entered the same namespace.
//! - chromium starts headless with a fresh `--user-data-dir`, without
//!   sandbox (root), GPU, QUIC, sync or background networking, and
//!   accepts the monitor's self-signed certificate (`acceptInsecureCerts`).
//! - [`Browser`]'s `Drop` ends the session and stops chromedriver (and so
//!   chromium), also when the test panics.

#![allow(dead_code)]

use crate::lab;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const PORT: u16 = 9515;
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Why a browser cannot run here (printed as SKIP), or `None`.
pub fn unavailable() -> Option<String> {
    for p in [CHROMIUM, CHROMEDRIVER] {
        if !Path::new(p).exists() {
            return Some(format!("{p} is missing (make deps installs chromium and chromium-driver)"));
        }
    }
    None
}

/// One HTTP/1.1 request to chromedriver on 127.0.0.1 of the calling
/// thread's namespace: (status, body).
fn http(method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", PORT)).map_err(|e| format!("chromedriver: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| format!("chromedriver: {e}"))?;
    // chromedriver keeps the connection open: read the head, then as many
    // bytes as it announces (or chunks up to the last).
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf).map_err(|e| format!("chromedriver: {e}"))?;
        if n == 0 {
            return Err(format!("chromedriver: no HTTP answer: {:?}", String::from_utf8_lossy(&raw)));
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or("chromedriver: no status")?;
    let length: Option<usize> = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let body = &raw[head_end..];
        let done = match length {
            Some(n) => body.len() >= n,
            None if chunked => body.windows(5).any(|w| w == b"0\r\n\r\n"),
            None => false,
        };
        if done {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("chromedriver: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&raw[head_end..]).into_owned();
    let body = if chunked { dechunk(&text) } else { text };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Standard base64 (screenshots).
pub fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// A chromium session. See the module docs.
pub struct Browser {
    ns: String,
    driver: Child,
    session: Option<String>,
    profile: PathBuf,
}

impl Browser {
    /// Starts chromedriver in `ns` and opens a headless chromium session
    /// of `width` × `height` pixels; chromedriver's log goes to `log`.
    pub fn start(ns: &str, width: u32, height: u32, log: &Path) -> Browser {
        let profile = std::env::temp_dir().join(format!("xvs-chromium-{}-{ns}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap();
        let logf = std::fs::File::create(log).unwrap();
        let driver = Command::new("ip")
            .args(["netns", "exec", ns, CHROMEDRIVER, &format!("--port={PORT}")])
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .expect("spawning chromedriver");
        let mut b = Browser { ns: ns.to_string(), driver, session: None, profile };
        let t0 = Instant::now();
        loop {
            if let Ok((200, body)) = b.raw("GET", "/status", "") {
                if body.contains("\"ready\":true") {
                    break;
                }
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            format!("--user-data-dir={}", b.profile.display()),
            format!("--window-size={width},{height}"),
        ];
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        }}});
        let v = b.cmd("POST", "/session", caps);
        b.session = Some(v["sessionId"].as_str().expect("a session id").to_string());
        b
    }

    fn raw(&self, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
        let (m, p, b) = (method.to_string(), path.to_string(), body.to_string());
        lab::in_ns(&self.ns, move || http(&m, &p, &b))
    }

    /// A WebDriver command; its `value` (panics on a WebDriver error).
    pub fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        self.try_cmd(method, path, body).unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    fn try_cmd(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let body = if body.is_null() { String::new() } else { body.to_string() };
        let (status, text) = self.raw(method, path, &body)?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        if status != 200 {
            return Err(format!("HTTP {status}: {}", v["value"]));
        }
        Ok(v["value"].clone())
    }

    fn s(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session.as_deref().unwrap())
    }

    /// Loads `url`. Chromium aborts a load with ERR_NETWORK_CHANGED when
    /// the namespace's addresses or routes change meanwhile (a lab still
    /// settling, e.g. IPv6 duplicate address detection ending): such a
    /// load is made again, as a user would reload (a make test run failed
    /// on the error page).
    pub fn goto(&self, url: &str) {
        for _ in 0..5 {
            self.cmd("POST", &self.s("/url"), json!({ "url": url }));
            if !self.page_text().contains("ERR_NETWORK_CHANGED") {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub fn js(&self, script: &str, args: Value) -> Value {
        self.cmd("POST", &self.s("/execute/sync"), json!({ "script": script, "args": args }))
    }

    /// Runs asynchronous `script`: it calls `arguments[arguments.length -
    /// 1](result)` when done.
    pub fn js_async(&self, script: &str, args: Value) -> Value {
        self.cmd("POST", &self.s("/execute/async"), json!({ "script": script, "args": args }))
    }

    /// The element `css` selects, `None` if none does.
    pub fn find(&self, css: &str) -> Option<String> {
        self.try_cmd("POST", &self.s("/element"), json!({ "using": "css selector", "value": css }))
            .ok()
            .and_then(|v| v[ELEMENT].as_str().map(String::from))
    }

    fn must(&self, css: &str) -> String {
        match self.try_cmd("POST", &self.s("/element"), json!({ "using": "css selector", "value": css })) {
            Ok(v) => match v[ELEMENT].as_str() {
                Some(e) => e.to_string(),
                None => panic!("no element {css}: {v}"),
            },
            Err(e) => panic!("no element {css} on the page ({e}): {}", self.page_text()),
        }
    }

    /// Clicks the element `css` selects, as a user does.
    pub fn click(&self, css: &str) {
        let e = self.must(css);
        self.cmd("POST", &self.s(&format!("/element/{e}/click")), json!({}));
    }

    /// Replaces the text of the input `css` selects by typing `text`.
    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.must(css);
        self.cmd("POST", &self.s(&format!("/element/{e}/clear")), json!({}));
        self.cmd("POST", &self.s(&format!("/element/{e}/value")), json!({ "text": text }));
    }

    /// The visible text of the element `css` selects.
    pub fn text(&self, css: &str) -> String {
        let e = self.must(css);
        self.cmd("GET", &self.s(&format!("/element/{e}/text")), Value::Null).as_str().unwrap_or("").to_string()
    }

    pub fn url(&self) -> String {
        self.cmd("GET", &self.s("/url"), Value::Null).as_str().unwrap_or("").to_string()
    }

    /// The whole page's text (for failure messages).
    pub fn page_text(&self) -> String {
        self.try_cmd("POST", &self.s("/execute/sync"), json!({ "script": "return document.body ? document.body.innerText : ''", "args": [] }))
            .map(|v| v.as_str().unwrap_or("").to_string())
            .unwrap_or_else(|e| e)
    }

    /// Waits until `script` returns something truthy; returns it.
    pub fn wait_js(&self, what: &str, script: &str, timeout: Duration) -> Value {
        let t0 = Instant::now();
        loop {
            let v = self.js(script, json!([]));
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            if t0.elapsed() > timeout {
                panic!("waited {timeout:?} for {what}; the page says:\n{}", self.page_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG of the window, written to `path`.
    pub fn screenshot(&self, path: &Path) {
        let b64 = self.cmd("GET", &self.s("/screenshot"), Value::Null);
        let png = base64_decode(b64.as_str().unwrap_or(""));
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png).unwrap();
    }

    /// Resizes the window (for a full-page screenshot).
    pub fn resize(&self, width: u32, height: u32) {
        self.cmd("POST", &self.s("/window/rect"), json!({ "width": width, "height": height }));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.session.is_some() {
            let _ = self.raw("DELETE", &self.s(""), "");
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_and_chunks_decode() {
        assert_eq!(super::base64_decode("aGVsbG8gd29ybGQ="), b"hello world");
        assert_eq!(super::base64_decode("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
        assert_eq!(super::dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), "hello world");
    }
}
