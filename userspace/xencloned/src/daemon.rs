//! The daemon: one epoll loop over the clone source, the uevent socket,
//! the Xenstore watch connection (parent cache), a signalfd and a timerfd.
//! Entries become [`Clone`]s ([`crate::clone::start`]); uevents and timeouts
//! settle their vifs; ready clones are completed
//! ([`crate::completion::complete`]).

use crate::clone::vif::Online;
use crate::clone::{self, Clone, Env, Options, VifState};
use crate::completion::{Outcome, RETRY_FIRST, RETRY_MAX};
use crate::hypervisor::Hypervisor;
use crate::netlink::NetOps;
use crate::parent::{self, ParentCache, ParentError, ParentInfo};
use crate::source::CloneSource;
use crate::stats::Stats;
use crate::trees::TreeCache;
use crate::uevent::{self, UeventSource, VifEvent, VifUevent};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use xen_clone_abi::XenCloneEntry;
use xenstore::{Client, TxId, WatchEvent, paths};

const T_SOURCE: u64 = 1;
const T_UEVENT: u64 = 2;
const T_WATCH: u64 = 3;
const T_SIGNAL: u64 = 4;
const T_TIMER: u64 = 5;
const T_XS: u64 = 6;

/// Period of the timerfd: vif deadlines and the stats file.
const TICK: Duration = Duration::from_millis(50);

/// The stats file is rewritten at most this often while it is dirty (a
/// burst of clones must not cost a create/write/rename each); with
/// [`TICK`] it is current within 250 ms of the last change.
pub const STATS_MIN_INTERVAL: Duration = Duration::from_millis(200);

/// Clones completed as failed (vif failures only) kept for their late
/// vifs: at most this many (the oldest is given up first)...
pub const LATE_MAX: usize = 256;
/// ... and for at most this long after their completion.
pub const LATE_KEEP: Duration = Duration::from_secs(15 * 60);
/// How often the kept clones' failed vifs are looked for in sysfs (their
/// `online` uevent may be lost as well).
const LATE_RECHECK: Duration = Duration::from_secs(1);

/// A clone completed as failed whose child was left paused because of its
/// vifs only: a vif that comes up later is connected, and once all are
/// the child is unpaused (see [`Daemon`]).
struct LateClone {
    clone: Clone,
    completed: Instant,
}

/// A clone whose completion the hypervisor did not accept yet (`EAGAIN`):
/// tried again at `next`, with a doubling `delay`.
struct Completing {
    clone: Clone,
    next: Instant,
    delay: Duration,
}

/// Token of the `@releaseDomain` watch.
pub const RELEASE_TOKEN: &str = "release";

/// Token of the watch on a clone vif's `hotplug-status`.
pub fn vif_token(child: u16, devid: u32) -> String {
    format!("vif:{child}:{devid}")
}

pub fn parse_vif_token(t: &str) -> Option<(u16, u32)> {
    let (c, d) = t.strip_prefix("vif:")?.split_once(':')?;
    Some((c.parse().ok()?, d.parse().ok()?))
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error(transparent)]
    Xs(#[from] xenstore::Error),
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error("uevent socket: {0}")]
    Uevent(#[source] std::io::Error),
}

fn sys(what: &'static str) -> impl FnOnce(nix::Error) -> DaemonError {
    move |source| DaemonError::Sys { what, source }
}

/// The daemon's seams.
pub struct Deps {
    pub source: Box<dyn CloneSource>,
    pub uevents: Box<dyn UeventSource>,
    pub xs: Client,
    pub hv: Box<dyn Hypervisor>,
    pub net: Box<dyn NetOps>,
}

#[derive(Clone, Debug, Default)]
pub struct Config {
    pub opts: Options,
    /// `--cache`: keep parent descriptions (watch-invalidated).
    pub cache: bool,
    pub stats_file: Option<PathBuf>,
    /// Handle SIGTERM/SIGINT/SIGQUIT with a signalfd (the real daemon).
    pub signals: bool,
}

