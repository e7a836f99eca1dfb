//! The manual pages and shell completions the package installs.
//!
//! # Contract
//!
//! - `xvs(8)` and one page per subcommand (`xvs-run(8)`, ...) come from
//!   xvs's clap definitions (clap_mangen) plus the hand-written sections
//!   below (capabilities, files, signals, environment, exit status,
//!   examples, see also).
//! - `xvsadm(8)` comes from [`xvsadm_command`]: a clap description of the
//!   options the ipvsadm parser accepts ([`crate::ctl::ipvsadm::options`]),
//!   each with the text of its line in `xvsadm -h`, so neither the manual
//!   nor the completions can list an option the parser does not take.
//! - `xvs.toml(5)` is `docs/config.md` (compiled in) turned into roff by
//!   [`markdown_to_man`]: the page is rebuilt from the document on every
//!   build, so the two cannot drift.
//! - Completions for bash, zsh and fish for both commands (clap_complete).
//! - [`write_all`] writes everything under a directory (`xvs generate`,
//!   which `make deb` runs).

use clap::{Arg, ArgAction, Command};
use clap_complete::Shell;
use clap_mangen::roff::{self, bold, roman, Inline, Roff};
use std::io;
use std::path::{Path, PathBuf};

/// `docs/config.md`, the source of `xvs.toml(5)`.
pub const CONFIG_MD: &str = include_str!("../docs/config.md");

/// Manual title of every page.
const MANUAL: &str = "xvs manual";

