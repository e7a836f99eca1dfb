//! The director: the one owner of the running configuration.
//!
//! # Contract
//!
//! - [`Director::apply`] takes a whole new [`Model`] (from the config file,
//!   the control socket, the health checker), merges it with the kernel's
//!   view of the links ([`kernel::net_conf`]), validates and compiles it
//!   with [`Snapshot::build`] against the running snapshot (uids stay), then
//!   replaces the XDP steering rules and publishes the snapshot. Any
//!   failure changes nothing: the old snapshot and rules stay in force.
//! - Publishing is one `ArcSwap` store followed by a generation store
//!   ([`Published`]). Workers read the generation once per burst (a shared
//!   read, never a write) and load the snapshot only when it changed, then
//!   switch to it between bursts.
//! - [`Director::kernel_update`] feeds a fresh kernel dump in; the snapshot
//!   is rebuilt and published only when the merged network changed. It
//!   answers which next hops still need resolving.
//! - Workers publish [`WorkerReport`]s into the director's slots;
//!   [`Director::reports`] and [`Director::dest_totals`] read them.
//! - Control plane only. A mutex serialises the writers (apply, kernel
//!   updates); the data path never takes it.

use super::kernel::{self, NetView, Tables, Unresolved};
use super::report::{ReportSlot, WorkerReport};
use crate::ctl::model::{Model, NetConf};
use crate::ctl::snapshot::{ModelError, Snapshot};
use crate::io::xdp::{Rule, XdpError, XdpIo};
use crate::ipvs::dest::DestLoad;
use crate::ipvs::service::ServiceKey;
use crate::ipvs::FwdMethod;
use crate::stats::{DestStats, WorkerCounters};
use arc_swap::ArcSwap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Where the steering rules go: the XDP program's map, or a test double.
pub trait RuleSink: Send {
    /// Replaces the whole rule set.
    ///
    /// # Errors
    /// The rules could not be written (the map is full, ...).
    fn set_rules(&mut self, rules: &[Rule]) -> Result<(), XdpError>;
}

impl RuleSink for XdpIo {
    fn set_rules(&mut self, rules: &[Rule]) -> Result<(), XdpError> {
        XdpIo::set_rules(self, rules)
    }
}

/// What the workers read: the current snapshot, its generation and the
/// stop flag. Written by the control plane only.
#[derive(Debug)]
pub struct Published {
    snap: ArcSwap<Snapshot>,
    generation: AtomicU64,
    stop: AtomicBool,
}

impl Published {
    fn new(s: Arc<Snapshot>) -> Published {
        Published {
            generation: AtomicU64::new(s.generation),
            snap: ArcSwap::new(s),
            stop: AtomicBool::new(false),
        }
    }

    /// Generation of the current snapshot (one shared read: workers call
    /// it once per burst).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<Snapshot> {
        self.snap.load_full()
    }

    /// True once the workers should stop.
    #[inline]
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn publish(&self, s: Arc<Snapshot>) {
        let g = s.generation;
        self.snap.store(s);
        // After the store: a worker that sees the new generation finds the
        // new snapshot.
        self.generation.store(g, Ordering::Release);
    }
}

/// The kernel's view the director merges into every model.
#[derive(Clone, Debug)]
struct KernelState {
    ifaces: Vec<String>,
    tables: Tables,
}

struct State {
    /// The model as applied (the operator's; its `net` holds the static
    /// config entries).
    model: Model,
    kernel: Option<KernelState>,
    /// The network the running snapshot was built with.
    net: NetConf,
    view: NetView,
    snap: Arc<Snapshot>,
    sink: Option<Box<dyn RuleSink>>,
    rules: Vec<Rule>,
    /// Turns the operator's model into the one that runs (the health
    /// checker's verdicts: failed servers quiesced or removed, agent
    /// weights, sorry servers). `None`: the model runs as configured.
    overlay: Option<Overlay>,
    /// Addresses whose next hops are kept resolved although the running
    /// model may not use them (sorry servers).
    standby: Vec<IpAddr>,
    /// The NIC's RSS when ownership follows it (`daemon::rss`), stamped on
    /// every snapshot published.
    rss: Option<Arc<crate::ipvs::rss::RssMap>>,
}

