//! Connections and the per-worker connection table.
//!
//! A [`ConnTable`] is owned by one worker and touched by no one else: an
//! index from the packet's 5-tuple as seen on the wire to a slot in a slab
//! of [`Conn`]s, plus the expiry [`Wheel`]. A connection whose replies pass
//! through the director (NAT, FULLNAT) has two keys, one per direction, so
//! a reply finds its connection with the same single lookup as a client
//! packet:
//!
//! | method  | in key (client → VIP)      | out key (real server → ...)   |
//! |---------|----------------------------|-------------------------------|
//! | DR, TUN | caddr:cport → vaddr:vport  | —                             |
//! | NAT     | caddr:cport → vaddr:vport  | daddr:dport → caddr:cport     |
//! | FULLNAT | caddr:cport → vaddr:vport  | daddr:dport → laddr:lport     |
//!
//! The table is generic over the address family ([`Ip`]). It is bounded:
//! `insert` fails with [`DropReason::TableFull`] rather than grow past its
//! limit.
//!
//! # Layout, for speed and memory (docs/performance.md)
//!
//! - The index holds no keys: per key a 32-bit tag of its hash and a
//!   32-bit value (slab index and direction), seven to a 64-byte bucket.
//!   A tag match is confirmed against the connection, the cache line the
//!   packet needs next anyway. Two cache lines per lookup, both computable
//!   before they are needed: a burst hashes every key first
//!   ([`ConnTable::hash`]), prefetches the buckets
//!   ([`ConnTable::prefetch`]), then the candidate connections
//!   ([`ConnTable::prefetch_conn`]), so the misses of 32 packets overlap.
//! - A key's home bucket is the top bits of its tag, so the index grows
//!   by splitting buckets without reading a single connection.
//! - The slab grows by fixed chunks (no reallocation, no copy, at most one
//!   chunk unused) and an IPv4 [`Conn`] is exactly one cache line.
//! - Hashes are keyed by a random seed per table (flooding resistance).

use super::timer::{reached, Wheel, TICKS_PER_SEC};
use super::mem::{Block, HugeArray, Provider, Reserve, ReserveStats, Zeroable};
use super::FwdMethod;
use super::dest::Hop;
use crate::stats::{Dir, DropReason};
use crate::wire::Ip;
use std::hash::BuildHasher;
use crate::wire::pick;

/// Connection flags.
pub mod flags {
    /// Counted as inactive in its dest's load (not ESTABLISHED).
    pub const INACTIVE: u8 = 1;
    /// Replies bypass the director (DR/TUN): IPVS's `NOOUTPUT`.
    pub const NOOUTPUT: u8 = 2;
    /// A persistence template, not a connection.
    pub const TEMPLATE: u8 = 4;
    /// Unlinked from the map; the wheel frees it when it comes round.
    pub const DEAD: u8 = 8;
    /// Counted in its dest's load (bound to a dest).
    pub const BOUND: u8 = 16;
    /// Already released (its load, local port and count given back) by an
    /// early expiry: when the wheel comes round it is only freed.
    pub const RELEASED: u8 = 32;
    /// Retired ([`ConnTable::retire`](super::ConnTable::retire)): no longer
    /// counted in the table's length; the wheel only frees its slot.
    pub const RETIRED: u8 = 128;
    /// FULLNAT: its local port comes from the pool of its real server's
    /// every port (a real server that keeps the client's destination
    /// port), not of `dport` alone (`laddr::PoolKey`).
    pub const LPORT_ANY: u8 = 64;
}

/// A 5-tuple as seen on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key<A: Ip> {
    pub saddr: A,
    pub daddr: A,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

/// One connection (or persistence template). Cache-line aligned: an IPv4
/// connection is exactly one line (a test keeps it so), an IPv6 one two.
#[derive(Clone, Copy, Debug)]
#[repr(align(64))]
pub struct Conn<A: Ip> {
    /// Client.
    pub caddr: A,
    /// Virtual (service) address.
    pub vaddr: A,
    /// Real server.
    pub daddr: A,
    /// FULLNAT local address (unspecified otherwise).
    pub laddr: A,
    pub cport: u16,
    pub vport: u16,
    pub dport: u16,
    pub lport: u16,
    /// Expiry, in wheel ticks.
    pub expires: u32,
    /// uid of the dest it is bound to (0: none).
    pub dest_uid: u32,
    /// The dest's index in the snapshot of generation `snap_gen`.
    pub dest: u32,
    pub snap_gen: u32,
    /// For a connection: the template it was scheduled through (its slab
    /// index + 1; 0: none). For a template: how many connections it
    /// controls.
    pub control: u32,
    /// Next hops towards the real server and towards the client.
    pub dest_hop: Hop,
    pub client_hop: Hop,
    pub proto: u8,
    /// `TcpState as u8` for TCP; 0 otherwise.
    pub state: u8,
    pub fwd: FwdMethod,
    pub flags: u8,
    /// Connection sync: incoming packets until it is synced again (IPVS's
    /// sync_threshold / sync_period count; 0: not counting).
    pub sync_left: u8,
    /// Packets from the client, saturating (IPVS's `in_pkts`, which
    /// drop_entry reads: a connection with few is a likely flood entry).
    pub in_pkts: u8,
}

impl<A: Ip> Key<A> {
    /// The key of a real server's reply: from `rs` (address, port) to
    /// `to`, the client (NAT) or the local address (FULLNAT).
    #[inline]
    pub fn reply(rs: (A, u16), to: (A, u16), proto: u8) -> Key<A> {
        Key { saddr: rs.0, daddr: to.0, sport: rs.1, dport: to.1, proto }
    }
}

impl<A: Ip> Conn<A> {
    /// The key of client → VIP packets.
    #[inline]
    pub fn in_key(&self) -> Key<A> {
        Key { saddr: self.caddr, daddr: self.vaddr, sport: self.cport, dport: self.vport, proto: self.proto }
    }

    /// The key of reply packets, for methods whose replies we see.
    #[inline]
    pub fn out_key(&self) -> Option<Key<A>> {
        if self.flags & flags::TEMPLATE != 0 {
            return None;
        }
        match self.fwd {
            FwdMethod::Nat => Some(Key::reply((self.daddr, self.dport), (self.caddr, self.cport), self.proto)),
            FwdMethod::FullNat => Some(Key::reply((self.daddr, self.dport), (self.laddr, self.lport), self.proto)),
            FwdMethod::Dr | FwdMethod::Tun => None,
        }
    }

    #[inline]
    pub fn is_template(&self) -> bool {
        self.flags & flags::TEMPLATE != 0
    }
}

/// Hints the CPU to fetch the cache line holding `p`. A hint only: it
/// never faults, whatever the address.
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 does not access memory architecturally; any
    // address is allowed.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// 64x64 -> 128-bit multiply, halves folded: the mixing step of foldhash.
#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let r = (a as u128).wrapping_mul(b as u128);
    (r as u64) ^ ((r >> 64) as u64)
}

/// The keyed hash of a key: one multiply per 8 bytes of address pair, one
/// to bring in the ports and protocol. An IPv4 key costs two multiplies.
///
/// The ports are a multiply operand of their own rather than XORed into
/// the addresses: XORed, a NAT reply key's client port (bits 8..24) fell
/// on the client address's low bits, so 10 M flows from 100.64.0.0/10
/// made only about 16 M distinct products; equal hashes share a bucket and
/// a tag, and lookups had to read several connections.
#[inline]
fn hash_key<A: Ip>(seed: &[u64; 3], k: &Key<A>) -> u64 {
    let s = k.saddr.bytes();
    let d = k.daddr.bytes();
    let (s, d) = (s.as_ref(), d.as_ref());
    let ports = ((k.sport as u64) << 24) | ((k.dport as u64) << 8) | k.proto as u64;
    let mut h = seed[0];
    let mut i = 0;
    while i + 4 <= s.len() {
        let w = ((u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]) as u64) << 32)
            | u32::from_le_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]) as u64;
        h = fold_mul(h ^ w, seed[1]);
        i += 4;
    }
    fold_mul(h ^ seed[2], ports ^ seed[0])
}

/// The index's tag of a hash.
#[inline(always)]
fn tag(hash: u64) -> u32 {
    (hash >> 32) as u32
}

/// Keys per index bucket.
const WAYS: usize = 7;
/// An empty slot's value.
const EMPTY: u32 = u32::MAX;
/// No candidate ([`ConnTable::prefetch_conn`] found no tag match, or the
/// caller has none): [`ConnTable::lookup_candidate`] searches.
pub const NO_CANDIDATE: u32 = EMPTY;
/// The smallest index: 16 buckets (112 keys, 1 KiB).
const MIN_BITS: u32 = 4;
/// Old buckets moved to the new array per key added while the index grows:
/// the move is done long before the new array fills (it starts at 7/16 of
/// the new array's room and one bucket per key added would do).
const MIGRATE_PER_INSERT: usize = 2;

/// One cache line of the index. All-zero bytes are an empty bucket (values
/// are stored inverted), so a fresh array is ready without being written.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    /// Tags of the `WAYS` slots; the eighth lane is padding so that two
    /// 16-byte compares cover them.
    tag: [u32; 8],
    /// Values, inverted: `!EMPTY == 0` is an empty slot.
    inv: [u32; WAYS],
    /// Keys that passed this bucket because it was full when they were
    /// added: a search goes on to the next bucket while this is not 0.
    over: u32,
}

