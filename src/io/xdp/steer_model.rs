//! The steering program's decision, in Rust: a test-by-test mirror of
//! `steer.bpf.c` (over the rules themselves, not the program's maps), so
//! that what the program redirects and what the worker
//! does with it can be tested together without root. A test runs the real
//! BPF object (`BPF_PROG_TEST_RUN`) on the same frames and rules and holds
//! the two equal, so the mirror cannot drift from the program: a change of
//! one without the other fails `steer::tests`.

use super::steer::Rule;
use crate::ipvs::Proto;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What the steering program does with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steered {
    /// To the AF_XDP socket of its queue (the workers).
    Redirect,
    /// To the kernel (`XDP_PASS`).
    Pass,
}

/// The rules the maps stand for, asked as the rules themselves (not as
/// the program's encoding of them, so the test holds that encoding too).
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    rules: HashSet<Rule>,
    vips: HashSet<IpAddr>,
    reals: HashSet<IpAddr>,
}

impl RuleSet {
    /// What `Steering::set_rules(rules)` writes.
    pub fn new(rules: &[Rule]) -> RuleSet {
        let mut s = RuleSet { rules: rules.iter().copied().collect(), ..RuleSet::default() };
        for r in rules {
            match *r {
                Rule::Vip { addr, .. } => s.vips.insert(addr),
                Rule::RealServer { addr, .. } => s.reals.insert(addr),
                _ => false,
            };
        }
        s
    }

    fn vip_port(&self, addr: IpAddr, proto: Proto, port: u16) -> bool {
        [port, 0].iter().any(|&port| self.rules.contains(&Rule::Vip { proto, addr, port }))
    }

    fn real_port(&self, addr: IpAddr, proto: Proto, port: u16) -> bool {
        [port, 0].iter().any(|&port| self.rules.contains(&Rule::RealServer { proto, addr, port }))
    }

    fn laddr(&self, a: IpAddr) -> bool {
        self.rules.contains(&Rule::LocalAddr(a))
    }

    fn local(&self, a: IpAddr) -> bool {
        self.rules.contains(&Rule::Local(a))
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
    let (sk, dk): (IpAddr, IpAddr);
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
        let a4 = |o: usize| IpAddr::V4(Ipv4Addr::new(f[o], f[o + 1], f[o + 2], f[o + 3]));
        (sk, dk) = (a4(l3 + 12), a4(l3 + 16));
        l4 = l3 + ihl;
    } else if et == [0x86, 0xdd] {
        if l3 + 40 > end {
            return Pass;
        }
        proto = f[l3 + 6];
        let a6 = |o: usize| IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&f[o..o + 16]).unwrap_or_default()));
        (sk, dk) = (a6(l3 + 8), a6(l3 + 24));
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
    if !frag && (proto == 6 || proto == 17) {
        if l4 + 4 > end {
            return Pass;
        }
        let p = if proto == 6 { Proto::Tcp } else { Proto::Udp };
        let (sport, dport) = (u16::from_be_bytes(b16(l4)), u16::from_be_bytes(b16(l4 + 2)));
        if rules.laddr(dk) || rules.vip_port(dk, p, dport) {
            return Redirect;
        }
        if rules.local(dk) {
            return Pass;
        }
        if rules.real_port(sk, p, sport) {
            return Redirect;
        }
        return Pass;
    }
    let mut is_err = false;
    if !frag {
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
        if !is_err {
            return Pass;
        }
    }
    // Fragments and ICMP errors: by address alone.
    if rules.vips.contains(&dk) || rules.laddr(dk) {
        return Redirect;
    }
    if rules.local(dk) {
        // An error about one of xvs's own tunnel packets (IP-in-IP).
        return if is_err && quotes_tunnel(f, l4, v4) { Redirect } else { Pass };
    }
    if rules.reals.contains(&sk) {
        return Redirect;
    }
    Pass
}

/// Whether the ICMP error at `l4` quotes an IPv4-in-IPv4 (protocol 4) or
/// IPv6-in-IPv6 (next header 41) packet.
fn quotes_tunnel(f: &[u8], l4: usize, v4: bool) -> bool {
    let q = l4 + 8;
    if v4 {
        q + 20 <= f.len() && f[q] >> 4 == 4 && f[q + 9] == 4
    } else {
        q + 40 <= f.len() && f[q] >> 4 == 6 && f[q + 6] == 41
    }
}
