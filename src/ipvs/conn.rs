//! Connections and the per-worker connection table.
//!
//! A [`ConnTable`] is owned by one worker and touched by no one else: a
//! hashbrown map from the packet's 5-tuple as seen on the wire to a slot
//! in a slab of [`Conn`]s, plus the expiry [`Wheel`]. A connection whose
//! replies pass through the director (NAT, FULLNAT) has two keys, one per
//! direction, so a reply finds its connection with the same single lookup
//! as a client packet:
//!
//! | method  | in key (client → VIP)      | out key (real server → ...)   |
//! |---------|----------------------------|-------------------------------|
//! | DR, TUN | caddr:cport → vaddr:vport  | —                             |
//! | NAT     | caddr:cport → vaddr:vport  | daddr:dport → caddr:cport     |
//! | FULLNAT | caddr:cport → vaddr:vport  | daddr:dport → laddr:lport     |
//!
//! The table is generic over the address family ([`Ip`]), so an IPv4 key
//! is 16 bytes and an IPv6 key 40. It is bounded: `insert` fails with
//! [`DropReason::TableFull`] rather than grow past its limit.

use super::timer::{reached, Wheel, TICKS_PER_SEC};
use super::FwdMethod;
use crate::ctl::snapshot::Hop;
use crate::stats::{Dir, DropReason};
use crate::wire::Ip;
use hashbrown::HashMap;

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

/// One connection (or persistence template).
#[derive(Clone, Copy, Debug)]
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

/// The per-worker connection table of one address family.
pub struct ConnTable<A: Ip> {
    map: HashMap<Key<A>, u32>,
    slab: Vec<Conn<A>>,
    free: Vec<u32>,
    wheel: Wheel,
    live: usize,
    max: usize,
}

impl<A: Ip> ConnTable<A> {
    /// An empty table holding at most `max` entries (connections and
    /// templates), with its clock at `now` (ticks).
    pub fn new(max: usize, now: u32) -> Self {
        ConnTable { map: HashMap::new(), slab: Vec::new(), free: Vec::new(), wheel: Wheel::new(now), live: 0, max: max.max(1) }
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

    /// Finds the entry for a packet: its slab index and the direction.
    #[inline]
    pub fn lookup(&self, k: &Key<A>) -> Option<(u32, Dir)> {
        self.map.get(k).map(|&v| (v >> 1, if v & 1 == 0 { Dir::In } else { Dir::Out }))
    }

    /// Looks up a key and returns the entry.
    #[inline]
    pub fn get_by_key(&self, k: &Key<A>) -> Option<(u32, &Conn<A>)> {
        self.map.get(k).map(|&v| (v >> 1, &self.slab[(v >> 1) as usize]))
    }

    #[inline]
    pub fn get(&self, idx: u32) -> &Conn<A> {
        &self.slab[idx as usize]
    }

    #[inline]
    pub fn get_mut(&mut self, idx: u32) -> &mut Conn<A> {
        &mut self.slab[idx as usize]
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
        let ok = c.out_key();
        if self.map.contains_key(&ik) || ok.is_some_and(|k| self.map.contains_key(&k)) {
            return Err(DropReason::ConnClash);
        }
        let expires = c.expires;
        let idx = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = c;
                i
            }
            None => {
                self.slab.push(c);
                (self.slab.len() - 1) as u32
            }
        };
        self.map.insert(ik, idx << 1);
        if let Some(k) = ok {
            self.map.insert(k, (idx << 1) | 1);
        }
        self.wheel.insert(idx, expires);
        self.live += 1;
        Ok(idx)
    }

    /// Removes an entry's keys now (later packets miss it); its slot is
    /// freed, and `on_expire` called, when the wheel reaches it.
    pub fn unlink(&mut self, idx: u32) {
        let c = &mut self.slab[idx as usize];
        if c.flags & flags::DEAD != 0 {
            return;
        }
        c.flags |= flags::DEAD;
        let (ik, ok) = (c.in_key(), c.out_key());
        self.map.remove(&ik);
        if let Some(k) = ok {
            self.map.remove(&k);
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
        let slab = &mut self.slab;
        let map = &mut self.map;
        let free = &mut self.free;
        self.wheel.advance(now, budget, |idx| {
            let c = &mut slab[idx as usize];
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
                map.remove(&c.in_key());
                if let Some(k) = c.out_key() {
                    map.remove(&k);
                }
            }
            let (template, control) = (c.is_template(), c.control);
            c.flags = flags::DEAD;
            free.push(idx);
            freed += 1;
            if !template && control != 0 {
                let t = &mut slab[(control - 1) as usize];
                t.control = t.control.saturating_sub(1);
            }
            None
        });
        self.live -= freed;
        freed
    }

    /// Visits every live entry (control plane listings, flush).
    pub fn for_each(&self, mut f: impl FnMut(u32, &Conn<A>)) {
        for (i, c) in self.slab.iter().enumerate() {
            if c.flags & flags::DEAD == 0 {
                f(i as u32, c);
            }
        }
    }

    /// Number of slots, live or free: the range of [`ConnTable::slot`].
    pub fn slots(&self) -> usize {
        self.slab.len()
    }

    /// The entry in slot `idx` if it is live (visits a slice at a time).
    pub fn slot(&self, idx: usize) -> Option<&Conn<A>> {
        self.slab.get(idx).filter(|c| c.flags & flags::DEAD == 0)
    }

    /// Bytes of memory held, approximately (slab, map buckets, wheel).
    pub fn memory(&self) -> usize {
        self.slab.capacity() * std::mem::size_of::<Conn<A>>()
            + self.map.capacity() * (std::mem::size_of::<(Key<A>, u32)>() + 1)
            + self.free.capacity() * 4
            + self.wheel.len() * 4
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
        let c = t.get(nat).clone();
        assert_eq!(t.lookup(&c.in_key()), Some((nat, Dir::In)));
        assert_eq!(t.lookup(&c.out_key().unwrap()), Some((nat, Dir::Out)));
        let f = t.get(full).clone();
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

    #[test]
    fn ipv4_key_is_compact() {
        assert!(std::mem::size_of::<Key<Ipv4Addr>>() <= 16);
    }
}