// SAFETY: plain integers; all zero is an empty bucket.
unsafe impl Zeroable for Bucket {}

impl Bucket {
    /// The value in slot `i` (`EMPTY` for none).
    #[inline(always)]
    fn val(&self, i: usize) -> u32 {
        !self.inv[i]
    }

    #[inline(always)]
    fn set(&mut self, i: usize, v: u32) {
        self.inv[i] = !v;
    }

    /// A free slot.
    #[inline]
    fn free_slot(&self) -> Option<usize> {
        self.inv.iter().position(|&v| v == 0)
    }

    /// Bit `i` set when slot `i`'s tag is `tag` (empty slots may match:
    /// their value tells).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn matches(&self, tag: u32) -> u32 {
        use std::arch::x86_64::*;
        // SAFETY: `self.tag` is 32 bytes at the start of a 64-aligned
        // struct: two aligned 16-byte loads in bounds. SSE2 is part of
        // x86_64.
        unsafe {
            let t = _mm_set1_epi32(tag as i32);
            let p = self.tag.as_ptr() as *const __m128i;
            let a = _mm_cmpeq_epi32(_mm_load_si128(p), t);
            let b = _mm_cmpeq_epi32(_mm_load_si128(p.add(1)), t);
            let m = _mm_movemask_ps(_mm_castsi128_ps(a)) | (_mm_movemask_ps(_mm_castsi128_ps(b)) << 4);
            m as u32 & ((1 << WAYS) - 1)
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    #[inline(always)]
    fn matches(&self, tag: u32) -> u32 {
        let mut m = 0;
        for i in 0..WAYS {
            m |= ((self.tag[i] == tag) as u32) << i;
        }
        m
    }
}

/// A key's home bucket among `1 << bits`: the top bits of its tag.
#[inline(always)]
fn home(bits: u32, tag: u32) -> usize {
    ((tag as u64) >> (32 - bits)) as usize
}

/// One array of buckets: linear probing by bucket.
struct Table {
    buckets: HugeArray<Bucket>,
    bits: u32,
}

impl Table {
    fn zeroed(bits: u32, reserved: Option<Block>) -> Table {
        let n = 1usize << bits;
        let buckets = match reserved.map(|b| HugeArray::zeroed_over(b, n)) {
            Some(Ok(a)) => a,
            _ => HugeArray::zeroed(n),
        };
        Table { buckets, bits }
    }

    #[inline(always)]
    fn home(&self, tag: u32) -> usize {
        home(self.bits, tag)
    }

    #[inline(always)]
    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    /// The value whose tag matches and that `eq` confirms.
    #[inline(always)]
    fn find(&self, tag: u32, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let mask = self.mask();
        let mut b = self.home(tag);
        for _ in 0..self.buckets.len() {
            let bk = &self.buckets[b];
            let mut m = bk.matches(tag);
            while m != 0 {
                let v = bk.val(m.trailing_zeros() as usize);
                m &= m - 1;
                if v != EMPTY && eq(v) {
                    return Some(v);
                }
            }
            if bk.over == 0 {
                return None;
            }
            b = (b + 1) & mask;
        }
        None
    }

    /// Calls `f` with the value of every slot of the home bucket whose tag
    /// matches.
    #[inline]
    fn candidates(&self, tag: u32, mut f: impl FnMut(u32)) {
        if let Some(b) = self.buckets.get(self.home(tag)) {
            let mut m = b.matches(tag);
            while m != 0 {
                let v = b.val(m.trailing_zeros() as usize);
                m &= m - 1;
                if v != EMPTY {
                    f(v);
                }
            }
        }
    }

    /// Adds a value; some bucket must have room.
    fn place(&mut self, tag: u32, val: u32) {
        let mask = self.mask();
        let mut b = self.home(tag);
        loop {
            let bk = &mut self.buckets[b];
            if let Some(i) = bk.free_slot() {
                bk.tag[i] = tag;
                bk.set(i, val);
                return;
            }
            bk.over += 1;
            b = (b + 1) & mask;
        }
    }

    /// Empties slot `i` of bucket `at`, which holds a key filed under
    /// `tag`: the buckets it passed on its way there count it no more.
    fn take(&mut self, tag: u32, at: usize, i: usize) {
        self.buckets[at].set(i, EMPTY);
        let mask = self.mask();
        let mut p = self.home(tag);
        while p != at {
            self.buckets[p].over -= 1;
            p = (p + 1) & mask;
        }
    }

    /// Removes `val` (filed under `tag`). False when it is not there.
    fn remove(&mut self, tag: u32, val: u32) -> bool {
        let mask = self.mask();
        let mut b = self.home(tag);
        for _ in 0..self.buckets.len() {
            let bk = &self.buckets[b];
            if let Some(i) = (0..WAYS).find(|&i| bk.val(i) == val) {
                self.take(tag, b, i);
                return true;
            }
            if bk.over == 0 {
                return false;
            }
            b = (b + 1) & mask;
        }
        false
    }

    fn memory(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Bucket>()
    }
}

/// The index: tag → value, over one [`Table`] — two while it grows. At 7/8
/// load a table twice the size takes over: new keys go there, and the old
/// one is drained into it a few buckets per key added (and per burst,
/// [`ConnTable::maintain`]) instead of all at once, so no burst pays for
/// rehashing millions of keys. Until it is drained a search that misses in
/// the new table looks in the old one too. The new table's memory is asked
/// of the [`Reserve`] at 5/8 load, so that it is ready (faulted in off the
/// worker) when needed; a table without a provider maps it itself, zeroed
/// by the kernel page by page as keys arrive.
struct Index {
    cur: Table,
    /// The table being drained, and the first bucket not drained yet.
    old: Option<(Table, usize)>,
    /// Keys in both tables.
    len: usize,
    /// The size (bits) last asked of the reserve.
    asked: u32,
    /// Changes with every key added or removed: a value read from the
    /// index is still where it was while this has not changed.
    epoch: u32,
}

impl Index {
    fn new() -> Index {
        Index { cur: Table::zeroed(MIN_BITS, None), old: None, len: 0, asked: 0, epoch: 0 }
    }

    /// An empty index whose first table holds `keys` keys without growing
    /// (below its 7/8 switch), up to [`PRESIZE_MAX_BYTES`], with its memory
    /// faulted in now: a table filling up under a SYN storm then neither
    /// drains an old table nor waits for the kernel to zero pages.
    fn presized(keys: usize) -> Index {
        let bits = Index::presized_bits(keys);
        let mut block = Block::zeroed(HugeArray::<Bucket>::bytes(1 << bits), 64);
        block.prefault();
        Index { cur: Table::zeroed(bits, Some(block)), old: None, len: 0, asked: bits, epoch: 0 }
    }

    /// The bits of [`Index::presized`]'s table for `keys` keys.
    fn presized_bits(keys: usize) -> u32 {
        let buckets = (keys.saturating_mul(8) / (WAYS * 7)).saturating_add(1).next_power_of_two();
        let most = (PRESIZE_MAX_BYTES / std::mem::size_of::<Bucket>()).trailing_zeros();
        buckets.trailing_zeros().clamp(MIN_BITS, most)
    }

    /// Room for keys in the current table.
    #[inline]
    fn room(&self) -> usize {
        self.cur.buckets.len() * WAYS
    }

    /// Prefetches the home bucket of `tag` in the current table (the
    /// table being drained, if any: [`Index::prefetch_old`]).
    #[inline]
    fn prefetch(&self, tag: u32) {
        prefetch(self.cur.buckets.as_ptr().wrapping_add(self.cur.home(tag)));
    }

    /// Calls `f` with the value of every slot of the current table's home
    /// bucket whose tag matches (the likely candidates; no confirmation),
    /// and returns the first (`EMPTY`: none).
    #[inline]
    fn first_candidate(&self, tag: u32, mut f: impl FnMut(u32)) -> u32 {
        let mut first = EMPTY;
        self.cur.candidates(tag, |v| {
            if first == EMPTY {
                first = v;
            }
            f(v)
        });
        first
    }

    /// [`Index::prefetch`] and [`Index::first_candidate`] in the table being
    /// drained (none: nothing).
    fn prefetch_old(&self, tag: u32, f: impl FnMut(u32)) {
        if let Some((o, _)) = &self.old {
            prefetch(o.buckets.as_ptr().wrapping_add(o.home(tag)));
            o.candidates(tag, f);
        }
    }

    /// The value whose tag matches and that `eq` confirms, in either table
    /// (the index's search, for its tests; `ConnTable::lookup_hashed`
    /// inlines the first).
    #[cfg(test)]
    fn find(&self, tag: u32, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        self.cur.find(tag, &mut eq).or_else(|| self.find_old(tag, eq))
    }

    /// The search in the table being drained.
    #[inline(never)]
    fn find_old(&self, tag: u32, eq: impl FnMut(u32) -> bool) -> Option<u32> {
        self.old.as_ref().and_then(|(o, _)| o.find(tag, eq))
    }

    /// Adds a value (not present yet).
    fn insert(&mut self, tag: u32, val: u32, reserve: &Reserve) {
        if self.old.is_some() {
            self.migrate(MIGRATE_PER_INSERT, reserve);
        }
        let load8 = (self.len + 1) * 8;
        if load8 > self.room() * 5 && self.cur.bits < 31 {
            self.grow_if_due(load8, reserve);
        }
        self.cur.place(tag, val);
        self.len += 1;
        self.epoch = self.epoch.wrapping_add(1);
    }

