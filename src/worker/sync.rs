//! The worker's side of connection sync (`src/sync/`), off the hot path
//! except for one branch per packet while a master daemon runs.
//!
//! Sending (a master daemon runs: [`SyncTap`] is set): when a packet
//! makes a connection due, the worker pushes a [`SyncConn`] into its
//! link's bounded event queue after the packet is forwarded; a full queue
//! drops the event (counted). A connection is due, as IPVS's
//! `ip_vs_sync_conn_needed` decides (without its `sync_refresh_period`
//! timestamp, which the sync thread's refresh walks replace):
//!
//! - TCP only in ESTABLISHED, FIN_WAIT, CLOSE, CLOSE_WAIT, TIME_WAIT (and
//!   SYN_RECV when configured): on every change into one of them, and
//!   UDP in any case,
//! - at its `sync_threshold`-th incoming packet and every `sync_period`
//!   packets after that (a countdown in the connection: no division),
//! - with the persistence template that controls it, if any.
//!
//! Receiving: [`SyncPort::serve`] runs once per loop between bursts: it
//! picks up new parameters, applies up to `INBOX_PER_LOOP` received
//! connections ([`Worker::sync_apply`]) and carries on with a table walk
//! the sync thread asked for. A received connection lands as the master
//! had it: its state, a timer of its timeout, bound to the same real
//! server (found by address and port in this director's service; the
//! forwarding method is this director's), its FULLNAT local port
//! reserved. Without a known next hop towards the client, the first
//! client packet names it (`Hop::LEARN`).

use super::{release, template_key, Family, Worker, NO_DEST};
use crate::ipvs::conn::{flags, Conn, Key};
use crate::ipvs::dest::Hop;
use crate::ipvs::laddr::{port_owner, PoolKey};
use crate::ipvs::proto::TcpState;
use crate::ipvs::seqadj::{SeqAdjTable, HOP_TO_LEARN, SEQ_ADJ};
use crate::ipvs::service::ServiceKey;
use crate::ipvs::snapshot::Snapshot;
use crate::ipvs::timer::{self, TICKS_PER_SEC};
use crate::ipvs::FwdMethod;
use crate::stats::Dir;
use crate::sync::conn::{SyncConn, GROUP_TEMPLATE, TEMPLATE_BIT};
use crate::sync::link::{Link, LinkStats, Params, Refused, Walk, WalkKind, INBOX_PER_LOOP, WALK_SLOTS};
use crate::wire::{proto, src_mac, Frame, Ip};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Longest timeout a received connection gets (31 days, ipvsadm's bound).
pub const MAX_TIMEOUT: u32 = 31 * 86400;

/// What a worker needs to produce sync events.
#[derive(Debug, Clone)]
pub struct SyncTap {
    link: Arc<Link>,
    params: Params,
}

/// What [`Worker::sync_apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Added,
    Updated,
}

/// TCP states IPVS syncs.
#[inline]
fn synced_state(s: u8, syn_recv: bool) -> bool {
    const ES: u8 = TcpState::Established as u8;
    const FW: u8 = TcpState::FinWait as u8;
    const CL: u8 = TcpState::Close as u8;
    const CW: u8 = TcpState::CloseWait as u8;
    const TW: u8 = TcpState::TimeWait as u8;
    matches!(s, ES | FW | CL | CW | TW) || (syn_recv && s == TcpState::SynRecv as u8)
}

/// The countdown a new connection starts with.
#[inline]
pub(super) fn arm(t: &Option<SyncTap>) -> u8 {
    match t {
        Some(t) if t.params.threshold > 0 => t.params.threshold,
        Some(t) => t.params.period,
        None => 0,
    }
}

/// Is connection `c` due after a packet in `dir` that found it in state
/// `was`? Counts the packet. See the module docs.
#[inline]
pub(super) fn due<A: Ip>(t: &SyncTap, c: &mut Conn<A>, dir: Dir, was: u8) -> bool {
    let p = &t.params;
    let mut due = false;
    if dir == Dir::In {
        match c.sync_left {
            // Not counting (made before a master daemon ran): start now.
            0 => c.sync_left = p.period,
            1 => {
                due = true;
                c.sync_left = p.period;
            }
            n => c.sync_left = n - 1,
        }
    }
    if c.proto == proto::TCP {
        if !synced_state(c.state, p.syn_recv) {
            return false;
        }
        due |= c.state != was;
    }
    due
}

