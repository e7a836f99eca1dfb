//! Agent check in the style of HAProxy's `agent-check`: connect to the
//! agent's TCP port, optionally send a line, read one line of at most
//! [`MAX_LINE`] bytes (ended by a newline or by the agent closing), and
//! parse it.
//!
//! The answer is words separated by spaces, tabs or commas, case
//! insensitive; text after `#` is a free-form description:
//!
//! | word                          | effect                                              |
//! |-------------------------------|-----------------------------------------------------|
//! | `up`                          | up; the dynamic weight stays as it was              |
//! | `ready`                       | up, back to the configured weight (ends `drain`)    |
//! | `N%` (0..=1000)               | up, weight = configured × N / 100                   |
//! | `drain`                       | up with weight 0 (no new connections)               |
//! | `down`, `failed`, `stopped`   | the check fails (the description is the reason)     |
//! | `maint`                       | the check fails ("maintenance")                     |
//! | `maxconn:N`                   | accepted and ignored                                |
//!
//! A percentage combines with `up`/`ready`; two state words that disagree,
//! an unknown word, an empty line, a non-UTF-8 line or a malformed
//! percentage fail the check with the offending text as reason. Unlike
//! HAProxy, `down` and `maint` go through the `fall` count like any other
//! failure, so a single bad answer does not flap a server.

use super::{up, within, Failure, Outcome, Success, WeightUpdate};
use crate::health::config::AgentProbe;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Longest answer read.
pub const MAX_LINE: usize = 512;
/// Largest percentage accepted.
pub const MAX_PERCENT: u32 = 1000;

/// What a state word says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Up,
    Ready,
    Drain,
    Down,
    Maint,
}

/// Parses an agent's answer.
pub fn parse(line: &str) -> Outcome {
    let (words, desc) = match line.split_once('#') {
        Some((w, d)) => (w, d.trim()),
        None => (line, ""),
    };
    let mut state: Option<(State, &str)> = None;
    let mut percent = None;
    for w in words
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
    {
        let lw = w.to_ascii_lowercase();
        let s = match lw.as_str() {
            "up" => State::Up,
            "ready" => State::Ready,
            "drain" => State::Drain,
            "down" | "failed" | "stopped" => State::Down,
            "maint" => State::Maint,
            _ if lw.starts_with("maxconn:") => {
                lw["maxconn:".len()..]
                    .parse::<u32>()
                    .map_err(|_| Failure::new(format!("agent answered a bad maxconn '{w}'")))?;
                continue;
            }
            _ if lw.ends_with('%') => {
                let n = &lw[..lw.len() - 1];
                let p = match n.parse::<u32>() {
                    Ok(p) if p <= MAX_PERCENT && n.bytes().all(|b| b.is_ascii_digit()) => p,
                    _ => {
                        return Err(Failure::new(format!(
                            "agent answered a bad percentage '{w}' (want 0%..={MAX_PERCENT}%)"
                        )))
                    }
                };
                if percent.replace(p).is_some_and(|old| old != p) {
                    return Err(Failure::new(format!(
                        "agent answered two percentages in '{}'",
                        line.trim()
                    )));
                }
                continue;
            }
            _ => {
                return Err(Failure::new(format!(
                    "agent answered an unknown word '{w}' in '{}'",
                    line.trim()
                )))
            }
        };
        if let Some((old, ow)) = state {
            if old != s {
                return Err(Failure::new(format!(
                    "agent answered both '{ow}' and '{w}'"
                )));
            }
        }
        state = Some((s, w));
    }
    let why = |what: &str| {
        if desc.is_empty() {
            Failure::new(format!("agent says {what}"))
        } else {
            Failure::new(format!("agent says {what}: {desc}"))
        }
    };
    match (state.map(|s| s.0), percent) {
        (None, None) => Err(Failure::new(if line.trim().is_empty() {
            "agent sent an empty answer".to_string()
        } else {
            format!("agent answer '{}' has no state or weight", line.trim())
        })),
        (Some(State::Down), _) => Err(why("down")),
        (Some(State::Maint), _) => Err(why("maintenance")),
        (Some(State::Drain), Some(_)) => Err(Failure::new(format!(
            "agent answered 'drain' with a percentage in '{}'",
            line.trim()
        ))),
        (Some(State::Drain), None) => Ok(Success {
            weight: WeightUpdate::Percent(0),
        }),
        (_, Some(p)) => Ok(Success {
            weight: WeightUpdate::Percent(p),
        }),
        (Some(State::Ready), None) => Ok(Success {
            weight: WeightUpdate::Reset,
        }),
        (Some(State::Up), None) => up(),
    }
}