    /// Above 5/8 load: asks for the next table; above 7/8: switches to it
    /// when it is ready (or the table has no provider), and in any case at
    /// 15/16 (mapping it inline: a late provider costs a slower burst, not
    /// a full table).
    #[cold]
    fn grow_if_due(&mut self, load8: usize, reserve: &Reserve) {
        let bits = self.cur.bits + 1;
        let bytes = HugeArray::<Bucket>::bytes(1 << bits);
        if self.asked < bits {
            reserve.ask_index(bytes);
            self.asked = bits;
        }
        if load8 <= self.room() * 7 {
            return;
        }
        if self.old.is_some() {
            // Never expected (the drain is far ahead): finish it now.
            self.migrate(usize::MAX, reserve);
        }
        let ready = reserve.take_index(bytes);
        if ready.is_none() && reserve.chunk_bytes() != 0 && load8 * 2 <= self.room() * 15 {
            return;
        }
        if ready.is_none() {
            reserve.note_inline();
        }
        let old = std::mem::replace(&mut self.cur, Table::zeroed(bits, ready));
        self.old = Some((old, 0));
    }

    /// Moves up to `budget` buckets of the old table into the current
    /// one; frees the old table once it is empty. Returns whether a drain
    /// is still under way.
    fn migrate(&mut self, budget: usize, reserve: &Reserve) -> bool {
        let Some((old, next)) = &mut self.old else { return false };
        let end = next.saturating_add(budget).min(old.buckets.len());
        for b in *next..end {
            for i in 0..WAYS {
                let v = old.buckets[b].val(i);
                if v != EMPTY {
                    let t = old.buckets[b].tag[i];
                    old.take(t, b, i);
                    self.cur.place(t, v);
                }
            }
        }
        *next = end;
        if end < old.buckets.len() {
            return true;
        }
        if let Some((o, _)) = self.old.take() {
            reserve.discard(o.buckets.into_block());
        }
        false
    }

    /// Removes `val` (filed under `tag`). False when it is not there.
    fn remove(&mut self, tag: u32, val: u32) -> bool {
        let gone = self.cur.remove(tag, val) || self.old.as_mut().is_some_and(|(o, _)| o.remove(tag, val));
        if gone {
            self.len -= 1;
            self.epoch = self.epoch.wrapping_add(1);
        }
        gone
    }

    fn memory(&self) -> usize {
        self.cur.memory() + self.old.as_ref().map_or(0, |(o, _)| o.memory())
    }
}

/// Connections per slab chunk: 2 MiB of IPv4 connections (4 MiB of
/// IPv6), so each chunk can be one or two huge pages.
const CHUNK_BITS: u32 = 15;
const CHUNK: usize = 1 << CHUNK_BITS;

/// The connections, in fixed chunks that never move.
struct Slab<A: Ip> {
    chunks: Vec<HugeArray<Conn<A>>>,
    len: usize,
}

impl<A: Ip> Slab<A> {
    #[inline(always)]
    fn get(&self, i: u32) -> &Conn<A> {
        &self.chunks[(i >> CHUNK_BITS) as usize][i as usize & (CHUNK - 1)]
    }

    #[inline(always)]
    fn get_mut(&mut self, i: u32) -> &mut Conn<A> {
        &mut self.chunks[(i >> CHUNK_BITS) as usize][i as usize & (CHUNK - 1)]
    }

    /// Address of entry `i`, for a prefetch (any `i`).
    #[inline(always)]
    fn addr(&self, i: u32) -> *const Conn<A> {
        self.chunks.get((i >> CHUNK_BITS) as usize).map_or(std::ptr::null(), |c| c.as_ptr().wrapping_add(i as usize & (CHUNK - 1)))
    }

    /// Bytes of one chunk.
    const CHUNK_BYTES: usize = CHUNK * std::mem::size_of::<Conn<A>>();

    /// Appends `c`; a new chunk comes from `reserve` (ready, faulted in,
    /// when a provider supplies it). Returns whether a chunk was added.
    fn push(&mut self, c: Conn<A>, reserve: &Reserve) -> (u32, bool) {
        let grew = self.len == self.chunks.len() * CHUNK;
        if grew {
            self.chunks.push(HugeArray::over(reserve.chunk(Self::CHUNK_BYTES)));
        }
        let last = self.chunks.len() - 1;
        self.chunks[last].push(c);
        self.len += 1;
        ((self.len - 1) as u32, grew)
    }

    fn memory(&self) -> usize {
        self.chunks.len() * CHUNK * std::mem::size_of::<Conn<A>>() + self.chunks.capacity() * std::mem::size_of::<HugeArray<Conn<A>>>()
    }
}

/// The largest index [`ConnTable::presize`] makes: 1 Mi buckets, 6.4 M
/// keys before it grows (3.2 M NAT/FULLNAT connections, which have two
/// keys each, or 6.4 M DR/TUN ones).
pub const PRESIZE_MAX_BYTES: usize = 64 << 20;

/// Most entries a table holds: the index stores a slot number and a
/// direction bit in 32 bits, one value of which means "empty".
pub const MAX_ENTRIES: usize = (1 << 31) - 2;

/// The per-worker connection table of one address family.
pub struct ConnTable<A: Ip> {
    index: Index,
    seed: [u64; 3],
    slab: Slab<A>,
    free: Vec<u32>,
    wheel: Wheel,
    live: usize,
    max: usize,
    /// Where new memory comes from ([`ConnTable::set_reserve`]).
    reserve: Reserve,
    /// The index's epoch when the burst's candidates were read
    /// ([`ConnTable::seal`]).
    sealed: u32,
}

/// The key a value of the index stands for, compared with `k`.
///
/// A connection whose replies we see (NAT, FULLNAT) has its fields
/// picked as one choice on the value's direction bit, not a branch per
/// field: in their mixes requests and replies come in no order a branch
/// predictor could learn. DR and TUN connections have in keys only: one predictable test
/// of the method keeps their compare as it was.
#[inline(always)]
fn same_key<A: Ip>(c: &Conn<A>, val: u32, k: &Key<A>) -> bool {
    if !c.fwd.sees_replies() {
        return c.caddr == k.saddr && c.cport == k.sport && c.vaddr == k.daddr && c.vport == k.dport && c.proto == k.proto;
    }
    let out = val & 1 != 0;
    // An out key is only ever filed for a NAT or FULLNAT connection
    // (never a template: `out_key`): the real server is its source, and
    // its destination the client (NAT) or the local address (FULLNAT).
    let (oa, op) = if c.fwd == FwdMethod::FullNat { (c.laddr, c.lport) } else { (c.caddr, c.cport) };
    let (sa, sp) = pick(out, (c.daddr, c.dport), (c.caddr, c.cport));
    let (da, dp) = pick(out, (oa, op), (c.vaddr, c.vport));
    (sa == k.saddr) & (sp == k.sport) & (da == k.daddr) & (dp == k.dport) & (c.proto == k.proto)
}

impl<A: Ip> ConnTable<A> {
    /// An empty table holding at most `max` entries (connections and
    /// templates), with its clock at `now` (ticks).
    pub fn new(max: usize, now: u32) -> Self {
        let rs = std::collections::hash_map::RandomState::new();
        // Odd multipliers keep the folded multiplies from collapsing.
        let seed = [rs.hash_one(1u64), rs.hash_one(2u64) | 1, rs.hash_one(3u64) | 1];
        ConnTable {
            index: Index::new(),
            seed,
            slab: Slab { chunks: Vec::new(), len: 0 },
            free: Vec::new(),
            wheel: Wheel::new(now),
            live: 0,
            max: max.clamp(1, MAX_ENTRIES),
            reserve: Reserve::none(),
            sealed: u32::MAX,
        }
    }

    /// Takes new memory (slab chunks, index arrays) from `reserve`, which
    /// a provider thread keeps supplied (`ipvs::mem`), and gives what it
    /// discards back to it.
    pub fn set_reserve(&mut self, reserve: Reserve) {
        self.reserve = reserve;
    }

    /// Takes new memory from `provider` (see [`ConnTable::set_reserve`]).
    pub fn attach(&mut self, provider: &Provider) {
        self.reserve = provider.reserve(Slab::<A>::CHUNK_BYTES);
    }

    /// Where this table's memory came from so far.
    pub fn reserve_stats(&self) -> ReserveStats {
        self.reserve.stats()
    }

    /// Sizes the index of an empty table for its bound, `keys_per_entry`
    /// keys an entry (1 for DR and TUN, 2 where replies have a key of
    /// their own: NAT, FULLNAT), at most 7/16 full when the table is (at
    /// most [`PRESIZE_MAX_BYTES`]), and faults its memory in now, so that
    /// filling the table up to that size never grows or drains the index
    /// and never waits for the kernel to zero index pages: done once at
    /// start, off the data path. Returns the index's bytes. A table that
    /// holds entries already, or is as big, is left as it is.
    ///
    /// Why 7/16 and not the 7/8 the index grows at: at half load 2 % of
    /// the keys have passed their full home bucket and 12 % of the lookups
    /// find their home bucket passed; the burst's prefetches miss both
    /// (a key one bucket on: two misses to memory). Sized for two keys
    /// per NAT connection instead of four, est-nat-1m was 10 % slower
    /// (docs/performance.md, 2026-12-06).
    pub fn presize(&mut self, keys_per_entry: usize) -> usize {
        if self.index.len == 0 && self.index.old.is_none() {
            let keys = self.max.saturating_mul(keys_per_entry).saturating_mul(2);
            let want = Index::presized_bits(keys);
            if want > self.index.cur.bits {
                let epoch = self.index.epoch.wrapping_add(1);
                self.index = Index::presized(keys);
                self.index.epoch = epoch;
            }
        }
        self.index.memory()
    }

