//! Who may use the monitor: password hashes, sessions, CSRF tokens and the
//! login rate limit.
//!
//! # Contract
//!
//! - Passwords are kept only as argon2 PHC strings ([`hash_password`],
//!   `xvs passwd`); [`verify_password`] compares in constant time (argon2's
//!   own comparison). A login for an unknown user verifies against a dummy
//!   hash, so it costs the same time as a wrong password.
//! - A session token is 32 random bytes; the store keeps only their
//!   SHA-256, so looking a token up leaks nothing useful through timing and
//!   a memory dump holds no usable token. Every session has a CSRF token
//!   (32 random bytes), compared in constant time ([`csrf_ok`]). Sessions
//!   expire after the configured time; the store holds at most
//!   [`MAX_SESSIONS`] (the oldest goes first).
//! - [`RateLimiter`]: a token bucket per source (an IPv4 address, an IPv6
//!   /64): `burst` failed logins, then one more per `refill`. A source out
//!   of tokens is refused before its password is even checked. A success
//!   does not refill the bucket (a valid account must not reset an attack).
//!   The map is bounded ([`MAX_SOURCES`]): full buckets are forgotten first.
//! - Time is passed in (`now`), so tests drive it.

use super::conf::Role;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};
use subtle::ConstantTimeEq;