/// Learns the next hop towards the client of a synced connection: from a
/// client packet, or the kernel's neighbours for a reply. `false`: still
/// unknown (the reply cannot be sent).
#[cold]
#[inline(never)]
pub(super) fn learn_hop<A: Ip>(snap: &Snapshot, c: &mut Conn<A>, fr: &Frame<'_>, m: &crate::wire::Meta, dir: Dir) -> bool {
    let hop = match dir {
        // The link it arrived on (its port, or the port's VLAN of its tag).
        Dir::In => snap.link_of(fr.port, crate::wire::vlan_id(fr.data(), m)).map(|link| Hop { link, mac: src_mac(fr.data()) }),
        Dir::Out => snap.next_hop(c.caddr.into()),
    };
    match hop {
        Some(h) => {
            c.client_hop = h;
            true
        }
        None => false,
    }
}

/// The timeout (seconds) a connection or template is synced with.
fn timeout_of<A: Ip>(snap: &Snapshot, c: &Conn<A>, now: u32) -> u32 {
    if c.is_template() {
        let svc = snap.dest_index(c.dest_uid).map(|i| snap.dests[i as usize].svc);
        if let Some(p) = svc.and_then(|s| snap.services[s as usize].persistence) {
            return p.timeout;
        }
        return (c.expires.wrapping_sub(now) / TICKS_PER_SEC).max(1);
    }
    Worker::timeout(&snap.timeouts, c.proto, c.state)
}

/// The worker that owns a received connection, by the rule of
/// `Worker::owner` (the client address masked to the shard prefix; a
/// FULLNAT connection its local port; with RSS ownership, a connection to
/// a VIP that is not client-owned the NIC's queue for (client, VIP)).
pub fn sync_owner(snap: &Snapshot, workers: u16, sc: &SyncConn) -> u16 {
    let n = workers.max(1);
    if n == 1 {
        return 0;
    }
    if !sc.template && sc.lport != 0 && snap.is_laddr(sc.laddr) {
        return port_owner(sc.lport, n);
    }
    if let Some(rss) = snap.rss.as_deref().filter(|_| !sc.template && snap.is_vip(sc.vaddr) && !snap.client_owned(sc.vaddr)) {
        match (sc.caddr, sc.vaddr) {
            (IpAddr::V4(c), IpAddr::V4(v)) => return rss.owner(&c.octets(), &v.octets()) % n,
            (IpAddr::V6(c), IpAddr::V6(v)) => return rss.owner(&c.octets(), &v.octets()) % n,
            _ => {}
        }
    }
    let h = match sc.caddr {
        IpAddr::V4(a) => super::shard_hash(&a.mask(snap.shard_prefix.0).octets()),
        IpAddr::V6(a) => super::shard_hash(&a.mask(snap.shard_prefix.1).octets()),
    };
    (h % n as u32) as u16
}

impl Worker {
    /// Starts (`Some`) or stops producing sync events.
    pub fn set_sync(&mut self, link: Option<(Arc<Link>, Params)>) {
        self.sync = link.filter(|(_, p)| p.master).map(|(link, params)| SyncTap { link, params });
    }

    /// Pushes the sync event of entry `idx` (and of its template).
    #[cold]
    #[inline(never)]
    pub(super) fn sync_emit<A: Family>(&mut self, idx: u32) {
        let Some(t) = &self.sync else { return };
        let table = A::table(&mut self.tables);
        let c = table.get(idx);
        let mut ev = SyncConn::of(c, timeout_of(&self.snap, c, self.now));
        if c.in_pkts & SEQ_ADJ != 0 {
            ev.seqadj = self.seqadj[A::V6 as usize].get(idx).copied();
        }
        if t.link.events.push(ev).is_err() {
            LinkStats::bump(&t.link.stats.events_dropped);
        }
        if c.control != 0 && !c.is_template() {
            let tp = table.get(c.control - 1);
            if tp.is_template() && tp.flags & flags::DEAD == 0 {
                let ev = SyncConn::of(tp, timeout_of(&self.snap, tp, self.now));
                if t.link.events.push(ev).is_err() {
                    LinkStats::bump(&t.link.stats.events_dropped);
                }
            }
        }
    }

    /// Puts a connection received from a peer into this worker's table
    /// (or updates the one there). See the module docs.
    ///
    /// # Errors
    /// Why it was not taken.
    pub fn sync_apply(&mut self, sc: &SyncConn) -> Result<Applied, Refused> {
        match sc.caddr {
            IpAddr::V4(_) => self.sync_apply_af::<Ipv4Addr>(sc),
            IpAddr::V6(_) => self.sync_apply_af::<Ipv6Addr>(sc),
        }
    }