    /// Background work between bursts: moves up to `budget` buckets of an
    /// index being drained into its new array. Returns whether a drain is
    /// still under way.
    pub fn maintain(&mut self, budget: usize) -> bool {
        self.index.migrate(budget, &self.reserve)
    }

    /// Entries (connections and templates) not yet expired.
    #[inline]
    pub fn len(&self) -> usize {
        self.live
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Changes the bound (takes effect for new entries).
    pub fn set_max(&mut self, max: usize) {
        self.max = max.clamp(1, MAX_ENTRIES);
    }

    /// Room for `n` more entries under the bound.
    #[inline]
    pub fn has_room(&self, n: usize) -> bool {
        self.live + n <= self.max
    }

    /// The hash of a key, for [`ConnTable::prefetch`] and
    /// [`ConnTable::lookup_hashed`] (keyed per table: not comparable
    /// between tables).
    #[inline]
    pub fn hash(&self, k: &Key<A>) -> u64 {
        hash_key(&self.seed, k)
    }

    /// Starts fetching the index bucket of a key's hash (burst stage 1).
    /// Only in the current array of the index: while it grows, the burst
    /// asks [`ConnTable::prefetch_old`] for the one being drained too, so
    /// that the common burst does not test for it per packet.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        self.index.prefetch(tag(hash));
    }

    /// Starts fetching the connections the bucket of a key's hash points at
    /// (burst stage 2, once the bucket has arrived; the current array
    /// only, as [`ConnTable::prefetch`]).
    ///
    /// Returns the first of them ([`NO_CANDIDATE`]: none) for
    /// [`ConnTable::lookup_candidate`], valid until the index changes
    /// ([`ConnTable::seal`]).
    #[inline]
    pub fn prefetch_conn(&self, hash: u64) -> u32 {
        let slab = &self.slab;
        self.index.first_candidate(tag(hash), |v| prefetch(slab.addr(v >> 1)))
    }

    /// Marks the candidates [`ConnTable::prefetch_conn`] returned so far as
    /// current: [`ConnTable::lookup_candidate`] trusts them until a key is
    /// added to the index or removed from it (burst stage 2's end).
    #[inline]
    pub fn seal(&mut self) {
        self.sealed = self.index.epoch;
    }

    /// [`ConnTable::lookup_hashed`], trying first the value `cand` the
    /// burst's second stage read for this hash (the home bucket's first
    /// tag match). While no key was added or removed since
    /// [`ConnTable::seal`], `cand` is still in the index and its slot still
    /// holds the entry it was filed for; a key appears in the index once at
    /// most, so if that entry has key `k`, it is what the search would
    /// find: the bucket is not searched again (nor its line read, which
    /// by then may have left the L1 cache). Otherwise the search runs.
    #[inline(always)]
    pub fn lookup_candidate(&self, k: &Key<A>, hash: u64, cand: u32) -> Option<(u32, Dir)> {
        if cand != NO_CANDIDATE && self.sealed == self.index.epoch && same_key(self.slab.get(cand >> 1), cand, k) {
            return Some((cand >> 1, if cand & 1 == 0 { Dir::In } else { Dir::Out }));
        }
        self.lookup_hashed(k, hash)
    }

    /// Whether the index is growing: an old array is being drained, which
    /// [`ConnTable::prefetch`] and [`ConnTable::prefetch_conn`] leave out.
    #[inline]
    pub fn draining(&self) -> bool {
        self.index.old.is_some()
    }

    /// Both prefetches in the array being drained (nothing when none).
    pub fn prefetch_old(&self, hash: u64) {
        let slab = &self.slab;
        self.index.prefetch_old(tag(hash), |v| prefetch(slab.addr(v >> 1)));
    }

    /// Finds the entry for a packet: its slab index and the direction.
    #[inline(always)]
    pub fn lookup(&self, k: &Key<A>) -> Option<(u32, Dir)> {
        self.lookup_hashed(k, self.hash(k))
    }

    /// [`ConnTable::lookup`] with the key's hash already computed.
    #[inline]
    pub fn lookup_hashed(&self, k: &Key<A>, hash: u64) -> Option<(u32, Dir)> {
        // Table::find's loop, written out so that the key comparison is
        // inlined into it.
        let t = tag(hash);
        let ix = &self.index.cur;
        let mask = ix.mask();
        let mut b = ix.home(t);
        for _ in 0..ix.buckets.len() {
            let bk = &ix.buckets[b];
            let mut m = bk.matches(t);
            while m != 0 {
                let v = bk.val(m.trailing_zeros() as usize);
                m &= m - 1;
                if v != EMPTY && same_key(self.slab.get(v >> 1), v, k) {
                    return Some((v >> 1, if v & 1 == 0 { Dir::In } else { Dir::Out }));
                }
            }
            if bk.over == 0 {
                break;
            }
            b = (b + 1) & mask;
        }
        // While the index grows, older keys may still be in the table
        // being drained.
        self.index.old.as_ref()?;
        let v = self.index.find_old(t, |v| same_key(self.slab.get(v >> 1), v, k))?;
        Some((v >> 1, if v & 1 == 0 { Dir::In } else { Dir::Out }))
    }

    /// Looks up a key and returns the entry.
    #[inline]
    pub fn get_by_key(&self, k: &Key<A>) -> Option<(u32, &Conn<A>)> {
        self.lookup(k).map(|(i, _)| (i, self.slab.get(i)))
    }

    #[inline]
    pub fn get(&self, idx: u32) -> &Conn<A> {
        self.slab.get(idx)
    }

    #[inline]
    pub fn get_mut(&mut self, idx: u32) -> &mut Conn<A> {
        self.slab.get_mut(idx)
    }

    /// Adds an entry under its in key (and out key when it has one).
    ///
    /// # Errors
    /// [`DropReason::TableFull`] at the bound; [`DropReason::ConnClash`]
    /// when a key is already taken (the new entry is not added).
    pub fn insert(&mut self, c: Conn<A>) -> Result<u32, DropReason> {
        self.insert_with(c, true)
    }

    /// [`ConnTable::insert`] for a new connection whose in key the caller
    /// has just looked up and not found, with nothing added since (the
    /// worker's new connection after its lookup missed): only the out key
    /// is checked for a clash. The in key's search is the longest of a
    /// table filling up (a miss walks its bucket's overflow to the end),
    /// and the answer is known.
    ///
    /// # Errors
    /// As [`ConnTable::insert`].
    #[inline(never)]
    pub fn insert_missed(&mut self, c: Conn<A>) -> Result<u32, DropReason> {
        debug_assert!(self.lookup(&c.in_key()).is_none(), "insert_missed: the in key is in the table");
        self.insert_with(c, false)
    }

    #[inline(always)]
    fn insert_with(&mut self, c: Conn<A>, check_in: bool) -> Result<u32, DropReason> {
        if self.live >= self.max {
            return Err(DropReason::TableFull);
        }
        let ik = c.in_key();
        let ih = self.hash(&ik);
        let ok = c.out_key().map(|k| (k, self.hash(&k)));
        if (check_in && self.lookup_hashed(&ik, ih).is_some()) || ok.is_some_and(|(k, h)| self.lookup_hashed(&k, h).is_some()) {
            return Err(DropReason::ConnClash);
        }
        let expires = c.expires;
        let idx = match self.free.pop() {
            Some(i) => {
                *self.slab.get_mut(i) = c;
                i
            }
            None => {
                let (i, grew) = self.slab.push(c, &self.reserve);
                if grew {
                    // Every slot may be freed at once (a flood's SYN_RECV
                    // expiring): room for them all, so freeing never
                    // reallocates the list.
                    self.free.reserve(self.slab.chunks.len() * CHUNK - self.free.len());
                }
                i
            }
        };
        self.index.insert(tag(ih), idx << 1, &self.reserve);
        if let Some((_, h)) = ok {
            self.index.insert(tag(h), (idx << 1) | 1, &self.reserve);
        }
        self.wheel.insert(idx, expires);
        self.live += 1;
        Ok(idx)
    }

    /// Removes an entry's keys from the index.
    fn unindex(index: &mut Index, seed: &[u64; 3], c: &Conn<A>, idx: u32) {
        index.remove(tag(hash_key(seed, &c.in_key())), idx << 1);
        if let Some(k) = c.out_key() {
            index.remove(tag(hash_key(seed, &k)), (idx << 1) | 1);
        }
    }

    /// Removes an entry's keys now (later packets miss it); its slot is
    /// freed, and `on_expire` called, when the wheel reaches it.
    pub fn unlink(&mut self, idx: u32) {
        let c = self.slab.get_mut(idx);
        if c.flags & flags::DEAD != 0 {
            return;
        }
        c.flags |= flags::DEAD;
        let c = *c;
        Self::unindex(&mut self.index, &self.seed, &c, idx);
    }