pub struct Daemon {
    source: Box<dyn CloneSource>,
    uevents: Box<dyn UeventSource>,
    xs: Client,
    hv: Box<dyn Hypervisor>,
    net: Box<dyn NetOps>,
    opts: Options,
    cache: Option<ParentCache>,
    /// Parents' source trees for deep copy, watched on `xs`.
    trees: TreeCache,
    watch: Option<Client>,
    clones: BTreeMap<u32, Clone>,
    /// Completed as failed, waiting for late vifs (oldest first).
    late: std::collections::VecDeque<LateClone>,
    late_checked: Instant,
    /// Set up, waiting for the hypervisor to accept their completion.
    completing: Vec<Completing>,
    /// Completed, not yet unpaused ([`Daemon::flush_unpauses`], right
    /// after each completion).
    unpausing: Vec<Clone>,
    pub stats: Stats,
    stats_file: Option<PathBuf>,
    stats_dirty: bool,
    /// When the stats file was last written.
    stats_written: Option<Instant>,
    epoll: Epoll,
    timer: TimerFd,
    /// The timer ticks (every [`TICK`]) only while something is due on it
    /// (see [`Daemon::arm_timer`]): an idle daemon is never woken.
    timer_armed: bool,
    signal: Option<SignalFd>,
    stop: bool,
}

