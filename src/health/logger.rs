//! The daemon's logger for the `log` facade: one line per record on
//! stderr. The health checker logs every transition through `log`; `xvs`
//! calls [`init`] once with the options of its command line
//! ([`LogArgs`]).
//!
//! # Contract
//!
//! - Text format: `2026-01-31T12:00:00.123Z INFO  target: message`, the
//!   time in RFC 3339, UTC, milliseconds.
//! - When stderr is the systemd journal (`$JOURNAL_STREAM` names the
//!   device and inode of fd 2, as systemd sets it), the text line carries
//!   no time (the journal stamps every line) and starts with the syslog
//!   priority (`<4>` for a warning), which the journal takes as the
//!   line's priority.
//! - JSON format (`--log-format json`): one object per line,
//!   `{"ts":"...","level":"INFO","target":"...","msg":"..."}`, always
//!   with its time (shippers want it).
//! - The level: `--log-level` when given, else `$RUST_LOG` (a level, or
//!   env_logger's `target=level` directives separated by commas, the most
//!   specific target prefix winning), else `info`.
//! - One `write` per line, so lines of concurrent threads never mix.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// `--log-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `<time> <LEVEL> <target>: <message>` lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The logging options of `xvs` (flattened into its command line).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct LogArgs {
    /// Least severe messages logged: error, warn, info, debug, trace or off
    /// (default: $RUST_LOG, else info).
    #[arg(long, global = true, value_name = "LEVEL", value_parser = parse_level)]
    pub log_level: Option<LevelFilter>,
    /// Log line format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub log_format: LogFormat,
}

fn parse_level(s: &str) -> Result<LevelFilter, String> {
    s.parse()
        .map_err(|_| format!("'{s}' is not a level: error, warn, info, debug, trace or off"))
}

/// Which records pass: a default level and per-target-prefix levels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    default: LevelFilter,
    /// (target prefix, level), longest prefix first.
    targets: Vec<(String, LevelFilter)>,
}

impl Filter {
    /// Everything at `level` and above.
    pub fn level(level: LevelFilter) -> Filter {
        Filter { default: level, targets: Vec::new() }
    }

    /// Parses `RUST_LOG`: comma-separated `level` or `target=level`
    /// directives (a target alone means `trace`, as env_logger).
    ///
    /// # Errors
    /// The first directive that is not one, named.
    pub fn parse(spec: &str) -> Result<Filter, String> {
        let mut f = Filter::level(LevelFilter::Info);
        for d in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            match d.split_once('=') {
                Some((t, l)) => {
                    let l = parse_level(l.trim()).map_err(|e| format!("RUST_LOG directive '{d}': {e}"))?;
                    f.targets.push((t.trim().to_string(), l));
                }
                None => match d.parse::<LevelFilter>() {
                    Ok(l) => f.default = l,
                    Err(_) => f.targets.push((d.to_string(), LevelFilter::Trace)),
                },
            }
        }
        f.targets.sort_by_key(|t| std::cmp::Reverse(t.0.len()));
        Ok(f)
    }

    /// The level for records of `target`.
    pub fn for_target(&self, target: &str) -> LevelFilter {
        self.targets
            .iter()
            .find(|(t, _)| {
                target.strip_prefix(t.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
            })
            .map_or(self.default, |(_, l)| *l)
    }

    /// The most verbose level any target gets (for `log::set_max_level`).
    pub fn max(&self) -> LevelFilter {
        self.targets.iter().map(|(_, l)| *l).fold(self.default, Ord::max)
    }
}

/// Writes records that pass its filter to stderr.
#[derive(Debug)]
pub struct StderrLogger {
    filter: Filter,
    format: LogFormat,
    /// stderr is the journal: no time, a syslog priority prefix.
    journal: bool,
}

impl StderrLogger {
    /// A logger with these settings.
    pub fn new(filter: Filter, format: LogFormat, journal: bool) -> StderrLogger {
        StderrLogger { filter, format, journal }
    }

