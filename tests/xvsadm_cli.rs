//! The `xvsadm` binary against an in-test control socket served by a
//! `ModelHandler` (the daemon will wrap the same handler): the seeds' lab
//! commands run verbatim, then `-S -n` and `-L -n` print what ipvsadm
//! would.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use xvs::ctl::control::{ModelHandler, Server, ServerOpts};
use xvs::ctl::model::Model;
use xvs::ipvs::service::{Group, GroupMember};
use xvs::ipvs::Proto;

// Fields drop in order: the server before its directory.
struct Lab {
    _server: Server,
    handler: Arc<ModelHandler>,
    sock: PathBuf,
    _dir: tempfile::TempDir,
}

impl Lab {
    fn new(model: Model) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("xvs.sock");
        let handler = Arc::new(ModelHandler::new(model));
        let server = Server::bind(&sock, handler.clone(), ServerOpts::default()).unwrap();
        Lab {
            _dir: dir,
            sock,
            _server: server,
            handler,
        }
    }

    fn xvsadm(&self, args: &[&str], stdin: &str) -> Output {
        run(Some(&self.sock), args, stdin)
    }

    /// Runs a shell-style line like the seeds write it: `ipvsadm -A ...`.
    fn line(&self, line: &str) -> Output {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[0], "xvsadm", "{line}");
        let out = self.xvsadm(&words[1..], "");
        assert!(
            out.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn stdout(&self, args: &[&str]) -> String {
        let out = self.xvsadm(args, "");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

fn run(sock: Option<&Path>, args: &[&str], stdin: &str) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xvsadm"));
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match sock {
        Some(s) => c.env("XVS_SOCKET", s),
        None => c.env_remove("XVS_SOCKET"),
    };
    let mut child = c.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

const HEAD: &str = "IP Virtual Server version 1.2.1 (size=4096)\n\
Prot LocalAddress:Port Scheduler Flags\n  \
-> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n";

/// The seed's lvs-nat lab (001: "director执行的命令"), verbatim but for
/// the program name.
#[test]
fn seed_nat_lab() {
    let lab = Lab::new(Model::default());
    for l in [
        "xvsadm -A -t 172.16.29.4:80 -s wrr",
        "xvsadm -a -t 172.16.29.4:80 -r 192.168.95.2 -m -w 1",
        "xvsadm -a -t 172.16.29.4:80 -r 192.168.95.3 -m -w 2",
    ] {
        lab.line(l);
    }
    assert_eq!(
        lab.stdout(&["-S", "-n"]),
        "-A -t 172.16.29.4:80 -s wrr\n\
         -a -t 172.16.29.4:80 -r 192.168.95.2:80 -m -w 1\n\
         -a -t 172.16.29.4:80 -r 192.168.95.3:80 -m -w 2\n"
    );
    let want = format!(
        "{HEAD}TCP  172.16.29.4:80 wrr\n  \
         -> 192.168.95.2:80              Masq    1      0          0         \n  \
         -> 192.168.95.3:80              Masq    2      0          0         \n"
    );
    assert_eq!(lab.stdout(&["-L", "-n"]), want);
    assert_eq!(lab.stdout(&["-Ln"]), want);
    assert_eq!(lab.stdout(&[]), want, "no arguments lists, as ipvsadm");
}

/// The seed's two lvs-dr labs (public addresses; one public address).
#[test]
fn seed_dr_labs() {
    let lab = Lab::new(Model::default());
    for l in [
        "xvsadm -A -t 172.16.29.4:80 -s wrr",
        "xvsadm -a -t 172.16.29.4:80 -r 172.16.29.10 -g -w 1",
        "xvsadm -a -t 172.16.29.4:80 -r 172.16.29.20 -g -w 2",
        "xvsadm -A -t 192.168.95.20:80 -s wrr",
        "xvsadm -a -t 192.168.95.20:80 -r 10.0.0.10 -g -w 2",
        "xvsadm -a -t 192.168.95.20:80 -r 10.0.0.20 -g -w 2",
    ] {
        lab.line(l);
    }
    assert_eq!(
        lab.stdout(&["-S", "-n"]),
        "-A -t 172.16.29.4:80 -s wrr\n\
         -a -t 172.16.29.4:80 -r 172.16.29.10:80 -g -w 1\n\
         -a -t 172.16.29.4:80 -r 172.16.29.20:80 -g -w 2\n\
         -A -t 192.168.95.20:80 -s wrr\n\
         -a -t 192.168.95.20:80 -r 10.0.0.10:80 -g -w 2\n\
         -a -t 192.168.95.20:80 -r 10.0.0.20:80 -g -w 2\n"
    );
    assert_eq!(
        lab.stdout(&["-L", "-n"]),
        format!(
            "{HEAD}TCP  172.16.29.4:80 wrr\n  \
             -> 172.16.29.10:80              Route   1      0          0         \n  \
             -> 172.16.29.20:80              Route   2      0          0         \n\
             TCP  192.168.95.20:80 wrr\n  \
             -> 10.0.0.10:80                 Route   2      0          0         \n  \
             -> 10.0.0.20:80                 Route   2      0          0         \n"
        )
    );
}

/// The seed's generic forms: firewall-mark services with persistence,
/// editing and deleting services and real servers.
#[test]
fn seed_fwm_persistence_and_edits() {
    let mut model = Model::default();
    let m = |port| GroupMember {
        proto: Proto::Tcp,
        addr: "172.16.29.4".parse().unwrap(),
        port,
    };
    // The seed marks 80 and 443 with iptables; xvs defines the group.
    model.groups.push(Group {
        id: 10,
        members: vec![m(80), m(443)],
    });
    let lab = Lab::new(model);
    for l in [
        "xvsadm -A -f 10 -s rr -p",
        "xvsadm -a -f 10 -r 172.16.29.10 -g -w 1",
        "xvsadm -a -f 10 -r 172.16.29.20 -g -w 1",
        "xvsadm -E -f 10 -s wrr -p 600",
        "xvsadm -e -f 10 -r 172.16.29.20 -g -w 3",
        "xvsadm -A -t 172.16.29.4:22 -s wrr",
        "xvsadm -D -t 172.16.29.4:22",
    ] {
        lab.line(l);
    }
    assert_eq!(
        lab.stdout(&["-S", "-n"]),
        "-A -f 10 -s wrr -p 600\n-a -f 10 -r 172.16.29.10:0 -g -w 1\n-a -f 10 -r 172.16.29.20:0 -g -w 3\n"
    );
    lab.line("xvsadm -d -f 10 -r 172.16.29.10");
    assert_eq!(
        lab.stdout(&["-L", "-n"]),
        format!("{HEAD}FWM  10 wrr persistent 600\n  -> 172.16.29.20:0               Route   3      0          0         \n")
    );
}

#[test]
fn exit_codes_and_messages_are_ipvsadm_s() {
    let lab = Lab::new(Model::default());
    lab.line("xvsadm -A -t 10.0.0.1:80 -s rr");

    // 1: refused by the daemon, message on stderr, nothing on stdout.
    let out = lab.xvsadm(&["-A", "-t", "10.0.0.1:80", "-s", "rr"], "");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Service already exists\n"
    );
    assert!(out.stdout.is_empty());
    let out = lab.xvsadm(&["-L", "-n", "-t", "10.0.0.9:80"], "");
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned()
        ),
        (Some(1), "No such service\n".into())
    );

    // 2: usage errors, without a daemon too.
    for args in [
        &["-A", "-t", "10.0.0.1:80", "-w", "3"][..],
        &["-a", "-t", "10.0.0.1:80", "-r", "10.0.1.1", "-w", "x"],
    ] {
        let out = run(None, args, "");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    let out = run(None, &["--bogus"], "");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "--bogus: unknown option\nTry `xvsadm -h' or 'xvsadm --help' for more information.\n"
    );
    let out = run(
        None,
        &["-a", "-t", "10.0.0.1:80", "-r", "10.0.1.1", "-w", "70000"],
        "",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "illegal weight specified\n"
    );

    // 2: no daemon at the socket.
    let out = run(Some(Path::new("/nonexistent/xvs.sock")), &["-L", "-n"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach xvs at /nonexistent/xvs.sock")
    );

    // --socket wins over the environment.
    let sock = lab.sock.to_str().unwrap();
    let out = run(
        Some(Path::new("/nonexistent/xvs.sock")),
        &["--socket", sock, "-S", "-n"],
        "",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "-A -t 10.0.0.1:80 -s rr\n"
    );
    let out = run(None, &[&format!("--socket={sock}"), "-S"], "");
    assert_eq!(out.status.code(), Some(0));

    // 1: a daemon-only command against a handler without a daemon.
    assert_eq!(lab.xvsadm(&["--reload"], "").status.code(), Some(1));
}