    fn sync_apply_af<A: Family>(&mut self, sc: &SyncConn) -> Result<Applied, Refused> {
        let (Some(caddr), Some(vaddr), Some(daddr)) = (A::from_ip(sc.caddr), A::from_ip(sc.vaddr), A::from_ip(sc.daddr)) else {
            return Err(Refused::NoService);
        };
        let snap = self.snap.clone();
        let expires = self.now.wrapping_add(timer::secs(sc.timeout.clamp(1, MAX_TIMEOUT)));
        // The service, and the dest by address and port.
        let si = if let Some(id) = sc.group() {
            snap.services.iter().position(|s| s.key == ServiceKey::Group(id)).map(|i| i as u32)
        } else {
            snap.lookup(sc.proto & !TEMPLATE_BIT, sc.vaddr, sc.vport)
        }
        .ok_or(Refused::NoService)?;
        let svc = &snap.services[si as usize];
        let di = svc
            .dests
            .clone()
            .find(|&i| {
                let d = &snap.dests[i];
                d.addr == sc.daddr && (d.port == sc.dport || (d.port == 0 && (sc.dport == sc.vport || sc.template)))
            })
            .ok_or(Refused::NoDest)?;
        let dest = &snap.dests[di];
        let fwd = dest.fwd;
        if sc.template {
            let Some(p) = svc.persistence else { return Err(Refused::NotPersistent) };
            let key = if sc.proto == GROUP_TEMPLATE {
                Key { saddr: caddr, daddr: A::UNSPECIFIED, sport: sc.cport, dport: sc.vport, proto: GROUP_TEMPLATE }
            } else {
                let k = Key { saddr: caddr, daddr: vaddr, sport: 0, dport: sc.vport, proto: sc.proto & !TEMPLATE_BIT };
                template_key(&svc.key, &k, p.netmask)
            };
            let table = A::table(&mut self.tables);
            if let Some((ti, _)) = table.lookup(&key) {
                let t = table.get_mut(ti);
                if t.dest_uid == dest.uid {
                    t.expires = expires;
                    return Ok(Applied::Updated);
                }
                // Another real server: the master's word wins.
                table.unlink(ti);
            }
            let t = Conn {
                caddr: key.saddr,
                vaddr: key.daddr,
                daddr,
                laddr: A::UNSPECIFIED,
                cport: key.sport,
                vport: key.dport,
                dport: sc.dport,
                lport: 0,
                expires,
                dest_uid: dest.uid,
                dest: di as u32,
                snap_gen: (snap.generation as u32).wrapping_sub(1),
                control: 0,
                dest_hop: dest.hop.unwrap_or(Hop { link: 0, mac: [0; 6] }),
                client_hop: dest.hop.unwrap_or(Hop { link: 0, mac: [0; 6] }),
                proto: key.proto,
                state: 0,
                fwd,
                flags: flags::TEMPLATE | flags::BOUND,
                sync_left: 0,
                in_pkts: 0,
            };
            A::table(&mut self.tables).insert(t).map_err(clash)?;
            self.load[di].persist += 1;
            return Ok(Applied::Added);
        }
        let key = Key { saddr: caddr, daddr: vaddr, sport: sc.cport, dport: sc.vport, proto: sc.proto };
        let inactive = sc.proto != proto::TCP || sc.state != TcpState::Established as u8;
        let local = (fwd == FwdMethod::FullNat).then_some((sc.laddr, sc.lport));
        let now = self.now;
        let table = A::table(&mut self.tables);
        if let Some((idx, Dir::In)) = table.lookup(&key) {
            let c = table.get_mut(idx);
            let same = c.daddr == daddr && c.dport == sc.dport && c.fwd == fwd && local.map_or(true, |(a, p)| c.laddr.into() == a && c.lport == p);
            if same && !c.is_template() {
                c.state = sc.state;
                c.expires = expires;
                if let Some(e) = sc.seqadj.filter(|_| matches!(fwd, FwdMethod::Nat | FwdMethod::FullNat)) {
                    *self.seqadj[A::V6 as usize].make(idx) = e;
                    c.in_pkts |= SEQ_ADJ;
                }
                let was_inactive = c.flags & flags::INACTIVE != 0;
                if was_inactive != inactive {
                    c.flags ^= flags::INACTIVE;
                    if c.flags & flags::BOUND != 0 && c.dest != NO_DEST && (c.dest as usize) < self.load.len() {
                        let l = &mut self.load[c.dest as usize];
                        if inactive {
                            l.active = l.active.saturating_sub(1);
                            l.inactive += 1;
                        } else {
                            l.inactive = l.inactive.saturating_sub(1);
                            l.active += 1;
                        }
                    }
                }
                return Ok(Applied::Updated);
            }
            // Another real server (the master rescheduled it): the old one goes.
            release(c, now, &snap, &mut self.load, &mut self.lports, &mut self.counters);
            c.flags |= flags::RELEASED;
            table.unlink(idx);
        }
        let (laddr, lport) = match local {
            Some((la, lp)) => {
                let a = A::from_ip(la).filter(|_| lp != 0 && svc.laddrs.contains(&la)).ok_or(Refused::LocalAddr)?;
                if port_owner(lp, self.workers) != self.id || (self.workers > 1 && self.owner(&key) != self.id) {
                    return Err(Refused::Owner);
                }
                if !self.lports.reserve(PoolKey { laddr: la, daddr: dest.addr, dport: dest.port }, lp) {
                    return Err(Refused::PortTaken);
                }
                (a, lp)
            }
            None => (A::UNSPECIFIED, 0),
        };
        let placeholder = Hop { link: 0, mac: [0; 6] };
        let dest_hop = dest.hop.unwrap_or(placeholder);
        let mut cflags = flags::BOUND;
        let client_hop = if fwd.sees_replies() {
            match snap.next_hop(sc.caddr) {
                Some(h) => h,
                None => Hop::LEARN,
            }
        } else {
            cflags |= flags::NOOUTPUT;
            dest_hop
        };
        if inactive {
            cflags |= flags::INACTIVE;
        }
        // FULLNAT towards a real server that keeps the client's port: its
        // local port is from that server's every-port pool (as the worker's
        // own connections).
        if fwd == FwdMethod::FullNat && dest.port == 0 {
            cflags |= flags::LPORT_ANY;
        }
        let c = Conn {
            caddr,
            vaddr,
            daddr,
            laddr,
            cport: sc.cport,
            vport: sc.vport,
            dport: sc.dport,
            lport,
            expires,
            dest_uid: dest.uid,
            dest: di as u32,
            // Re-bound (its dest's next hop looked up) on its first packet.
            snap_gen: (snap.generation as u32).wrapping_sub(1),
            control: 0,
            dest_hop,
            client_hop,
            proto: sc.proto,
            state: sc.state,
            fwd,
            flags: cflags,
            sync_left: arm(&self.sync),
            // No client packet counted yet; a hop to learn takes its next
            // packet the long way.
            in_pkts: if client_hop.link == Hop::LEARN.link { HOP_TO_LEARN } else { 0 },
        };
        let idx = match A::table(&mut self.tables).insert(c) {
            Ok(idx) => idx,
            Err(e) => {
                if lport != 0 {
                    self.lports.release(PoolKey { laddr: laddr.into(), daddr: dest.addr, dport: dest.port }, lport);
                }
                return Err(clash(e));
            }
        };
        // The offset the master's stream has: the backup carries on with
        // it (NAT and FULLNAT only: DR and TUN do not rewrite the stream).
        if let Some(e) = sc.seqadj.filter(|_| matches!(fwd, FwdMethod::Nat | FwdMethod::FullNat)) {
            *self.seqadj[A::V6 as usize].make(idx) = e;
            A::table(&mut self.tables).get_mut(idx).in_pkts |= SEQ_ADJ;
        }
        let l = &mut self.load[di];
        if inactive {
            l.inactive += 1;
        } else {
            l.active += 1;
        }
        l.update_overload(dest.u_threshold, dest.l_threshold);
        Ok(Applied::Added)
    }