    /// The line for `r` at time `t`, newline included.
    pub fn line(&self, r: &Record<'_>, t: SystemTime) -> String {
        match self.format {
            LogFormat::Json => format!(
                "{{\"ts\":\"{}\",\"level\":\"{}\",\"target\":{},\"msg\":{}}}\n",
                rfc3339(t),
                r.level(),
                json_str(r.target()),
                json_str(&r.args().to_string())
            ),
            LogFormat::Text if self.journal => {
                format!("<{}>{:<5} {}: {}\n", syslog_priority(r.level()), r.level(), r.target(), r.args())
            }
            LogFormat::Text => format!("{} {:<5} {}: {}\n", rfc3339(t), r.level(), r.target(), r.args()),
        }
    }
}

impl Log for StderrLogger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= self.filter.for_target(m.target())
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = self.line(r, SystemTime::now());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// The syslog priority of a level (what the journal reads from `<N>`).
fn syslog_priority(l: Level) -> u8 {
    match l {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// `t` as RFC 3339 in UTC with milliseconds: `2026-01-31T12:00:00.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The inverse of [`rfc3339`] for tools that read the log (`Z` times
/// with milliseconds as it writes them); `None` for anything else.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 24 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'.' || b[23] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<u64>().ok();
    let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (h, mi, sec, ms) = (n(11..13)?, n(14..16)?, n(17..19)?, n(20..23)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 59 || y < 1970 {
        return None;
    }
    // Days from civil (Howard Hinnant), the inverse of civil_from_days.
    let (y, mo) = (y as i64 - i64::from(mo <= 2), mo as i64);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    Some(UNIX_EPOCH + std::time::Duration::from_millis(((days * 86_400 + h * 3600 + mi * 60 + sec) * 1000) + ms))
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `s` as a JSON string literal.
fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Whether stderr is the systemd journal: `$JOURNAL_STREAM` is
/// `DEVICE:INODE` of fd 2 (systemd.exec(5)). A stderr redirected
/// elsewhere by a child keeps the variable but not the inode.
pub fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some(meta) = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .and_then(|fd| std::fs::File::from(fd).metadata().ok())
    else {
        return false;
    };
    journal_stream_matches(&v, meta.dev(), meta.ino())
}

fn journal_stream_matches(var: &str, dev: u64, ino: u64) -> bool {
    var.split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        .is_some_and(|(d, i)| d == dev && i == ino)
}

/// Installs a text logger at `level` as the process's logger (tests and
/// tools; `xvs` uses [`init_with`]).
///
/// # Errors
/// A logger is already installed.
pub fn init(level: LevelFilter) -> Result<(), log::SetLoggerError> {
    install(StderrLogger::new(Filter::level(level), LogFormat::Text, false))
}

/// Installs the logger `args` describe (see the module docs).
///
/// # Errors
/// A bad `RUST_LOG` (named), or a logger is already installed.
pub fn init_with(args: &LogArgs) -> Result<(), String> {
    let filter = match (args.log_level, std::env::var("RUST_LOG")) {
        (Some(l), _) => Filter::level(l),
        (None, Ok(spec)) => Filter::parse(&spec)?,
        (None, Err(_)) => Filter::level(LevelFilter::Info),
    };
    install(StderrLogger::new(filter, args.log_format, stderr_is_journal())).map_err(|e| e.to_string())
}

fn install(logger: StderrLogger) -> Result<(), log::SetLoggerError> {
    let max = logger.filter.max();
    log::set_logger(Box::leak(Box::new(logger)))?;
    log::set_max_level(max);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn record_line(l: &StderrLogger, level: Level, msg: &str, t: SystemTime) -> String {
        l.line(
            &Record::builder()
                .level(level)
                .target("xvs::daemon::run")
                .args(format_args!("{msg}"))
                .build(),
            t,
        )
    }

    #[test]
    fn rfc3339_is_utc_with_milliseconds() {
        let at = |s: u64, ms: u64| UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms);
        assert_eq!(rfc3339(at(0, 0)), "1970-01-01T00:00:00.000Z");
        // `date -u -d @951825600`: the leap day of 2000.
        assert_eq!(rfc3339(at(951_825_600, 7)), "2000-02-29T12:00:00.007Z");
        assert_eq!(rfc3339(at(1_767_225_599, 999)), "2025-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(at(4_102_444_800, 0)), "2100-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(UNIX_EPOCH - Duration::from_secs(5)), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn log_times_parse_back() {
        for ms in [0u64, 951_825_600_007, 1_767_225_599_999, 4_102_444_800_000, 1_796_468_134_330] {
            let t = UNIX_EPOCH + Duration::from_millis(ms);
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t), "{}", rfc3339(t));
        }
        for bad in ["", "1796468134.330", "2026-13-01T00:00:00.000Z", "2026-01-01T00:00:00.000", "2026-01-01 00:00:00.000Z", "2026-01-01T24:00:00.000Z"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn civil_dates_round_trip_against_a_day_count() {
        // Walk 1970..2400 day by day and check the calendar's own rules.
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for z in 0..(430 * 366) {
            assert_eq!(civil_from_days(z), (y, m, d), "day {z}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m as usize - 1];
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn text_json_and_journal_lines() {
        let t = UNIX_EPOCH + Duration::from_millis(951_825_600_007);
        let text = StderrLogger::new(Filter::level(LevelFilter::Info), LogFormat::Text, false);
        assert_eq!(
            record_line(&text, Level::Warn, "TCP 10.0.0.1:80 -> 10.0.1.1:80: down", t),
            "2000-02-29T12:00:00.007Z WARN  xvs::daemon::run: TCP 10.0.0.1:80 -> 10.0.1.1:80: down\n"
        );
        let journal = StderrLogger::new(Filter::level(LevelFilter::Info), LogFormat::Text, true);
        assert_eq!(record_line(&journal, Level::Error, "x", t), "<3>ERROR xvs::daemon::run: x\n");
        assert_eq!(record_line(&journal, Level::Info, "x", t), "<6>INFO  xvs::daemon::run: x\n");
        let json = StderrLogger::new(Filter::level(LevelFilter::Info), LogFormat::Json, true);
        let line = record_line(&json, Level::Info, "a \"quoted\"\nline", t);
        assert!(line.ends_with("}\n") && line.matches('\n').count() == 1, "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ts"], "2000-02-29T12:00:00.007Z");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "xvs::daemon::run");
        assert_eq!(v["msg"], "a \"quoted\"\nline");
    }

    #[test]
    fn filters_by_level_and_target() {
        let l = StderrLogger::new(Filter::level(LevelFilter::Info), LogFormat::Text, false);
        assert!(l.enabled(&Metadata::builder().level(Level::Warn).build()));
        assert!(!l.enabled(&Metadata::builder().level(Level::Debug).build()));

        let f = Filter::parse("warn,xvs::health=debug,xvs::health::engine=error").unwrap();
        assert_eq!(f.for_target("xvs::daemon::run"), LevelFilter::Warn);
        assert_eq!(f.for_target("xvs::health::check"), LevelFilter::Debug);
        assert_eq!(f.for_target("xvs::health"), LevelFilter::Debug);
        assert_eq!(f.for_target("xvs::healthy"), LevelFilter::Warn, "a prefix matches whole path segments");
        assert_eq!(f.for_target("xvs::health::engine"), LevelFilter::Error);
        assert_eq!(f.max(), LevelFilter::Debug);
        assert_eq!(Filter::parse("debug").unwrap(), Filter::level(LevelFilter::Debug));
        assert_eq!(Filter::parse("").unwrap(), Filter::level(LevelFilter::Info));
        assert_eq!(Filter::parse("xvs").unwrap().for_target("xvs::x"), LevelFilter::Trace);
        let e = Filter::parse("info,xvs=loud").unwrap_err();
        assert!(e.contains("xvs=loud") && e.contains("'loud' is not a level"), "{e}");
    }

    #[test]
    fn level_flag_is_checked() {
        assert_eq!(parse_level("debug"), Ok(LevelFilter::Debug));
        assert_eq!(parse_level("OFF"), Ok(LevelFilter::Off));
        assert!(parse_level("verbose").unwrap_err().contains("'verbose' is not a level"));
    }

    #[test]
    fn journal_stream_must_name_stderr() {
        assert!(journal_stream_matches("8:1234", 8, 1234));
        assert!(!journal_stream_matches("8:1234", 8, 1235));
        assert!(!journal_stream_matches("8:", 8, 0));
        assert!(!journal_stream_matches("garbage", 8, 1234));
        assert!(!journal_stream_matches("", 0, 0));
    }
}