/// Sessions kept at most (the oldest is dropped for a new one).
pub const MAX_SESSIONS: usize = 1024;
/// Sources the rate limiter remembers at most.
pub const MAX_SOURCES: usize = 4096;

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The kernel's getrandom: failing means the system is unusable.
    SystemRandom::new().fill(&mut b).expect("the system's random number generator failed");
    b
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An argon2id hash of `password` with a fresh salt (OWASP's parameters,
/// argon2's defaults: 19 MiB, 2 passes).
///
/// # Errors
/// The password is empty or longer than 1024 bytes.
pub fn hash_password(password: &str) -> Result<String, String> {
    if password.is_empty() || password.len() > 1024 {
        return Err("a password has 1 to 1024 bytes".into());
    }
    let salt = SaltString::encode_b64(&random::<16>()).map_err(|e| e.to_string())?;
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Whether `hash` is an argon2 PHC string `verify_password` can use.
///
/// # Errors
/// Why not.
pub fn check_hash(hash: &str) -> Result<(), String> {
    let h = PasswordHash::new(hash).map_err(|e| format!("is not a password hash from `xvs passwd` ({e})"))?;
    if !matches!(h.algorithm.as_str(), "argon2id" | "argon2i" | "argon2d") {
        return Err(format!("algorithm '{}' is not argon2 (use `xvs passwd`)", h.algorithm));
    }
    if h.hash.is_none() {
        return Err("is not a password hash from `xvs passwd` (no hash part)".into());
    }
    Ok(())
}

/// Whether `password` matches `hash` (constant-time comparison).
pub fn verify_password(hash: &str, password: &str) -> bool {
    if password.len() > 1024 {
        return false;
    }
    match PasswordHash::new(hash) {
        Ok(h) => Argon2::default().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// Whether the CSRF token a request sent is the session's.
pub fn csrf_ok(sent: Option<&str>, expected: &str) -> bool {
    match sent {
        Some(s) => s.len() == expected.len() && bool::from(s.as_bytes().ct_eq(expected.as_bytes())),
        None => false,
    }
}

/// One logged-in user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub role: Role,
    /// Sent back with every change (`X-CSRF-Token`).
    pub csrf: String,
    pub created: SystemTime,
    expires: Instant,
    /// For eviction order.
    born: Instant,
}

/// The sessions of the monitor. See the module docs.
#[derive(Debug)]
pub struct Sessions {
    ttl: Duration,
    by_hash: HashMap<[u8; 32], Session>,
}

fn token_hash(token: &str) -> [u8; 32] {
    let d = digest(&SHA256, token.as_bytes());
    let mut h = [0u8; 32];
    h.copy_from_slice(d.as_ref());
    h
}

impl Sessions {
    pub fn new(ttl: Duration) -> Sessions {
        Sessions { ttl, by_hash: HashMap::new() }
    }

    /// How long a session lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new session for `user`: its token (for the cookie) and the
    /// session.
    pub fn create(&mut self, user: &str, role: Role, now: Instant) -> (String, Session) {
        self.by_hash.retain(|_, s| s.expires > now);
        while self.by_hash.len() >= MAX_SESSIONS {
            let oldest = self.by_hash.iter().min_by_key(|(_, s)| s.born).map(|(k, _)| *k);
            match oldest {
                Some(k) => self.by_hash.remove(&k),
                None => break,
            };
        }
        let token = hex(&random::<32>());
        let s = Session {
            user: user.to_string(),
            role,
            csrf: hex(&random::<32>()),
            created: SystemTime::now(),
            expires: now + self.ttl,
            born: now,
        };
        self.by_hash.insert(token_hash(&token), s.clone());
        (token, s)
    }

    /// The live session of `token` (an expired one is removed).
    pub fn get(&mut self, token: &str, now: Instant) -> Option<Session> {
        let h = token_hash(token);
        match self.by_hash.get(&h) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                self.by_hash.remove(&h);
                None
            }
            None => None,
        }
    }

    /// Ends the session of `token` (logout).
    pub fn remove(&mut self, token: &str) -> bool {
        self.by_hash.remove(&token_hash(token)).is_some()
    }

    /// Sessions held (expired ones included until they are looked up).
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// The rate-limit key of a source: the address, or an IPv6 /64.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = a.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Failed logins per source. See the module docs.
#[derive(Debug)]
pub struct RateLimiter {
    burst: f64,
    refill: Duration,
    buckets: HashMap<IpAddr, Bucket>,
}

impl RateLimiter {
    pub fn new(burst: u32, refill: Duration) -> RateLimiter {
        RateLimiter { burst: f64::from(burst.max(1)), refill: refill.max(Duration::from_millis(1)), buckets: HashMap::new() }
    }

    fn level(&self, b: &Bucket, now: Instant) -> f64 {
        let gained = now.saturating_duration_since(b.at).as_secs_f64() / self.refill.as_secs_f64();
        (b.tokens + gained).min(self.burst)
    }

    /// May `ip` try a password now? `Err(wait)`: not before `wait`.
    ///
    /// # Errors
    /// The source has used its attempts; how long until the next one.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        match self.buckets.get(&source_key(ip)) {
            Some(b) => {
                let l = self.level(b, now);
                if l >= 1.0 {
                    Ok(())
                } else {
                    Err(self.refill.mul_f64(1.0 - l).max(Duration::from_secs(1)))
                }
            }
            None => Ok(()),
        }
    }

    /// Counts a failed login of `ip`.
    pub fn fail(&mut self, ip: IpAddr, now: Instant) {
        let key = source_key(ip);
        if !self.buckets.contains_key(&key) && self.buckets.len() >= MAX_SOURCES {
            // Forget sources that are back to full (as if never seen).
            let (burst, refill) = (self.burst, self.refill);
            self.buckets.retain(|_, b| {
                let gained = now.saturating_duration_since(b.at).as_secs_f64() / refill.as_secs_f64();
                b.tokens + gained < burst
            });
            if self.buckets.len() >= MAX_SOURCES {
                // Still full: the oldest entry goes (bounded memory wins).
                if let Some(k) = self.buckets.iter().min_by_key(|(_, b)| b.at).map(|(k, _)| *k) {
                    self.buckets.remove(&k);
                }
            }
        }
        let cur = self.buckets.get(&key).map_or(self.burst, |b| self.level(b, now));
        self.buckets.insert(key, Bucket { tokens: (cur - 1.0).max(0.0), at: now });
    }

    pub fn sources(&self) -> usize {
        self.buckets.len()
    }
}

/// Turns the terminal's echo off on standard input while it lives
/// (`xvs passwd`); does nothing when standard input is not a terminal.
pub struct NoEcho {
    saved: Option<libc::termios>,
}

impl NoEcho {
    pub fn new() -> NoEcho {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios we own; on
        // failure nothing was changed.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return NoEcho { saved: None };
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                return NoEcho { saved: None };
            }
            NoEcho { saved: Some(saved) }
        }
    }
}