/// A hand-written section: a title and its paragraphs; a paragraph
/// starting with a space is shown as an indented literal block, one
/// starting with `TAG\t` as a tagged paragraph.
type Section = (&'static str, &'static [&'static str]);

const XVS_SECTIONS: &[Section] = &[
    (
        "CAPABILITIES",
        &[
            "xvs run needs root or these capabilities: CAP_NET_ADMIN (attach the XDP program, ask the kernel to resolve neighbours), CAP_NET_RAW (AF_XDP sockets), CAP_BPF (load the steering program, create its maps), CAP_PERFMON (the verifier accepts the program's packet accesses only with it) and CAP_IPC_LOCK (lock the UMEM; a memlock limit as large as the UMEM does instead). Started without one, it names every one that is missing and exits 1. The packaged unit runs it as the user xvs with exactly these (AmbientCapabilities=).",
        ],
    ),
    (
        "FILES",
        &[
            "/etc/xvs/xvs.toml\tThe configuration (xvs.toml(5)); the packaged unit runs xvs run --config /etc/xvs/xvs.toml.",
            "/run/xvs/xvs.sock\tThe control socket xvsadm(8) talks to ([global] control_socket, --socket). Mode 0600, or 0660 for the group of [global] control_socket_group (the package sets xvs).",
            "/run/xvs/xdp-NETNS-IFINDEX.lock\tOne lock per interface, so two directors never share one ($RUNTIME_DIRECTORY instead of /run/xvs when set).",
            "/var/lib/xvs/\tThe monitor's state ([monitor] state_dir): its self-signed certificate and key.",
            "/usr/share/doc/xvs/examples/\tExample configurations: one per forwarding mode, health checks.",
            "/lib/systemd/system/xvs.service\tThe systemd unit (Type=notify, watchdog, hardening).",
        ],
    ),
    (
        "SIGNALS",
        &[
            "SIGHUP\tReload the configuration file: it is validated whole and applied as one change, or logged and ignored (the running configuration stays). The same as xvsadm --reload; systemctl reload xvs sends it.",
            "SIGTERM, SIGINT\tStop: the workers stop, the XDP programs are detached, the counters are printed on standard output.",
            "A second SIGTERM or SIGINT\tDetach every XDP program at once and exit with status 130.",
        ],
    ),
    (
        "ENVIRONMENT",
        &[
            "RUST_LOG\tThe log level when --log-level is not given: a level (error, warn, info, debug, trace, off) or target=level directives separated by commas (xvs::health=debug).",
            "NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID\tSet by systemd for Type=notify and WatchdogSec=: xvs sends READY=1 once every worker runs, RELOADING=1 and READY=1 around a SIGHUP reload, STOPPING=1 when it stops, and WATCHDOG=1 at half the interval only while every worker keeps publishing its reports (every 100 ms), so a stuck data path gets the service restarted.",
            "JOURNAL_STREAM\tWhen it names standard error, log lines carry a syslog priority prefix and no time (the journal adds its own).",
            "RUNTIME_DIRECTORY\tWhere the interface locks go (systemd's RuntimeDirectory=).",
        ],
    ),
    (
        "LOGS",
        &[
            "One line per event on standard error: an RFC 3339 UTC time with milliseconds, the level, the module and the message:",
            " 2026-01-31T12:00:00.123Z INFO  xvs::daemon::health: TCP 10.0.0.100:80 -> 10.0.1.1:8080: down (connect: connection refused)",
            "Services and real servers are named as ipvsadm -L -n prints them. --log-format json writes one JSON object per line with the fields ts, level, target and msg.",
        ],
    ),
    (
        "EXIT STATUS",
        &["0 after a clean stop; 1 when the system refuses (a missing capability, no AF_XDP, a missing interface, a busy queue, a dead worker); 2 for a bad command line or configuration."],
    ),
    (
        "EXAMPLES",
        &[
            "Check a configuration, then run it on two interfaces:",
            " xvs check-config /etc/xvs/xvs.toml\n xvs run --config /etc/xvs/xvs.toml -i eth0 -i eth1",
            "As a service, members of the xvs group managing it:",
            " systemctl enable --now xvs\n xvsadm -A -t 10.0.0.100:80 -s wrr\n xvsadm -a -t 10.0.0.100:80 -r 10.0.1.1:8080 -m -w 2\n xvsadm -L -n --stats\n systemctl reload xvs",
            "Run without root, with only its capabilities:",
            " setpriv --reuid xvs --regid xvs --init-groups \\\n   --inh-caps +net_admin,+net_raw,+bpf,+perfmon,+ipc_lock \\\n   --ambient-caps +net_admin,+net_raw,+bpf,+perfmon,+ipc_lock \\\n   xvs run --config /etc/xvs/xvs.toml",
        ],
    ),
    (
        "SEE ALSO",
        &["xvsadm(8), xvs.toml(5), ipvsadm(8), keepalived(8), systemd.service(5), capabilities(7)"],
    ),
];

const XVSADM_SECTIONS: &[Section] = &[
    (
        "EXIT STATUS",
        &["ipvsadm's: 0 done; 1 refused (the message is ipvsadm's or names the offending service or real server); 2 a bad command line (checked before anything is sent) or no daemon at the socket."],
    ),
    (
        "ENVIRONMENT",
        &["XVS_SOCKET\tThe control socket when --socket is not given (default /run/xvs/xvs.sock)."],
    ),
    (
        "FILES",
        &["/run/xvs/xvs.sock\tThe control socket of xvs run: root, or a member of its group ([global] control_socket_group; the package uses xvs), may connect."],
    ),
    (
        "EXAMPLES",
        &[
            "NAT: the real servers answer through the director:",
            " xvsadm -A -t 172.16.29.4:80 -s wrr\n xvsadm -a -t 172.16.29.4:80 -r 192.168.95.2 -m -w 1\n xvsadm -a -t 172.16.29.4:80 -r 192.168.95.3 -m -w 2\n xvsadm -L -n",
            "Drain a real server (give the whole line: -e sets every attribute):",
            " xvsadm -e -t 172.16.29.4:80 -r 192.168.95.2 -m -w 0",
            "Save and restore:",
            " xvsadm -S -n > /etc/xvs/rules\n xvsadm -C\n xvsadm -R < /etc/xvs/rules",
        ],
    ),
    ("SEE ALSO", &["xvs(8), xvs.toml(5), ipvsadm(8), keepalived(8)"]),
];

const XVSADM_ABOUT: &str = "ipvsadm's command line for xvs";

const XVSADM_LONG: &str = "\
xvsadm takes ipvsadm's command line (the same commands, options, defaults and error messages), \
sends the command to the control socket of the running xvs run, and prints the answer laid out \
exactly as ipvsadm prints it, so commands and scripts that parse ipvsadm -L -n keep working. \
Every change is validated as a whole and applied atomically, or refused with the reason and \
nothing changed.";

/// The description of option `long` in `xvsadm -h`: the text after the
/// option's column on every line that introduces it, with the lines that
/// continue it, joined with "; ". Empty when the help does not list it.
fn help_text(help: &str, long: &str) -> String {
    let lines: Vec<&str> = help.lines().collect();
    let mut found = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        let Some(rest) = t.strip_prefix("--").and_then(|r| r.strip_prefix(long)) else {
            continue;
        };
        if !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with('|')) {
            continue;
        }
        let Some(desc) = t.split("  ").map(str::trim).filter(|p| !p.is_empty()).last() else {
            continue;
        };
        if desc.starts_with("--") {
            continue;
        }
        let col = l.rfind(desc).unwrap_or(0);
        let mut text = desc.to_string();
        for next in &lines[i + 1..] {
            let indent = next.len() - next.trim_start().len();
            if next.trim().is_empty() || indent < col || next.trim_start().starts_with('-') {
                break;
            }
            text.push(' ');
            text.push_str(next.trim());
        }
        found.push(text);
    }
    found.join("; ")
}

