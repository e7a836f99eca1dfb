//! Schedulers: one trait, one module per IPVS scheduler, a registry by
//! ipvsadm name.
//!
//! A scheduler is split the way Katran splits its Maglev ring: a read-only
//! [`Scheduler::Table`] built by the control plane whenever a service or its
//! real servers change (the wrr step sequence parameters, hash tables), and
//! a small mutable [`Scheduler::State`] each worker keeps per service (a
//! round-robin cursor). The hot path dispatches with a `match` on
//! [`SchedTable`]/[`SchedState`], never through `dyn`.
//!
//! `schedule` returns an index into [`SchedCtx::dests`] or `None` ("no
//! destination available", a counted outcome). A real server with weight 0
//! (quiesced) or flagged overloaded never gets a new connection.
//!
//! Adding a scheduler: a module implementing [`Scheduler`] and one line in
//! the `schedulers!` list below.

pub mod dh;
pub mod fo;
pub mod lblc;
pub mod lblcr;
pub mod lc;
pub mod mh;
pub mod nq;
pub mod ovf;
pub mod rr;
pub mod sed;
pub mod sh;
pub mod twos;
mod util;
pub mod wlc;
pub mod wrr;

use crate::ipvs::dest::DestEntry;
use crate::ipvs::dest::DestLoad;
use std::fmt::Debug;
use std::net::IpAddr;

/// Scheduler flags (ipvsadm `-b`): `flag-1` = `sh-fallback` =
/// `mh-fallback`, `flag-2` = `sh-port` = `mh-port`, `flag-3`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SchedFlags(pub u8);

impl SchedFlags {
    pub const FLAG1: u8 = 1;
    pub const FLAG2: u8 = 2;
    pub const FLAG3: u8 = 4;

    /// Parses ipvsadm's comma-separated `-b` list.
    ///
    /// # Errors
    /// The unknown flag name.
    pub fn parse(s: &str) -> Result<SchedFlags, String> {
        let mut f = 0;
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            f |= match name {
                "flag-1" | "sh-fallback" | "mh-fallback" => Self::FLAG1,
                "flag-2" | "sh-port" | "mh-port" => Self::FLAG2,
                "flag-3" => Self::FLAG3,
                other => {
                    return Err(format!(
                        "unknown scheduler flag '{other}' (expected flag-1|sh-fallback|mh-fallback, flag-2|sh-port|mh-port, flag-3)"
                    ))
                }
            };
        }
        Ok(SchedFlags(f))
    }

    #[inline]
    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    /// The names ipvsadm prints for these flags under scheduler `sched`.
    pub fn names(self, sched: &str) -> Vec<&'static str> {
        let mut v = Vec::new();
        let pre = if sched == "sh" {
            Some(("sh-fallback", "sh-port"))
        } else if sched == "mh" {
            Some(("mh-fallback", "mh-port"))
        } else {
            None
        };
        if self.has(Self::FLAG1) {
            v.push(pre.map_or("flag-1", |p| p.0));
        }
        if self.has(Self::FLAG2) {
            v.push(pre.map_or("flag-2", |p| p.1));
        }
        if self.has(Self::FLAG3) {
            v.push("flag-3");
        }
        v
    }
}

/// What a scheduler sees when it picks a real server for a new connection.
#[derive(Clone, Copy, Debug)]
pub struct SchedCtx<'a> {
    /// The service's real servers, in configuration order.
    pub dests: &'a [DestEntry],
    /// The new connection's client address and port and its destination
    /// (the VIP and virtual port).
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    /// The worker's clock (monotonic nanoseconds, read once per burst), for
    /// schedulers whose state ages (lblc, lblcr).
    pub now: u64,
    /// Per dest of `dests` (or empty): the deciding worker's changes to
    /// the counts not yet added to the shared ones, which its decisions
    /// must see (`worker::SharedDue`).
    pub due: &'a [u64],
}

