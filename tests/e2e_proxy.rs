//! The PROXY protocol end to end: `xvs run` in FULLNAT in front of two
//! nginx real servers (Debian's nginx, `listen 8080 proxy_protocol`, run
//! unprivileged in the real servers' namespaces with a config of their
//! own in a temporary directory), which log `$proxy_protocol_addr` and
//! `$proxy_protocol_port`: the client's true address and port, though
//! their peer is the director's local address. VIP:80 → rs1 with
//! `proxy_protocol = "v1"`, VIP:81 → rs2 with `"v2"`. Per version: twenty
//! requests on one keep-alive connection, two 4 MiB downloads and a 4 MiB
//! upload (a WebDAV PUT: the stored file equals the one sent, so the
//! client's stream, shifted by the header all along, arrived whole).
//!
//! Topology (`lab::two_legs`): client 10.57.0.2.. — d0 [director, two
//! workers] d1 + local address 10.57.1.200 — rs1 10.57.1.11, rs2 10.57.1.12.

mod lab;

use lab::Lab;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[[service]]
proto = "tcp"
vip = "10.57.0.100"
port = 80
scheduler = "rr"
local_addresses = ["10.57.1.200"]

  [[service.real_server]]
  ip = "10.57.1.11"
  port = 8080
  mode = "fullnat"
  proxy_protocol = "v1"

[[service]]
proto = "tcp"
vip = "10.57.0.100"
port = 81
scheduler = "rr"
local_addresses = ["10.57.1.200"]

  [[service.real_server]]
  ip = "10.57.1.12"
  port = 8080
  mode = "fullnat"
  proxy_protocol = "v2"
"#;

const BIG: usize = 4 << 20;

/// An nginx in a namespace, stopped (by its pid) and its directory
/// removed on drop.
struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Nginx {
    fn start(ns: &str, name: &str) -> Nginx {
        let dir = std::env::temp_dir().join(format!("xvs-e2e-proxy-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("www")).unwrap();
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        std::fs::create_dir_all(dir.join("www/up")).unwrap();
        std::fs::write(dir.join("www/small.txt"), format!("{name}\n")).unwrap();
        let big: Vec<u8> = (0..BIG).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(dir.join("www/big.bin"), big).unwrap();
        let d = dir.display();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    default_type application/octet-stream;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    log_format pp '$proxy_protocol_addr $proxy_protocol_port $remote_addr $connection $connection_requests $request_length $status "$request"';
    access_log {d}/access.log pp;
    keepalive_requests 1000;
    client_max_body_size 16m;
    server {{
        listen 8080 proxy_protocol;
        root {d}/www;
        location /up/ {{ dav_methods PUT; }}
    }}
}}
"#
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        // Unprivileged: the whole tree is nobody's.
        let _ = Command::new("chown").args(["-R", "nobody:nogroup"]).arg(&dir).status();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "nginx", "-e"])
            .arg(dir.join("error.log"))
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning nginx");
        let n = Nginx { child, dir };
        let t0 = Instant::now();
        loop {
            let ss = Command::new("ip").args(["netns", "exec", ns, "ss", "-ltnH"]).output().unwrap();
            if String::from_utf8_lossy(&ss.stdout).contains(":8080") {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "nginx did not listen: {}", n.error_log());
            std::thread::sleep(Duration::from_millis(20));
        }
        n
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// The access log's lines, split into fields.
    fn access(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.split(' ').map(str::to_string).collect())
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn nginx_available() -> bool {
    if Command::new("nginx").arg("-v").output().is_ok_and(|o| o.status.success()) {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("nginx is not installed, and CI=true requires it: run `make deps`");
    }
    println!("SKIP: nginx is not installed (make deps)");
    false
}