/// A stage between the configured model and the running one (see
/// [`Director::set_overlay`]). It must be a pure function of its input
/// and of state it owns, and must not call back into the director.
pub type Overlay = Box<dyn Fn(&Model) -> Model + Send>;

/// One real server's figures summed over the workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestTotal {
    pub service: ServiceKey,
    pub addr: IpAddr,
    /// 0 = the packet's own port.
    pub port: u16,
    pub fwd: FwdMethod,
    pub weight: i32,
    pub stats: DestStats,
    pub load: DestLoad,
}

/// The director. See the module docs.
pub struct Director {
    state: Mutex<State>,
    published: Arc<Published>,
    slots: Vec<Arc<ReportSlot>>,
}

/// The addresses whose next hops the data path needs (real servers), and
/// those it may need at any moment (`standby`).
fn wanted(m: &Model, standby: &[IpAddr]) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = m
        .services
        .iter()
        .flat_map(|s| s.dests.iter().map(|d| d.addr))
        .chain(standby.iter().copied())
        .collect();
    v.sort();
    v.dedup();
    v
}

fn effective(
    model: &Model,
    kernel: Option<&KernelState>,
    standby: &[IpAddr],
) -> Result<(Model, NetView), ModelError> {
    let mut m = model.clone();
    let view = match kernel {
        None => NetView {
            net: model.net.clone(),
            ..NetView::default()
        },
        Some(k) => {
            kernel::net_conf(&k.tables, &k.ifaces, &model.net, &wanted(model, standby)).map_err(|e| {
                ModelError {
                    what: "interfaces".into(),
                    why: e.to_string(),
                }
            })?
        }
    };
    m.net = view.net.clone();
    Ok((m, view))
}

/// The steering rules: what the configured model and the running one
/// (through the overlay) both need — a server the overlay removed keeps
/// its reply rule, so its established connections still pass through —
/// and the director's own addresses on its ports, so what a NAT real
/// server sends to the director itself (answers to health checks) stays
/// with the kernel.
fn rules_for(configured: &Model, running: Option<&Model>, net: &NetConf) -> Vec<Rule> {
    let mut rules = Rule::for_services(&configured.services, &configured.groups);
    if let Some(o) = running {
        rules.extend(Rule::for_services(&o.services, &o.groups));
    }
    rules.extend(
        net.links()
            .flat_map(|l| l.addrs.iter().map(|(a, _)| *a))
            .chain(net.local_addrs.iter().copied())
            .map(Rule::Local),
    );
    rules.sort();
    rules.dedup();
    rules
}

/// Writes `rules` to the sink when they differ from the current set; on
/// failure the old set is put back and nothing changes.
fn write_rules(st: &mut State, rules: Vec<Rule>) -> Result<(), ModelError> {
    if rules == st.rules {
        return Ok(());
    }
    if let Some(sink) = st.sink.as_mut() {
        if let Err(e) = sink.set_rules(&rules) {
            // Put the old set back (set_rules may have written part).
            let old = st.rules.clone();
            let _ = st.sink.as_mut().map(|s| s.set_rules(&old));
            return Err(ModelError {
                what: "steering rules".into(),
                why: e.to_string(),
            });
        }
    }
    st.rules = rules;
    Ok(())
}