/// Timeouts beyond 31 days (ipvsadm's bound, well inside the expiry
/// wheel's horizon) are usage errors naming the value, for `--set` and
/// `-p`; nothing reaches the daemon. The bound itself is accepted.
#[test]
fn out_of_range_timeouts_are_refused() {
    let lab = Lab::new(Model::default());
    lab.line("xvsadm -A -t 10.0.0.1:80 -s rr");
    for (args, bad) in [
        (&["--set", "2678401", "0", "0"][..], "2678401"),
        (&["--set", "0", "0", "99999999999"], "99999999999"),
        (&["-E", "-t", "10.0.0.1:80", "-s", "rr", "-p", "4294967296"], "4294967296"),
        (&["-A", "-t", "10.0.0.2:80", "-p0"], "0"),
    ] {
        let out = lab.xvsadm(args, "");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("invalid timeout value `{bad}' specified\n"),
            "{args:?}"
        );
    }
    assert_eq!(lab.handler.model().timeouts, Model::default().timeouts);
    assert!(lab.handler.model().services[0].persistence.is_none());
    lab.line("xvsadm --set 2678400 0 1");
    lab.line("xvsadm -E -t 10.0.0.1:80 -s rr -p 2678400");
    assert_eq!(
        lab.stdout(&["-L", "--timeout"]),
        "Timeout (tcp tcpfin udp): 2678400 120 1\n"
    );
}