/// xvsadm's options as a clap command: for its manual and completions
/// only (xvsadm parses with ipvsadm's own rules).
pub fn xvsadm_command() -> Command {
    let help = crate::ctl::ipvsadm::help("xvsadm");
    let mut cmd = Command::new("xvsadm")
        .version(env!("CARGO_PKG_VERSION"))
        .about(XVSADM_ABOUT)
        .long_about(XVSADM_LONG)
        .disable_help_flag(true)
        .disable_version_flag(true)
        .override_usage(
            help.lines()
                .skip_while(|l| !l.starts_with("Usage:"))
                .skip(1)
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("\n       "),
        );
    let scheds = crate::ipvs::sched::names();
    for (long, shorts, value) in crate::ctl::ipvsadm::options() {
        let mut a = Arg::new(long).long(long).help(help_text(&help, long));
        if let Some((&first, rest)) = shorts.split_first() {
            a = a.short(first).short_aliases(rest.iter().copied()).visible_short_aliases(rest.iter().copied());
        }
        a = match value {
            crate::ctl::ipvsadm::OptValue::None => a.action(ArgAction::SetTrue),
            crate::ctl::ipvsadm::OptValue::Required => a.action(ArgAction::Set).num_args(1),
            crate::ctl::ipvsadm::OptValue::Optional => a.action(ArgAction::Set).num_args(0..=1),
        };
        a = match long {
            "scheduler" => a.value_parser(scheds.clone()).value_name("SCHEDULER"),
            "tcp-service" | "udp-service" => a.value_name("SERVICE-ADDRESS").value_hint(clap::ValueHint::Other),
            "real-server" => a.value_name("SERVER-ADDRESS").value_hint(clap::ValueHint::Other),
            "tun-type" => a.value_parser(["ipip"]),
            "sched-flags" => a.value_name("FLAGS"),
            "ifname" => a.value_name("IFNAME").value_hint(clap::ValueHint::Other),
            _ => a.value_name(long.to_uppercase()),
        };
        cmd = cmd.arg(a);
    }
    cmd.arg(
        Arg::new("socket")
            .long("socket")
            .value_name("PATH")
            .value_hint(clap::ValueHint::FilePath)
            .help("The control socket of xvs run (default /run/xvs/xvs.sock, or $XVS_SOCKET); an xvs option, anywhere on the line"),
    )
}