    /// Ends an entry now: its keys leave the index and it no longer counts
    /// against the bound, so a new connection can take its place at once.
    /// The caller has released what it held (load, local port); its slab
    /// slot is freed when the wheel comes round to it (the wheel cannot
    /// find an entry before that, and must not meet a reused slot).
    pub fn retire(&mut self, idx: u32) {
        self.unlink(idx);
        let c = self.slab.get_mut(idx);
        if c.flags & flags::RETIRED == 0 {
            c.flags |= flags::RETIRED;
            self.live -= 1;
        }
    }

    /// Runs the wheel up to `now` (ticks), visiting at most `budget`
    /// entries. For an entry whose expiry has come (or that was unlinked),
    /// `on_expire` decides: `true` frees it (after it has released what it
    /// holds), `false` keeps it (its `expires` must then have been moved
    /// forward, e.g. a template still controlling connections). Freeing a
    /// connection that a template controls (`control` = template slot + 1)
    /// decrements the template's count; a template is never freed while
    /// that count is above zero. Returns the number freed.
    pub fn expire(&mut self, now: u32, budget: usize, mut on_expire: impl FnMut(&mut Conn<A>) -> bool) -> usize {
        let mut freed = 0;
        let mut retired = 0;
        let slab = &mut self.slab;
        let index = &mut self.index;
        let seed = &self.seed;
        let free = &mut self.free;
        self.wheel.advance(now, budget, |idx, tick| {
            let c = slab.get_mut(idx);
            let dead = c.flags & flags::DEAD != 0;
            // Due by its slot's tick, not by `now`: after a jump (a replay's
            // gap, a budget's backlog) a connection that ended before its
            // template's time still goes first and gives back its count,
            // as it would have at its own time.
            if !dead && !reached(tick, c.expires) {
                return Some(c.expires);
            }
            // A template is never freed while connections refer to it by
            // its slot; an unlinked one waits for them to go.
            if dead && c.is_template() && c.control > 0 {
                c.expires = now.wrapping_add(TICKS_PER_SEC);
                return Some(c.expires);
            }
            if !on_expire(c) && !dead {
                return Some(c.expires);
            }
            if !dead {
                Self::unindex(index, seed, c, idx);
            }
            retired += (c.flags & flags::RETIRED != 0) as usize;
            Self::free_slot(slab, free, idx);
            freed += 1;
            None
        });
        self.live -= freed - retired;
        freed
    }

    /// Puts an entry's slot (out of the index and the wheel) on the free
    /// list; a connection gives back its template's count.
    fn free_slot(slab: &mut Slab<A>, free: &mut Vec<u32>, idx: u32) {
        let c = slab.get_mut(idx);
        let (template, control) = (c.is_template(), c.control);
        c.flags = flags::DEAD;
        free.push(idx);
        if !template && control != 0 {
            let t = slab.get_mut(control - 1);
            t.control = t.control.saturating_sub(1);
        }
    }

    /// Table pressure (IPVS's `drop_entry` defense): ends, before its
    /// time, the entry due soonest that `pick` accepts, looking at no more
    /// than `budget` entries, from where the last search took one (the
    /// entries due before it were refused:
    /// [`Wheel::evict_ahead`](crate::ipvs::timer::Wheel::evict_ahead));
    /// an unlinked entry met on the way (already
    /// ended, waiting for the wheel) is freed instead, unless it is a
    /// template that connections still refer to. `on_evict` releases what
    /// the entry holds; then its keys leave the index and its slot is free
    /// at once. Returns the entry as it was, and whether it was live
    /// (`false`: an unlinked one reclaimed); `None` when nothing was found.
    pub fn evict(&mut self, budget: usize, mut pick: impl FnMut(&Conn<A>) -> bool, on_evict: impl FnOnce(&mut Conn<A>)) -> Option<(Conn<A>, bool)> {
        let slab = &self.slab;
        let idx = self.wheel.evict_ahead(budget, |i| {
            let c = slab.get(i);
            if c.flags & flags::DEAD != 0 {
                !(c.is_template() && c.control > 0)
            } else {
                pick(c)
            }
        })?;
        let c = self.slab.get_mut(idx);
        let live = c.flags & flags::DEAD == 0;
        on_evict(c);
        let c = *c;
        if live {
            Self::unindex(&mut self.index, &self.seed, &c, idx);
        }
        Self::free_slot(&mut self.slab, &mut self.free, idx);
        self.live -= 1;
        Some((c, live))
    }

    /// Visits every live entry (control plane listings, flush).
    pub fn for_each(&self, mut f: impl FnMut(u32, &Conn<A>)) {
        let mut i = 0u32;
        for chunk in &self.slab.chunks {
            for c in chunk.iter() {
                if c.flags & flags::DEAD == 0 {
                    f(i, c);
                }
                i += 1;
            }
        }
    }

    /// Number of slots, live or free: the range of [`ConnTable::slot`].
    pub fn slots(&self) -> usize {
        self.slab.len
    }

    /// The entry in slot `idx` if it is live (visits a slice at a time).
    pub fn slot(&self, idx: usize) -> Option<&Conn<A>> {
        if idx >= self.slab.len {
            return None;
        }
        let c = self.slab.get(idx as u32);
        (c.flags & flags::DEAD == 0).then_some(c)
    }