/// Asks the agent at `p.target`.
pub async fn check(p: &AgentProbe, deadline: Instant) -> Outcome {
    let mut s = within(
        deadline,
        "connect to the agent",
        TcpStream::connect(p.target),
    )
    .await?;
    if let Some(line) = &p.send {
        let msg = format!("{line}\n");
        within(deadline, "send to the agent", s.write_all(msg.as_bytes())).await?;
    }
    let mut buf = Vec::with_capacity(64);
    let mut chunk = [0u8; 256];
    let line_end = loop {
        if let Some(i) = buf.iter().position(|b| *b == b'\n') {
            break i;
        }
        if buf.len() > MAX_LINE {
            return Err(Failure::new(format!(
                "agent answer is longer than {MAX_LINE} bytes"
            )));
        }
        let n = within(deadline, "read the agent's answer", s.read(&mut chunk)).await?;
        if n == 0 {
            break buf.len();
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let raw = &buf[..line_end.min(MAX_LINE + 1)];
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let line =
        std::str::from_utf8(raw).map_err(|_| Failure::new("agent answer is not UTF-8 text"))?;
    parse(line)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use std::net::SocketAddr;

    fn pct(p: u32) -> Outcome {
        Ok(Success {
            weight: WeightUpdate::Percent(p),
        })
    }

    #[test]
    fn answers() {
        assert_eq!(parse("up"), up());
        assert_eq!(parse("UP\r"), up());
        assert_eq!(parse("75%"), pct(75));
        assert_eq!(parse("up 75%"), pct(75));
        assert_eq!(parse("ready,50%"), pct(50));
        assert_eq!(parse("up\t150% maxconn:30"), pct(150));
        assert_eq!(
            parse("ready"),
            Ok(Success {
                weight: WeightUpdate::Reset
            })
        );
        assert_eq!(parse("drain"), pct(0));
        assert_eq!(parse("0%"), pct(0));
        assert_eq!(parse("up up"), up());
        assert_eq!(parse("down"), Err(Failure::new("agent says down")));
        assert_eq!(
            parse("failed # disk full "),
            Err(Failure::new("agent says down: disk full"))
        );
        assert_eq!(
            parse("stopped#bye"),
            Err(Failure::new("agent says down: bye"))
        );
        assert_eq!(parse("maint"), Err(Failure::new("agent says maintenance")));
        assert_eq!(parse("down 50%"), Err(Failure::new("agent says down")));
    }

    #[test]
    fn bad_answers_say_why() {
        let cases = [
            ("", "empty answer"),
            ("   ", "empty answer"),
            ("# only a comment", "has no state or weight"),
            ("hello", "unknown word 'hello'"),
            ("up 75", "unknown word '75'"),
            ("75.5%", "bad percentage '75.5%'"),
            ("-5%", "bad percentage '-5%'"),
            ("+5%", "bad percentage '+5%'"),
            ("%", "bad percentage '%'"),
            ("1001%", "bad percentage '1001%'"),
            ("up down", "both 'up' and 'down'"),
            ("drain ready", "both 'drain' and 'ready'"),
            ("drain 50%", "'drain' with a percentage"),
            ("50% 60%", "two percentages"),
            ("maxconn:x", "bad maxconn"),
        ];
        for (line, want) in cases {
            let e = parse(line).unwrap_err().reason;
            assert!(e.contains(want), "{line:?}: '{e}' should contain '{want}'");
        }
    }

    /// An agent that answers `reply` (after reading `expect_send` when set).
    async fn agent(
        reply: &'static [u8],
        expect_send: Option<&'static str>,
    ) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        tcp_server(move |mut s| async move {
            if let Some(want) = expect_send {
                let mut b = vec![0u8; want.len() + 1];
                s.read_exact(&mut b).await.unwrap();
                assert_eq!(b, format!("{want}\n").as_bytes());
            }
            s.write_all(reply).await.unwrap();
            // Keep the connection open: the checker must stop at the newline.
            std::future::pending::<()>().await;
        })
        .await
    }

    /// Checks an [`agent`] answering `reply`, greeting it with `send` (what
    /// the agent expects), with a deadline `ms` milliseconds away.
    async fn ask(reply: &'static [u8], send: Option<&'static str>, ms: u64) -> Outcome {
        let (addr, h) = agent(reply, send).await;
        let p = AgentProbe {
            target: addr,
            send: send.map(Into::into),
        };
        let r = check(&p, deadline(ms)).await;
        h.abort();
        r
    }

    #[tokio::test]
    async fn over_tcp() {
        assert_eq!(
            ask(b"up 80%\nignored\n", Some("hello agent"), 2000).await,
            pct(80)
        );
        assert_eq!(
            ask(b"down#db gone\r\n", None, 2000)
                .await
                .unwrap_err()
                .reason,
            "agent says down: db gone"
        );
        assert_eq!(
            ask(b"\xff\xfe\n", None, 2000).await.unwrap_err().reason,
            "agent answer is not UTF-8 text"
        );
        assert!(ask(&[b'x'; 2000], None, 2000)
            .await
            .unwrap_err()
            .reason
            .contains("longer than"));
        // No newline: hangs until the deadline.
        assert_eq!(
            ask(b"up", None, 150).await.unwrap_err().reason,
            "read the agent's answer: timed out"
        );
        // An answer ended by close rather than newline is accepted.
        let (addr, h) = tcp_server(|mut s| async move {
            s.write_all(b"drain").await.unwrap();
        })
        .await;
        assert_eq!(
            check(
                &AgentProbe {
                    target: addr,
                    send: None
                },
                deadline(2000)
            )
            .await,
            pct(0)
        );
        h.await.unwrap();
        let p = AgentProbe {
            target: refused_tcp().await,
            send: None,
        };
        assert_eq!(
            check(&p, deadline(2000)).await.unwrap_err().reason,
            "connect to the agent: connection refused"
        );
    }
}