impl Default for NoEcho {
    fn default() -> Self {
        NoEcho::new()
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            // SAFETY: restores the settings read in `new`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_their_password() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        check_hash(&h).unwrap();
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "correct horsE"));
        assert!(!verify_password(&h, ""));
        assert!(!verify_password("garbage", "correct horse"));
        assert_ne!(hash_password("correct horse").unwrap(), h, "a fresh salt each time");
        assert!(hash_password("").is_err());
        assert!(check_hash("$2b$12$abcdefghijklmnopqrstuv").is_err());
        assert!(check_hash("$scrypt$ln=16,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA").unwrap_err().contains("not argon2"));
    }

    #[test]
    fn sessions_expire_and_end_at_logout() {
        let t0 = Instant::now();
        let mut s = Sessions::new(Duration::from_secs(60));
        let (tok, sess) = s.create("alice", Role::Admin, t0);
        assert_eq!(tok.len(), 64);
        assert_eq!(s.get(&tok, t0 + Duration::from_secs(59)).unwrap(), sess);
        assert_eq!(s.get("nope", t0), None);
        assert_eq!(s.get(&tok[..63], t0), None);
        assert_eq!(s.get(&tok, t0 + Duration::from_secs(60)), None, "expired");
        assert!(s.is_empty(), "an expired session is removed");
        let (tok, _) = s.create("bob", Role::Viewer, t0);
        assert!(s.remove(&tok));
        assert_eq!(s.get(&tok, t0), None);
        let (a, _) = s.create("a", Role::Viewer, t0);
        let (b, _) = s.create("b", Role::Viewer, t0);
        assert_ne!(a, b);
        assert_ne!(s.get(&a, t0).unwrap().csrf, s.get(&b, t0).unwrap().csrf);
    }

    #[test]
    fn sessions_are_bounded() {
        let t0 = Instant::now();
        let mut s = Sessions::new(Duration::from_secs(60));
        let (first, _) = s.create("u", Role::Viewer, t0);
        for i in 1..=MAX_SESSIONS {
            s.create("u", Role::Viewer, t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert_eq!(s.get(&first, t0), None, "the oldest went first");
    }

    #[test]
    fn csrf_tokens_compare_whole() {
        assert!(csrf_ok(Some("abcd"), "abcd"));
        assert!(!csrf_ok(Some("abce"), "abcd"));
        assert!(!csrf_ok(Some("abc"), "abcd"));
        assert!(!csrf_ok(Some(""), "abcd"));
        assert!(!csrf_ok(None, "abcd"));
    }

    #[test]
    fn a_slow_brute_force_is_limited() {
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let mut r = RateLimiter::new(5, Duration::from_secs(60));
        // One wrong password every 20 s: three times the refill rate.
        let mut allowed = 0;
        let mut refused = 0;
        for i in 0..60u64 {
            let now = t0 + Duration::from_secs(20 * i);
            match r.check(ip, now) {
                Ok(()) => {
                    allowed += 1;
                    r.fail(ip, now);
                }
                Err(wait) => {
                    assert!(wait <= Duration::from_secs(60) && wait >= Duration::from_secs(1), "{wait:?}");
                    refused += 1;
                }
            }
        }
        // 20 minutes: the burst of 5 plus one per minute, about 24.
        assert!((23..=26).contains(&allowed), "allowed {allowed}");
        assert_eq!(allowed + refused, 60);
        // Another source is not affected; an IPv6 /64 is one source.
        assert!(r.check("192.0.2.8".parse().unwrap(), t0).is_ok());
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        for _ in 0..5 {
            r.fail(a, t0);
        }
        assert!(r.check("2001:db8::ffff".parse().unwrap(), t0).is_err());
        assert!(r.check("2001:db8:0:1::1".parse().unwrap(), t0).is_ok());
        assert!(r.check(a, t0 + Duration::from_secs(60)).is_ok(), "one refilled");
    }

    #[test]
    fn the_limiter_is_bounded() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(2, Duration::from_secs(60));
        for i in 0..(MAX_SOURCES as u32 + 100) {
            r.fail(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(r.sources() <= MAX_SOURCES);
    }
}
