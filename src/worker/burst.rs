//! The burst's first stages: parse every frame, hash its connection key
//! and prefetch, before any frame is processed.
//!
//! A connection lookup in a big table misses the cache twice (index
//! bucket, then connection), about 80 ns each here; one frame after
//! another, a burst would pay them one after another. Hashing the whole
//! burst first and prefetching the buckets, then (once they have arrived)
//! the connections they point at, overlaps the misses of the burst's 32
//! frames; the processing stage then finds both lines in the cache.
//! Prefetches are hints: what this stage computes is only the parse
//! result, the key and its hash, which the processing stage would compute
//! anyway.

use super::{Tables, Verdict, Worker, BURST};
use crate::ipvs::conn::{Key, NO_CANDIDATE};
use crate::wire::{parse_checked, parse_fast_v4, proto, Frame, Ip, Meta, Reject};
use std::net::Ipv4Addr;

/// A frame's parse result and, for TCP/UDP, the hash of its key in its
/// family's table (0 otherwise).
#[derive(Clone, Copy, Debug)]
pub(super) struct Prepared {
    pub meta: Result<Meta, Reject>,
    pub hash: u64,
    /// Which table the hash is for: [`NO_TABLE`], [`V4`] or [`V6`].
    pub table: u8,
    /// For [`V4`]: the connection key, which the processing stage takes
    /// from here instead of building it again from the frame and the
    /// parse result. Built again, its ports were read 4 bytes at once out
    /// of the parse result's fresh copy on the stack, across the middle
    /// of the 16-byte store that made the copy: a load store forwarding
    /// cannot serve, which waited for the store to reach the cache on
    /// every packet (`perf`: the burst's hottest instruction). Taken from
    /// here, every replay scenario ran 1–7 % faster (est-dr-64k 2.5 %,
    /// est-nat-1m 7 %; docs/performance.md, 2026-12-06).
    pub key4: Key<Ipv4Addr>,
    /// The first value of the key's home bucket whose tag matches, found
    /// by the second stage ([`NO_CANDIDATE`]: none, or no second stage):
    /// [`ConnTable::lookup_candidate`](crate::ipvs::conn::ConnTable::lookup_candidate).
    pub cand: u32,
}

pub(super) const NO_TABLE: u8 = 0;
pub(super) const V4: u8 = 4;
pub(super) const V6: u8 = 6;

impl Prepared {
    const NONE: Prepared = Prepared {
        meta: Err(Reject::Drop(crate::stats::DropReason::Truncated)),
        hash: 0,
        table: NO_TABLE,
        key4: Key { saddr: Ipv4Addr::UNSPECIFIED, daddr: Ipv4Addr::UNSPECIFIED, sport: 0, dport: 0, proto: 0 },
        cand: NO_CANDIDATE,
    };
}

/// The key of a parsed TCP/UDP frame.
#[inline(always)]
pub(super) fn key_of<A: Ip>(f: &[u8], m: &Meta) -> Key<A> {
    Key { saddr: A::src(f, m), daddr: A::dst(f, m), sport: m.sport, dport: m.dport, proto: m.proto }
}

/// [`Prepared`] for a parsed IPv4 TCP/UDP frame `m`.
#[inline(always)]
fn prepared_v4(tables: &mut Tables, f: &[u8], m: Meta) -> Prepared {
    let key4 = key_of(f, &m);
    Prepared { meta: Ok(m), hash: tables.v4.hash(&key4), table: V4, key4, ..Prepared::NONE }
}

/// Parses the frame, checks its L2 (a frame the kernel would not take
/// becomes a reject here: [`Worker::not_for_us`]) and hashes its key (no
/// prefetch).
///
/// The common frame (the parser's fast path: untagged IPv4, TCP or UDP)
/// to its port's MAC is known to be a V4 frame to hash as soon as the
/// MAC is compared: it skips the tests of the general way ([`prepare_any`]),
/// which gives it the same result.
#[inline(always)]
pub(super) fn prepare(w: &mut Worker, fr: &Frame<'_>) -> Prepared {
    let f = fr.data();
    let fast = if w.nic_port[fr.port as usize] { parse_fast_v4::<false>(f) } else { parse_fast_v4::<true>(f) };
    if let Some(m) = fast {
        // Untagged, to its port's MAC — read as one 8-byte load (a parsed
        // frame is longer) shifted up over the two bytes after the MAC
        // (the port's entry has the tag flag, clear, in the freed low bits).
        if f.first_chunk::<8>().is_some_and(|h| u64::from_le_bytes(*h) << 16 == w.port_mac[fr.port as usize]) {
            return prepared_v4(&mut w.tables, f, m);
        }
        return prepare_any(w, fr, Ok(m));
    }
    prepare_any(w, fr, parse_checked(f))
}