#[test]
fn help_and_version_need_no_daemon() {
    let out = run(None, &["-h"], "");
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    for want in [
        "-A|E virtual-service",
        "--fullnat",
        "--add-laddr",
        "--reload",
        "Examples:",
        "xvsadm -L -n",
    ] {
        assert!(help.contains(want), "help lacks {want}");
    }
    let out = run(None, &["-v"], "");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("xvsadm v"));
}

#[test]
fn save_then_restore_through_the_binary() {
    let lab = Lab::new(Model::default());
    for l in [
        "xvsadm -A -t 10.0.0.100:80 -s wrr -p 120 -M 255.255.255.0",
        "xvsadm -a -t 10.0.0.100:80 -r 10.0.1.1:8080 -m -w 3 -x 500 -y 100",
        "xvsadm -A -u [2001:db8::100]:53 -s rr",
        "xvsadm -a -u [2001:db8::100]:53 -r [2001:db8::10]:53 -m",
        "xvsadm --add-laddr -t 10.0.0.100:80 -z 10.0.0.250",
        "xvsadm -a -t 10.0.0.100:80 -r 10.0.2.1:8080 --fullnat -w 2",
    ] {
        lab.line(l);
    }
    let saved = lab.stdout(&["-S", "-n"]);
    let before = lab.handler.model();
    lab.line("xvsadm -C");
    assert!(lab.handler.model().services.is_empty());
    let out = lab.xvsadm(&["-R"], &saved);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lab.handler.model(), before);
    assert_eq!(lab.stdout(&["-S", "-n"]), saved);

    // A bad line is named and nothing changes.
    let out = lab.xvsadm(
        &["-R"],
        "-C\n-A -t 10.0.0.7:80 -s rr\n-a -t 10.0.0.7:80 -r 10.0.1.1 -w many\n",
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "line 3: illegal weight specified\n"
    );
    let out = lab.xvsadm(
        &["-R"],
        "-C\n-A -t 10.0.0.7:80 -s rr\n-A -t 10.0.0.7:80 -s rr\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "line 3: Service already exists\n"
    );
    assert_eq!(lab.handler.model(), before);
}

#[test]
fn output_into_a_closed_pipe_is_quiet() {
    let lab = Lab::new(Model::default());
    lab.line("xvsadm -A -t 10.0.0.1:80 -s rr");
    let mut c = Command::new(env!("CARGO_BIN_EXE_xvsadm"));
    c.args(["-L", "-n"])
        .env("XVS_SOCKET", &lab.sock)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

/// `--proxy-protocol` (xvs's, per real server) shows in `-L` after
/// ipvsadm's columns, in the words of the option (also with
/// `--tun-info`), and in `-S`; real servers without it list exactly as
/// ipvsadm lists them.
#[test]
fn listings_show_the_proxy_protocol_of_a_real_server() {
    let lab = Lab::new(Model::default());
    for l in [
        "xvsadm -A -t 10.0.0.100:80 -s rr",
        "xvsadm -a -t 10.0.0.100:80 -r 10.0.1.1:8080 -m -w 1 --proxy-protocol v1",
        "xvsadm --add-laddr -t 10.0.0.100:80 -z 10.0.0.250",
        "xvsadm -a -t 10.0.0.100:80 -r 10.0.1.2:8080 --fullnat -w 2 --proxy-protocol v2",
        "xvsadm -a -t 10.0.0.100:80 -r 10.0.1.3:8080 -m -w 3",
    ] {
        lab.line(l);
    }
    assert_eq!(
        lab.stdout(&["-L", "-n"]),
        format!(
            "{HEAD}TCP  10.0.0.100:80 rr\n  \
             -> 10.0.1.1:8080                Masq    1      0          0          proxy-protocol v1\n  \
             -> 10.0.1.2:8080                FullNat 2      0          0          proxy-protocol v2\n  \
             -> 10.0.1.3:8080                Masq    3      0          0         \n"
        )
    );
    let tun = lab.stdout(&["-L", "-n", "--tun-info"]);
    assert!(tun.lines().any(|l| l.contains("10.0.1.2:8080") && l.contains(" n/a ") && l.ends_with(" proxy-protocol v2")), "{tun}");
    let saved = lab.stdout(&["-S", "-n"]);
    for l in [
        "-a -t 10.0.0.100:80 -r 10.0.1.1:8080 -m -w 1 --proxy-protocol v1\n",
        "-a -t 10.0.0.100:80 -r 10.0.1.2:8080 --fullnat -w 2 --proxy-protocol v2\n",
        "-a -t 10.0.0.100:80 -r 10.0.1.3:8080 -m -w 3\n",
    ] {
        assert!(saved.contains(l), "{l} in {saved}");
    }
    // Editing the server without the option takes it away (-e replaces a
    // real server's options, as ipvsadm's): the listing says so.
    lab.line("xvsadm -e -t 10.0.0.100:80 -r 10.0.1.1:8080 -m -w 1");
    assert!(lab.stdout(&["-L", "-n"]).lines().any(|l| l.contains("10.0.1.1:8080") && !l.contains("proxy")));
}