/// Two snapshots of the same configured model forward alike: same
/// services and dests (uid, weight, hop, method, thresholds). Lets
/// [`Director::refresh`] skip publishing when a health verdict changed
/// nothing that runs (the rest of the snapshot comes from the unchanged
/// configured model and kernel view).
fn same_forwarding(a: &Snapshot, b: &Snapshot) -> bool {
    a.services.len() == b.services.len()
        && a.dests.len() == b.dests.len()
        && a.services.iter().zip(&b.services).all(|(x, y)| {
            x.uid == y.uid && x.sched == y.sched && x.flags == y.flags && x.persistence == y.persistence && x.laddrs == y.laddrs
        })
        && a.dests.iter().zip(&b.dests).all(|(x, y)| {
            x.uid == y.uid
                && x.weight == y.weight
                && x.hop == y.hop
                && x.fwd == y.fwd
                && x.port == y.port
                && x.u_threshold == y.u_threshold
                && x.l_threshold == y.l_threshold
                && x.proxy == y.proxy
        })
        && a.timeouts == b.timeouts
        && a.expire_nodest_conn == b.expire_nodest_conn
        && a.conn_reuse_mode == b.conn_reuse_mode
        && a.drop_entry == b.drop_entry
        && a.icmp_limit == b.icmp_limit
        && a.toa == b.toa
        && a.expire_quiescent_template == b.expire_quiescent_template
        && a.sloppy_tcp == b.sloppy_tcp
        && a.max_conns == b.max_conns
}

impl Director {
    /// A director running `model` (its `net` as given: no kernel view yet)
    /// with `workers` report slots.
    ///
    /// # Errors
    /// The model is invalid.
    pub fn new(model: Model, workers: usize) -> Result<Director, ModelError> {
        Director::build(model, None, workers)
    }

    /// A director whose ports are `ifaces` as the kernel's `tables` show
    /// them (see [`kernel::net_conf`] for the merge with `model.net`).
    ///
    /// # Errors
    /// The model is invalid or an interface is missing.
    pub fn with_kernel(
        model: Model,
        ifaces: Vec<String>,
        tables: Tables,
        workers: usize,
    ) -> Result<Director, ModelError> {
        Director::build(model, Some(KernelState { ifaces, tables }), workers)
    }