    /// Copies entries into `walk` from its cursor on, at most `slots` table
    /// slots, until its rows are full; sets `walk.done` when the table is.
    pub fn sync_walk(&self, walk: &mut Walk, slots: usize) {
        let cap = walk.rows.capacity();
        let now = self.now;
        let snap = &*self.snap;
        let kind = walk.kind;
        let rows = std::cell::RefCell::new(&mut walk.rows);
        let stopped = std::cell::Cell::new(false);
        let take = |ev: Option<SyncConn>| {
            let mut rows = rows.borrow_mut();
            if rows.len() >= cap {
                stopped.set(true);
                return false;
            }
            if let Some(ev) = ev {
                rows.push(ev);
            }
            true
        };
        // An adjusted connection's entry is by slot, which the walk does
        // not name: found by the connection's own key (rare).
        fn with_adj<A: Ip>(mut sc: SyncConn, c: &Conn<A>, t: &crate::ipvs::conn::ConnTable<A>, adj: &SeqAdjTable) -> SyncConn {
            if c.in_pkts & SEQ_ADJ != 0 {
                let key = Key { saddr: c.caddr, daddr: c.vaddr, sport: c.cport, dport: c.vport, proto: c.proto };
                sc.seqadj = t.lookup(&key).and_then(|(idx, _)| adj.get(idx)).copied();
            }
            sc
        }
        let (t4, t6) = (&self.tables.v4, &self.tables.v6);
        let (a4, a6) = (&self.seqadj[0], &self.seqadj[1]);
        fn pick<A: Ip>(c: &Conn<A>, kind: WalkKind, snap: &Snapshot, now: u32) -> Option<SyncConn> {
            if c.flags & (flags::DEAD | flags::RELEASED) != 0 {
                return None;
            }
            let timeout = timeout_of(snap, c, now);
            if let WalkKind::Recent { ticks } = kind {
                // Its last packet set `expires` to now + timeout at most
                // `ticks` ago.
                let left = c.expires.wrapping_sub(now) as i64;
                let full = timer::secs(timeout) as i64;
                if c.is_template() || full - left > ticks as i64 || (c.proto == proto::TCP && !synced_state(c.state, false)) {
                    return None;
                }
            }
            Some(SyncConn::of(c, timeout))
        }
        let mut cursor = walk.cursor;
        let done = self.visit_conns(
            &mut cursor,
            slots,
            |c| take(pick(c, kind, snap, now).map(|sc| with_adj(sc, c, t4, a4))),
            |c| take(pick(c, kind, snap, now).map(|sc| with_adj(sc, c, t6, a6))),
        );
        // A visitor that said stop (rows full) leaves the entry it was on
        // for the next pass.
        if stopped.get() {
            walk.cursor = cursor.saturating_sub(1);
            walk.done = false;
        } else {
            walk.cursor = cursor;
            walk.done = done;
        }
    }
}