/// Appends hand-written sections.
fn sections(roff: &mut Roff, sections: &[Section]) {
    for (title, paras) in sections {
        roff.control("SH", [*title]);
        for p in *paras {
            if let Some(lit) = p.strip_prefix(' ') {
                roff.control("RS", ["4"]).control("nf", []);
                let text: Vec<String> = lit.lines().map(|l| l.strip_prefix(' ').unwrap_or(l).to_string()).collect();
                roff.text([roman(text.join("\n"))]);
                roff.control("fi", []).control("RE", []);
            } else if let Some((tag, body)) = p.split_once('\t') {
                roff.control("TP", []).text([bold(tag)]).text([roman(body)]);
            } else {
                roff.control("PP", []).text([roman(*p)]);
            }
        }
    }
}

/// A page from a clap command, with extra sections.
fn clap_page(cmd: Command, name: &str, section: &str, extra: &[Section]) -> io::Result<String> {
    let man = clap_mangen::Man::new(cmd.name(name.to_string()).bin_name(name.replace('-', " ")).version(env!("CARGO_PKG_VERSION")))
        .section(section)
        .manual(MANUAL)
        .source(format!("xvs {}", env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    man.render_subcommands_section(&mut out)?;
    let mut r = Roff::new();
    sections(&mut r, extra);
    out.extend_from_slice(r.to_roff().as_bytes());
    man.render_version_section(&mut out)?;
    String::from_utf8(out).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Every page: (file name, roff text). `xvs` is xvs's clap command.
///
/// # Errors
/// Rendering failed (it writes to memory: never in practice).
pub fn pages(xvs: &Command) -> io::Result<Vec<(String, String)>> {
    let top = xvs.clone().disable_help_subcommand(true);
    let mut out = vec![("xvs.8".to_string(), clap_page(top, "xvs", "8", XVS_SECTIONS)?)];
    for sub in xvs.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("xvs-{}", sub.get_name());
        let see: &[Section] = &[("SEE ALSO", &["xvs(8), xvsadm(8), xvs.toml(5)"])];
        out.push((format!("{name}.8"), clap_page(sub.clone(), &name, "8", see)?));
    }
    out.push(("xvsadm.8".to_string(), clap_page(xvsadm_command(), "xvsadm", "8", XVSADM_SECTIONS)?));
    out.push((
        "xvs.toml.5".to_string(),
        markdown_to_man(CONFIG_MD, "xvs.toml", "5", "the configuration file of xvs(8)"),
    ));
    Ok(out)
}

/// Every completion script: (file name, script). Names are where Debian
/// keeps them: `NAME` (bash-completion), `_NAME` (zsh), `NAME.fish`.
pub fn completions(xvs: &Command) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, cmd) in [("xvs", xvs.clone()), ("xvsadm", xvsadm_command())] {
        for (shell, file) in [
            (Shell::Bash, format!("bash/{name}")),
            (Shell::Zsh, format!("zsh/_{name}")),
            (Shell::Fish, format!("fish/{name}.fish")),
        ] {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), name, &mut buf);
            out.push((file, buf));
        }
    }
    out
}

/// Writes `man/` (the pages) and `completions/{bash,zsh,fish}/` under
/// `dir`; returns the files written.
///
/// # Errors
/// A directory or file could not be written.
pub fn write_all(xvs: &Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut put = |rel: String, bytes: &[u8]| -> io::Result<()> {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, bytes)?;
        written.push(p);
        Ok(())
    };
    for (name, text) in pages(xvs)? {
        put(format!("man/{name}"), text.as_bytes())?;
    }
    for (name, bytes) in completions(xvs) {
        put(format!("completions/{name}"), &bytes)?;
    }
    Ok(written)
}

