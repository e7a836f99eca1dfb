//! Connection sync messages as a backup director receives them: the
//! decoder (`sync::wire::decode`), the backup daemon's checks
//! (`sync::daemon::admit`: MAC, replay window, own messages, kind, sync
//! id), then every record through `SyncConn::from_record` into a worker's
//! inbox and its `SyncPort` (the path the daemon and the sync tests use),
//! against the fuzzing director (`fuzz/director.toml`, a 64-entry table).
//!
//! The input's first byte sets the backup: authentication on or off, the
//! sync id it wants. Then operations, each a byte and its fields:
//! - a raw message (a big-endian length, then its bytes; the seeds are
//!   messages of the codec's kinds);
//! - a message built from fields (structure-aware): records made from
//!   connections of the director's services (both families, TCP, UDP,
//!   templates, FULLNAT with its option, sequence and persistence-engine
//!   options, xvs's sequence adjustment, sound or not), a trailer of any kind from one of four senders (one of
//!   them this node), signed with the key, with another key or not at
//!   all, then a few bytes bent;
//! - the clock moving on (connections expire).
//!
//! Checked beyond "no panic":
//! - decode → encode → decode gives the same records, sync id and
//!   trailer, for every message whose records all decode;
//! - a received connection re-encodes to itself (`SyncConn` → record →
//!   `SyncConn`);
//! - with a key, a message is taken only when the harness signed exactly
//!   its bytes with that key, and a (sender, counter) pair at most once;
//! - nothing but a data message for the wanted sync id reaches the
//!   worker; every record handed on is counted once (added, updated or
//!   refused by reason), the table grew by the added ones;
//! - once the input is over, after the clock runs far ahead: no
//!   connection left, every real server's load and every FULLNAT local
//!   port back to zero.

use super::Bytes;
use crate::ipvs::seqadj::SeqAdj;
use crate::ipvs::FwdMethod;
use crate::sync::auth::{Auth, ReplayWindow};
use crate::sync::conn::{SyncConn, GROUP_TEMPLATE, TEMPLATE_BIT};
use crate::sync::daemon::{admit, Admit};
use crate::sync::link::Link;
use crate::sync::wire::{self, Decoded, Kind, MsgBuilder, Record, Seq, Trailer, XvsOpt, MAC_LEN, MAX_MESSAGE, TRAILER_LEN};
use crate::worker::{SyncPort, Worker};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

const SEC: u64 = 1_000_000_000;
/// The key of the backup (when authentication is on) and of the senders.
pub const KEY: &[u8] = b"xvs fuzz sync key, 32 bytes long";
/// Another key (a peer of another cluster).
const OTHER_KEY: &[u8] = b"another cluster's key, not ours!";
/// This node's sender id (its own messages come back on multicast).
pub const ME: u64 = 0x6d65_6d65_6d65_6d65;
/// The senders of built messages: three peers and this node.
const SENDERS: [u64; 4] = [1, 0x1234_5678_9abc_def0, u64::MAX, ME];
/// The clock of the messages and the backup, Unix milliseconds.
pub const EPOCH_MS: u64 = 1_760_000_000_000;
/// The backup's largest clock difference.
const SKEW_MS: u64 = 30_000;
/// Sync ids a backup wants or a message carries (0: any).
const SYNCIDS: [u8; 4] = [0, 1, 2, 255];

fn auth(key: &[u8]) -> &'static Auth {
    static A: OnceLock<(Auth, Auth)> = OnceLock::new();
    let (a, b) = A.get_or_init(|| (Auth::new(KEY).expect("a key"), Auth::new(OTHER_KEY).expect("a key")));
    if key == KEY {
        a
    } else {
        b
    }
}

const V4: [[u8; 4]; 12] = [
    [10, 0, 0, 2],
    [192, 0, 2, 10],
    [198, 51, 100, 0],
    [10, 0, 0, 100], // VIPs
    [10, 0, 0, 101],
    [10, 0, 1, 1], // real servers
    [10, 0, 1, 2],
    [10, 0, 1, 3],
    [10, 0, 1, 4],
    [10, 0, 1, 200], // FULLNAT local addresses
    [10, 0, 1, 201],
    [0, 0, 0, 0],
];