impl SchedCtx<'_> {
    /// Weight of dest `i`.
    #[inline]
    pub fn weight(&self, i: usize) -> i32 {
        self.dests[i].weight
    }
    /// The load of dest `i`: the director-wide counts, read as the
    /// scheduler needs them (IPVS's schedulers read their dests' atomic
    /// counts the same way), not copied for every dest beforehand.
    /// A dest without a next hop reads as overloaded (see
    /// [`SchedCtx::overloaded`]).
    #[inline]
    pub fn load(&self, i: usize) -> DestLoad {
        util::load(&self.dests[i], self.due.get(i).copied().unwrap_or(0))
    }
    /// Dest `i` takes no new connection for now: flagged overloaded
    /// (connection thresholds), or its next hop is not resolved yet (a
    /// server just added, whose neighbour the kernel is still asking
    /// for). IPVS would hand the SYN to the neighbour layer, which queues
    /// it during resolution; xvs has no such queue and would drop it, so
    /// the connection goes to a reachable server instead.
    #[inline]
    pub fn overloaded(&self, i: usize) -> bool {
        let d = &self.dests[i];
        d.hop.is_none() || d.shared.overloaded()
    }
    /// Dest `i` may take a new connection: weight > 0 and not
    /// [`overloaded`](SchedCtx::overloaded).
    #[inline]
    pub fn available(&self, i: usize) -> bool {
        self.dests[i].weight > 0 && !self.overloaded(i)
    }
}

/// The contract of one scheduler.
pub trait Scheduler {
    /// ipvsadm name (`-s NAME`).
    const NAME: &'static str;
    /// Read-only data built by the control plane from the service's dests.
    type Table: Debug + Send + Sync;
    /// Mutable per-worker, per-service state.
    type State: Debug + Default + Send;

    /// Builds the table (control plane; may allocate and take its time).
    fn build(dests: &[DestEntry], flags: SchedFlags) -> Self::Table;

    /// Brings a worker's state in line with a new table (the service's
    /// dests changed). The default starts afresh.
    fn changed(_table: &Self::Table, state: &mut Self::State) {
        *state = Self::State::default();
    }

    /// Seeds whatever randomness the state holds (twos); the worker passes
    /// something unique to it, e.g. its index. The default has none.
    fn seed(_state: &mut Self::State, _seed: u64) {}

    /// Picks a dest: an index into `ctx.dests`, or `None` when no dest is
    /// available.
    fn schedule(table: &Self::Table, state: &mut Self::State, ctx: &SchedCtx<'_>) -> Option<usize>;
}

macro_rules! schedulers {
    ($($variant:ident => $ty:path,)*) => {
        /// A registered scheduler.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum SchedKind { $($variant,)* }

        /// A scheduler's control-plane table.
        #[derive(Debug)]
        pub enum SchedTable { $($variant(<$ty as Scheduler>::Table),)* }

        /// A scheduler's per-worker state.
        #[derive(Debug)]
        pub enum SchedState { $($variant(<$ty as Scheduler>::State),)* }

        impl SchedKind {
            /// Every registered scheduler, in registry order.
            pub const ALL: &'static [SchedKind] = &[$(SchedKind::$variant,)*];

            /// The ipvsadm name.
            pub fn name(self) -> &'static str {
                match self { $(SchedKind::$variant => <$ty as Scheduler>::NAME,)* }
            }

            /// Looks a scheduler up by its ipvsadm name.
            pub fn from_name(name: &str) -> Option<SchedKind> {
                Self::ALL.iter().copied().find(|k| k.name() == name)
            }

            /// Builds the table for `dests` (control plane).
            pub fn build(self, dests: &[DestEntry], flags: SchedFlags) -> SchedTable {
                match self { $(SchedKind::$variant => SchedTable::$variant(<$ty as Scheduler>::build(dests, flags)),)* }
            }
        }

        impl SchedState {
            /// Seeds the state's randomness (only `twos` has any), so each
            /// worker draws its own sequence; call after `new_state`.
            pub fn seed(&mut self, seed: u64) {
                match self { $(SchedState::$variant(s) => <$ty as Scheduler>::seed(s, seed),)* }
            }
        }

        impl SchedTable {
            /// Which scheduler built this table.
            pub fn kind(&self) -> SchedKind {
                match self { $(SchedTable::$variant(_) => SchedKind::$variant,)* }
            }

            /// Fresh worker state for this table.
            pub fn new_state(&self) -> SchedState {
                match self { $(SchedTable::$variant(_) => SchedState::$variant(Default::default()),)* }
            }

            /// Adapts `state` to this (new) table: keeps what the scheduler
            /// can keep, restarts when the scheduler itself changed.
            pub fn changed(&self, state: &mut SchedState) {
                match (self, state) {
                    $((SchedTable::$variant(t), SchedState::$variant(s)) => <$ty as Scheduler>::changed(t, s),)*
                    #[allow(unreachable_patterns)]
                    (t, s) => *s = t.new_state(),
                }
            }

            /// Picks a dest for a new connection.
            #[inline]
            pub fn schedule(&self, state: &mut SchedState, ctx: &SchedCtx<'_>) -> Option<usize> {
                match (self, &mut *state) {
                    $((SchedTable::$variant(t), SchedState::$variant(s)) => <$ty as Scheduler>::schedule(t, s, ctx),)*
                    #[allow(unreachable_patterns)]
                    _ => {
                        *state = self.new_state();
                        self.schedule(state, ctx)
                    }
                }
            }
        }
    };
}