/// Inline markdown (`code`, **bold**, *emphasis*, [text](link)) as roff
/// inlines: code and bold in bold, emphasis in italics, links by their
/// text.
fn inlines(text: &str) -> Vec<Inline> {
    let mut out = Vec::new();
    let mut plain = String::new();
    let mut rest = text;
    let flush = |plain: &mut String, out: &mut Vec<Inline>| {
        if !plain.is_empty() {
            out.push(roman(std::mem::take(plain)));
        }
    };
    while let Some(c) = rest.chars().next() {
        let closing = |open: &str| rest.strip_prefix(open).and_then(|r| r.find(open).map(|i| (&r[..i], &r[i + open.len()..])));
        let span = match c {
            '`' => closing("`").map(|(t, r)| (bold(t), r)),
            '*' if rest.starts_with("**") => closing("**").map(|(t, r)| (bold(t), r)),
            '*' => closing("*").filter(|(t, _)| !t.is_empty() && !t.starts_with(' ')).map(|(t, r)| (roff::italic(t), r)),
            '[' => rest[1..].find("](").and_then(|i| {
                let label = &rest[1..1 + i];
                let after = &rest[1 + i + 2..];
                after.find(')').map(|j| (roman(label), &after[j + 1..]))
            }),
            _ => None,
        };
        match span {
            Some((inline, r)) => {
                flush(&mut plain, &mut out);
                out.push(inline);
                rest = r;
            }
            None => {
                plain.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    flush(&mut plain, &mut out);
    out
}

/// Splits a markdown table row into its cells.
fn cells(row: &str) -> Vec<String> {
    let t = row.trim().trim_start_matches('|').trim_end_matches('|');
    // A `|` inside code (`a|b`) is not a separator.
    let mut out = vec![String::new()];
    let mut code = false;
    for ch in t.chars() {
        match ch {
            '`' => {
                code = !code;
                out.last_mut().unwrap_or(&mut String::new()).push(ch);
            }
            '|' if !code => out.push(String::new()),
            _ => {
                if let Some(c) = out.last_mut() {
                    c.push(ch)
                }
            }
        }
    }
    out.into_iter().map(|c| c.trim().to_string()).collect()
}

/// A markdown document (the subset the docs use: headings, paragraphs,
/// lists, fenced code, tables, inline code/emphasis/links) as a manual
/// page `name(section)`. The first `#` heading is replaced by the NAME
/// section (`name \- summary`); `##` headings become sections, `###`
/// subsections; a table row becomes a tagged paragraph: its first cell
/// the tag, the middle cells `header: value`, the last the text.
pub fn markdown_to_man(md: &str, name: &str, section: &str, summary: &str) -> String {
    let mut r = Roff::new();
    r.control("TH", [name.to_uppercase().as_str(), section, "", &format!("xvs {}", env!("CARGO_PKG_VERSION")), MANUAL]);
    r.control("SH", ["NAME"]).text([roman(format!("{name} - {summary}"))]);
    let mut para: Vec<String> = Vec::new();
    let mut header: Vec<String> = Vec::new();
    let mut lines = md.lines().peekable();
    let mut started = false;
    let flush = |para: &mut Vec<String>, r: &mut Roff| {
        if !para.is_empty() {
            r.text(inlines(&para.join(" ")));
            para.clear();
        }
    };
    while let Some(line) = lines.next() {
        let t = line.trim_end();
        if let Some(h) = t.strip_prefix("# ") {
            flush(&mut para, &mut r);
            if !started {
                started = true;
                r.control("SH", ["DESCRIPTION"]);
            } else {
                r.control("SH", [h.replace('`', "").to_uppercase().as_str()]);
            }
            continue;
        }
        if let Some(h) = t.strip_prefix("## ") {
            flush(&mut para, &mut r);
            let h = if h.starts_with('`') { h.replace('`', "") } else { h.to_uppercase() };
            r.control("SH", [h.as_str()]);
            continue;
        }
        if let Some(h) = t.strip_prefix("### ").or_else(|| t.strip_prefix("#### ")) {
            flush(&mut para, &mut r);
            r.control("SS", [h.replace('`', "").as_str()]);
            continue;
        }
        if t.starts_with("```") {
            flush(&mut para, &mut r);
            let mut block = Vec::new();
            for l in lines.by_ref() {
                if l.trim_start().starts_with("```") {
                    break;
                }
                block.push(l);
            }
            r.control("PP", []).control("RS", ["4"]).control("nf", []);
            r.text([roman(block.join("\n"))]);
            r.control("fi", []).control("RE", []);
            continue;
        }
        if t.starts_with('|') {
            flush(&mut para, &mut r);
            let row = cells(t);
            if row.iter().all(|c| !c.is_empty() && c.chars().all(|ch| ch == '-' || ch == ':')) {
                continue;
            }
            if header.is_empty() || lines.peek().is_some_and(|n| n.trim_start().starts_with("|-") || n.trim_start().starts_with("| -")) {
                header = row;
                continue;
            }
            r.control("TP", []).text(inlines(&row[0]));
            let mut body = String::new();
            for (i, c) in row.iter().enumerate().skip(1) {
                if i + 1 == row.len() {
                    body.push_str(c);
                } else if !c.is_empty() {
                    body.push_str(&format!("{}: {c}. ", header.get(i).map_or("", String::as_str)));
                }
            }
            r.text(inlines(&body));
            continue;
        }
        if !t.starts_with('|') && !header.is_empty() {
            header.clear();
        }
        let trimmed = t.trim_start();
        let item = trimmed
            .strip_prefix("- ")
            .or_else(|| trimmed.strip_prefix("* "))
            .or_else(|| {
                let d = trimmed.find(". ")?;
                trimmed[..d].chars().all(|c| c.is_ascii_digit()).then(|| &trimmed[d + 2..])
            });
        if let Some(item) = item.filter(|_| !trimmed.is_empty()) {
            flush(&mut para, &mut r);
            r.control("IP", ["\\(bu", "2"]);
            para.push(item.to_string());
            continue;
        }
        if t.is_empty() {
            flush(&mut para, &mut r);
            if lines.peek().is_some_and(|n| !n.trim().is_empty()) {
                r.control("PP", []);
            }
            continue;
        }
        if t.starts_with("<!--") {
            continue;
        }
        para.push(trimmed.to_string());
    }
    flush(&mut para, &mut r);
    r.control("SH", ["SEE ALSO"]).text([roman("xvs(8), xvsadm(8), ipvsadm(8), keepalived(8)")]);
    r.to_roff()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_xvsadm_option_has_its_help_line_and_every_help_option_is_parsed() {
        let help = crate::ctl::ipvsadm::help("xvsadm");
        let opts = crate::ctl::ipvsadm::options();
        for (long, _, _) in &opts {
            assert!(!help_text(&help, long).is_empty(), "--{long} is parsed but `xvsadm -h` does not describe it");
        }
        // And the other way: every --option the help introduces is parsed
        // (or is xvs's own --socket).
        for l in help.lines() {
            let t = l.trim_start();
            let Some(word) = t.strip_prefix("--") else { continue };
            let long: String = word.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
            assert!(
                long == "socket" || opts.iter().any(|(o, _, _)| *o == long),
                "`xvsadm -h` lists --{long}, which the parser does not take"
            );
        }
        assert_eq!(help_text(&help, "scheduler").split_whitespace().next(), Some("one"));
        assert!(help_text(&help, "weight").contains("0 = no new connections"), "continuation lines are kept");
        assert!(help_text(&help, "stats").contains("daemon's own counters") && help_text(&help, "stats").contains("statistics"));
    }

    #[test]
    fn the_xvsadm_command_is_a_valid_clap_command_with_ipvsadm_letters() {
        let c = xvsadm_command();
        c.clone().debug_assert();
        let short = |l: &str| c.get_arguments().find(|a| a.get_long() == Some(l)).and_then(|a| a.get_short());
        assert_eq!(short("add-service"), Some('A'));
        assert_eq!(short("masquerading"), Some('m'));
        assert_eq!(short("list"), Some('L'));
        let list = c.get_arguments().find(|a| a.get_long() == Some("list")).unwrap();
        assert_eq!(list.get_short_and_visible_aliases(), Some(vec!['L', 'l']));
        assert!(c.get_arguments().all(|a| a.get_long() != Some("sctp-service")), "refused options are not offered");
    }

    #[test]
    fn completions_offer_ipvsadm_options_and_schedulers() {
        let xvs = Command::new("xvs").subcommand(Command::new("run").arg(Arg::new("config").long("config")));
        let all = completions(&xvs);
        assert_eq!(all.len(), 6);
        let bash = String::from_utf8(all.iter().find(|(n, _)| n == "bash/xvsadm").unwrap().1.clone()).unwrap();
        for o in ["--add-service", "--masquerading", "--persistent-conn", "--socket", "-A", "-m"] {
            assert!(bash.contains(o), "bash completion of xvsadm lacks {o}");
        }
        let fish = String::from_utf8(all.iter().find(|(n, _)| n == "fish/xvsadm.fish").unwrap().1.clone()).unwrap();
        assert!(fish.contains("wlc") && fish.contains("mh"), "schedulers are offered for -s");
        let zsh = String::from_utf8(all.iter().find(|(n, _)| n == "zsh/_xvs").unwrap().1.clone()).unwrap();
        assert!(zsh.contains("--config"));
    }

    #[test]
    fn markdown_becomes_roff() {
        let md = "# Title\n\nIntro `code` and **bold**, *it* and [a link](x.md).\nSecond line.\n\n## Section one\n\n- item one\n  continued\n- item two\n\n```toml\n.starts with a dot\n[global]\n```\n\n### `[sub]`\n\n| field | type | meaning |\n|---|---|---|\n| `a` | int | The a. |\n| `b` | | The b. |\n";
        let man = markdown_to_man(md, "x.toml", "5", "test");
        assert!(man.starts_with(".TH X.TOML 5"), "{man}");
        assert!(man.contains(".SH NAME\nx.toml \\- test\n.SH DESCRIPTION\n"), "{man}");
        assert!(man.contains("Intro \\fBcode\\fR and \\fBbold\\fR, \\fIit\\fR and a link. Second line.\n"), "{man}");
        assert!(man.contains(".SH \"SECTION ONE\"\n"), "{man}");
        assert!(man.contains(".IP \\(bu 2\nitem one continued\n.IP \\(bu 2\nitem two\n"), "{man}");
        assert!(man.contains(".nf\n\\&.starts with a dot\n[global]\n.fi\n"), "{man}");
        assert!(man.contains(".SS [sub]\n"), "{man}");
        assert!(man.contains(".TP\n\\fBa\\fR\ntype: int. The a.\n.TP\n\\fBb\\fR\nThe b.\n"), "{man}");
        assert!(!man.contains("|---"), "{man}");
    }

    #[test]
    fn the_configuration_page_carries_every_field_of_config_md() {
        let man = markdown_to_man(CONFIG_MD, "xvs.toml", "5", "the configuration file of xvs(8)");
        let plain = man.replace("\\fB", "").replace("\\fR", "").replace("\\fI", "").replace("\\-", "-");
        let mut fields = 0;
        for l in CONFIG_MD.lines().filter(|l| l.starts_with("| `")) {
            let key = cells(l)[0].replace('`', "");
            assert!(plain.contains(&format!(".TP\n{key}\n")), "xvs.toml(5) lacks the field {key}");
            fields += 1;
        }
        assert!(fields > 20, "config.md's tables were found ({fields})");
        for h in CONFIG_MD.lines().filter_map(|l| l.strip_prefix("## ")) {
            let h = if h.starts_with('`') { h.replace('`', "") } else { h.to_uppercase() };
            assert!(man.contains(&format!(".SH {h}\n")) || man.contains(&format!(".SH \"{h}\"\n")), "no section {h}");
        }
        // Every key the loader takes in [global] is documented (the page
        // then has it): a misspelt key is an error naming the known ones.
        let e = crate::ctl::config::load_str("[global]\nnope = 1\n", "t").unwrap_err().to_string();
        let known = e.split("expected one of").nth(1).expect("serde lists the fields");
        for k in known.split(',').map(|k| k.trim().trim_matches('`')) {
            assert!(CONFIG_MD.contains(&format!("| `{k}` |")), "[global] {k} is not in docs/config.md");
        }
    }
}