const V6: [[u16; 8]; 9] = [
    [0x2001, 0xdb8, 0, 0, 0, 0, 0, 2],
    [0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0],
    [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100],
    [0x2001, 0xdb8, 1, 0, 0, 0, 0, 1],
    [0x2001, 0xdb8, 1, 0, 0, 0, 0, 2],
    [0x2001, 0xdb8, 1, 0, 0, 0, 0, 3],
    [0x2001, 0xdb8, 1, 0, 0, 0, 0, 4],
    [0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x200],
    [0, 0, 0, 0, 0, 0, 0, 0],
];

/// An address of the family: one of the lab's mostly (`hint` picks the
/// role: 0 client, 1 VIP, 2 real server, 3 local address), any at times.
fn addr(r: &mut Bytes<'_>, v6: bool, hint: usize) -> IpAddr {
    let b = r.u8();
    if v6 {
        let i = match hint {
            0 => [0, 1][b as usize % 2],
            1 => 2,
            2 => 3 + b as usize % 4,
            _ => 7,
        };
        let i = if b >= 0xf0 { b as usize % V6.len() } else { i };
        let w = V6[i];
        IpAddr::V6(Ipv6Addr::new(w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7] | if b & 0x40 != 0 { b as u16 & 0xf } else { 0 }))
    } else {
        let i = match hint {
            0 => b as usize % 3,
            1 => 3 + b as usize % 2,
            2 => 5 + b as usize % 4,
            _ => 9 + b as usize % 2,
        };
        let i = if b >= 0xf0 { b as usize % V4.len() } else { i };
        let mut a = V4[i];
        if hint == 0 {
            a[3] = a[3].wrapping_add(b & 0x0f);
        }
        IpAddr::V4(Ipv4Addr::from(a))
    }
}

fn port(r: &mut Bytes<'_>) -> u16 {
    match r.u8() % 8 {
        0 => r.u16(),
        1 => 0,
        2 => 443,
        3 => 53,
        4 => 8080,
        5 => 8443,
        _ => 80,
    }
}

/// A connection of the director's services (or near one), as a master
/// would send it.
fn conn(r: &mut Bytes<'_>) -> SyncConn {
    let v6 = r.bool();
    let kind = r.u8();
    let (proto, template) = match kind % 8 {
        0..=3 => (6, false),
        4 | 5 => (17, false),
        6 => (TEMPLATE_BIT | [6, 17][(kind >> 4) as usize % 2], true),
        _ => (GROUP_TEMPLATE, true),
    };
    let fwd = r.pick(&[FwdMethod::Dr, FwdMethod::Tun, FwdMethod::Nat, FwdMethod::FullNat]);
    let state = match proto {
        6 => r.u8() % 12,
        _ => 0,
    };
    let timeout = match r.u8() % 4 {
        0 => r.u32(),
        1 => 0,
        2 => 300,
        _ => 900,
    };
    SyncConn {
        caddr: addr(r, v6, 0),
        vaddr: addr(r, v6, 1),
        daddr: addr(r, v6, 2),
        laddr: addr(r, v6, 3),
        cport: r.u16(),
        vport: port(r),
        dport: port(r),
        lport: r.u16() | 1024,
        proto,
        state,
        fwd,
        template,
        inactive: r.bool(),
        timeout,
        seqadj: None,
    }
}

/// A record: a connection's, now and then with options xvs does not
/// write or other fields bent.
fn record(r: &mut Bytes<'_>) -> Record {
    let mut rec = conn(r).to_record();
    match r.u8() % 16 {
        0 => rec.seq = Some((Seq { init_seq: r.u32(), delta: r.u32(), previous_delta: 0 }, Seq::default())),
        1 => {
            let n = 1 + r.u8() as usize % 8;
            rec.pe_data = Some(r.take(n).iter().copied().collect());
        }
        2 => rec.pe_name = Some(b"sip".iter().copied().collect()),
        3 => rec.flags ^= 1 << (r.u8() % 16),
        4 => rec.state = r.u16(),
        5 => rec.proto = r.u8(),
        6 => rec.xvs = None,
        7 => rec.fwmark = r.u32(),
        8 => {
            // A sequence adjustment, sound or not (the decoder refuses
            // what cannot be: `wire::seqadj_fits`).
            let len = [0, 28, 42, r.u16()][r.u8() as usize % 4];
            let e = SeqAdj { start: r.u32(), out_delta: r.u32(), len, proxy: r.u8() % 4, acked: r.bool(), syn: r.u8() % 4, opts: r.u8(), win_shift: r.u8() as i8 };
            rec.xvs.get_or_insert(XvsOpt::default()).seqadj = Some(e);
        }
        _ => {}
    }
    if rec.pe_data.as_ref().is_some_and(|d| d.is_empty()) {
        rec.pe_data = None;
    }
    rec
}