    fn build(
        model: Model,
        kernel: Option<KernelState>,
        workers: usize,
    ) -> Result<Director, ModelError> {
        let (eff, view) = effective(&model, kernel.as_ref(), &[])?;
        let snap = Arc::new(Snapshot::build(&eff, None)?);
        let rules = rules_for(&model, None, &eff.net);
        Ok(Director {
            published: Arc::new(Published::new(snap.clone())),
            state: Mutex::new(State {
                model,
                kernel,
                net: eff.net,
                view,
                snap,
                sink: None,
                rules,
                overlay: None,
                standby: Vec::new(),
                rss: None,
            }),
            slots: (0..workers)
                .map(|_| Arc::new(ReportSlot::default()))
                .collect(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent state (every
        // change is built aside and swapped in last): keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Installs where steering rules go and writes the current rules.
    ///
    /// # Errors
    /// The rules could not be written; the sink is not installed.
    pub fn set_rule_sink(&self, mut sink: Box<dyn RuleSink>) -> Result<(), XdpError> {
        let mut st = self.lock();
        sink.set_rules(&st.rules)?;
        st.sink = Some(sink);
        Ok(())
    }

    /// Removes the rule sink (to drop the XDP setup on the thread that
    /// should detach it). Later changes update the snapshot only.
    pub fn take_rule_sink(&self) -> Option<Box<dyn RuleSink>> {
        self.lock().sink.take()
    }

    /// What the workers read.
    pub fn published(&self) -> Arc<Published> {
        self.published.clone()
    }

    /// Report slot of worker `i`.
    pub fn report_slot(&self, i: usize) -> Option<Arc<ReportSlot>> {
        self.slots.get(i).cloned()
    }

    /// Tells the workers to stop.
    pub fn stop(&self) {
        self.published.stop.store(true, Ordering::Relaxed);
    }

    /// Validates `new` whole and, if it is valid, makes it the running
    /// configuration (snapshot and steering rules). Otherwise nothing
    /// changes.
    ///
    /// # Errors
    /// What is wrong with the model (or that the steering rules could not
    /// be written), naming the object.
    pub fn apply(&self, new: Model) -> Result<(), ModelError> {
        let mut st = self.lock();
        Self::publish(&mut st, &self.published, self.slots.len(), new, true)
    }

    /// Installs (or with `None` removes) the overlay between the configured
    /// model and the running one, and republishes through it.
    ///
    /// # Errors
    /// The overlaid model is invalid: the overlay is not installed and
    /// nothing changes.
    pub fn set_overlay(&self, overlay: Option<Overlay>) -> Result<(), ModelError> {
        let mut st = self.lock();
        let old = std::mem::replace(&mut st.overlay, overlay);
        let model = st.model.clone();
        Self::publish(&mut st, &self.published, self.slots.len(), model, true).inspect_err(|_| st.overlay = old)
    }

    /// Makes workers own flows the way the NIC's RSS spreads them
    /// (`daemon::rss`; `None`: by the client address), from the snapshot
    /// published now on. Called at start, before any worker runs.
    ///
    /// # Errors
    /// The running model no longer builds (it did a moment ago).
    pub fn set_rss(&self, rss: Option<Arc<crate::ipvs::rss::RssMap>>) -> Result<(), ModelError> {
        let mut st = self.lock();
        st.rss = rss;
        let model = st.model.clone();
        Self::publish(&mut st, &self.published, self.slots.len(), model, true)
    }

    /// Re-derives the running model from the configured one through the
    /// overlay (after the overlay's own state changed, e.g. a health
    /// verdict). Publishes only when the result differs.
    ///
    /// # Errors
    /// The overlaid model is invalid: nothing changes.
    pub fn refresh(&self) -> Result<(), ModelError> {
        let mut st = self.lock();
        let model = st.model.clone();
        Self::publish(&mut st, &self.published, self.slots.len(), model, false)
    }

    /// Keeps the next hops of `addrs` resolved although the running model
    /// may not use them yet: a sorry server must be reachable the moment
    /// the overlay brings it in, not a neighbour resolution later. Takes
    /// effect at the next publication or kernel update.
    pub fn set_standby_next_hops(&self, mut addrs: Vec<IpAddr>) {
        addrs.sort();
        addrs.dedup();
        self.lock().standby = addrs;
    }

    /// The model that runs: the configured one through the overlay (what
    /// listings show: a failed server at weight 0, a sorry server in).
    pub fn running_model(&self) -> Model {
        let st = self.lock();
        match &st.overlay {
            Some(f) => f(&st.model),
            None => st.model.clone(),
        }
    }

    fn publish(st: &mut State, published: &Published, workers: usize, new: Model, always: bool) -> Result<(), ModelError> {
        let over = st.overlay.as_ref().map(|f| f(&new));
        let run = over.as_ref().unwrap_or(&new);
        let (eff, view) = effective(run, st.kernel.as_ref(), &st.standby)?;
        let mut snap = Snapshot::build(&eff, Some(&st.snap))?;
        snap.rss = st.rss.clone();
        let snap = Arc::new(snap);
        // Workers own flows by the masked client address: moving the mask
        // would move established flows to workers that do not know them.
        if workers > 1 && snap.shard_prefix != st.snap.shard_prefix {
            return Err(ModelError {
                what: "global.shard_prefix".into(),
                why: format!(
                    "this change moves the client sharding prefix from /{}, /{} to /{}, /{} \
                     (persistence netmasks make it coarser); with several workers that needs a restart",
                    st.snap.shard_prefix.0, st.snap.shard_prefix.1, snap.shard_prefix.0, snap.shard_prefix.1
                ),
            });
        }
        write_rules(st, rules_for(&new, over.as_ref(), &eff.net))?;
        if always || !same_forwarding(&st.snap, &snap) {
            published.publish(snap.clone());
            st.snap = snap;
        }
        st.model = new;
        st.net = eff.net;
        st.view = view;
        Ok(())
    }

    /// Takes a fresh kernel dump. Rebuilds and publishes the snapshot when
    /// the merged network changed. Returns the next hops to prompt the
    /// kernel about: unresolved ones, then stale ones.
    ///
    /// # Errors
    /// The new view is invalid with the running model (an interface
    /// disappeared, a kernel MTU below 576, ...): nothing changes.
    pub fn kernel_update(&self, tables: Tables) -> Result<Vec<Unresolved>, ModelError> {
        let mut st = self.lock();
        let Some(k) = st.kernel.as_ref() else {
            return Ok(Vec::new());
        };
        let k = KernelState {
            ifaces: k.ifaces.clone(),
            tables,
        };
        // What runs goes through the overlay here too: a kernel change
        // must not bring back a server the health checker took out.
        let over = st.overlay.as_ref().map(|f| f(&st.model));
        let (eff, view) = effective(over.as_ref().unwrap_or(&st.model), Some(&k), &st.standby)?;
        if eff.net != st.net {
            let snap = Arc::new(Snapshot::build(&eff, Some(&st.snap))?);
            // The director's own addresses may have changed.
            let rules = rules_for(&st.model, over.as_ref(), &eff.net);
            write_rules(&mut st, rules)?;
            self.published.publish(snap.clone());
            st.snap = snap;
            st.net = eff.net;
        }
        let todo = view
            .unresolved
            .iter()
            .chain(view.stale.iter())
            .cloned()
            .collect();
        st.view = view;
        st.kernel = Some(k);
        Ok(todo)
    }

    /// The model as last applied (its `net` is the static part from the
    /// config; [`Director::net`] is what runs).
    pub fn model(&self) -> Model {
        self.lock().model.clone()
    }

    /// The network the running snapshot uses (kernel merged with statics).
    pub fn net(&self) -> NetConf {
        self.lock().net.clone()
    }

    /// Next hops the data path needs but has no MAC for.
    pub fn unresolved(&self) -> Vec<Unresolved> {
        self.lock().view.unresolved.clone()
    }

    /// The running snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.published.load()
    }

    /// The last report of every worker.
    pub fn reports(&self) -> Vec<Arc<WorkerReport>> {
        self.slots.iter().map(|s| s.load()).collect()
    }

    /// Every worker's counters added up.
    pub fn counters(&self) -> WorkerCounters {
        let mut c = WorkerCounters::default();
        for r in self.reports() {
            c.merge(&r.counters);
        }
        c
    }

    /// Per real server of the running snapshot: traffic and load summed
    /// over the workers (by uid, so reports from an older snapshot count
    /// for the same server). Servers removed since are not listed.
    pub fn dest_totals(&self) -> Vec<DestTotal> {
        let snap = self.snapshot();
        let mut out: Vec<DestTotal> = snap
            .dests
            .iter()
            .map(|d| DestTotal {
                service: snap.services[d.svc as usize].key.clone(),
                addr: d.addr,
                port: d.port,
                fwd: d.fwd,
                weight: d.weight,
                stats: DestStats::default(),
                load: DestLoad::default(),
            })
            .collect();
        for r in self.reports() {
            for d in &r.dests {
                if let Some(i) = snap.dest_index(d.uid) {
                    let t = &mut out[i as usize];
                    t.stats.merge(&d.stats);
                    t.load.active += d.load.active;
                    t.load.inactive += d.load.inactive;
                    t.load.persist += d.load.persist;
                    t.load.overloaded |= d.load.overloaded;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::config;
    use crate::daemon::kernel::{Addr, Link, Neigh, NeighState};
    use crate::daemon::report::Reporter;
    use crate::io::xdp::IoStats;
    use crate::worker::Worker;
    use std::sync::atomic::AtomicUsize;

    use crate::daemon::DR_CONF as CONF;

    fn model(text: &str) -> Model {
        config::load_str(text, "test").unwrap()
    }

    /// Records every rule set; fails when told to.
    struct Sink {
        sets: Arc<Mutex<Vec<Vec<Rule>>>>,
        fail_after: Arc<AtomicUsize>,
    }

    impl RuleSink for Sink {
        fn set_rules(&mut self, rules: &[Rule]) -> Result<(), XdpError> {
            let mut s = self.sets.lock().unwrap();
            if s.len() >= self.fail_after.load(Ordering::Relaxed) {
                s.push(rules.to_vec());
                return Err(XdpError::Config {
                    field: "rules",
                    why: "full".into(),
                });
            }
            s.push(rules.to_vec());
            Ok(())
        }
    }

    #[test]
    fn apply_publishes_a_new_generation_and_rules() {
        let d = Director::new(model(CONF), 1).unwrap();
        let sets = Arc::new(Mutex::new(Vec::new()));
        d.set_rule_sink(Box::new(Sink {
            sets: sets.clone(),
            fail_after: Arc::new(AtomicUsize::new(99)),
        }))
        .unwrap();
        let p = d.published();
        assert_eq!(p.generation(), 1);
        let mut m = model(CONF);
        m.services[0].dests[0].weight = 5;
        d.apply(m.clone()).unwrap();
        assert_eq!(p.generation(), 2);
        assert_eq!(p.load().dests[0].weight, 5);
        assert_eq!(d.model(), m);
        assert_eq!(
            sets.lock().unwrap().len(),
            1,
            "same services: the rules were not rewritten"
        );
        let mut m2 = m.clone();
        if let ServiceKey::Addr { port, .. } = &mut m2.services[0].key {
            *port = 8080;
        }
        m2.services[0].dests[0].port = 8080;
        d.apply(m2).unwrap();
        let s = sets.lock().unwrap();
        assert_eq!(s.len(), 2);
        assert!(format!("{:?}", s[1]).contains("8080"), "{:?}", s[1]);
    }

    #[test]
    fn an_invalid_model_changes_nothing() {
        let d = Director::new(model(CONF), 1).unwrap();
        let before = d.model();
        let mut bad = model(CONF);
        bad.services[0].sched = "bogus".into();
        let e = d.apply(bad).unwrap_err();
        assert!(e.to_string().contains("unknown scheduler 'bogus'"), "{e}");
        assert_eq!(d.model(), before);
        assert_eq!(d.published().generation(), 1);
    }

    #[test]
    fn failed_rules_restore_the_old_set_and_change_nothing() {
        let d = Director::new(model(CONF), 1).unwrap();
        let sets = Arc::new(Mutex::new(Vec::new()));
        d.set_rule_sink(Box::new(Sink {
            sets: sets.clone(),
            fail_after: Arc::new(AtomicUsize::new(1)),
        }))
        .unwrap();
        let mut m = model(CONF);
        if let ServiceKey::Addr { port, .. } = &mut m.services[0].key {
            *port = 81;
        }
        m.services[0].dests[0].port = 81;
        let e = d.apply(m).unwrap_err();
        assert!(e.to_string().starts_with("steering rules"), "{e}");
        assert_eq!(d.published().generation(), 1);
        let s = sets.lock().unwrap();
        assert_eq!(s.len(), 3, "initial, the failed new set, the old set again");
        assert_eq!(s[2], s[0]);
    }

    fn tables(neigh_mac: Option<[u8; 6]>) -> Tables {
        Tables {
            links: vec![Link {
                index: 5,
                name: "eth0".into(),
                mac: Some([2, 0, 0, 0, 0xaa, 1]),
                mtu: 1500,
                up: true,
                upper: None,
                nic: false,
            }],
            addrs: vec![Addr {
                index: 5,
                addr: "10.0.0.1".parse().unwrap(),
                prefix: 24,
            }],
            routes: vec![],
            neighs: neigh_mac
                .map(|m| Neigh {
                    index: 5,
                    addr: "10.0.0.2".parse().unwrap(),
                    mac: Some(m),
                    state: NeighState::Valid,
                })
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn the_kernel_view_wins_and_updates_republish_only_on_change() {
        let mut m = model(CONF);
        m.net.neighbours.clear();
        let d = Director::with_kernel(m, vec!["eth0".into()], tables(None), 1).unwrap();
        let s = d.snapshot();
        assert_eq!(
            s.ports[0].mac,
            [2, 0, 0, 0, 0xaa, 1],
            "the kernel's MAC, not the config's"
        );
        assert_eq!(s.dests[0].hop, None, "unknown neighbour: no hop");
        assert_eq!(d.unresolved().len(), 1);
        let todo = d.kernel_update(tables(None)).unwrap();
        assert_eq!(todo.len(), 1);
        assert_eq!(d.published().generation(), 1, "nothing changed");
        let todo = d
            .kernel_update(tables(Some([2, 0, 0, 0, 0xbb, 2])))
            .unwrap();
        assert!(todo.is_empty());
        assert_eq!(d.published().generation(), 2);
        assert_eq!(
            d.snapshot().dests[0].hop.unwrap().mac,
            [2, 0, 0, 0, 0xbb, 2]
        );
        let e = d
            .kernel_update(Tables {
                links: vec![],
                ..tables(None)
            })
            .unwrap_err();
        assert!(e.to_string().contains("'eth0' does not exist"), "{e}");
        assert_eq!(d.published().generation(), 2);
    }

    #[test]
    fn the_overlay_stands_between_the_configured_and_the_running_model() {
        let d = Director::new(model(CONF), 1).unwrap();
        let weight0 = |m: &Model| {
            let mut m = m.clone();
            m.services[0].dests[0].weight = 0;
            m
        };
        d.set_overlay(Some(Box::new(weight0))).unwrap();
        assert_eq!(d.snapshot().dests[0].weight, 0, "the overlay runs");
        assert_eq!(d.model().services[0].dests[0].weight, model(CONF).services[0].dests[0].weight, "model() is the operator's");
        assert_eq!(d.running_model().services[0].dests[0].weight, 0);
        let g = d.published().generation();
        d.refresh().unwrap();
        assert_eq!(d.published().generation(), g, "refresh without a difference publishes nothing");
        // an overlay that breaks the model is refused, the old one stays
        let bad: Overlay = Box::new(|m: &Model| {
            let mut m = m.clone();
            m.services[0].sched = "nope".into();
            m
        });
        assert!(d.set_overlay(Some(bad)).is_err());
        assert_eq!(d.snapshot().dests[0].weight, 0);
        d.set_overlay(None).unwrap();
        assert_ne!(d.snapshot().dests[0].weight, 0);
    }

    #[test]
    fn the_directors_own_addresses_are_local_rules_and_follow_the_kernel() {
        let mut m = model(CONF);
        m.services[0].dests[0].fwd = FwdMethod::Nat;
        let d = Director::with_kernel(m, vec!["eth0".into()], tables(None), 1).unwrap();
        let sets = Arc::new(Mutex::new(Vec::new()));
        d.set_rule_sink(Box::new(Sink {
            sets: sets.clone(),
            fail_after: Arc::new(AtomicUsize::new(99)),
        }))
        .unwrap();
        let local = |a: &str| Rule::Local(a.parse().unwrap());
        {
            let s = sets.lock().unwrap();
            assert!(s[0].contains(&local("10.0.0.1")), "{:?}", s[0]);
            assert!(
                s[0].iter().any(|r| matches!(r, Rule::RealServer { .. })),
                "NAT replies are steered: {:?}",
                s[0]
            );
        }
        // The kernel gains an address: it becomes local too.
        let mut t = tables(None);
        t.addrs.push(Addr {
            index: 5,
            addr: "10.0.0.5".parse().unwrap(),
            prefix: 24,
        });
        d.kernel_update(t).unwrap();
        let s = sets.lock().unwrap();
        assert_eq!(s.len(), 2);
        assert!(s[1].contains(&local("10.0.0.1")) && s[1].contains(&local("10.0.0.5")));
    }

    #[test]
    fn kernel_updates_keep_the_overlay() {
        let mut m = model(CONF);
        m.net.neighbours.clear();
        let d = Director::with_kernel(m, vec!["eth0".into()], tables(None), 1).unwrap();
        d.set_overlay(Some(Box::new(|m: &Model| {
            let mut m = m.clone();
            m.services[0].dests[0].weight = 0;
            m
        })))
        .unwrap();
        let g = d.published().generation();
        d.kernel_update(tables(Some([2, 0, 0, 0, 0xbb, 2]))).unwrap();
        assert_eq!(d.published().generation(), g + 1, "the new neighbour is published");
        let s = d.snapshot();
        assert_eq!(s.dests[0].hop.unwrap().mac, [2, 0, 0, 0, 0xbb, 2]);
        assert_eq!(s.dests[0].weight, 0, "still through the overlay");
    }

    #[test]
    fn standby_next_hops_are_resolved_before_they_are_used() {
        let mut m = model(CONF);
        m.net.neighbours.clear();
        let d = Director::with_kernel(m, vec!["eth0".into()], tables(None), 1).unwrap();
        let addrs = |d: &Director| -> Vec<String> {
            d.unresolved().iter().map(|u| u.addr.to_string()).collect()
        };
        assert_eq!(addrs(&d), ["10.0.0.2"]);
        // A sorry server no service uses yet: prompted on the next update.
        d.set_standby_next_hops(vec!["10.0.0.9".parse().unwrap(), "10.0.0.2".parse().unwrap()]);
        let todo = d.kernel_update(tables(None)).unwrap();
        let todo: Vec<String> = todo.iter().map(|u| u.addr.to_string()).collect();
        assert_eq!(todo, ["10.0.0.2", "10.0.0.9"]);
        assert_eq!(addrs(&d), ["10.0.0.2", "10.0.0.9"]);
        d.set_standby_next_hops(vec![]);
        d.kernel_update(tables(None)).unwrap();
        assert_eq!(addrs(&d), ["10.0.0.2"]);
    }

    #[test]
    fn a_change_of_the_shard_prefix_is_refused_with_several_workers() {
        let with_persistence = |m: &Model| {
            let mut m = m.clone();
            m.services[0].persistence = Some(crate::ipvs::service::Persistence { timeout: 300, netmask: 24 });
            m
        };
        let base = model(CONF);
        let two = Director::new(base.clone(), 2).unwrap();
        let e = two.apply(with_persistence(&base)).unwrap_err();
        assert!(e.to_string().contains("needs a restart"), "{e}");
        assert_eq!(two.published().generation(), 1, "nothing changed");
        // per-port persistence at /32 keeps the prefix: fine
        let mut same = base.clone();
        same.services[0].persistence = Some(crate::ipvs::service::Persistence { timeout: 300, netmask: 32 });
        two.apply(same).unwrap();
        // one worker shards nothing: any change goes
        let one = Director::new(base.clone(), 1).unwrap();
        one.apply(with_persistence(&base)).unwrap();
    }

    #[test]
    fn totals_add_up_the_workers_reports() {
        let d = Director::new(model(CONF), 2).unwrap();
        for i in 0..2u16 {
            let mut w = Worker::new(i, 2, d.snapshot(), 1_000_000_000);
            // Make traffic the honest way: run a SYN through worker i when
            // it owns the flow; otherwise it reports a zero.
            crate::daemon::syns(&mut w, [10, 0, 0, 9], 40000..40001);
            let mut r = Reporter::new(d.report_slot(i as usize).unwrap());
            r.publish(&w, &IoStats::default(), (i as u32, None), true);
        }
        let t = d.dest_totals();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].stats.conns, 1, "exactly one worker owned the flow");
        assert_eq!(t[0].stats.inpkts, 1);
        let c = d.counters();
        assert_eq!(c.rx_packets, 2);
        assert_eq!(c.new_conns, 1);
        assert_eq!(c.handoffs, 1);
    }
}