/// [`prepare`] for any frame and its parse result `meta`.
#[inline(always)]
fn prepare_any(w: &mut Worker, fr: &Frame<'_>, mut meta: Result<Meta, Reject>) -> Prepared {
    let f = fr.data();
    if let Ok(m) = &meta {
        // The common frame: untagged, to its port's MAC — read as one
        // 8-byte load (a parsed frame is longer) shifted up over the two
        // bytes after the MAC; the tag flag goes in the freed low bits,
        // so that one compare answers both.
        let plain = f.first_chunk::<8>().is_some_and(|h| (u64::from_le_bytes(*h) << 16) | u64::from(m.vlan) == w.port_mac[fr.port as usize]);
        if !plain {
            if let Some(r) = w.not_for_us(fr, m) {
                meta = Err(r);
            }
        }
    }
    let tables = &mut w.tables;
    match meta {
        Ok(m) if m.proto == proto::TCP || m.proto == proto::UDP => {
            if m.v6 {
                Prepared { meta, hash: tables.v6.hash(&key_of(f, &m)), table: V6, ..Prepared::NONE }
            } else {
                prepared_v4(tables, f, m)
            }
        }
        _ => Prepared { meta, ..Prepared::NONE },
    }
}

/// How many frames behind the one being prepared the connections are
/// prefetched: the bucket that names them was prefetched that many frames
/// earlier, long enough for a miss to memory to complete before stage 2
/// reads the bucket (a demand load: a bucket not there yet stalls it).
/// The first stage got cheaper (the parser's fast path) and 12 frames of
/// it no longer covered a miss to memory: 24 made est-dr-1m 12 % faster,
/// every other scenario 2–6 % (docs/performance.md, 2026-12-06); 8 made
/// est-dr-1m 7 % slower. The last `CONN_BEHIND` frames' connections are
/// asked for when the burst's first stage ends, ahead of their turn in
/// the second.
const CONN_BEHIND: usize = 24;

impl Worker {
    /// Prefetches the connections frame `p`'s bucket points at, and
    /// notes the first in `p.cand`.
    #[inline(always)]
    fn prefetch_conns(&self, p: &mut Prepared) {
        p.cand = match p.table {
            V4 => self.tables.v4.prefetch_conn(p.hash),
            V6 => self.tables.v6.prefetch_conn(p.hash),
            _ => NO_CANDIDATE,
        };
    }

    /// The prefetches of both stages in the arrays being drained of
    /// growing indexes (after the current arrays': a hint, later).
    #[cold]
    #[inline(never)]
    fn prefetch_old(&self, pre: &[Prepared]) {
        for p in pre {
            match p.table {
                V4 => self.tables.v4.prefetch_old(p.hash),
                V6 => self.tables.v6.prefetch_old(p.hash),
                _ => {}
            }
        }
    }