/// The backup: its checks' state, its worker and what was taken.
struct Backup {
    auth: Option<&'static Auth>,
    want: u8,
    window: ReplayWindow,
    now: u64,
    decoded: Decoded,
    w: Worker,
    link: Arc<Link>,
    port: SyncPort,
    /// Signed ranges of the messages the harness signed with the key.
    signed: HashSet<Vec<u8>>,
    /// (sender, counter) of messages taken with a key.
    taken: HashSet<(u64, u64)>,
    /// Counter for the next built message of each sender.
    seq: [u64; 4],
    /// Records handed to the worker.
    handed: u64,
    /// Messages taken (data for the worker).
    data: u64,
}

impl Backup {
    fn new(auth: bool, want: u8) -> Backup {
        let link = Arc::new(Link::default());
        Backup {
            auth: auth.then(|| self::auth(KEY)),
            want,
            window: ReplayWindow::new(SKEW_MS),
            now: SEC,
            decoded: Decoded::default(),
            w: Worker::new(0, 1, super::frames::snapshot(), SEC),
            port: SyncPort::new(link.clone()),
            link,
            signed: HashSet::new(),
            taken: HashSet::new(),
            seq: [0; 4],
            handed: 0,
            data: 0,
        }
    }

    fn now_ms(&self) -> u64 {
        EPOCH_MS + self.now / 1_000_000
    }

    /// One datagram, as the backup daemon takes it.
    fn take(&mut self, msg: &[u8]) {
        let mut d = std::mem::take(&mut self.decoded);
        let now_ms = self.now_ms();
        let v = admit(msg, &mut d, self.auth, &mut self.window, now_ms, ME, self.want);
        match v {
            Admit::Malformed(e) => {
                assert!(d.records.is_empty() && d.trailer.is_none(), "a refused message left {d:?}");
                assert_eq!(wire::decode(msg, &mut Decoded::default()), Err(e), "the decoder changed its mind");
            }
            _ => round_trip(msg, &d),
        }
        if let Some(t) = d.trailer.filter(|_| self.auth.is_some() && !matches!(v, Admit::Malformed(_) | Admit::Auth)) {
            // Past the MAC: signed by us with this key, its bytes unchanged.
            assert_eq!(d.signed + MAC_LEN, msg.len(), "the MAC does not cover the whole message");
            assert!(self.signed.contains(&msg[..d.signed]), "a message nobody signed passed the MAC check: {msg:02x?}");
            if !matches!(v, Admit::Replay | Admit::Skew) {
                assert!(self.taken.insert((t.sender, t.seq)), "sender {:x} counter {} taken twice", t.sender, t.seq);
                assert!(t.time_ms.abs_diff(self.now_ms()) <= SKEW_MS, "a message {} ms off taken", t.time_ms.abs_diff(self.now_ms()));
            }
        }
        if v == Admit::Own {
            assert_eq!(d.trailer.map(|t| t.sender), Some(ME));
        }
        let before = self.w.conns();
        let (added, updated) = (self.count(|l| &l.added), self.count(|l| &l.updated));
        let refused = self.refused();
        let mut handed = 0;
        if v == Admit::Data {
            self.data += 1;
            assert!(self.want == 0 || d.syncid == self.want, "sync id {} taken by a backup of {}", d.syncid, self.want);
            assert!(d.trailer.map_or(true, |t| t.kind == Kind::Data && t.sender != ME));
            for rec in d.records.iter().flatten() {
                let Some(sc) = SyncConn::from_record(rec) else {
                    let tpl = rec.flags & wire::flags::TEMPLATE != 0 && !matches!(rec.proto, 0 | 6 | 17);
                    assert!(rec.pe_data.is_some() || rec.pe_name.is_some() || tpl, "a plain record refused: {rec:?}");
                    continue;
                };
                let again = SyncConn::from_record(&sc.to_record());
                assert_eq!(again, Some(sc), "a received connection does not re-encode to itself: {rec:?}");
                assert_eq!(crate::worker::sync_owner(self.w.snapshot(), 1, &sc), 0);
                if self.link.inbox.push(sc).is_ok() {
                    handed += 1;
                }
            }
            while !self.link.inbox.is_empty() {
                self.port.serve(&mut self.w);
            }
        }
        self.handed += handed;
        let added = self.count(|l| &l.added) - added;
        let updated = self.count(|l| &l.updated) - updated;
        let refused = self.refused() - refused;
        assert_eq!(added + updated + refused, handed, "records handed on and counted differ");
        assert_eq!(self.w.conns(), before + added as usize, "the table grew by {} for {added} added", self.w.conns() as i64 - before as i64);
        self.decoded = d;
    }

