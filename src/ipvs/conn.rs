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
use super::FwdMethod;
use crate::ctl::snapshot::Hop;
use crate::stats::{Dir, DropReason};
use crate::wire::Ip;
use huge::HugeArray;
use std::hash::BuildHasher;

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
    pub const RETIRED: u8 = 64;
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
            FwdMethod::Nat => {
                Some(Key { saddr: self.daddr, daddr: self.caddr, sport: self.dport, dport: self.cport, proto: self.proto })
            }
            FwdMethod::FullNat => {
                Some(Key { saddr: self.daddr, daddr: self.laddr, sport: self.dport, dport: self.lport, proto: self.proto })
            }
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
/// The smallest index: 16 buckets (112 keys, 1 KiB).
const MIN_BITS: u32 = 4;

/// One cache line of the index.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    /// Tags of the `WAYS` slots; the eighth lane is padding so that two
    /// 16-byte compares cover them.
    tag: [u32; 8],
    val: [u32; WAYS],
    /// Keys that passed this bucket because it was full when they were
    /// added: a search goes on to the next bucket while this is not 0.
    over: u32,
}

const EMPTY_BUCKET: Bucket = Bucket { tag: [0; 8], val: [EMPTY; WAYS], over: 0 };

impl Bucket {
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

/// Open addressing over buckets with linear probing by bucket; each key's
/// home bucket is the top `bits` bits of its tag. Values are unique.
struct Index {
    buckets: HugeArray<Bucket>,
    bits: u32,
    len: usize,
}

impl Index {
    fn new() -> Index {
        Index { buckets: HugeArray::filled(1 << MIN_BITS, EMPTY_BUCKET), bits: MIN_BITS, len: 0 }
    }

    #[inline(always)]
    fn home(&self, tag: u32) -> usize {
        ((tag as u64) >> (32 - self.bits)) as usize
    }

    #[inline]
    fn prefetch(&self, tag: u32) {
        prefetch(self.buckets.as_ptr().wrapping_add(self.home(tag)));
    }

    /// Calls `f` with the value of every slot of the home bucket whose tag
    /// matches (the likely candidates; no confirmation).
    #[inline]
    fn candidates(&self, tag: u32, mut f: impl FnMut(u32)) {
        if let Some(b) = self.buckets.get(self.home(tag)) {
            let mut m = b.matches(tag);
            while m != 0 {
                let v = b.val[m.trailing_zeros() as usize];
                m &= m - 1;
                if v != EMPTY {
                    f(v);
                }
            }
        }
    }