    /// Runs up to [`BURST`] frames: prepare them all, prefetching each
    /// one's index bucket and, [`CONN_BEHIND`] frames later, the
    /// connections that bucket names; then process each in order.
    #[inline]
    pub(super) fn run_burst(&mut self, frames: &mut [Frame<'_>], verdicts: &mut [Verdict]) {
        let n = frames.len().min(verdicts.len()).min(BURST);
        let mut pre = [Prepared::NONE; BURST];
        for (i, fr) in frames.iter().take(n).enumerate() {
            pre[i] = prepare(self, fr);
            let (hash, table) = (pre[i].hash, pre[i].table);
            match table {
                V4 => self.tables.v4.prefetch(hash),
                V6 => self.tables.v6.prefetch(hash),
                _ => {}
            }
            if i >= CONN_BEHIND {
                self.prefetch_conns(&mut pre[i - CONN_BEHIND]);
            }
        }
        for p in pre.iter_mut().take(n).skip(n.saturating_sub(CONN_BEHIND)) {
            self.prefetch_conns(p);
        }
        self.tables.v4.seal();
        self.tables.v6.seal();
        // One test per burst, not per frame, for a growing index.
        if self.tables.v4.draining() || self.tables.v6.draining() {
            self.prefetch_old(&pre[..n]);
        }
        for ((fr, v), p) in frames
            .iter_mut()
            .zip(verdicts.iter_mut())
            .zip(pre.iter())
            .take(n)
        {
            *v = self.process_prepared(fr, p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::config::load_str;
    use crate::ctl::snapshot::Snapshot;
    use crate::gen::packet::*;
    use crate::gen::traffic::Topology;
    use crate::ipvs::FwdMethod;
    use crate::wire::frame::HEADROOM;
    use crate::wire::tcp_flags::*;
    use std::sync::Arc;

    const CIP: [u8; 4] = [192, 0, 2, 1];
    const VIP: [u8; 4] = [10, 0, 0, 100];
    const RS1: [u8; 4] = [10, 0, 1, 1];

    /// Runs `frames` through `one` a frame at a time and through `burst`
    /// as one burst, both at the same clock, and asserts that every frame
    /// gets the same verdict and bytes both ways (`what` names the case in
    /// a failure). Returns the burst's verdicts.
    fn same_as_one_by_one(one: &mut Worker, burst: &mut Worker, frames: &[Vec<u8>], what: &str) -> Vec<Verdict> {
        let mut bufs: Vec<Vec<u8>> = frames
            .iter()
            .map(|f| {
                let mut b = vec![0u8; HEADROOM + f.len() + 64];
                b[HEADROOM..HEADROOM + f.len()].copy_from_slice(f);
                b
            })
            .collect();
        let mut singles = Vec::new();
        for (f, b) in frames.iter().zip(bufs.clone().iter_mut()) {
            let mut fr = Frame::new(b, HEADROOM, f.len());
            one.set_clock(1_000_000_000);
            let v = one.process(&mut fr);
            singles.push((v, fr.data().to_vec()));
        }
        let mut fr: Vec<Frame<'_>> = bufs
            .iter_mut()
            .zip(frames)
            .map(|(b, f)| Frame::new(b, HEADROOM, f.len()))
            .collect();
        let mut verdicts = vec![Verdict::Pass(crate::stats::PassReason::NonIp); fr.len()];
        burst.process_burst(&mut fr, &mut verdicts, 1_000_000_000);
        for (i, (f, v)) in fr.iter().zip(&verdicts).enumerate() {
            assert_eq!((*v, f.data().to_vec()), singles[i], "{what} frame {i}");
        }
        verdicts
    }

    /// A burst whose frames depend on each other (a SYN and the packets of
    /// its connection, which the first stage hashed before the connection
    /// existed), with other families and bad frames mixed in, gives the
    /// same verdicts and bytes as the same frames one at a time.
    #[test]
    fn a_burst_equals_its_frames_one_by_one() {
        let frames = vec![
            tcp4(CIP, 40000, VIP, 80, SYN, b""),
            tcp4(RS1, 8080, CIP, 40000, SYN | ACK, b""),
            tcp4(CIP, 40000, VIP, 80, ACK, b"x"),
            udp4(CIP, 5353, VIP, 53, b"q"),
            udp4(RS1, 8053, CIP, 5353, b"a"),
            tcp6(V6A, 1, V6B, 80, SYN, b""),
            icmp4_echo(CIP, VIP),
            vec![0u8; 10],
            tcp4(CIP, 40001, VIP, 80, SYN, b""),
            tcp4(CIP, 40000, VIP, 80, FIN | ACK, b""),
            tcp4(CIP, 40001, VIP, 80, ACK, b""),
        ];
        let model = load_str(&Topology::new(FwdMethod::Nat, 100).config_toml(), "test").unwrap();
        let snap = Arc::new(Snapshot::build(&model, None).unwrap());
        let mut one = Worker::new(0, 1, snap.clone(), 1_000_000_000);
        let mut burst = Worker::new(0, 1, snap, 1_000_000_000);
        let verdicts = same_as_one_by_one(&mut one, &mut burst, &frames, "one worker");
        assert!(
            matches!(verdicts[2], Verdict::Tx { .. }),
            "the ACK found the connection its burst created"
        );
        assert_eq!(one.counters().new_conns, burst.counters().new_conns);
        assert_eq!(burst.conns(), 3);
    }

    /// A connection the second stage read as a candidate ends mid-burst
    /// (a SYN on it once it is closed: IPVS's port reuse) and a new one,
    /// to the other real server, takes its key: the burst's later frames
    /// of the flow follow the new connection, as one at a time.
    #[test]
    fn a_candidate_that_ends_mid_burst_is_not_followed() {
        let m = crate::worker::tests::model(FwdMethod::Nat, "rr");
        let snap = Arc::new(Snapshot::build(&m, None).unwrap());
        let mut one = Worker::new(0, 1, snap.clone(), 1_000_000_000);
        let mut burst = Worker::new(0, 1, snap, 1_000_000_000);
        // Opened to rs1 (rr's first pick) and closed: TIME_WAIT.
        let setup = [
            tcp4(CIP, 40000, VIP, 80, SYN, b""),
            tcp4(RS1, 8080, CIP, 40000, SYN | ACK, b""),
            tcp4(CIP, 40000, VIP, 80, ACK, b""),
            tcp4(CIP, 40000, VIP, 80, FIN | ACK, b""),
            tcp4(RS1, 8080, CIP, 40000, FIN | ACK, b""),
            tcp4(CIP, 40000, VIP, 80, ACK, b""),
        ];
        same_as_one_by_one(&mut one, &mut burst, &setup, "set-up");
        let frames = [
            tcp4(CIP, 40000, VIP, 80, SYN, b""),
            tcp4(CIP, 40000, VIP, 80, ACK, b"x"),
            tcp4(CIP, 40000, VIP, 80, ACK, b"y"),
        ];
        let verdicts = same_as_one_by_one(&mut one, &mut burst, &frames, "reuse");
        assert_eq!(burst.counters().reused_conns, 1, "the SYN ended the closed connection");
        assert!(verdicts.iter().all(|v| matches!(v, Verdict::Tx { .. })), "{verdicts:?}");
        let mut probe = tcp4(CIP, 40000, VIP, 80, ACK, b"z");
        probe.splice(0..0, [0u8; HEADROOM]);
        let len = probe.len() - HEADROOM;
        let mut fr = Frame::new(&mut probe, HEADROOM, len);
        burst.process(&mut fr);
        assert_eq!(fr.data()[30..34], [10, 0, 1, 2], "the flow is rs2's now");
    }

    /// With two workers and persistence (so the shard prefix is the
    /// persistence netmask, /24), each worker gives a burst the same
    /// verdicts as the frames one at a time: the same flows handed off to
    /// the same owner, the same templates made and reused.
    #[test]
    fn bursts_keep_ownership_and_templates() {
        let mut frames = Vec::new();
        for (net, host) in [
            (1u8, 1u8),
            (1, 2),
            (2, 1),
            (3, 7),
            (1, 3),
            (2, 9),
            (4, 4),
            (3, 8),
        ] {
            let c = [192, 0, net, host];
            for port in [40000u16, 40001] {
                frames.push(tcp4(c, port, VIP, 80, SYN, b""));
                frames.push(tcp4(c, port, VIP, 80, ACK, b"x"));
            }
            frames.push(udp4(c, 5353, VIP, 53, b"q"));
        }
        let text = Topology::new(FwdMethod::Nat, 4).config_toml().replace(
            "scheduler = \"",
            "persistence = 60\npersistence_netmask = 24\nscheduler = \"",
        );
        let model = load_str(&text, "test").unwrap();
        let snap = Arc::new(Snapshot::build(&model, None).unwrap());
        assert_eq!(snap.shard_prefix.0, 24);
        let (mut handoffs, mut templates, mut conns) = (0, 0, 0);
        for id in 0..2u16 {
            let mut one = Worker::new(id, 2, snap.clone(), 1_000_000_000);
            let mut burst = Worker::new(id, 2, snap.clone(), 1_000_000_000);
            let verdicts = same_as_one_by_one(&mut one, &mut burst, &frames, &format!("worker {id}"));
            handoffs += verdicts.iter().filter(|v| matches!(v, Verdict::Handoff { .. })).count() as u32;
            let (a, b) = (one.counters(), burst.counters());
            assert_eq!(a.new_conns, b.new_conns);
            assert_eq!(a.templates_created, b.templates_created);
            assert_eq!(one.conns(), burst.conns());
            templates += b.templates_created;
            conns += b.new_conns;
        }
        // Every frame is handed off by exactly one of the two workers,
        // which made one template per /24 and service (4 × TCP, UDP) and
        // every connection (8 clients × 2 TCP ports + 8 UDP).
        assert_eq!(handoffs as usize, frames.len());
        assert_eq!(templates, 8);
        assert_eq!(conns, 24);
    }
}