    fn count(&self, f: impl Fn(&crate::sync::link::LinkStats) -> &std::sync::atomic::AtomicU64) -> u64 {
        f(&self.link.stats).load(Ordering::Relaxed)
    }

    fn refused(&self) -> u64 {
        self.link.stats.refused.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// A message from fields (see the module docs).
    fn build(&mut self, r: &mut Bytes<'_>) -> Vec<u8> {
        let syncid = r.pick(&SYNCIDS);
        let n = r.u8() % 8;
        let shape = r.u8();
        let mut b = MsgBuilder::new(syncid, if shape & 0x80 != 0 { 1472 } else { MAX_MESSAGE });
        let trailer = shape & 3 != 0;
        let mac = trailer && shape & 4 != 0;
        let reserve = if trailer { TRAILER_LEN + if mac { MAC_LEN } else { 0 } } else { 0 };
        for _ in 0..n {
            let rec = record(r);
            if !matches!(b.push(&rec, reserve), Ok(true)) {
                break;
            }
        }
        let t = trailer.then(|| {
            let s = r.u8() as usize % 4;
            let kind = match shape & 3 {
                1 => Kind::Data,
                2 => Kind::Hello,
                _ => r.pick(&[Kind::Data, Kind::BulkRequest, Kind::BulkEnd]),
            };
            let seq = match r.u8() % 8 {
                0 => self.seq[s].saturating_sub(r.u8() as u64 % 70),
                1 => r.u32() as u64,
                _ => self.seq[s] + 1,
            };
            self.seq[s] = self.seq[s].max(seq);
            let time_ms = match r.u8() % 8 {
                0 => self.now_ms().wrapping_add((r.u32() as u64).wrapping_mul(16)),
                1 => self.now_ms().wrapping_sub(SKEW_MS + 1),
                _ => self.now_ms(),
            };
            Trailer { kind, bulk_port: r.pick(&[0, 8849]), sender: SENDERS[s], seq, time_ms, total: r.u8() as u32 }
        });
        let msg = b.finish(t.as_ref(), mac);
        if mac {
            let key = if r.u8() % 8 == 0 { OTHER_KEY } else { KEY };
            let m = auth(key).sign(wire::sign_range(msg));
            wire::put_mac(msg, &m);
            if key == KEY {
                self.signed.insert(wire::sign_range(msg).to_vec());
            }
        }
        let mut msg = msg.to_vec();
        // Bent now and then (a quarter of the messages, 1-3 bytes).
        let bend = r.u8();
        let flips = if bend & 3 == 0 { 1 + (bend >> 2) % 3 } else { 0 };
        for _ in 0..flips {
            let at = r.u16() as usize;
            let x = r.u8();
            if !msg.is_empty() {
                let i = at % msg.len();
                msg[i] ^= x.max(1);
            }
        }
        msg
    }

    /// The clock runs far ahead until every entry has expired (a synced
    /// one may hold up to `MAX_TIMEOUT`, 31 days); then nothing may be
    /// left held.
    fn drain(&mut self) {
        for _ in 0..(crate::worker::MAX_TIMEOUT as usize / 3600 + 2) {
            if self.w.conns() == 0 {
                break;
            }
            self.now = self.now.saturating_add(3600 * SEC);
            self.w.set_clock(self.now);
            while self.w.expire(1 << 20) > 0 {}
        }
        assert_eq!(self.w.conns(), 0, "synced connections left after every timeout passed");
        for (i, l) in self.w.loads().iter().enumerate() {
            assert_eq!((l.active, l.inactive, l.persist), (0, 0, 0), "dest {i} still has load {l:?} with no connection left");
        }
        for s in &self.w.snapshot().services {
            for a in &s.laddrs {
                assert_eq!(self.w.laddr_in_use(*a), 0, "local ports of {a} still in use with no connection left");
            }
        }
    }
}

/// decode → encode → decode: the same message, for one whose records
/// all decode (a refused record's fields are not kept).
fn round_trip(msg: &[u8], d: &Decoded) {
    let Some(recs) = d.records.iter().map(|r| r.as_ref().ok()).collect::<Option<Vec<&Record>>>() else { return };
    let mut b = MsgBuilder::new(d.syncid, MAX_MESSAGE);
    let reserve = if d.trailer.is_some() { TRAILER_LEN + if d.mac.is_some() { MAC_LEN } else { 0 } } else { 0 };
    for r in &recs {
        assert_eq!(b.push(r, reserve), Ok(true), "a decoded record does not encode again: {r:?} of {msg:02x?}");
    }
    let out = b.finish(d.trailer.as_ref(), d.mac.is_some());
    if let Some(m) = &d.mac {
        wire::put_mac(out, m);
    }
    assert!(out.len() <= msg.len(), "{} bytes re-encoded from {}", out.len(), msg.len());
    let mut d2 = Decoded::default();
    assert_eq!(wire::decode(out, &mut d2), Ok(()), "a re-encoded message does not decode: {out:02x?} from {msg:02x?}");
    assert_eq!(d2.syncid, d.syncid);
    assert_eq!(d2.records, d.records, "records changed by a round trip of {msg:02x?}");
    assert_eq!(d2.trailer, d.trailer, "trailer changed by a round trip of {msg:02x?}");
    assert_eq!(d2.mac, d.mac);
}

/// Runs the fuzzer's bytes through a backup. Panics when an invariant
/// breaks (see the module docs).
pub fn run(data: &[u8]) {
    let mut r = Bytes::new(data);
    let cfg = r.u8();
    let mut b = Backup::new(cfg & 1 != 0, SYNCIDS[(cfg >> 1) as usize % 4]);
    let mut ops = 0;
    while !r.is_empty() && ops < 64 {
        ops += 1;
        match r.u8() % 8 {
            0..=2 => {
                let n = r.u16() as usize;
                let m = r.take(n).to_vec();
                b.take(&m);
            }
            3..=6 => {
                let m = b.build(&mut r);
                b.take(&m);
            }
            _ => {
                b.now = b.now.saturating_add(r.u16() as u64 * SEC / 8);
                b.w.set_clock(b.now);
                while b.w.expire(1 << 20) > 0 {}
            }
        }
    }
    b.drain();
}

/// Encodes messages the way [`run`]'s raw operation reads them (seed
/// corpora): `cfg`, then each message.
pub fn encode_raw(cfg: u8, msgs: &[Vec<u8>]) -> Vec<u8> {
    let mut v = vec![cfg];
    for m in msgs {
        v.push(0);
        v.extend_from_slice(&(m.len() as u16).to_be_bytes());
        v.extend_from_slice(m);
    }
    v
}

/// A connection of the fuzzing director's, as the tshark check's mix
/// (`tests/sync_wire.rs`) makes them: DR, TUN, NAT and FULLNAT, TCP in
/// several states, UDP, a persistence template and a group template.
fn seed_conn(i: usize, v6: bool, fullnat: bool) -> SyncConn {
    let ip = |s: &str| -> IpAddr { s.parse().expect("an address") };
    let (c, v, l) = if v6 {
        (ip(&format!("2001:db8::{:x}", 0x20 + i)), ip("2001:db8::100"), ip("2001:db8:1::200"))
    } else {
        (ip(&format!("192.0.2.{}", 10 + i)), ip("10.0.0.100"), ip("10.0.1.200"))
    };
    let fwd = if fullnat { FwdMethod::FullNat } else { [FwdMethod::Dr, FwdMethod::Tun, FwdMethod::Nat][i % 3] };
    let rs = if fullnat { 4 } else { 1 + i % 3 };
    let d = if v6 { ip(&format!("2001:db8:1::{rs}")) } else { ip(&format!("10.0.1.{rs}")) };
    let unspec = if v6 { ip("::") } else { ip("0.0.0.0") };
    let mut sc = SyncConn {
        caddr: c,
        vaddr: v,
        daddr: d,
        laddr: if fullnat { l } else { unspec },
        cport: 40000 + i as u16,
        vport: 80,
        dport: if fwd == FwdMethod::Nat || fullnat { 8080 } else { 80 },
        lport: if fullnat { 1024 + i as u16 } else { 0 },
        proto: 6,
        state: [3, 2, 4, 6, 7][i % 5],
        fwd,
        template: false,
        inactive: i % 5 != 0,
        timeout: 900,
        seqadj: None,
    };
    match i % 5 {
        1 if !fullnat => {
            sc.proto = 17;
            sc.state = 0;
            sc.vport = 53;
            sc.dport = 53;
        }
        3 if !fullnat => {
            sc.template = true;
            sc.proto = TEMPLATE_BIT | 6;
            sc.cport = 0;
            sc.vport = 443;
            sc.daddr = if v6 { ip("2001:db8:1::3") } else { ip("10.0.1.3") };
            sc.dport = 8443;
            sc.timeout = 300;
        }
        4 if !fullnat => {
            sc.template = true;
            sc.proto = GROUP_TEMPLATE;
            sc.vaddr = unspec;
            sc.cport = 0;
            sc.vport = 7;
        }
        _ => {}
    }
    sc
}

/// One message of `conns` with a trailer of `kind` (none for `None`),
/// signed with `key` when given.
fn seed_message(conns: &[SyncConn], syncid: u8, kind: Option<Kind>, key: Option<&[u8]>, seq: u64) -> Vec<u8> {
    let mut b = MsgBuilder::new(syncid, 1472);
    for c in conns {
        assert_eq!(b.push(&c.to_record(), TRAILER_LEN + MAC_LEN), Ok(true), "a seed fits");
    }
    let t = kind.map(|kind| Trailer { kind, bulk_port: 8849, sender: SENDERS[0], seq, time_ms: EPOCH_MS, total: conns.len() as u32 });
    let m = b.finish(t.as_ref(), key.is_some());
    if let Some(k) = key {
        let mac = auth(k).sign(wire::sign_range(m));
        wire::put_mac(m, &mac);
    }
    m.to_vec()
}

/// The sync target's seeds: messages of every kind the codec writes (raw
/// operations; signed ones with another cluster's key, so that a backup
/// with authentication refuses them), and generated programs.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    let mix = |v6: bool, fullnat: bool| (0..5).map(|i| seed_conn(i, v6, fullnat)).collect::<Vec<_>>();
    for (name, v6, fullnat) in [("v4", false, false), ("v6", true, false), ("v4-fullnat", false, true), ("v6-fullnat", true, true)] {
        let cs = mix(v6, fullnat);
        // No trailer (a kernel's message), a data trailer, signed.
        v.push((format!("{name}-kernel"), encode_raw(0, &[seed_message(&cs, 0, None, None, 0)])));
        v.push((format!("{name}-trailer"), encode_raw(0, &[seed_message(&cs, 0, Some(Kind::Data), None, 1)])));
        v.push((format!("{name}-signed"), encode_raw(0, &[seed_message(&cs, 0, Some(Kind::Data), Some(OTHER_KEY), 2)])));
        // One record of each kind alone.
        for (i, c) in cs.iter().enumerate() {
            v.push((format!("{name}-record-{i}"), encode_raw(0, &[seed_message(std::slice::from_ref(c), 0, None, None, 0)])));
        }
    }
    let cs = mix(false, false);
    v.push(("syncid".into(), encode_raw(2, &[seed_message(&cs, 1, None, None, 0), seed_message(&cs, 2, None, None, 0)])));
    v.push(("auth-refused".into(), encode_raw(1, &[seed_message(&cs, 0, Some(Kind::Data), Some(OTHER_KEY), 3), seed_message(&cs, 0, None, None, 0)])));
    v.push((
        "hello-bulk".into(),
        encode_raw(
            0,
            &[seed_message(&[], 0, Some(Kind::Hello), None, 4), seed_message(&[], 0, Some(Kind::BulkRequest), None, 5), seed_message(&cs, 0, Some(Kind::BulkEnd), None, 6)],
        ),
    ));
    // Built messages (operations 3-6), with and without a key.
    for i in 0..8u8 {
        let mut g = vec![i % 2, 3 + i % 4, i, 2, 0x05 | (i & 0x80)];
        let mut x = 0x9e37_79b9u32.wrapping_mul(i as u32 + 1);
        for _ in 0..96 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            g.push(x as u8);
        }
        v.push((format!("built-{i}"), g));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn added(b: &Backup) -> u64 {
        b.count(|l| &l.added)
    }