schedulers! {
    Rr => rr::Rr,
    Wrr => wrr::Wrr,
    Lc => lc::Lc,
    Wlc => wlc::Wlc,
    Sed => sed::Sed,
    Nq => nq::Nq,
    Lblc => lblc::Lblc,
    Lblcr => lblcr::Lblcr,
    Dh => dh::Dh,
    Sh => sh::Sh,
    Mh => mh::Mh,
    Fo => fo::Fo,
    Ovf => ovf::Ovf,
    Twos => twos::Twos,
}

/// Names of every registered scheduler (for `--help` and errors).
pub fn names() -> Vec<&'static str> {
    SchedKind::ALL.iter().map(|k| k.name()).collect()
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Helpers for scheduler tests: dests with weights, a loop that records
    //! the decisions.
    use super::*;
    use crate::ipvs::FwdMethod;
    use std::net::Ipv4Addr;

    pub fn dests(weights: &[i32]) -> Vec<DestEntry> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| DestEntry {
                uid: i as u32 + 1,
                svc: 0,
                addr: IpAddr::V4(Ipv4Addr::new(10, 0, 1, i as u8 + 1)),
                port: 80,
                weight: w,
                fwd: FwdMethod::Dr,
                u_threshold: 0,
                l_threshold: 0,
                proxy: None,
                hop: Some(crate::ipvs::dest::Hop { link: 0, mac: [2, 0, 0, 0, 1, i as u8] }),
                shared: Default::default(),
            })
            .collect()
    }

    /// A context over `d` whose loads are `load` (set into the dests'
    /// shared counts; dests beyond `load` get none).
    pub fn ctx<'a>(d: &'a [DestEntry], load: &[DestLoad]) -> SchedCtx<'a> {
        for (i, x) in d.iter().enumerate() {
            x.shared.set(load.get(i).unwrap_or(&DestLoad::default()));
        }
        SchedCtx {
            dests: d,
            saddr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            sport: 40000,
            daddr: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
            dport: 80,
            now: 0,
            due: &[],
        }
    }

    /// The next `n` decisions as dest indexes (`None` = no dest).
    pub fn run(kind: SchedKind, weights: &[i32], n: usize) -> Vec<Option<usize>> {
        let d = dests(weights);
        let load = vec![DestLoad::default(); d.len()];
        let t = kind.build(&d, SchedFlags::default());
        let mut s = t.new_state();
        (0..n).map(|_| t.schedule(&mut s, &ctx(&d, &load))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_unique_and_found() {
        let mut seen = std::collections::HashSet::new();
        for k in SchedKind::ALL {
            assert!(seen.insert(k.name()), "duplicate scheduler {}", k.name());
            assert_eq!(SchedKind::from_name(k.name()), Some(*k));
        }
        assert_eq!(SchedKind::from_name("nope"), None);
    }

    #[test]
    fn every_ipvs_scheduler_is_selectable_by_name() {
        let names = ["rr", "wrr", "lc", "wlc", "sed", "nq", "lblc", "lblcr", "dh", "sh", "mh", "fo", "ovf", "twos"];
        for n in names {
            let k = SchedKind::from_name(n).unwrap_or_else(|| panic!("{n} not registered"));
            assert_eq!(k.name(), n);
            assert_eq!(k.build(&testutil::dests(&[1]), SchedFlags::default()).kind(), k);
        }
        assert_eq!(SchedKind::ALL.len(), names.len());
        assert_eq!(SchedKind::from_name("WLC"), None, "names are ipvsadm's, lower case");
    }

    proptest::proptest! {
        /// The contract of every scheduler, whatever the weights, loads,
        /// next hops and flags: a pick is an available dest (weight > 0,
        /// not overloaded, next hop resolved), and nothing available means
        /// `None`; no panic whatever the addresses, ports and clock.
        #[test]
        fn every_pick_is_available(
            ws in proptest::collection::vec((0i32..4, proptest::bool::weighted(0.2), 0u32..6, 0u32..4), 0..8),
            unresolved in proptest::collection::vec(proptest::bool::weighted(0.2), 8),
            flags in 0u8..8,
            saddr in proptest::prelude::any::<u32>(),
            sport in proptest::prelude::any::<u16>(),
            daddr in 0u32..4,
            steps in 1usize..12,
        ) {
            let weights: Vec<i32> = ws.iter().map(|w| w.0).collect();
            let mut d = testutil::dests(&weights);
            for (x, &u) in d.iter_mut().zip(&unresolved) {
                if u {
                    x.hop = None;
                }
            }
            let load: Vec<DestLoad> = ws
                .iter()
                .map(|&(_, overloaded, active, inactive)| DestLoad { active, inactive, overloaded, ..DestLoad::default() })
                .collect();
            let none_available = (0..d.len()).all(|i| weights[i] <= 0 || load[i].overloaded || d[i].hop.is_none());
            for &k in SchedKind::ALL {
                let t = k.build(&d, SchedFlags(flags));
                let mut s = t.new_state();
                for step in 0..steps {
                    let c = SchedCtx {
                        saddr: IpAddr::from(saddr.wrapping_add(step as u32).to_be_bytes()),
                        sport,
                        daddr: IpAddr::from(daddr.to_be_bytes()),
                        now: step as u64 * 7_000_000_000_000,
                        ..testutil::ctx(&d, &load)
                    };
                    if let Some(i) = t.schedule(&mut s, &c) {
                        proptest::prop_assert!(i < d.len() && c.available(i) && d[i].hop.is_some(), "{}: picked {}", k.name(), i);
                    }
                    if none_available {
                        proptest::prop_assert_eq!(t.schedule(&mut s, &c), None, "{}", k.name());
                    }
                }
            }
        }
    }

    #[test]
    fn flags_parse_and_print() {
        assert_eq!(SchedFlags::parse("sh-fallback,sh-port").unwrap(), SchedFlags(3));
        assert_eq!(SchedFlags::parse("flag-3").unwrap(), SchedFlags(4));
        assert!(SchedFlags::parse("bogus").unwrap_err().contains("bogus"));
        assert_eq!(SchedFlags(3).names("mh"), vec!["mh-fallback", "mh-port"]);
        assert_eq!(SchedFlags(1).names("wrr"), vec!["flag-1"]);
    }

    #[test]
    fn scheduler_change_resets_state() {
        let d = testutil::dests(&[1, 1]);
        let rr = SchedKind::Rr.build(&d, SchedFlags::default());
        let wrr = SchedKind::Wrr.build(&d, SchedFlags::default());
        let mut s = rr.new_state();
        wrr.changed(&mut s);
        assert!(matches!(s, SchedState::Wrr(_)));
        // a mismatched state is repaired on use, not a panic
        let mut s = rr.new_state();
        let load = vec![DestLoad::default(); 2];
        assert!(wrr.schedule(&mut s, &testutil::ctx(&d, &load)).is_some());
    }
}
