//! `xvsadm`: ipvsadm's command line for xvs.
//!
//! Parses the arguments exactly as ipvsadm would (usage errors exit 2
//! without contacting anyone), sends the command to the control socket of
//! `xvs run` (`--socket PATH`, else `$XVS_SOCKET`, else
//! `/run/xvs/xvs.sock`), prints the reply as ipvsadm prints its output and
//! exits like ipvsadm: 0 ok, 1 refused, 2 usage error or no daemon.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;
use xvs::ctl::control::{socket_path_from_env, Client, Request};
use xvs::ctl::ipvsadm::{self, Command};

const PROG: &str = "xvsadm";

/// How long a command may take, the daemon's work included (a large `-R`).
const TIMEOUT: Duration = Duration::from_secs(60);

/// Writes to stdout, quietly giving up when the reader has gone
/// (`xvsadm -L | head`).
fn out(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes()).and_then(|()| o.flush());
}

fn usage(message: &str, try_help: bool) -> i32 {
    eprintln!("{message}");
    if try_help {
        eprintln!("Try `{PROG} -h' or '{PROG} --help' for more information.");
    }
    2
}

/// Takes `--socket PATH` / `--socket=PATH` (an xvs option, not ipvsadm's)
/// out of the arguments.
fn take_socket(args: &mut Vec<String>) -> Result<Option<PathBuf>, String> {
    let mut socket = None;
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--socket" {
            if i + 1 >= args.len() {
                return Err("--socket: missing argument".into());
            }
            socket = Some(PathBuf::from(args.remove(i + 1)));
            args.remove(i);
        } else if let Some(p) = args[i].strip_prefix("--socket=") {
            socket = Some(PathBuf::from(p));
            args.remove(i);
        } else {
            i += 1;
        }
    }
    Ok(socket)
}

fn run() -> i32 {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let socket = match take_socket(&mut args) {
        Ok(s) => s,
        Err(m) => return usage(&m, true),
    };
    let mut cmd = match ipvsadm::parse(&args) {
        Ok(c) => c,
        Err(e) => return usage(&e.message, e.try_help),
    };
    match &mut cmd {
        Command::Help => {
            out(&ipvsadm::help(PROG));
            return 0;
        }
        Command::Version => {
            out(&ipvsadm::version());
            return 0;
        }
        Command::Restore { rules } => {
            if let Err(e) = std::io::stdin().read_to_string(rules) {
                eprintln!("reading the rules from standard input: {e}");
                return 1;
            }
            // Check the text here so a typo is a usage error naming its
            // line before anything is sent.
            if let Err(e) = ipvsadm::parse_rules(rules) {
                eprintln!("{e}");
                return e.exit_code();
            }
        }
        _ => {}
    }
    let path = socket.unwrap_or_else(socket_path_from_env);
    let mut client = match Client::connect(&path, TIMEOUT) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "{e}\nIs `xvs run` running, and is this its socket (--socket PATH or $XVS_SOCKET)?"
            );
            return 2;
        }
    };
    match client.request(&Request::Ipvsadm(cmd)) {
        Ok(resp) => {
            out(&resp.output);
            if let Some(e) = &resp.error {
                eprintln!("{}", e.message);
            }
            resp.exit_code()
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn main() {
    std::process::exit(run());
}