/// curl in the client's namespace from `src`; its stdout.
fn curl(ns: &str, src: &str, args: &[&str]) -> String {
    let o = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-sS", "--fail", "--max-time", "30", "--interface", src])
        .args(args)
        .output()
        .expect("running curl");
    assert!(o.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn check(log: &[Vec<String>], client: &str, what: &str) {
    assert!(!log.is_empty(), "{what}: nothing logged");
    for l in log {
        assert_eq!(l[0], client, "{what}: $proxy_protocol_addr in {l:?}");
        let port: u16 = l[1].parse().unwrap_or_else(|_| panic!("{what}: port in {l:?}"));
        assert!(port >= 1024, "{what}: the client's port in {l:?}");
        assert_eq!(l[2], "10.57.1.200", "{what}: the peer is the local address: {l:?}");
        assert!(l[6] == "200" || l[6] == "201", "{what}: {l:?}");
    }
}

#[test]
fn nginx_logs_the_true_client_through_fullnat_v1_and_v2() {
    let Some(mut lab) = Lab::new("nginx_logs_the_true_client_through_fullnat_v1_and_v2") else {
        return;
    };
    if !nginx_available() {
        return;
    }
    let t = lab::two_legs(&mut lab, 57, 2, 2, false);
    lab.ip(&t.director, &["addr", "add", "10.57.1.200/32", "dev", "d1"]);
    let ngx = [Nginx::start(&t.rs[0], "rs1"), Nginx::start(&t.rs[1], "rs2")];
    let x = lab.xvs(&t.director, CONFIG, &["-i", "d0", "-i", "d1", "--workers", "2"]);
    let upload = std::env::temp_dir().join(format!("xvs-e2e-proxy-{}-upload.bin", std::process::id()));
    let sent: Vec<u8> = (0..BIG).map(|i| (i * 13 % 253) as u8).collect();
    std::fs::write(&upload, &sent).unwrap();
    struct Rm(PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _rm = Rm(upload.clone());
    let up = upload.display().to_string();
    for (k, port) in [(0usize, 80u16), (1, 81)] {
        let what = if k == 0 { "v1" } else { "v2" };
        let base = format!("http://10.57.0.100:{port}");
        // twenty requests on one keep-alive connection, from .3
        let urls: Vec<String> = (0..20).map(|_| format!("{base}/small.txt")).collect();
        let mut args: Vec<&str> = Vec::new();
        for u in &urls {
            args.extend(["-o", "/dev/null", u.as_str()]);
        }
        curl(&t.client, "10.57.0.3", &args);
        // a large download, from .4; a large upload, from .5
        curl(&t.client, "10.57.0.4", &["-o", "/dev/null", &format!("{base}/big.bin")]);
        let got = Command::new("ip")
            .args(["netns", "exec", &t.client, "curl", "-sS", "--fail", "--interface", "10.57.0.4", "-o", "/dev/null", "-w", "%{size_download}", &format!("{base}/big.bin")])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&got.stdout), BIG.to_string(), "{what}: the whole download");
        curl(&t.client, "10.57.0.5", &["-T", &up, "-H", "Expect:", &format!("{base}/up/file.bin")]);
        std::thread::sleep(Duration::from_millis(100));
        let log = ngx[k].access();
        println!("{what} access log:\n{}", log.iter().map(|l| l.join(" ")).collect::<Vec<_>>().join("\n"));
        let (keep, rest): (Vec<Vec<String>>, Vec<Vec<String>>) = log.into_iter().partition(|l| l[0] == "10.57.0.3");
        check(&keep, "10.57.0.3", what);
        assert_eq!(keep.len(), 20, "{what}: twenty requests");
        assert!(keep.iter().all(|l| l[3] == keep[0][3]), "{what}: one connection: {keep:?}");
        assert_eq!(keep.last().unwrap()[4], "20", "{what}: the twentieth request of its connection");
        let (down, upl): (Vec<Vec<String>>, Vec<Vec<String>>) = rest.into_iter().partition(|l| l[0] == "10.57.0.4");
        check(&down, "10.57.0.4", what);
        check(&upl, "10.57.0.5", what);
        assert_eq!(down.len(), 2, "{what}: two downloads");
        assert!(upl[0][7].contains("PUT"), "{what}: {upl:?}");
        let stored = std::fs::read(ngx[k].dir.join("www/up/file.bin")).unwrap_or_default();
        assert!(stored == sent, "{what}: the upload arrived whole and in order ({} of {BIG} bytes)", stored.len());
        assert!(ngx[k].error_log().lines().all(|l| !l.contains("broken header")), "{what}: {}", ngx[k].error_log());
    }
    let c = lab.stop_xvs(x);
    println!("{}", c.text);
    // each connection's handshake ACK carries the header; no segment was
    // dropped for want of room, none cut
    assert!(c.get("proxy_headers") >= 8, "{}", c.text);
    assert_eq!(c.get("drop_proxy_no_room"), 0, "{}", c.text);
    assert_eq!(c.get("toa_added"), 0, "no TOA beside the header");
}
