//! The steering program's decision, in Rust: a line-by-line mirror of
//! `steer.bpf.c`, so that what the program redirects and what the worker
//! does with it can be tested together without root. A test runs the real
//! BPF object (`BPF_PROG_TEST_RUN`) on the same frames and rules and holds
//! the two equal, so the mirror cannot drift from the program: a change of
//! one without the other fails `steer::tests`.

use super::steer::{Rule, RuleKey, K_LADDR, K_LOCAL, K_REAL, K_REAL_ADDR, K_VIP, K_VIP_ADDR};
use std::collections::HashSet;

/// What the steering program does with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steered {
    /// To the AF_XDP socket of its queue (the workers).
    Redirect,
    /// To the kernel (`XDP_PASS`).
    Pass,
}

/// The contents of the rules map.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    keys: HashSet<RuleKey>,
}

impl RuleSet {
    /// The map `Steering::set_rules(rules)` writes.
    pub fn new(rules: &[Rule]) -> RuleSet {
        RuleSet { keys: rules.iter().flat_map(|r| r.keys().into_iter().flatten()).collect() }
    }

    fn has(&self, kind: u8, proto: u8, port: [u8; 2], addr: &[u8; 16]) -> bool {
        let mut k = [0u8; 20];
        k[0] = kind;
        k[1] = proto;
        k[2..4].copy_from_slice(&port);
        k[4..].copy_from_slice(addr);
        self.keys.contains(&k)
    }
}

fn icmp4_is_error(t: u8) -> bool {
    matches!(t, 3 | 4 | 11 | 12)
}

fn icmp6_is_error(t: u8) -> bool {
    (1..=4).contains(&t)
}

/// What `xvs_steer` returns for `f` with `rules` in its map (and a socket
/// on the queue): the same tests in the same order.
pub fn classify(f: &[u8], rules: &RuleSet) -> Steered {
    use Steered::*;
    let end = f.len();
    let b16 = |o: usize| [f[o], f[o + 1]];
    if 14 > end {
        return Pass;
    }
    let mut et = b16(12);
    let mut l3 = 14;
    if et == [0x81, 0x00] || et == [0x88, 0xa8] {
        if 18 > end {
            return Pass;
        }
        et = b16(16);
        l3 = 18;
    }
    let (mut sk, mut dk) = ([0u8; 16], [0u8; 16]);
    let mut proto;
    let mut l4;
    let mut frag = false;
    let v4 = et == [0x08, 0x00];
    if v4 {
        if l3 + 20 > end {
            return Pass;
        }
        let ihl = (f[l3] & 0x0f) as usize * 4;
        if ihl < 20 {
            return Pass;
        }
        proto = f[l3 + 9];
        frag = (u16::from_be_bytes(b16(l3 + 6)) & 0x3fff) != 0;
        sk[10] = 0xff;
        sk[11] = 0xff;
        dk[10] = 0xff;
        dk[11] = 0xff;
        sk[12..].copy_from_slice(&f[l3 + 12..l3 + 16]);
        dk[12..].copy_from_slice(&f[l3 + 16..l3 + 20]);
        l4 = l3 + ihl;
    } else if et == [0x86, 0xdd] {
        if l3 + 40 > end {
            return Pass;
        }
        proto = f[l3 + 6];
        sk.copy_from_slice(&f[l3 + 8..l3 + 24]);
        dk.copy_from_slice(&f[l3 + 24..l3 + 40]);
        l4 = l3 + 40;
        for _ in 0..4 {
            if proto == 0 || proto == 43 || proto == 60 {
                if l4 + 8 > end {
                    return Pass;
                }
                proto = f[l4];
                l4 += (f[l4 + 1] as usize + 1) * 8;
            } else if proto == 44 {
                frag = true;
                break;
            } else {
                break;
            }
        }
    } else {
        return Pass;
    }
    let local = || rules.has(K_LOCAL, 0, [0, 0], &dk);
    if frag {
        if rules.has(K_VIP_ADDR, 0, [0, 0], &dk) || rules.has(K_LADDR, 0, [0, 0], &dk) {
            return Redirect;
        }
        if rules.has(K_REAL_ADDR, 0, [0, 0], &sk) && !local() {
            return Redirect;
        }
        return Pass;
    }
    if proto == 6 || proto == 17 {
        if l4 + 4 > end {
            return Pass;
        }
        let (sport, dport) = (b16(l4), b16(l4 + 2));
        if rules.has(K_VIP, proto, dport, &dk) || rules.has(K_VIP, proto, [0, 0], &dk) || rules.has(K_LADDR, 0, [0, 0], &dk) {
            return Redirect;
        }
        if (rules.has(K_REAL, proto, sport, &sk) || rules.has(K_REAL, proto, [0, 0], &sk)) && !local() {
            return Redirect;
        }
        return Pass;
    }
    let mut is_err = false;
    if proto == 1 && v4 {
        if l4 + 1 > end {
            return Pass;
        }
        is_err = icmp4_is_error(f[l4]);
    } else if proto == 58 && !v4 {
        if l4 + 1 > end {
            return Pass;
        }
        is_err = icmp6_is_error(f[l4]);
    }
    if is_err && (rules.has(K_VIP_ADDR, 0, [0, 0], &dk) || rules.has(K_LADDR, 0, [0, 0], &dk)) {
        return Redirect;
    }
    if is_err && rules.has(K_REAL_ADDR, 0, [0, 0], &sk) && !local() {
        return Redirect;
    }
    Pass
}