fn clash(e: crate::stats::DropReason) -> Refused {
    match e {
        crate::stats::DropReason::TableFull => Refused::TableFull,
        _ => Refused::Clash,
    }
}

/// The sync side of a worker's loop. See the module docs.
#[derive(Debug)]
pub struct SyncPort {
    link: Arc<Link>,
    gen: u64,
    walk: Option<Box<Walk>>,
}

impl SyncPort {
    pub fn new(link: Arc<Link>) -> SyncPort {
        SyncPort { link, gen: 0, walk: None }
    }

    /// The generation of the parameters the worker runs with.
    pub fn params_seen(&self) -> u64 {
        self.gen
    }

    /// Once per loop, between bursts: new parameters, received
    /// connections, a walk's next slice. Allocates nothing.
    #[inline]
    pub fn serve(&mut self, w: &mut Worker) {
        let g = self.link.params_gen();
        if g != self.gen {
            let (g, p) = self.link.params();
            self.gen = g;
            w.set_sync(Some((self.link.clone(), p)));
        }
        if !self.link.inbox.is_empty() {
            self.apply(w);
        }
        if self.walk.is_none() {
            self.walk = self.link.next_walk();
        }
        if self.walk.is_some() {
            self.carry_on(w);
        }
    }

    #[cold]
    fn apply(&mut self, w: &mut Worker) {
        let s = &self.link.stats;
        for _ in 0..INBOX_PER_LOOP {
            let Some(sc) = self.link.inbox.pop() else { break };
            match w.sync_apply(&sc) {
                Ok(Applied::Added) => LinkStats::bump(&s.added),
                Ok(Applied::Updated) => LinkStats::bump(&s.updated),
                Err(r) => {
                    LinkStats::bump(&s.refused[r as usize]);
                    log::debug!("sync: refused ({}) {sc:?}", r.name());
                }
            }
        }
    }

    #[cold]
    fn carry_on(&mut self, w: &mut Worker) {
        let Some(walk) = self.walk.as_mut() else { return };
        w.sync_walk(walk, WALK_SLOTS);
        if walk.done || walk.rows.len() >= walk.rows.capacity() {
            if let Some(walk) = self.walk.take() {
                self.link.hand_back(walk);
            }
        }
    }
}

#[cfg(test)]
mod tests;