    /// The value whose tag matches and that `eq` confirms (the index's
    /// search, for its tests; `ConnTable::lookup_hashed` inlines it).
    #[cfg(test)]
    fn find(&self, tag: u32, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let mask = self.buckets.len() - 1;
        let mut b = self.home(tag);
        for _ in 0..self.buckets.len() {
            let bk = &self.buckets[b];
            let mut m = bk.matches(tag);
            while m != 0 {
                let v = bk.val[m.trailing_zeros() as usize];
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

    /// Adds a value (not present yet). Grows at 7/8 load.
    fn insert(&mut self, tag: u32, val: u32) {
        if (self.len + 1) * 8 > self.buckets.len() * WAYS * 7 && self.bits < 31 {
            self.grow();
        }
        self.place(tag, val);
        self.len += 1;
    }

    fn place(&mut self, tag: u32, val: u32) {
        let mask = self.buckets.len() - 1;
        let mut b = self.home(tag);
        // Terminates: the load is below 1, so some bucket has room.
        loop {
            let bk = &mut self.buckets[b];
            if let Some(i) = bk.val.iter().position(|&v| v == EMPTY) {
                bk.tag[i] = tag;
                bk.val[i] = val;
                return;
            }
            bk.over += 1;
            b = (b + 1) & mask;
        }
    }

    /// Removes `val` (filed under `tag`). False when it is not there.
    fn remove(&mut self, tag: u32, val: u32) -> bool {
        let mask = self.buckets.len() - 1;
        let home = self.home(tag);
        let mut b = home;
        for passed in 0..self.buckets.len() {
            let bk = &mut self.buckets[b];
            if let Some(i) = bk.val.iter().position(|&v| v == val) {
                bk.val[i] = EMPTY;
                let mut p = home;
                for _ in 0..passed {
                    self.buckets[p].over -= 1;
                    p = (p + 1) & mask;
                }
                self.len -= 1;
                return true;
            }
            if bk.over == 0 {
                return false;
            }
            b = (b + 1) & mask;
        }
        false
    }

    /// Doubles the buckets: every key moves by its own tag, no key or
    /// connection is read.
    fn grow(&mut self) {
        let old = std::mem::replace(&mut self.buckets, HugeArray::filled(2 << self.bits, EMPTY_BUCKET));
        self.bits += 1;
        for bk in old.iter() {
            for i in 0..WAYS {
                if bk.val[i] != EMPTY {
                    self.place(bk.tag[i], bk.val[i]);
                }
            }
        }
    }

    fn memory(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Bucket>()
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

    fn push(&mut self, c: Conn<A>) -> u32 {
        if self.len == self.chunks.len() * CHUNK {
            self.chunks.push(HugeArray::with_capacity(CHUNK));
        }
        let last = self.chunks.len() - 1;
        self.chunks[last].push(c);
        self.len += 1;
        (self.len - 1) as u32
    }

    fn memory(&self) -> usize {
        self.chunks.len() * CHUNK * std::mem::size_of::<Conn<A>>() + self.chunks.capacity() * std::mem::size_of::<HugeArray<Conn<A>>>()
    }
}

/// The per-worker connection table of one address family.
pub struct ConnTable<A: Ip> {
    index: Index,
    seed: [u64; 3],
    slab: Slab<A>,
    free: Vec<u32>,
    wheel: Wheel,
    live: usize,
    max: usize,
}

/// The key a value of the index stands for, compared with `k`.
#[inline(always)]
fn same_key<A: Ip>(c: &Conn<A>, val: u32, k: &Key<A>) -> bool {
    if val & 1 == 0 {
        c.caddr == k.saddr && c.cport == k.sport && c.vaddr == k.daddr && c.vport == k.dport && c.proto == k.proto
    } else {
        c.out_key().is_some_and(|o| o == *k)
    }
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
            max: max.max(1),
        }
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
        self.max = max.max(1);
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
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        self.index.prefetch(tag(hash));
    }

    /// Starts fetching the connections the bucket of a key's hash points at
    /// (burst stage 2, once the bucket has arrived).
    #[inline]
    pub fn prefetch_conn(&self, hash: u64) {
        let slab = &self.slab;
        self.index.candidates(tag(hash), |v| prefetch(slab.addr(v >> 1)));
    }

    /// Finds the entry for a packet: its slab index and the direction.
    #[inline(always)]
    pub fn lookup(&self, k: &Key<A>) -> Option<(u32, Dir)> {
        self.lookup_hashed(k, self.hash(k))
    }

    /// [`ConnTable::lookup`] with the key's hash already computed.
    #[inline]
    pub fn lookup_hashed(&self, k: &Key<A>, hash: u64) -> Option<(u32, Dir)> {
        // Index::find's loop, written out so that the key comparison is
        // inlined into it.
        let t = tag(hash);
        let ix = &self.index;
        let mask = ix.buckets.len() - 1;
        let mut b = ix.home(t);
        for _ in 0..ix.buckets.len() {
            let bk = &ix.buckets[b];
            let mut m = bk.matches(t);
            while m != 0 {
                let v = bk.val[m.trailing_zeros() as usize];
                m &= m - 1;
                if v != EMPTY && same_key(self.slab.get(v >> 1), v, k) {
                    return Some((v >> 1, if v & 1 == 0 { Dir::In } else { Dir::Out }));
                }
            }
            if bk.over == 0 {
                return None;
            }
            b = (b + 1) & mask;
        }
        None
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
        if self.live >= self.max {
            return Err(DropReason::TableFull);
        }
        let ik = c.in_key();
        let ih = self.hash(&ik);
        let ok = c.out_key().map(|k| (k, self.hash(&k)));
        if self.lookup_hashed(&ik, ih).is_some() || ok.is_some_and(|(k, h)| self.lookup_hashed(&k, h).is_some()) {
            return Err(DropReason::ConnClash);
        }
        let expires = c.expires;
        let idx = match self.free.pop() {
            Some(i) => {
                *self.slab.get_mut(i) = c;
                i
            }
            None => self.slab.push(c),
        };
        self.index.insert(tag(ih), idx << 1);
        if let Some((_, h)) = ok {
            self.index.insert(tag(h), (idx << 1) | 1);
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
        self.wheel.advance(now, budget, |idx| {
            let c = slab.get_mut(idx);
            let dead = c.flags & flags::DEAD != 0;
            if !dead && !reached(now, c.expires) {
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
    /// time, the live entry due soonest that `pick` accepts, looking at
    /// no more than `budget` entries. `on_evict` releases what it holds;
    /// then its keys leave the index and its slot is free at once.
    /// Returns whether an entry was ended.
    pub fn evict(&mut self, budget: usize, mut pick: impl FnMut(&Conn<A>) -> bool, on_evict: impl FnOnce(&mut Conn<A>)) -> bool {
        let slab = &self.slab;
        let Some(idx) = self.wheel.evict_ahead(budget, |i| {
            let c = slab.get(i);
            c.flags & flags::DEAD == 0 && pick(c)
        }) else {
            return false;
        };
        let c = self.slab.get_mut(idx);
        on_evict(c);
        let c = *c;
        Self::unindex(&mut self.index, &self.seed, &c, idx);
        Self::free_slot(&mut self.slab, &mut self.free, idx);
        self.live -= 1;
        true
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

/// Arrays the kernel may back with 2 MiB pages.
///
/// A big table is read at random: with 4 KiB pages nearly every lookup
/// also misses the TLB, and under a hypervisor a page walk costs several
/// more memory accesses. Arrays of 2 MiB or more are allocated 2 MiB
/// aligned and marked `MADV_HUGEPAGE` (effective when transparent huge
/// pages are `always` or `madvise`; a hint otherwise ignored). All the
/// `unsafe` of the connection table is here.
mod huge {
    use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
    use std::ptr::NonNull;

    const HUGE_PAGE: usize = 2 << 20;

    /// A fixed-capacity array of `Copy` values (nothing to drop).
    pub(super) struct HugeArray<T: Copy> {
        ptr: NonNull<T>,
        len: usize,
        cap: usize,
    }

    // SAFETY: a HugeArray owns its elements like a Vec does.
    unsafe impl<T: Copy + Send> Send for HugeArray<T> {}
    // SAFETY: shared access only reads, like &Vec.
    unsafe impl<T: Copy + Sync> Sync for HugeArray<T> {}

    impl<T: Copy> HugeArray<T> {
        fn layout(cap: usize) -> Layout {
            let bytes = cap.max(1).checked_mul(std::mem::size_of::<T>().max(1)).expect("array size overflows");
            let align = if bytes >= HUGE_PAGE { HUGE_PAGE } else { std::mem::align_of::<T>() };
            Layout::from_size_align(bytes, align).expect("array layout")
        }

        /// Room for `cap` elements, none yet.
        pub(super) fn with_capacity(cap: usize) -> Self {
            let layout = Self::layout(cap);
            // SAFETY: the layout's size is not zero.
            let p = unsafe { alloc(layout) } as *mut T;
            let Some(ptr) = NonNull::new(p) else { handle_alloc_error(layout) };
            #[cfg(target_os = "linux")]
            if layout.size() >= HUGE_PAGE {
                // SAFETY: the range is our own fresh allocation; madvise
                // only changes how the kernel backs it. Errors (no THP)
                // leave ordinary pages, which is fine.
                unsafe {
                    libc::madvise(ptr.as_ptr().cast(), layout.size(), libc::MADV_HUGEPAGE);
                }
            }
            HugeArray { ptr, len: 0, cap }
        }

        /// `n` copies of `v`.
        pub(super) fn filled(n: usize, v: T) -> Self {
            let mut a = Self::with_capacity(n);
            for i in 0..n {
                // SAFETY: i < cap; the slot is uninitialised, write does
                // not read or drop it.
                unsafe { a.ptr.as_ptr().add(i).write(v) };
            }
            a.len = n;
            a
        }

        /// Appends `v`; a full array keeps its elements and ignores it
        /// (callers check [`HugeArray::capacity`] first).
        pub(super) fn push(&mut self, v: T) {
            if self.len < self.cap {
                // SAFETY: len < cap: in bounds and uninitialised.
                unsafe { self.ptr.as_ptr().add(self.len).write(v) };
                self.len += 1;
            }
        }

        pub(super) fn capacity(&self) -> usize {
            self.cap
        }
    }

    impl<T: Copy> std::ops::Deref for HugeArray<T> {
        type Target = [T];
        fn deref(&self) -> &[T] {
            // SAFETY: the first len elements are initialised.
            unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
        }
    }

    impl<T: Copy> std::ops::DerefMut for HugeArray<T> {
        fn deref_mut(&mut self) -> &mut [T] {
            // SAFETY: the first len elements are initialised; we hold &mut.
            unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
        }
    }

    impl<T: Copy> Drop for HugeArray<T> {
        fn drop(&mut self) {
            // SAFETY: allocated in with_capacity with this same layout.
            unsafe { dealloc(self.ptr.as_ptr().cast(), Self::layout(self.cap)) }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn push_fill_and_alignment() {
            let mut a = HugeArray::<u64>::with_capacity(3);
            a.push(1);
            a.push(2);
            a.push(3);
            a.push(4); // full: ignored
            assert_eq!(&a[..], &[1, 2, 3]);
            let b = HugeArray::filled(HUGE_PAGE / 8, 7u64);
            assert_eq!(b.len(), HUGE_PAGE / 8);
            assert!(b.iter().all(|&x| x == 7));
            assert_eq!(b.as_ptr() as usize % HUGE_PAGE, 0, "big arrays are huge-page aligned");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn conn(c: u8, cport: u16, fwd: FwdMethod, expires: u32) -> Conn<Ipv4Addr> {
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
            dest_hop: Hop { port: 0, mac: [0; 6] },
            client_hop: Hop { port: 0, mac: [0; 6] },
            proto: 6,
            state: 0,
            fwd,
            flags: 0,
        }
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
        assert!(t.evict(10, |c| c.caddr.octets()[3] != 3, |c| released.push(c.caddr.octets()[3])));
        assert_eq!(released, vec![2]);
        assert!(t.has_room(1) && t.len() == 2);
        let kb = conn(2, 1, FwdMethod::FullNat, 0);
        assert!(t.lookup(&kb.in_key()).is_none() && t.lookup(&kb.out_key().unwrap()).is_none());
        // its slot is the next one used, and the wheel never visits it twice
        assert_eq!(t.insert(conn(4, 1, FwdMethod::Nat, 30)).unwrap(), b);
        assert!(!t.evict(10, |_| false, |_| unreachable!()));
        let mut gone = vec![];
        assert_eq!(t.expire(100, usize::MAX, |c| { gone.push(c.caddr.octets()[3]); true }), 3);
        gone.sort();
        assert_eq!(gone, vec![1, 3, 4]);
        assert_eq!(t.len(), 0);
        // unlinked (dead) entries are never picked
        let d = t.insert(conn(5, 1, FwdMethod::Nat, 200)).unwrap();
        t.unlink(d);
        assert!(!t.evict(10, |_| true, |_| ()));
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
        assert!(t.evict(10, |c| !c.is_template(), |_| ()));
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
        let mut tm = conn(1, 0, FwdMethod::Dr, 10);
        tm.flags = flags::TEMPLATE;
        tm.control = 1;
        tm.proto = 0x86;
        let ti = t.insert(tm).unwrap();
        let mut c = conn(1, 1000, FwdMethod::Dr, 50);
        c.control = ti + 1;
        t.insert(c).unwrap();
        // the template's own time comes first; the owner keeps it
        assert_eq!(t.expire(10, usize::MAX, |c| if c.is_template() && c.control > 0 { c.expires = 60; false } else { true }), 0);
        // the connection goes at 50 and releases the template
        assert_eq!(t.expire(50, usize::MAX, |_| true), 1);
        assert_eq!(t.get(ti).control, 0);
        assert_eq!(t.expire(60, usize::MAX, |c| c.control == 0), 1);
        assert!(t.is_empty());
        // an unlinked template with live connections waits for them
        let mut tm = conn(2, 0, FwdMethod::Dr, 100);
        tm.flags = flags::TEMPLATE;
        tm.control = 1;
        let ti = t.insert(tm).unwrap();
        let mut c = conn(2, 1000, FwdMethod::Dr, 300);
        c.control = ti + 1;
        t.insert(c).unwrap();
        t.unlink(ti);
        assert_eq!(t.expire(200, usize::MAX, |_| true), 0, "dead template kept while it controls a connection");
        assert_eq!(t.expire(300, usize::MAX, |_| true), 1);
        assert_eq!(t.expire(320, usize::MAX, |_| true), 1);
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

    /// Growth, collisions and removals keep every key findable, against a
    /// model; many keys share their home bucket (a tiny index at first)
    /// and probe chains cross the wrap-around.
    #[test]
    fn index_agrees_with_a_model_through_growth_and_removal() {
        let mut ix = Index::new();
        let mut model: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
        let mut x = 0x1234_5678u64;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for step in 0..60_000u32 {
            let r = rnd();
            if r % 3 != 0 || model.is_empty() {
                // Tags from a small set at first: long chains, wrap-around.
                let t = if step < 2000 { (r as u32) | 0xffff_0000 } else { r as u32 };
                ix.insert(t, step);
                model.insert(step, t);
            } else {
                let k = *model.keys().nth((r >> 20) as usize % model.len()).unwrap();
                let t = model.remove(&k).unwrap();
                assert!(ix.remove(t, k));
                assert!(!ix.remove(t, k), "removed twice");
            }
            if step % 5000 == 0 {
                for (&v, &t) in &model {
                    assert_eq!(ix.find(t, |c| c == v), Some(v), "step {step}");
                }
            }
        }
        assert_eq!(ix.len, model.len());
        for (&v, &t) in &model {
            assert_eq!(ix.find(t, |c| c == v), Some(v));
            assert!(ix.remove(t, v));
        }
        assert!(ix.buckets.iter().all(|b| b.over == 0 && b.val == [EMPTY; WAYS]), "every passage was undone");
    }

    /// One step of [`table_agrees_with_a_model_through_every_operation`].
    #[derive(Clone, Debug)]
    enum Op {
        /// A connection from client `c`, port `p`, due in `ttl` ticks.
        Insert { c: u8, p: u16, ttl: u16 },
        /// Unlinks the `n`-th live entry (by client order).
        Unlink(u16),
        /// Evicts the soonest entry whose client is odd.
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
                        prop_assert_eq!(got, released.is_some());
                        match released {
                            Some(k) => {
                                prop_assert!(k.0 % 2 == 1);
                                prop_assert!(live.remove(&k).is_some(), "evicted {:?}, not live", k);
                            }
                            None => prop_assert!(live.keys().all(|k| k.0 % 2 == 0)),
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