    /// The harness reaches the worker: the seeds' connections are taken
    /// (not all refused as unknown), in both families and FULLNAT.
    #[test]
    fn the_seed_messages_land_in_the_worker() {
        for (v6, fullnat) in [(false, false), (true, false), (false, true), (true, true)] {
            let cs: Vec<SyncConn> = (0..5).map(|i| seed_conn(i, v6, fullnat)).collect();
            let mut b = Backup::new(false, 0);
            b.take(&seed_message(&cs, 0, Some(Kind::Data), None, 1));
            // Refused: the group template (no fwmark service here); in
            // IPv6 the persistence template too (no persistent service).
            let want = match (v6, fullnat) {
                (_, true) => 5,
                (false, false) => 4,
                // and the UDP one (its real server serves only IPv4 UDP).
                (true, false) => 2,
            };
            let n = added(&b);
            assert_eq!(n, want, "v6 {v6} fullnat {fullnat}: {n} added, refused {:?}", b.link.stats.refused);
            assert_eq!(b.w.conns(), want as usize);
            // Again: updates, not new entries.
            b.take(&seed_message(&cs, 0, None, None, 0));
            assert_eq!((added(&b), b.count(|l| &l.updated), b.w.conns()), (want, want, want as usize));
            b.drain();
        }
    }