impl Daemon {
    pub fn new(deps: Deps, cfg: Config) -> Result<Daemon, DaemonError> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(sys("epoll_create"))?;
        let ev = |t| EpollEvent::new(EpollFlags::EPOLLIN, t);
        epoll
            .add(deps.source.fd(), ev(T_SOURCE))
            .map_err(sys("epoll add source"))?;
        epoll
            .add(deps.uevents.fd(), ev(T_UEVENT))
            .map_err(sys("epoll add uevents"))?;
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(sys("timerfd"))?;
        timer
            .set(
                Expiration::Interval(TimeSpec::from_duration(TICK)),
                TimerSetTimeFlags::empty(),
            )
            .map_err(sys("timerfd_settime"))?;
        epoll
            .add(&timer, ev(T_TIMER))
            .map_err(sys("epoll add timer"))?;
        let signal = if cfg.signals {
            let mut mask = SigSet::empty();
            for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT] {
                mask.add(s);
            }
            mask.thread_block().map_err(sys("sigprocmask"))?;
            let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
                .map_err(sys("signalfd"))?;
            epoll
                .add(&sfd, ev(T_SIGNAL))
                .map_err(sys("epoll add signalfd"))?;
            Some(sfd)
        } else {
            None
        };
        // The watch connection: parent cache invalidation (with --cache) and
        // each waiting vif's hotplug-status (netback's refusal fails the vif
        // at once instead of at its timeout).
        let mut w = deps.xs.reconnect()?;
        epoll
            .add(w.as_fd(), ev(T_WATCH))
            .map_err(sys("epoll add xenstore watch"))?;
        let cache = if cfg.cache {
            w.watch("@releaseDomain", RELEASE_TOKEN)?;
            Some(ParentCache::new(32))
        } else {
            None
        };
        let watch = Some(w);
        // The main connection carries the kept trees' watches (see
        // crate::trees): events that arrive while idle are read here.
        epoll
            .add(deps.xs.as_fd(), ev(T_XS))
            .map_err(sys("epoll add xenstore"))?;
        let stats = Stats {
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            ..Default::default()
        };
        Ok(Daemon {
            source: deps.source,
            uevents: deps.uevents,
            xs: deps.xs,
            hv: deps.hv,
            net: deps.net,
            opts: cfg.opts,
            cache,
            trees: TreeCache::new(32),
            watch,
            clones: BTreeMap::new(),
            late: std::collections::VecDeque::new(),
            late_checked: Instant::now(),
            completing: Vec::new(),
            unpausing: Vec::new(),
            stats,
            stats_file: cfg.stats_file,
            stats_dirty: true,
            stats_written: None,
            epoll,
            timer,
            timer_armed: true,
            signal,
            stop: false,
        })
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Changes the numbering used on the Xenstore connection (tests).
    pub fn set_xenstore_dialect(&mut self, d: xenstore::Dialect) {
        self.xs.set_dialect(d);
    }

    pub fn in_flight(&self) -> usize {
        self.clones.len() + self.completing.len()
    }

    /// Clones set up whose completion the hypervisor did not accept yet.
    pub fn completing(&self) -> usize {
        self.completing.len()
    }

    /// Clones completed as failed that still wait for a late vif.
    pub fn late_waiting(&self) -> usize {
        self.late.len()
    }

    pub fn stopped(&self) -> bool {
        self.stop
    }

    pub fn request_stop(&mut self) {
        self.stop = true;
    }

    /// Start-up reconciliation: cloned vifs that are online but were never
    /// connected (the previous daemon died between uevent and enslave).
    /// Re-delivered entries need nothing special here: the device hands
    /// them out first and the pipeline treats existing state as done.
    pub fn reconcile(&mut self) {
        if self.opts.skip_io {
            return;
        }
        let base = paths::join(&paths::domain_path(0), "backend/vif");
        let Ok(doms) = self.xs.directory(TxId::NONE, &base) else {
            return;
        };
        for d in doms {
            let Ok(domid) = d.parse::<u16>() else {
                continue;
            };
            let dom_dir = paths::join(&base, &d);
            let Ok(devs) = self.xs.directory(TxId::NONE, &dom_dir) else {
                continue;
            };
            for n in devs {
                let backend = paths::join(&dom_dir, &n);
                let handle = self
                    .xs
                    .read_opt(TxId::NONE, &paths::join(&backend, "handle"))
                    .ok()
                    .flatten()
                    .and_then(|h| h.parse().ok())
                    .or_else(|| n.parse().ok());
                let Some(handle) = handle else { continue };
                let ifname = paths::vif_ifname(domid, handle);
                if self.net.exists(&ifname)
                    && clone::vif::adopt_orphan(&mut self.xs, &mut *self.net, &backend, &ifname)
                {
                    self.stats.orphan_vifs_adopted += 1;
                }
            }
        }
    }

    /// Runs until SIGTERM/SIGINT (or [`Daemon::request_stop`]).
    pub fn run(&mut self) -> Result<(), DaemonError> {
        while !self.stop {
            self.step(Some(Duration::from_secs(1)))?;
        }
        if !self.clones.is_empty() {
            tracing::warn!(
                in_flight = self.clones.len(),
                "exiting with clones in flight: the device re-delivers them to the next daemon"
            );
        }
        self.write_stats();
        Ok(())
    }

    /// One loop iteration: wait for events (at most `timeout`), handle them,
    /// complete every ready clone.
    pub fn step(&mut self, timeout: Option<Duration>) -> Result<(), DaemonError> {
        let mut events = [EpollEvent::empty(); 8];
        let t = match timeout {
            None => EpollTimeout::NONE,
            Some(d) => EpollTimeout::try_from(d.as_millis().min(60_000) as i32)
                .unwrap_or(EpollTimeout::ZERO),
        };
        let n = match self.epoll.wait(&mut events, t) {
            Ok(n) => n,
            Err(nix::Error::EINTR) => 0,
            Err(e) => {
                return Err(DaemonError::Sys {
                    what: "epoll_wait",
                    source: e,
                });
            }
        };
        for ev in &events[..n] {
            match ev.data() {
                T_SOURCE => self.on_source()?,
                T_UEVENT => self.on_uevents()?,
                T_WATCH => self.on_watch()?,
                T_SIGNAL => self.on_signal(),
                T_TIMER => self.on_timer(),
                T_XS => {
                    let evs = self.xs.read_events()?;
                    self.trees.on_events(evs);
                }
                _ => {}
            }
        }
        // Events that arrived while a watch/unwatch request waited for its
        // reply are queued in the client, not signalled by epoll.
        let queued = match &mut self.watch {
            Some(w) if w.has_queued_events() => w.take_events(),
            _ => Vec::new(),
        };
        for ev in queued {
            self.on_watch_event(ev);
        }
        // Tree events that came in with replies on the main connection.
        self.trees.sync(&mut self.xs);
        self.stats.trees = self.trees.stats;
        self.finish_ready();
        self.flush_unpauses();
        self.arm_timer();
        Ok(())
    }

    /// Ticks the timer while a vif deadline, a late vif, a completion retry
    /// or a stats write is pending; stops it otherwise (each tick is a
    /// wake-up, which on a busy Dom0 competes with xenstored).
    fn arm_timer(&mut self) {
        let need = !self.clones.is_empty()
            || !self.late.is_empty()
            || !self.completing.is_empty()
            || self.stats_dirty;
        if need == self.timer_armed {
            return;
        }
        let r = if need {
            self.timer.set(
                Expiration::Interval(TimeSpec::from_duration(TICK)),
                TimerSetTimeFlags::empty(),
            )
        } else {
            self.timer.unset()
        };
        match r {
            Ok(()) => self.timer_armed = need,
            Err(e) => tracing::warn!("timerfd: {e}"),
        }
    }

    /// Unpauses (and records) the clones completed since the last call.
    fn flush_unpauses(&mut self) {
        for mut c in std::mem::take(&mut self.unpausing) {
            crate::completion::finish(
                &mut *self.hv,
                &mut c,
                self.opts.leave_paused,
                &mut self.stats,
            );
            self.stats_dirty = true;
            self.after_completion(c);
        }
    }

    fn on_signal(&mut self) {
        if let Some(sfd) = &mut self.signal {
            while let Ok(Some(info)) = sfd.read_signal() {
                tracing::info!(signal = info.ssi_signo, "stopping on signal");
                self.stop = true;
            }
        }
    }

    fn on_source(&mut self) -> Result<(), DaemonError> {
        let entries = match self.source.read_entries() {
            Ok(e) => e,
            Err(e @ crate::source::SourceError::Io { .. }) => return Err(e.into()),
            Err(e) => {
                tracing::error!("clone source: {e}");
                return Ok(());
            }
        };
        // Complete each clone as soon as it is ready: a burst must not hold
        // back the first completions until every clone of the burst has been
        // set up. The source hands out at most READ_BATCH entries per
        // wake-up; clones waiting for their vifs complete on the uevents
        // served between batches.
        for e in entries {
            self.start_clone(e);
            self.finish_ready();
        }
        Ok(())
    }

    fn parent_for(&mut self, e: &XenCloneEntry) -> Result<ParentInfo, ParentError> {
        let pid = e.parent_domid;
        if let Some(c) = &mut self.cache
            && let Some(p) = c.get(pid)
        {
            self.stats.cache_hits += 1;
            return Ok(p);
        }
        // Without --cache: a description kept under the trees' watches
        // (deep copy). One request first: its reply comes after the watch
        // event of every change made before it.
        if self.cache.is_none() && self.trees.has_description(pid) {
            match self.xs.get_domain_path(pid) {
                Ok(_) => {
                    self.trees.sync(&mut self.xs);
                    if let Some(p) = self.trees.description(pid, e.parent_start_info_mfn) {
                        return Ok(p);
                    }
                }
                Err(err) => tracing::debug!(parent = pid, "sync before kept description: {err}"),
            }
        }
        self.stats.cache_misses += 1;
        let p = parent::read_parent(&mut self.xs, &mut *self.hv, pid, e.parent_start_info_mfn)?;
        if self.cache.is_none() {
            self.trees.keep_description(&p, e.parent_start_info_mfn);
        }
        if let (Some(c), Some(w)) = (&mut self.cache, &mut self.watch) {
            let evicted = c.insert(p.clone());
            let shutdown = paths::join(&paths::domain_path(pid), "control/shutdown");
            if let Err(err) = w.watch(&shutdown, &parent::watch_token(pid)) {
                tracing::warn!(parent = pid, "cannot watch {shutdown}: {err}; not caching");
                c.remove(pid);
            }
            if let Some(old) = evicted {
                let path = paths::join(&paths::domain_path(old), "control/shutdown");
                let _ = w.unwatch(&path, &parent::watch_token(old));
            }
        }
        Ok(p)
    }

    fn start_clone(&mut self, e: XenCloneEntry) {
        let started = Instant::now();
        self.stats.clones_started += 1;
        self.stats_dirty = true;
        let redelivered = e.flags & xen_clone_abi::XEN_CLONE_ENTRY_REDELIVERED != 0;
        if redelivered {
            self.stats.redelivered += 1;
        }
        tracing::info!(
            parent = e.parent_domid,
            child = e.child_domid,
            id = e.id,
            redelivered,
            "cloned {} -> {}",
            e.parent_domid,
            e.child_domid
        );
        // A second entry with an id still in flight: the device never does
        // this; if it happens, the old clone is dropped (the id is
        // completed once, for the new entry) and its watches go with it,
        // before the new clone registers its own (same path and token
        // when the child is the same).
        if let Some(old) = self.clones.remove(&e.id) {
            tracing::error!(
                id = e.id,
                old_child = old.child(),
                child = e.child_domid,
                "duplicate clone id: dropping the clone of child {} (left paused, not completed), completing the new entry only",
                old.child()
            );
            unwatch_vifs(&mut self.watch, &old);
        }
        let parent = self.parent_for(&e);
        let mut env = Env {
            xs: &mut self.xs,
            hv: &mut *self.hv,
            net: &mut *self.net,
            opts: &mut self.opts,
            trees: &mut self.trees,
        };
        let c = clone::start(&mut env, e, parent, started);
        if let Some(w) = &mut self.watch {
            for v in c.vifs.iter().filter(|v| v.state == VifState::WaitingOnline) {
                let path = paths::join(&v.backend, "hotplug-status");
                if let Err(err) = w.watch(&path, &vif_token(c.child(), v.devid)) {
                    tracing::warn!("cannot watch {path}: {err}; relying on the timeout");
                }
            }
        }
        self.clones.insert(e.id, c);
    }

    fn on_uevents(&mut self) -> Result<(), DaemonError> {
        let grams = self.uevents.recv_all();
        let foreign = self.uevents.take_foreign_dropped();
        if foreign > 0 {
            self.stats.uevents_foreign_dropped += foreign;
            self.stats_dirty = true;
        }
        let grams = match grams {
            Ok(g) => g,
            Err(e) => {
                // Lost uevents are recovered by the vif timeouts.
                tracing::error!("uevent socket: {e}");
                return Ok(());
            }
        };
        for g in grams {
            match uevent::parse(&g) {
                Ok(ev) => match uevent::classify_vif(&ev) {
                    Some(VifEvent::Online(v)) => self.on_vif_online(v),
                    Some(VifEvent::Offline(v)) => self.on_vif_offline(v),
                    None => {}
                },
                Err(e) => tracing::debug!("ignoring uevent: {e}"),
            }
        }
        Ok(())
    }

    fn on_vif_online(&mut self, v: VifUevent) {
        let mut env = Env {
            xs: &mut self.xs,
            hv: &mut *self.hv,
            net: &mut *self.net,
            opts: &mut self.opts,
            trees: &mut self.trees,
        };
        for c in self.clones.values_mut() {
            if c.child() != v.domid {
                continue;
            }
            match clone::vif::on_online(&mut env, c, v.devid) {
                Online::NotOurs => continue,
                Online::LateConnected => {
                    // Not completed yet: counts as connected at completion.
                    self.stats.vifs_late += 1;
                    self.stats_dirty = true;
                    return;
                }
                Online::Connected | Online::Unchanged => return,
            }
        }
        // A clone completed as failed, its child paused: late success wins.
        if let Some(i) = self.late.iter().position(|l| {
            l.clone.child() == v.domid && l.clone.vifs.iter().any(|s| s.devid == v.devid)
        }) {
            if clone::vif::on_online(&mut env, &mut self.late[i].clone, v.devid)
                == Online::LateConnected
            {
                self.stats.vifs_late += 1;
                self.stats_dirty = true;
                self.recover_late(i);
            }
            return;
        }
        // Nobody waits for it: a clone of a previous daemon instance.
        let backend = paths::resolve(0, &v.xenbus_path);
        let ifname = v
            .ifname
            .clone()
            .unwrap_or_else(|| paths::vif_ifname(v.domid, v.devid));
        if clone::vif::adopt_orphan(&mut self.xs, &mut *self.net, &backend, &ifname) {
            self.stats.orphan_vifs_adopted += 1;
            self.stats_dirty = true;
        }
    }

    /// Kept clone `i` had a vif connected late: once every vif is
    /// connected the child is unpaused (unless `-p`) and the clone leaves
    /// the late list.
    fn recover_late(&mut self, i: usize) {
        let done = self
            .late
            .get(i)
            .is_some_and(|l| l.clone.vifs.iter().all(|s| s.state == VifState::Connected));
        if !done {
            return;
        }
        let Some(l) = self.late.remove(i) else { return };
        let c = l.clone;
        let (p, ch, id) = (c.parent(), c.child(), c.entry.id);
        self.stats.clones_recovered_late += 1;
        self.stats_dirty = true;
        if self.opts.leave_paused {
            tracing::info!(
                parent = p,
                child = ch,
                id,
                "clone recovered: every vif connected late; child left paused (-p)"
            );
            return;
        }
        match self.hv.unpause(ch) {
            Ok(()) => tracing::info!(
                parent = p,
                child = ch,
                id,
                "clone recovered: every vif connected late; child {ch} unpaused"
            ),
            Err(e) => {
                self.stats.unpause_errors += 1;
                tracing::error!(
                    parent = p,
                    child = ch,
                    id,
                    "clone recovered late, but unpause failed: {e}"
                );
            }
        }
    }

    /// Kept clones: failed vifs that exist in sysfs now (their uevent
    /// lost too) are connected; clones kept too long are given up.
    fn check_late(&mut self, now: Instant) {
        while let Some(l) = self.late.front() {
            if now.saturating_duration_since(l.completed) < LATE_KEEP && self.late.len() <= LATE_MAX
            {
                break;
            }
            let c = &l.clone;
            tracing::warn!(
                parent = c.parent(),
                child = c.child(),
                id = c.entry.id,
                "no longer waiting for the failed vifs of child {}: it stays paused (xl destroy {})",
                c.child(),
                c.child()
            );
            self.late.pop_front();
            self.stats_dirty = true;
        }
        if now.saturating_duration_since(self.late_checked) < LATE_RECHECK {
            return;
        }
        self.late_checked = now;
        let mut i = 0;
        while i < self.late.len() {
            let found: Vec<u32> = self.late[i]
                .clone
                .vifs
                .iter()
                .filter(|s| matches!(s.state, VifState::Failed(_)) && self.net.exists(&s.ifname))
                .map(|s| s.devid)
                .collect();
            let before = self.late.len();
            for devid in found {
                let mut env = Env {
                    xs: &mut self.xs,
                    hv: &mut *self.hv,
                    net: &mut *self.net,
                    opts: &mut self.opts,
                    trees: &mut self.trees,
                };
                if clone::vif::on_online(&mut env, &mut self.late[i].clone, devid)
                    == Online::LateConnected
                {
                    self.stats.vifs_late += 1;
                    self.stats.uevents_recovered += 1;
                    self.stats_dirty = true;
                }
            }
            self.recover_late(i);
            if self.late.len() == before {
                i += 1;
            }
        }
    }

    fn on_vif_offline(&mut self, v: VifUevent) {
        let ifname = v
            .ifname
            .clone()
            .unwrap_or_else(|| paths::vif_ifname(v.domid, v.devid));
        if self.net.master_of(&ifname).is_some() {
            match self.net.release(&ifname) {
                Ok(()) => {
                    tracing::info!(ifname = %ifname, "released from bond");
                    self.stats.vifs_released += 1;
                    self.stats_dirty = true;
                }
                Err(e) => tracing::debug!("release {ifname}: {e}"),
            }
        }
    }

    fn on_watch(&mut self) -> Result<(), DaemonError> {
        let events = match &mut self.watch {
            Some(w) => w.read_events()?,
            None => return Ok(()),
        };
        for ev in events {
            self.on_watch_event(ev);
        }
        Ok(())
    }

    fn invalidate(&mut self, domid: u16) {
        if let Some(c) = &mut self.cache
            && c.remove(domid)
        {
            self.stats.cache_invalidations += 1;
            self.stats_dirty = true;
            tracing::info!(parent = domid, "parent dropped from cache");
            if let Some(w) = &mut self.watch {
                let path = paths::join(&paths::domain_path(domid), "control/shutdown");
                let _ = w.unwatch(&path, &parent::watch_token(domid));
            }
        }
    }

    fn on_watch_event(&mut self, ev: WatchEvent) {
        let gone = |xs: &mut Client, path: &str| matches!(xs.exists(TxId::NONE, path), Ok(false));
        if ev.token == RELEASE_TOKEN {
            let doms = self.cache.as_ref().map(|c| c.domids()).unwrap_or_default();
            for d in doms {
                if gone(&mut self.xs, &paths::domain_path(d)) {
                    self.invalidate(d);
                }
            }
        } else if let Some((child, devid)) = parse_vif_token(&ev.token) {
            let mut env = Env {
                xs: &mut self.xs,
                hv: &mut *self.hv,
                net: &mut *self.net,
                opts: &mut self.opts,
                trees: &mut self.trees,
            };
            for c in self.clones.values_mut() {
                if c.child() == child && clone::vif::on_hotplug_status(&mut env, c, devid) {
                    self.stats_dirty = true;
                }
            }
        } else if let Some(d) = parent::token_domid(&ev.token) {
            // The watched path disappearing (domain destroyed) or a shutdown
            // request both end the parent's cached life.
            let v = self.xs.read_opt(TxId::NONE, &ev.path);
            match v {
                Ok(None) => self.invalidate(d),
                Ok(Some(s)) if !s.is_empty() => self.invalidate(d),
                _ => {}
            }
        }
    }

    fn on_timer(&mut self) {
        let mut buf = [0u8; 8];
        let _ = nix::unistd::read(self.timer.as_fd(), &mut buf);
        let now = Instant::now();
        let mut env = Env {
            xs: &mut self.xs,
            hv: &mut *self.hv,
            net: &mut *self.net,
            opts: &mut self.opts,
            trees: &mut self.trees,
        };
        for c in self.clones.values_mut() {
            for devid in c.expired(now) {
                self.stats.uevent_timeouts += 1;
                if clone::vif::on_timeout(&mut env, c, devid) {
                    self.stats.uevents_recovered += 1;
                }
                self.stats_dirty = true;
            }
        }
        self.check_late(now);
        self.retry_completions(now);
        if self.stats_dirty
            && self
                .stats_written
                .is_none_or(|t| now.saturating_duration_since(t) >= STATS_MIN_INTERVAL)
        {
            self.write_stats();
        }
    }

    /// Writes the stats file now if anything changed since it was last
    /// written (on demand; the event loop writes it on its timer, at most
    /// every [`STATS_MIN_INTERVAL`], and at shutdown).
    pub fn flush_stats(&mut self) {
        if self.stats_dirty {
            self.write_stats();
        }
    }

    fn finish_ready(&mut self) {
        let ready: Vec<u32> = self
            .clones
            .iter()
            .filter(|(_, c)| c.ready())
            .map(|(id, _)| *id)
            .collect();
        for id in ready {
            let Some(mut c) = self.clones.remove(&id) else {
                continue;
            };
            unwatch_vifs(&mut self.watch, &c);
            for v in &c.vifs {
                match v.state {
                    VifState::Connected => self.stats.vifs_connected += 1,
                    VifState::Failed(_) => self.stats.vifs_failed += 1,
                    VifState::WaitingOnline => {}
                }
            }
            let outcome =
                crate::completion::complete(&mut *self.source, &mut c, &mut self.stats, false);
            self.stats_dirty = true;
            if outcome == Outcome::Retry {
                self.completing.push(Completing {
                    clone: c,
                    next: Instant::now() + RETRY_FIRST,
                    delay: RETRY_FIRST,
                });
                continue;
            }
            // Unpaused at once: a daemon killed between a completion and
            // the unpause leaves a child nothing finishes (the module does
            // not re-deliver a completed entry), so that window stays as
            // short as two calls.
            self.unpausing.push(c);
            self.flush_unpauses();
        }
    }

    /// Tries again the completions that are due (see [`Completing`]).
    fn retry_completions(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.completing.len() {
            if self.completing[i].next > now {
                i += 1;
                continue;
            }
            let mut p = self.completing.swap_remove(i);
            let outcome =
                crate::completion::complete(&mut *self.source, &mut p.clone, &mut self.stats, true);
            self.stats_dirty = true;
            if outcome == Outcome::Retry {
                p.delay = (p.delay * 2).min(RETRY_MAX);
                p.next = now + p.delay;
                // Not due again in this pass: `next` is in the future.
                self.completing.push(p);
            } else {
                self.unpausing.push(p.clone);
                self.flush_unpauses();
            }
        }
    }

    /// A clone is completed: keep it for its late vifs if that can help.
    fn after_completion(&mut self, c: Clone) {
        let id = c.entry.id;
        if c.recoverable() {
            tracing::info!(
                parent = c.parent(),
                child = c.child(),
                id,
                "waiting up to {:?} for the failed vifs of child {}: one that comes up is connected, and the child unpaused once all are",
                LATE_KEEP,
                c.child()
            );
            self.late.push_back(LateClone {
                clone: c,
                completed: Instant::now(),
            });
        }
    }

    fn write_stats(&mut self) {
        self.stats.in_flight = self.clones.len();
        self.stats.late_waiting = self.late.len();
        self.stats.trees = self.trees.stats;
        if let Some(p) = &self.stats_file
            && let Err(e) = self.stats.write(p)
        {
            tracing::warn!("cannot write stats file {}: {e}", p.display());
        }
        self.stats_dirty = false;
        self.stats_written = Some(Instant::now());
    }
}

/// Removes the `hotplug-status` watches of clone `c`'s vifs.
fn unwatch_vifs(watch: &mut Option<Client>, c: &Clone) {
    let Some(w) = watch else { return };
    for v in &c.vifs {
        let path = paths::join(&v.backend, "hotplug-status");
        if let Err(e) = w.unwatch(&path, &vif_token(c.child(), v.devid)) {
            tracing::debug!(child = c.child(), "unwatch {path}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_tokens() {
        assert_eq!(vif_token(9, 2), "vif:9:2");
        assert_eq!(parse_vif_token("vif:9:2"), Some((9, 2)));
        assert_eq!(parse_vif_token("dom9"), None);
        assert_eq!(parse_vif_token("vif:9"), None);
        assert_eq!(parse_vif_token(RELEASE_TOKEN), None);
    }
}