    /// Bytes of memory held (slab chunks, index buckets, free list, wheel).
    pub fn memory(&self) -> usize {
        self.slab.memory() + self.index.memory() + self.free.capacity() * 4 + self.wheel.memory()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// A persistence template for client `c` (expiring at
    /// `template_expires`) and one connection of that client, from `cport`,
    /// that it controls (expiring at `conn_expires`), both inserted;
    /// returns the template's slot.
    fn template_and_its_connection(t: &mut ConnTable<Ipv4Addr>, c: u8, fwd: FwdMethod, template_expires: u32, cport: u16, conn_expires: u32) -> u32 {
        let mut tm = conn(c, 0, fwd, template_expires);
        tm.flags = flags::TEMPLATE;
        tm.control = 1;
        tm.proto = 0x86;
        let ti = t.insert(tm).unwrap();
        let mut cn = conn(c, cport, fwd, conn_expires);
        cn.control = ti + 1;
        t.insert(cn).unwrap();
        ti
    }

    /// An IPv4 connection from 192.0.2.`c`:`cport` to 10.0.0.100:80,
    /// real server 10.0.1.1:8080, local address 10.0.0.200:5000+`cport`
    /// (the tests of other modules start from it too).
    pub(crate) fn conn(c: u8, cport: u16, fwd: FwdMethod, expires: u32) -> Conn<Ipv4Addr> {
        Conn {
            caddr: Ipv4Addr::new(192, 0, 2, c),
            vaddr: Ipv4Addr::new(10, 0, 0, 100),
            daddr: Ipv4Addr::new(10, 0, 1, 1),
            laddr: Ipv4Addr::new(10, 0, 0, 200),
            cport,
            vport: 80,
            dport: 8080,
            lport: 5000 + cport,
            expires,
            dest_uid: 1,
            dest: 0,
            snap_gen: 1,
            control: 0,
            dest_hop: Hop { link: 0, mac: [0; 6] },
            client_hop: Hop { link: 0, mac: [0; 6] },
            proto: 6,
            state: 0,
            fwd,
            flags: 0,
            sync_left: 0,
            in_pkts: 1,
        }
    }

    /// A presized table fills to its bound, two keys an entry, without
    /// its index growing or draining, and finds every key; presizing a
    /// table that holds entries changes nothing; the size is capped; an
    /// index for one key an entry is half the size.
    #[test]
    fn a_presized_index_never_grows_up_to_its_bound() {
        let n = 3000u32;
        let mut one = ConnTable::<Ipv4Addr>::new(n as usize, 0);
        one.presize(1);
        let mut t = ConnTable::<Ipv4Addr>::new(n as usize, 0);
        let small = t.memory();
        let bytes = t.presize(2);
        let bits = t.index.cur.bits;
        assert!(bits > MIN_BITS && t.memory() > small);
        assert_eq!(one.index.cur.bits + 1, bits, "one key an entry: half the index");
        assert!(t.index.room() * 7 >= 2 * 2 * n as usize * 8, "both keys of every entry fill at most 7/16 of it");
        assert!(one.index.room() * 7 >= 2 * n as usize * 8, "and one key an entry as much");
        for i in 0..n {
            let mut c = conn((i % 250) as u8, 1000 + (i / 250) as u16, if i % 2 == 0 { FwdMethod::Nat } else { FwdMethod::FullNat }, 100);
            c.lport = 20000 + i as u16;
            t.insert(c).unwrap();
            assert_eq!((t.index.cur.bits, t.index.old.is_some()), (bits, false), "entry {i}");
        }
        for i in 0..n {
            let mut c = conn((i % 250) as u8, 1000 + (i / 250) as u16, if i % 2 == 0 { FwdMethod::Nat } else { FwdMethod::FullNat }, 100);
            c.lport = 20000 + i as u16;
            assert!(matches!(t.lookup(&c.in_key()), Some((_, Dir::In))), "in key {i}");
            assert!(matches!(t.lookup(&c.out_key().unwrap()), Some((_, Dir::Out))), "out key {i}");
        }
        assert_eq!(t.presize(2), bytes, "a table with entries is left as it is");
        assert_eq!(Index::presized_bits(MAX_ENTRIES * 4), (PRESIZE_MAX_BYTES / 64).trailing_zeros());
        assert_eq!(Index::presized_bits(1), MIN_BITS);
    }

    #[test]
    fn both_directions_find_the_entry() {
        let mut t = ConnTable::new(100, 0);
        let nat = t.insert(conn(1, 1000, FwdMethod::Nat, 10)).unwrap();
        let full = t.insert(conn(2, 1000, FwdMethod::FullNat, 10)).unwrap();
        let dr = t.insert(conn(3, 1000, FwdMethod::Dr, 10)).unwrap();
        let c = *t.get(nat);
        assert_eq!(t.lookup(&c.in_key()), Some((nat, Dir::In)));
        assert_eq!(t.lookup(&c.out_key().unwrap()), Some((nat, Dir::Out)));
        let f = *t.get(full);
        let ok = f.out_key().unwrap();
        assert_eq!((ok.daddr, ok.dport), (f.laddr, f.lport));
        assert_eq!(t.lookup(&ok), Some((full, Dir::Out)));
        assert!(t.get(dr).out_key().is_none());
        assert_eq!(t.len(), 3);
    }

    /// `same_key` (selects on the direction bit for NAT/FULLNAT, a
    /// plain compare for DR/TUN) answers as the keys themselves do: a
    /// connection's in and out keys match their own value (in: even, out:
    /// odd) and not the other's, and a key with any one field changed
    /// matches neither.
    #[test]
    fn same_key_is_the_keys_equality() {
        for fwd in FwdMethod::ALL {
            let mut c = conn(7, 1234, fwd, 10);
            c.laddr = Ipv4Addr::new(10, 9, 9, 9);
            c.lport = 40001;
            let keys = [Some(c.in_key()), c.out_key()];
            assert_eq!(keys[1].is_some(), fwd.sees_replies(), "{fwd:?}");
            for (bit, k) in keys.iter().enumerate() {
                let Some(k) = *k else { continue };
                let other = keys[1 - bit];
                let val = 40 << 1 | bit as u32;
                assert!(same_key(&c, val, &k), "{fwd:?} own key {bit}");
                if let Some(o) = other.filter(|o| *o != k) {
                    assert!(!same_key(&c, val, &o), "{fwd:?} key {bit} given the other");
                }
                let one = Ipv4Addr::from(1);
                let x = |a: Ipv4Addr| Ipv4Addr::from(u32::from(a) ^ u32::from(one));
                for changed in [
                    Key { saddr: x(k.saddr), ..k },
                    Key { daddr: x(k.daddr), ..k },
                    Key { sport: k.sport ^ 1, ..k },
                    Key { dport: k.dport ^ 1, ..k },
                    Key { proto: k.proto ^ 1, ..k },
                ] {
                    assert!(!same_key(&c, val, &changed), "{fwd:?} key {bit}: {changed:?}");
                    assert!(!same_key(&c, val ^ 1, &changed), "{fwd:?} key {bit} as the other: {changed:?}");
                }
            }
        }
    }

    /// `insert_missed` adds as `insert` does and still refuses an out key
    /// that is taken (the in key is the caller's to vouch for).
    #[test]
    fn insert_missed_checks_the_out_key() {
        let mut t = ConnTable::new(8, 0);
        let a = t.insert_missed(conn(1, 1, FwdMethod::Nat, 10)).unwrap();
        assert_eq!(t.lookup(&t.get(a).in_key()), Some((a, Dir::In)));
        assert_eq!(t.lookup(&t.get(a).out_key().unwrap()), Some((a, Dir::Out)));
        // Another client's connection whose reply key is taken: the same
        // real server and local address and port as `b`'s.
        let b = t.insert_missed(conn(2, 1, FwdMethod::FullNat, 10)).unwrap();
        let mut clash = conn(3, 7, FwdMethod::FullNat, 10);
        clash.lport = t.get(b).lport;
        assert_eq!(t.insert_missed(clash).unwrap_err(), DropReason::ConnClash);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn bound_and_clash() {
        let mut t = ConnTable::new(2, 0);
        t.insert(conn(1, 1, FwdMethod::Nat, 10)).unwrap();
        assert_eq!(t.insert(conn(1, 1, FwdMethod::Nat, 10)).unwrap_err(), DropReason::ConnClash);
        t.insert(conn(2, 1, FwdMethod::Nat, 10)).unwrap();
        assert_eq!(t.insert(conn(3, 1, FwdMethod::Nat, 10)).unwrap_err(), DropReason::TableFull);
    }

    #[test]
    fn evict_frees_the_soonest_picked_entry_at_once() {
        let mut t = ConnTable::new(3, 0);
        let a = t.insert(conn(1, 1, FwdMethod::Nat, 50)).unwrap();
        let b = t.insert(conn(2, 1, FwdMethod::FullNat, 20)).unwrap();
        let _c = t.insert(conn(3, 1, FwdMethod::Nat, 10)).unwrap();
        assert!(!t.has_room(1));
        // c is due first but not picked; b is the soonest picked
        let mut released = vec![];
        let (got, live) = t.evict(10, |c| c.caddr.octets()[3] != 3, |c| released.push(c.caddr.octets()[3])).unwrap();
        assert_eq!((got.caddr.octets()[3], live), (2, true));
        assert_eq!(released, vec![2]);
        assert!(t.has_room(1) && t.len() == 2);
        let kb = conn(2, 1, FwdMethod::FullNat, 0);
        assert!(t.lookup(&kb.in_key()).is_none() && t.lookup(&kb.out_key().unwrap()).is_none());
        // its slot is the next one used, and the wheel never visits it twice
        assert_eq!(t.insert(conn(4, 1, FwdMethod::Nat, 30)).unwrap(), b);
        assert!(t.evict(10, |_| false, |_| unreachable!()).is_none());
        let mut gone = vec![];
        assert_eq!(t.expire(100, usize::MAX, |c| { gone.push(c.caddr.octets()[3]); true }), 3);
        gone.sort();
        assert_eq!(gone, vec![1, 3, 4]);
        assert_eq!(t.len(), 0);
        // an unlinked (dead) entry is reclaimed, whatever `pick` says,
        // released once more (the release knows what it gave back already)
        let d = t.insert(conn(5, 1, FwdMethod::Nat, 200)).unwrap();
        t.unlink(d);
        let mut seen = 0;
        let (got, live) = t.evict(10, |_| false, |_| seen += 1).unwrap();
        assert_eq!((got.caddr.octets()[3], live, seen, t.len()), (5, false, 1, 0));
        assert_eq!(t.expire(1000, usize::MAX, |_| true), 0, "the wheel no longer holds it");
        // but never a dead template that connections still refer to
        let ti = template_and_its_connection(&mut t, 6, FwdMethod::Nat, 100, 1, 500);
        t.unlink(ti);
        assert!(t.evict(10, |_| false, |_| ()).is_none());
        let _ = a;
    }

    #[test]
    fn evicting_a_controlled_connection_gives_its_template_back_a_count() {
        let mut t = ConnTable::new(10, 0);
        let mut tm = conn(9, 0, FwdMethod::Nat, 100);
        tm.flags = flags::TEMPLATE;
        tm.proto = 0x86;
        tm.control = 1;
        let ti = t.insert(tm).unwrap();
        let mut c = conn(1, 1, FwdMethod::Nat, 10);
        c.control = ti + 1;
        t.insert(c).unwrap();
        assert!(t.evict(10, |c| !c.is_template(), |_| ()).is_some_and(|(c, live)| c.control == ti + 1 && live));
        assert_eq!(t.get(ti).control, 0);
    }

    #[test]
    fn expiry_frees_and_reuses_slots() {
        let mut t = ConnTable::new(10, 0);
        let a = t.insert(conn(1, 1, FwdMethod::Nat, 5)).unwrap();
        let b = t.insert(conn(2, 1, FwdMethod::Dr, 50)).unwrap();
        let mut seen = vec![];
        assert_eq!(t.expire(10, usize::MAX, |c| { seen.push(c.cport); true }), 1);
        assert_eq!(t.len(), 1);
        assert!(t.lookup(&conn(1, 1, FwdMethod::Nat, 0).in_key()).is_none());
        assert!(t.lookup(&conn(1, 1, FwdMethod::Nat, 0).out_key().unwrap()).is_none());
        let c = t.insert(conn(3, 1, FwdMethod::Nat, 60)).unwrap();
        assert_eq!(c, a, "the freed slot is reused");
        // refreshing b moves its expiry: not expired at 50
        t.get_mut(b).expires = 100;
        assert_eq!(t.expire(60, usize::MAX, |_| true), 1); // only c (60)
        assert_eq!(t.len(), 1);
        assert_eq!(t.expire(100, usize::MAX, |_| true), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn unlink_hides_now_frees_later_and_keep_is_honoured() {
        let mut t = ConnTable::new(10, 0);
        let a = t.insert(conn(1, 1, FwdMethod::Nat, 500)).unwrap();
        t.unlink(a);
        assert!(t.lookup(&conn(1, 1, FwdMethod::Nat, 0).in_key()).is_none());
        assert_eq!(t.len(), 1);
        assert_eq!(t.expire(500, usize::MAX, |_| false), 1, "a dead entry is freed whatever the callback says");
        let b = t.insert(conn(2, 1, FwdMethod::Dr, 505)).unwrap();
        assert_eq!(t.expire(505, usize::MAX, |c| { c.expires = 509; false }), 0);
        assert!(t.lookup(&t.get(b).in_key()).is_some());
        assert_eq!(t.expire(509, usize::MAX, |_| true), 1);
    }

    /// The second stage's candidate is trusted while the index has not
    /// changed since the seal, for both keys of a NAT entry; a key it is
    /// not searches; once the entry's keys are gone (unlinked: its slot
    /// still holds it) or any key was added, the candidate is searched
    /// past, and the lookup answers as the index does.
    #[test]
    fn a_candidate_is_trusted_only_while_the_index_is_unchanged() {
        let mut t = ConnTable::<Ipv4Addr>::new(10, 0);
        let a = conn(1, 1000, FwdMethod::Nat, 500);
        let ia = t.insert(a).unwrap();
        let (ki, ko) = (a.in_key(), a.out_key().unwrap());
        let (hi, ho) = (t.hash(&ki), t.hash(&ko));
        let (ci, co) = (t.prefetch_conn(hi), t.prefetch_conn(ho));
        assert_eq!((ci >> 1, co >> 1), (ia, ia));
        t.seal();
        assert_eq!(t.lookup_candidate(&ki, hi, ci), Some((ia, Dir::In)));
        assert_eq!(t.lookup_candidate(&ko, ho, co), Some((ia, Dir::Out)));
        let other = conn(2, 1000, FwdMethod::Nat, 500).in_key();
        assert_eq!(t.lookup_candidate(&other, t.hash(&other), ci), None, "a key the candidate's entry does not have");
        assert_eq!(t.lookup_candidate(&ki, hi, NO_CANDIDATE), Some((ia, Dir::In)), "no candidate: the search");
        // Another entry added: the candidates are searched past, and
        // still found by the search.
        let ib = t.insert(conn(2, 1000, FwdMethod::Nat, 500)).unwrap();
        assert_eq!(t.lookup_candidate(&ki, hi, ci), Some((ia, Dir::In)));
        assert_eq!(t.lookup_candidate(&other, t.hash(&other), ci), Some((ib, Dir::In)));
        // Unlinked: the slot still holds the entry, whose key the
        // candidate would confirm; the index no longer has it.
        t.seal();
        t.unlink(ia);
        assert_eq!(t.lookup_candidate(&ki, hi, ci), None);
        assert_eq!(t.lookup_candidate(&ko, ho, co), None);
        assert_eq!(t.lookup_candidate(&other, t.hash(&other), ci), Some((ib, Dir::In)));
    }

    #[test]
    fn retire_makes_room_at_once_and_the_wheel_frees_the_slot_once() {
        let mut t = ConnTable::new(2, 0);
        let a = t.insert(conn(1, 1, FwdMethod::Nat, 500)).unwrap();
        t.insert(conn(2, 1, FwdMethod::Nat, 500)).unwrap();
        assert_eq!(t.insert(conn(3, 1, FwdMethod::Nat, 500)), Err(DropReason::TableFull));
        t.retire(a);
        t.retire(a); // twice is once
        assert_eq!(t.len(), 1, "no longer counted");
        assert!(t.lookup(&conn(1, 1, FwdMethod::Nat, 0).in_key()).is_none());
        assert!(t.lookup(&conn(1, 1, FwdMethod::Nat, 0).out_key().unwrap()).is_none());
        // its place under the bound is free now, its slot is not reused yet
        let c = t.insert(conn(3, 1, FwdMethod::Nat, 600)).unwrap();
        assert_ne!(c, a);
        assert_eq!(t.len(), 2);
        // the wheel frees the retired slot without counting it again
        assert_eq!(t.expire(500, usize::MAX, |_| true), 2);
        assert_eq!(t.len(), 1);
        assert_eq!(t.expire(600, usize::MAX, |_| true), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn templates_outlive_their_connections() {
        let mut t = ConnTable::new(10, 0);
        let ti = template_and_its_connection(&mut t, 1, FwdMethod::Dr, 10, 1000, 50);
        // the template's own time comes first; the owner keeps it
        assert_eq!(t.expire(10, usize::MAX, |c| if c.is_template() && c.control > 0 { c.expires = 60; false } else { true }), 0);
        // the connection goes at 50 and releases the template
        assert_eq!(t.expire(50, usize::MAX, |_| true), 1);
        assert_eq!(t.get(ti).control, 0);
        assert_eq!(t.expire(60, usize::MAX, |c| c.control == 0), 1);
        assert!(t.is_empty());
        // an unlinked template with live connections waits for them
        let ti = template_and_its_connection(&mut t, 2, FwdMethod::Dr, 100, 1000, 300);
        t.unlink(ti);
        assert_eq!(t.expire(200, usize::MAX, |_| true), 0, "dead template kept while it controls a connection");
        assert_eq!(t.expire(300, usize::MAX, |_| true), 1);
        assert_eq!(t.expire(320, usize::MAX, |_| true), 1);
        assert!(t.is_empty());
    }

    /// One run over a long gap (a replay's quiet minutes, a budget's
    /// backlog) ends entries in the order of their times, as many short
    /// runs would: a template used again after its connection was made
    /// still sits in its first slot, but its connection, due earlier,
    /// gives back its count first, so the template ends in the same run
    /// rather than being kept another timeout.
    #[test]
    fn a_long_gap_ends_a_connection_before_the_template_that_outlives_it() {
        let mut t = ConnTable::new(10, 0);
        let ti = template_and_its_connection(&mut t, 1, FwdMethod::Dr, 100, 1000, 160);
        // used again: its time moves on, its slot does not
        t.get_mut(ti).expires = 220;
        let mut rearmed = 0;
        let freed = t.expire(4000, usize::MAX, |c| {
            if c.is_template() && c.control > 0 {
                rearmed += 1;
                c.expires = 4000 + 120;
                false
            } else {
                true
            }
        });
        assert_eq!((freed, rearmed), (2, 0), "the connection (160) ended before the template (220) was looked at");
        assert!(t.is_empty());
    }

    /// NAT reply keys whose client address and port differ in ways that
    /// cancel when the port is XORed onto the address (the old hash gave
    /// these equal hashes) hash apart.
    #[test]
    fn ports_do_not_cancel_address_bits() {
        let seed = [0x9e37_79b9_7f4a_7c15, 0xc2b2_ae3d_27d4_eb4f | 1, 0x1656_67b1_9e37_79f9 | 1];
        let rs = Ipv4Addr::new(10, 0, 1, 1);
        let mut seen = std::collections::HashSet::new();
        for d in 0..4096u32 {
            let client = Ipv4Addr::from(0x6440_0000 ^ (d << 8));
            let k = Key { saddr: rs, daddr: client, sport: 8080, dport: 0x4000 ^ d as u16, proto: 6 };
            assert!(seen.insert(hash_key(&seed, &k)), "hash of {k:?} repeats");
        }
    }

    #[test]
    fn ipv4_key_is_compact() {
        assert!(std::mem::size_of::<Key<Ipv4Addr>>() <= 16);
    }

    /// An IPv4 connection is one cache line: a field more doubles the
    /// table's memory (docs/performance.md, 128 bytes per connection).
    #[test]
    fn ipv4_conn_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Conn<Ipv4Addr>>(), 64);
        assert_eq!(std::mem::size_of::<Conn<std::net::Ipv6Addr>>(), 128);
    }

    /// Growth (with its drain interleaved with everything else),
    /// collisions and removals keep every key findable, against a model;
    /// many keys share their home bucket (a tiny index at first) and probe
    /// chains cross the wrap-around. With a provider, the next array is
    /// taken ready whenever it has been supplied in time.
    #[test]
    fn index_agrees_with_a_model_through_growth_and_removal() {
        for provided in [false, true] {
            let provider = crate::ipvs::mem::Provider::new();
            let reserve = if provided { provider.reserve(1 << 21) } else { Reserve::none() };
            let mut ix = Index::new();
            // (value, tag) of every key in the index, in no order: a
            // removal picks one by position and swap-removes it, O(1) (a
            // hash map's `keys().nth(k)` walked half the map per removal,
            // the bulk of this test's time under Miri).
            let mut model: Vec<(u32, u32)> = Vec::new();
            let mut x = 0x1234_5678u64;
            let mut rnd = || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            let mut drains = 0;
            // Miri interprets every access: a fifth of the steps still
            // grows the index several times (asserted below).
            let steps = if cfg!(miri) { 12_000u32 } else { 60_000 };
            for step in 0..steps {
                let r = rnd();
                if r % 3 != 0 || model.is_empty() {
                    // Tags from a small set at first: long chains, wrap-around.
                    let t = if step < 2000 { (r as u32) | 0xffff_0000 } else { r as u32 };
                    let was = ix.old.is_some();
                    ix.insert(t, step, &reserve);
                    drains += (!was && ix.old.is_some()) as u32;
                    model.push((step, t));
                } else if r % 7 == 0 {
                    ix.migrate((r >> 40) as usize % 8, &reserve);
                } else {
                    let (k, t) = model.swap_remove((r >> 20) as usize % model.len());
                    assert!(ix.remove(t, k));
                    assert!(!ix.remove(t, k), "removed twice");
                }
                if provided && step % 97 == 0 {
                    provider.supply();
                }
                if step % 5000 == 0 || (cfg!(miri) && step % 1000 == 0) {
                    for &(v, t) in &model {
                        assert_eq!(ix.find(t, |c| c == v), Some(v), "step {step}");
                    }
                }
                assert!(ix.len * 16 <= ix.room() * 15, "load at most 15/16");
            }
            assert!(drains >= if cfg!(miri) { 5 } else { 8 }, "{drains} growths");
            assert_eq!(ix.len, model.len());
            for &(v, t) in &model {
                assert_eq!(ix.find(t, |c| c == v), Some(v));
            }
            while ix.migrate(3, &reserve) {}
            assert!(ix.old.is_none());
            for &(v, t) in &model {
                assert_eq!(ix.find(t, |c| c == v), Some(v));
                assert!(ix.remove(t, v));
            }
            assert_eq!(ix.len, 0);
            assert!(ix.cur.buckets.iter().all(|b| b.over == 0 && b.inv == [0; WAYS]), "every passage was undone");
            if provided {
                assert!(reserve.stats().ready > 0, "{:?}", reserve.stats());
            }
        }
    }

    /// A table that grows to many times its first size while its index is
    /// drained a step at a time finds every key in both directions at every
    /// step, and the drain finishes long before the next growth.
    #[test]
    fn lookups_during_index_growth() {
        let mut t: ConnTable<Ipv4Addr> = ConnTable::new(1 << 20, 0);
        let n = if cfg!(miri) { 6_000u32 } else { 40_000 };
        let mk = |i: u32| {
            let mut c = conn(0, 0, FwdMethod::Nat, 10);
            c.caddr = Ipv4Addr::from(0x6440_0000 + i);
            c
        };
        let mut mid_drain = 0;
        for i in 0..n {
            t.insert(mk(i)).unwrap();
            assert_eq!(t.draining(), t.index.old.is_some(), "at {i}");
            if t.index.old.is_some() {
                mid_drain += 1;
                // The burst's prefetches, in both arrays (hints: any hash).
                let h = t.hash(&mk(i / 2).in_key());
                t.prefetch(h);
                t.prefetch_conn(h);
                t.prefetch_old(h);
                // mid-drain: old and new keys alike
                for j in [0, i / 2, i] {
                    let c = mk(j);
                    assert!(t.lookup(&c.in_key()).is_some_and(|(_, d)| d == Dir::In), "{j} at {i}");
                    assert!(t.lookup(&c.out_key().unwrap()).is_some_and(|(_, d)| d == Dir::Out), "{j} at {i}");
                }
            }
        }
        assert!(mid_drain >= 100, "only {mid_drain} inserts saw the index mid-growth");
        while t.maintain(16) {}
        assert!(!t.draining(), "drained");
        for i in 0..n {
            assert!(t.lookup(&mk(i).in_key()).is_some());
        }
    }

    /// One step of [`table_agrees_with_a_model_through_every_operation`].
    #[derive(Clone, Debug)]
    enum Op {
        /// A connection from client `c`, port `p`, due in `ttl` ticks.
        Insert { c: u8, p: u16, ttl: u16 },
        /// Unlinks the `n`-th live entry (by client order).
        Unlink(u16),
        /// Evicts an entry whose client is odd (the soonest from where the
        /// last eviction took one).
        EvictOdd,
        /// Moves the clock on by `dt` ticks and expires, `budget` at most.
        Advance { dt: u16, budget: u8 },
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (any::<u8>(), 0u16..4, 1u16..600).prop_map(|(c, p, ttl)| Op::Insert { c, p, ttl }),
            1 => any::<u16>().prop_map(Op::Unlink),
            1 => Just(Op::EvictOdd),
            2 => (0u16..300, 1u8..64).prop_map(|(dt, budget)| Op::Advance { dt, budget }),
        ]
    }

    proptest::proptest! {
        /// Inserts, unlinks, evictions and expiry in any order: the table
        /// finds exactly the entries a plain model holds, counts them
        /// right, never frees a slot twice or hands out a slot in use, and
        /// its wheel ends empty once every entry is due.
        #[test]
        fn table_agrees_with_a_model_through_every_operation(ops in proptest::collection::vec(op(), 1..300)) {
            use proptest::prelude::*;
            use std::collections::BTreeMap;
            let mut t: ConnTable<Ipv4Addr> = ConnTable::new(64, 0);
            // (client, port) -> (slot, expires); `dying`: unlinked, not yet
            // freed (a key is never live and dying at once: see Insert).
            let mut live: BTreeMap<(u8, u16), (u32, u32)> = BTreeMap::new();
            let mut dying: BTreeMap<(u8, u16), u32> = BTreeMap::new();
            let mut now = 0u32;
            for o in ops {
                match o {
                    Op::Insert { c, p, ttl } => {
                        if dying.contains_key(&(c, p)) {
                            continue;
                        }
                        let r = t.insert(conn(c, p, FwdMethod::Dr, now + ttl as u32));
                        let full = live.len() + dying.len() >= 64;
                        match r {
                            Ok(i) => {
                                prop_assert!(!live.contains_key(&(c, p)) && !full);
                                prop_assert!(live.values().all(|&(s, _)| s != i) && dying.values().all(|&s| s != i), "slot {} in use", i);
                                live.insert((c, p), (i, now + ttl as u32));
                            }
                            Err(DropReason::ConnClash) => prop_assert!(live.contains_key(&(c, p))),
                            Err(DropReason::TableFull) => prop_assert!(full),
                            Err(e) => prop_assert!(false, "{:?}", e),
                        }
                    }
                    Op::Unlink(n) => {
                        if let Some((&k, &(i, _))) = live.iter().nth(n as usize % live.len().max(1)) {
                            t.unlink(i);
                            live.remove(&k);
                            dying.insert(k, i);
                        }
                    }
                    Op::EvictOdd => {
                        let mut released = None;
                        let got = t.evict(1000, |c| c.caddr.octets()[3] % 2 == 1, |c| released = Some((c.caddr.octets()[3], c.cport)));
                        prop_assert_eq!(got.is_some(), released.is_some());
                        match got {
                            Some((c, true)) => {
                                let k = (c.caddr.octets()[3], c.cport);
                                prop_assert_eq!(Some(k), released);
                                prop_assert!(k.0 % 2 == 1);
                                prop_assert!(live.remove(&k).is_some(), "evicted {:?}, not live", k);
                            }
                            Some((c, false)) => {
                                let k = (c.caddr.octets()[3], c.cport);
                                prop_assert!(dying.remove(&k).is_some(), "reclaimed {:?}, not unlinked", k);
                            }
                            None => prop_assert!(live.keys().all(|k| k.0 % 2 == 0) && dying.is_empty()),
                        }
                    }
                    Op::Advance { dt, budget } => {
                        now += dt as u32;
                        let mut seen = Vec::new();
                        t.expire(now, budget as usize, |c| {
                            seen.push((c.caddr.octets()[3], c.cport));
                            true
                        });
                        for k in seen {
                            // Dead entries are freed when the wheel reaches
                            // them; live ones only when due.
                            if dying.remove(&k).is_none() {
                                let exp = live.remove(&k).map(|(_, e)| e);
                                prop_assert!(exp.is_some_and(|e| now >= e), "{:?} expired early or twice", k);
                            }
                        }
                    }
                }
                prop_assert_eq!(t.len(), live.len() + dying.len());
                for (&(c, p), &(i, _)) in &live {
                    prop_assert_eq!(t.lookup(&conn(c, p, FwdMethod::Dr, 0).in_key()), Some((i, Dir::In)));
                }
            }
            // Everything falls due in the end, and the wheel empties.
            t.expire(now + 10_000, usize::MAX, |_| true);
            t.expire(now + 20_000, usize::MAX, |_| true);
            prop_assert_eq!(t.len(), 0);
            prop_assert!(t.wheel.is_empty());
            let mut f = t.free.clone();
            f.sort_unstable();
            f.dedup();
            prop_assert_eq!(f.len(), t.free.len(), "a slot on the free list twice");
        }
    }

    #[test]
    fn many_connections_and_memory() {
        let n = 100_000u32;
        let mut t = ConnTable::new(n as usize, 0);
        for i in 0..n {
            let mut c = conn(0, 0, FwdMethod::Nat, 10);
            c.caddr = Ipv4Addr::from(0x6440_0000 + i);
            c.lport = i as u16;
            t.insert(c).unwrap();
        }
        let mut hits = 0;
        for i in 0..n {
            let mut c = conn(0, 0, FwdMethod::Nat, 10);
            c.caddr = Ipv4Addr::from(0x6440_0000 + i);
            let (idx, dir) = t.lookup(&c.in_key()).unwrap();
            assert_eq!((t.get(idx).caddr, dir), (c.caddr, Dir::In));
            let (idx2, dir2) = t.lookup(&c.out_key().unwrap()).unwrap();
            assert_eq!((idx2, dir2), (idx, Dir::Out));
            hits += 1;
        }
        assert_eq!(hits, n);
        let per = t.memory() as f64 / n as f64;
        assert!(per <= 128.0, "{per} bytes per NAT connection");
        // prefetching is only a hint, for any hash
        t.prefetch(0);
        t.prefetch_conn(u64::MAX);
    }
}