    /// With a key: another cluster's signature and no signature are
    /// refused, ours is taken once, its replay is refused.
    #[test]
    fn with_a_key_only_our_fresh_signature_is_taken() {
        let cs: Vec<SyncConn> = (0..5).map(|i| seed_conn(i, false, false)).collect();
        let mut b = Backup::new(true, 0);
        b.take(&seed_message(&cs, 0, Some(Kind::Data), Some(OTHER_KEY), 1));
        b.take(&seed_message(&cs, 0, Some(Kind::Data), None, 2));
        b.take(&seed_message(&cs, 0, None, None, 0));
        assert_eq!(b.w.conns(), 0);
        let mine = seed_message(&cs, 0, Some(Kind::Data), Some(KEY), 3);
        b.signed.insert(wire::sign_range(&mine).to_vec());
        b.take(&mine);
        assert_eq!(b.w.conns(), 4);
        let mut d = Decoded::default();
        let now = b.now_ms();
        let v = admit(&mine, &mut d, b.auth, &mut b.window, now, ME, 0);
        assert_eq!(v, Admit::Replay);
        b.drain();
    }

    /// A backup of sync id 2 takes only sync id 2 (and any with 0).
    #[test]
    fn the_sync_id_filters() {
        let cs: Vec<SyncConn> = (0..5).map(|i| seed_conn(i, true, false)).collect();
        let mut b = Backup::new(false, 2);
        b.take(&seed_message(&cs, 1, None, None, 0));
        assert_eq!(b.w.conns(), 0);
        b.take(&seed_message(&cs, 2, None, None, 0));
        assert_eq!(b.w.conns(), 2);
        b.drain();
    }

    /// Built messages (the structured operations) are decodable and
    /// taken now and then, with and without a key.
    #[test]
    fn built_messages_reach_the_worker() {
        for auth in [false, true] {
            let mut b = Backup::new(auth, 0);
            let mut x = 0x2545_f491u32;
            let data: Vec<u8> = (0..4096)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let mut r = Bytes::new(&data);
            for _ in 0..200 {
                let m = b.build(&mut r);
                b.take(&m);
            }
            assert!(b.data > 0, "auth {auth}: no built message was taken");
            assert!(b.handed > 0, "auth {auth}: no built record was handed on");
            b.drain();
        }
    }
}
