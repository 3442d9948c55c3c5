//! TEST ONLY: a simulated Nephele hypervisor, for the KUnit suites and the test-only module
//! `xen_clone_sim`; not part of the module users load (`xen_clone_dev`).
//!
//! It produces into the same ring layout as Xen and follows Nephele's `xen/common/clone.c`
//! (`do_clone_vms`, `notification_ring_add`, `completion_ring_add/_done/_wait/_purge_completed`):
//! - the id of an entry is the `prod_idx` it was written at, truncated to `u32`;
//! - each injected batch is one parent's clone hypercall ([`Op`]). A parent has one clone
//!   hypercall at a time (Xen keeps one `clone_op_state` per parent domain, and a
//!   self-cloning guest's vCPU waits in the hypercall): a batch injected for a parent still in
//!   its hypercall waits until that hypercall returned, then runs. [`SimFaults::parallel_batches`]
//!   lifts this (batches of one parent run side by side, like distinct parents). A pass of it, like one
//!   (re)entry of `do_clone_vms`: purge the completion ring; write a notification for each child
//!   not notified yet while the notification ring has room (`prod - cons < N`), queueing its id
//!   in the completion ring only while that has room too: once the completion ring is full the
//!   notification is still written, but this id and the later ones of the pass do not enter the
//!   completion ring (`stop_queueing_to_completion`); then queue the notified ids that are not
//!   in it yet, in order, while there is room; then wait, in order, for each queued id. After a
//!   wait the parent purges, and, if the hypercall is preempted (`hypercall_preempt_check`,
//!   modelled by [`SimFaults::no_preempt`] being false) and the id was not its last queued one,
//!   the hypercall restarts with a new pass: that is the only way later ids enter the completion
//!   ring. When the wait loop ends the hypercall returns: children never notified stay paused
//!   without a notification (`abandoned_unnotified`), and notified ids that never entered the
//!   completion ring can never be completed (`abandoned_unqueued`);
//! - `completion_ring_add` asserts that the id is the completion ring's `prod`; a release Xen
//!   carries on (slot of the id, `prod + 1`): counted as `assertion_failures`;
//! - a completion is accepted for an id in the completion window `[cons, prod)`; any other id
//!   gets `EINVAL`; completing a `COMPLETED` id again is a no-op that Xen asserts on in debug
//!   builds (counted here as `double_completions`); once disabled, completions get `EPERM`.
//!   A completion only marks the entry and wakes its parent; slots are freed (the contiguous
//!   completed prefix) only by a parent's purge, in its wait loop or at its next pass;
//! - `CLONEOP_enable` answers `EBUSY` while the ring is enabled, and, with
//!   `CLONEOP_FLAG_USE_PAGE_SHARING_INFO_POOL`, also when the page-sharing pool exists: it is
//!   created by the first enable with the flag and never freed, not even by `CLONEOP_disable`;
//! - `CLONEOP_disable` does not wait for anything: entries still waiting for completion are
//!   dropped (in Xen their parents sleep on freed memory: counted as `waiting_at_disable`), and
//!   children not notified yet stay paused forever (`unnotified_at_disable`).
//!
//! Test-only fault knobs ([`SimFaults`]) make it misbehave like a hypervisor can: a bad
//! `entries_num`, a failing `CLONEOP_disable`, clones racing with `CLONEOP_disable`, parents whose
//! hypercall is never preempted.
//!
//! Control from userspace goes through debugfs (see the module documentation).

use crate::abi::XEN_CLONE_ENABLE_PAGE_SHARING_POOL;
use crate::ffi::RingMem;
use crate::hv::Hypervisor;
use crate::ring::{entries_for_pages, Producer};
use kernel::{fmt, new_mutex, prelude::*, sync::Arc, sync::Mutex};

/// Children that can wait to be notified at most, over all parents (beyond this, injection
/// fails).
pub(crate) const BACKLOG_MAX: usize = 16384;

/// Parents in a clone hypercall at most.
const OPS_MAX: usize = 4096;

/// Completed ids remembered for `sim_status`.
const COMPLETED_LOG: usize = 64;

/// State of an entry in the simulated completion ring.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CState {
    None,
    Created,
    Completed,
}

/// The hypervisor-private completion ring.
///
/// # Invariants
///
/// `states.len()` is a power of two (`mask + 1`), `prod - cons <= states.len()`.
struct CompletionRing {
    states: KVVec<CState>,
    mask: u64,
    cons: u64,
    prod: u64,
}

impl CompletionRing {
    fn new(n: u64, start: u64) -> Result<Self> {
        Ok(Self {
            states: KVVec::from_elem(CState::None, n as usize, GFP_KERNEL)?,
            mask: n - 1,
            cons: start,
            prod: start,
        })
    }

    /// `!completion_ring_is_full()`.
    fn has_room(&self) -> bool {
        self.prod.wrapping_sub(self.cons) <= self.mask
    }

    fn state(&self, idx: u64) -> CState {
        self.states[(idx & self.mask) as usize]
    }

    /// `completion_ring_add()`: returns `false` where Xen's `ASSERT(id == prod_idx)` fails
    /// (a release build carries on like this).
    fn add(&mut self, idx: u64) -> bool {
        let in_order = idx == self.prod;
        self.states[(idx & self.mask) as usize] = CState::Created;
        self.prod = self.prod.wrapping_add(1);
        in_order
    }

    /// `completion_ring_purge_completed()`: frees the contiguous completed prefix.
    fn purge(&mut self) {
        while self.cons != self.prod && self.state(self.cons) == CState::Completed {
            self.states[(self.cons & self.mask) as usize] = CState::None;
            self.cons = self.cons.wrapping_add(1);
        }
    }

    /// Whether `idx` was freed by a purge (it is below `cons`).
    fn purged(&self, idx: u64) -> bool {
        (self.cons.wrapping_sub(idx) as i64) > 0
    }

    fn waiting(&self) -> u64 {
        self.prod.wrapping_sub(self.cons)
    }
}

/// One parent's clone hypercall (Xen's `struct clone_op_state`): `count` children
/// `child, child + 1, ...`, all created at once.
///
/// # Invariants
///
/// `queued <= notified <= count == ids.len()`; `ids[..notified]` are the notification indices of
/// the notified children, `ids[..queued]` entered the completion ring.
struct Op {
    parent: u16,
    child: u16,
    count: u32,
    ids: KVVec<u64>,
    notified: u32,
    queued: u32,
    /// The completion index the parent sleeps on (`completion_ring_wait`).
    asleep_on: Option<u64>,
}

/// Where a pass of an [`Op`] stopped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// The parent sleeps until the entry it waits for is completed.
    Asleep,
    /// The hypercall returned.
    Finished,
}

/// Counters of the simulated hypervisor (shown in `sim_status`).
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct SimStats {
    /// Children requested through injection.
    pub(crate) injected: u64,
    /// Entries written into the ring.
    pub(crate) notified: u64,
    /// Completions accepted.
    pub(crate) completed: u64,
    /// Times a child could not be notified because the notification ring was full.
    pub(crate) backpressure: u64,
    /// Notifications written while the completion ring was full (their ids stay out of it).
    pub(crate) completion_full: u64,
    /// Completions refused with `EINVAL` (id not in the completion window).
    pub(crate) invalid_completions: u64,
    /// Completions of an id already completed (Xen asserts on these in debug builds).
    pub(crate) double_completions: u64,
    /// `ASSERT`s of Xen's completion ring that failed (a debug Xen would have crashed).
    pub(crate) assertion_failures: u64,
    /// Children never notified when their parent's hypercall returned (they stay paused).
    pub(crate) abandoned_unnotified: u64,
    /// Notified ids that never entered the completion ring when their parent's hypercall
    /// returned: every completion of them gets `EINVAL`.
    pub(crate) abandoned_unqueued: u64,
    /// Notified entries whose completion was still awaited when `CLONEOP_disable` came: Xen
    /// frees its completion ring under their waiting parents.
    pub(crate) waiting_at_disable: u64,
    /// Children cloned but never notified when `CLONEOP_disable` came (they stay paused).
    pub(crate) unnotified_at_disable: u64,
}

/// Test-only misbehaviour of the simulated hypervisor.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct SimFaults {
    /// `CLONEOP_enable` succeeds but writes this `entries_num`.
    pub(crate) bad_entries_num: Option<u64>,
    /// `CLONEOP_disable` fails with this error (and the ring stays enabled).
    pub(crate) disable_error: Option<Error>,
    /// A parent clones `(parent, child, count)` at the moment `CLONEOP_disable` is issued, just
    /// before the hypervisor handles it: children are notified if the ring has room.
    pub(crate) clone_at_disable: Option<(u16, u16, u32)>,
    /// Entries written at the moment `CLONEOP_disable` is issued without looking at
    /// `cons_idx`: a clone whose room check ran before the consumer's last update of it.
    pub(crate) racy_entries_at_disable: u32,
    /// Parents' clone hypercalls are never preempted: each wait loop runs to its end, so ids
    /// left out of a full completion ring never enter it.
    pub(crate) no_preempt: bool,
    /// Batches of one parent do not wait for its earlier batch's hypercall to return: they run
    /// side by side as if from distinct parents, each with its own wait loop (no real guest
    /// can do this: Xen has one clone state per parent).
    pub(crate) parallel_batches: bool,
}

/// The simulated hypervisor's view of an enabled ring.
struct Enabled {
    ring: Arc<RingMem>,
    producer: Producer,
    completion: CompletionRing,
}

struct SimState {
    enabled: Option<Enabled>,
    /// The page-sharing pool exists (never freed once created, like Xen's).
    pool: bool,
    faults: SimFaults,
    /// Parents in their clone hypercall, oldest first.
    ops: KVec<Op>,
    stats: SimStats,
    log: [u32; COMPLETED_LOG],
    log_len: usize,
    log_pos: usize,
}

impl SimState {
    /// Children not notified yet (of parents in a hypercall, or in a batch waiting for it).
    fn backlog(&self) -> usize {
        self.ops
            .iter()
            .map(|o| (o.count - o.notified) as usize)
            .sum()
    }
}

/// The simulated hypervisor.
#[pin_data]
pub(crate) struct SimHv {
    /// Index at which enable starts the ring (0 like Xen; tests use values near 2^32).
    start: u64,
    #[pin]
    inner: Mutex<SimState>,
}

impl SimHv {
    /// A simulated hypervisor whose ring indices start at `start` on enable.
    pub(crate) fn new(start: u64) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                start,
                inner <- new_mutex!(SimState {
                    enabled: None,
                    pool: false,
                    faults: SimFaults::default(),
                    ops: KVec::new(),
                    stats: SimStats::default(),
                    log: [0; COMPLETED_LOG],
                    log_len: 0,
                    log_pos: 0,
                }),
            }),
            GFP_KERNEL,
        )
    }

    /// A parent clones `count` children `child, child + 1, ...` (one `CLONEOP_clone` batch):
    /// runs its hypercall until its parent sleeps or it returns. Returns how many entries were
    /// written (by any parent woken meanwhile). `ENOSPC` if too many children or parents are
    /// in a hypercall; `EPERM` if cloning is not enabled (like Xen).
    pub(crate) fn inject(&self, parent: u16, child: u16, count: u32) -> Result<u64> {
        let mut g = self.inner.lock();
        if g.enabled.is_none() {
            return Err(EPERM);
        }
        Self::add_op(&mut g, parent, child, count)?;
        Ok(Self::pump_locked(&mut g))
    }

    fn add_op(g: &mut SimState, parent: u16, child: u16, count: u32) -> Result {
        if g.ops.len() >= OPS_MAX || g.backlog() + count as usize > BACKLOG_MAX {
            return Err(ENOSPC);
        }
        let ids = KVVec::from_elem(0u64, count as usize, GFP_KERNEL)?;
        g.ops.push(
            Op {
                parent,
                child,
                count,
                ids,
                notified: 0,
                queued: 0,
                asleep_on: None,
            },
            GFP_KERNEL,
        )?;
        g.stats.injected += u64::from(count);
        Ok(())
    }

    /// Lets every parent that is not asleep (or whose entry was completed) run its hypercall
    /// on. Returns how many entries were written.
    pub(crate) fn pump(&self) -> u64 {
        let mut g = self.inner.lock();
        Self::pump_locked(&mut g)
    }

    fn pump_locked(g: &mut SimState) -> u64 {
        let SimState {
            enabled,
            ops,
            stats,
            faults,
            ..
        } = g;
        let Some(en) = enabled.as_mut() else {
            return 0;
        };
        let before = stats.notified;
        let mut i = 0;
        while i < ops.len() {
            // A parent still in an earlier clone hypercall has not issued this one yet.
            let parent = ops[i].parent;
            if !faults.parallel_batches && ops[..i].iter().any(|o| o.parent == parent) {
                i += 1;
                continue;
            }
            let op = &mut ops[i];
            if let Some(idx) = op.asleep_on {
                if !en.completion.purged(idx) && en.completion.state(idx) != CState::Completed {
                    i += 1;
                    continue;
                }
            }
            if Self::run_op(en, op, stats, !faults.no_preempt) == Pass::Finished {
                stats.abandoned_unnotified += u64::from(op.count - op.notified);
                stats.abandoned_unqueued += u64::from(op.notified - op.queued);
                // Cannot fail: `i < ops.len()`.
                let _ = ops.remove(i);
            } else {
                i += 1;
            }
        }
        stats.notified - before
    }

    /// `do_clone_vms()` for the parent of `op`, (re)entered until its parent sleeps or the
    /// hypercall returns. A parent woken in its wait loop carries on there; only a (re)entry
    /// purges first, notifies and queues.
    fn run_op(en: &mut Enabled, op: &mut Op, stats: &mut SimStats, preempt: bool) -> Pass {
        let mut entry = op.asleep_on.is_none();
        loop {
            let mut progress = false;
            if entry {
                progress = Self::enter_op(en, op, stats);
            }
            entry = true;
            // Wait for each queued id, in order; purge after each wait.
            let mut restart = false;
            for k in 0..op.queued {
                let idx = op.ids[k as usize];
                if en.completion.purged(idx) {
                    continue;
                }
                if en.completion.state(idx) != CState::Completed {
                    op.asleep_on = Some(idx);
                    return Pass::Asleep;
                }
                let cons = en.completion.cons;
                en.completion.purge();
                progress |= cons != en.completion.cons;
                if preempt && k + 1 < op.queued {
                    restart = true;
                    break;
                }
            }
            op.asleep_on = None;
            if !restart {
                return Pass::Finished;
            }
            if !progress {
                // Completed but not purged (an earlier entry of another parent is not): the
                // restarted hypercall spins until that one is completed.
                return Pass::Asleep;
            }
        }
    }

    /// The part of `do_clone_vms()` before its wait loop; returns whether anything changed.
    fn enter_op(en: &mut Enabled, op: &mut Op, stats: &mut SimStats) -> bool {
        let mut progress = false;
        en.completion.purge();
        let mut stop_queueing = op.queued < op.notified;
        // Notifications: room in the notification ring is all that is checked.
        while op.notified < op.count {
            let child = op.child.wrapping_add(op.notified as u16);
            let Ok(idx) = en.producer.produce(
                &en.ring,
                op.parent,
                child,
                0x1000_0000 + u64::from(op.parent),
                0x2000_0000 + u64::from(child),
            ) else {
                stats.backpressure += 1;
                break;
            };
            op.ids[op.notified as usize] = idx;
            op.notified += 1;
            stats.notified += 1;
            progress = true;
            if !stop_queueing {
                if en.completion.has_room() {
                    if !en.completion.add(idx) {
                        stats.assertion_failures += 1;
                    }
                    op.queued += 1;
                } else {
                    stop_queueing = true;
                    stats.completion_full += 1;
                }
            } else if !en.completion.has_room() {
                stats.completion_full += 1;
            }
        }
        // "Prepare to wait": the notified ids not queued yet, in order, while room lasts.
        while op.queued < op.notified && en.completion.has_room() {
            if !en.completion.add(op.ids[op.queued as usize]) {
                stats.assertion_failures += 1;
            }
            op.queued += 1;
            progress = true;
        }
        progress
    }

    /// Sets the test-only faults.
    #[cfg(xen_clone_sim)]
    pub(crate) fn set_faults(&self, faults: SimFaults) {
        self.inner.lock().faults = faults;
    }

    /// Whether the ring is enabled (the hypervisor may write its pages).
    #[cfg(xen_clone_sim)]
    pub(crate) fn is_enabled(&self) -> bool {
        self.inner.lock().enabled.is_some()
    }

    /// Whether the page-sharing pool exists.
    #[cfg(xen_clone_sim)]
    pub(crate) fn has_pool(&self) -> bool {
        self.inner.lock().pool
    }

    /// Children not notified yet (of parents in a hypercall, or in a batch waiting for it).
    pub(crate) fn backlog(&self) -> usize {
        self.inner.lock().backlog()
    }

    /// Parents in their clone hypercall.
    pub(crate) fn parents_waiting(&self) -> usize {
        self.inner.lock().ops.len()
    }

    /// A copy of the counters.
    pub(crate) fn stats(&self) -> SimStats {
        self.inner.lock().stats
    }

    /// Entries in the completion ring (not yet freed by a parent's purge).
    pub(crate) fn waiting(&self) -> u64 {
        self.inner
            .lock()
            .enabled
            .as_ref()
            .map_or(0, |e| e.completion.waiting())
    }

    /// Writes the state for debugfs `sim_status`.
    pub(crate) fn fmt_status(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.inner.lock();
        let s = &g.stats;
        match &g.enabled {
            Some(e) => {
                writeln!(f, "enabled: 1")?;
                writeln!(f, "entries_num: {}", e.ring.entries_num())?;
                writeln!(f, "prod_idx: {}", e.producer.prod())?;
                writeln!(f, "cons_idx: {}", e.ring.cons())?;
                writeln!(f, "in_ring: {}", e.producer.in_flight(&e.ring))?;
                writeln!(
                    f,
                    "completion_window: {} {}",
                    e.completion.cons, e.completion.prod
                )?;
                writeln!(f, "waiting: {}", e.completion.waiting())?;
            }
            None => writeln!(f, "enabled: 0")?,
        }
        writeln!(f, "backlog: {}", g.backlog())?;
        writeln!(f, "parents: {}", g.ops.len())?;
        // A parent has children it could not notify yet (the notification ring was full).
        writeln!(f, "blocked: {}", u8::from(g.backlog() > 0))?;
        writeln!(f, "preempt: {}", u8::from(!g.faults.no_preempt))?;
        writeln!(f, "injected: {}", s.injected)?;
        writeln!(f, "notified: {}", s.notified)?;
        writeln!(f, "completed: {}", s.completed)?;
        writeln!(f, "backpressure: {}", s.backpressure)?;
        writeln!(f, "completion_full: {}", s.completion_full)?;
        writeln!(f, "invalid_completions: {}", s.invalid_completions)?;
        writeln!(f, "double_completions: {}", s.double_completions)?;
        writeln!(f, "assertion_failures: {}", s.assertion_failures)?;
        writeln!(f, "abandoned_unnotified: {}", s.abandoned_unnotified)?;
        writeln!(f, "abandoned_unqueued: {}", s.abandoned_unqueued)?;
        writeln!(f, "waiting_at_disable: {}", s.waiting_at_disable)?;
        writeln!(f, "unnotified_at_disable: {}", s.unnotified_at_disable)?;
        writeln!(f, "page_sharing_pool: {}", u8::from(g.pool))?;
        write!(f, "completed_ids:")?;
        // Oldest first.
        let start = (g.log_pos + COMPLETED_LOG - g.log_len) % COMPLETED_LOG;
        for k in 0..g.log_len {
            write!(f, " {}", g.log[(start + k) % COMPLETED_LOG])?;
        }
        writeln!(f)
    }
}

impl Hypervisor for SimHv {
    fn enable(&self, ring: &Arc<RingMem>, flags: u64) -> Result {
        let mut g = self.inner.lock();
        // The order of Xen's checks (clone.c, do_clone_op): ring first, then the pool.
        if g.enabled.is_some() {
            return Err(EBUSY);
        }
        if flags & XEN_CLONE_ENABLE_PAGE_SHARING_POOL != 0 {
            if g.pool {
                return Err(EBUSY);
            }
            g.pool = true;
        }
        let n = entries_for_pages(ring.pages());
        let completion = CompletionRing::new(n, self.start)?;
        let producer = Producer::enable(ring, n, self.start)?;
        if let Some(bad) = g.faults.bad_entries_num {
            ring.sim_init_header(bad, self.start);
        }
        g.enabled = Some(Enabled {
            ring: ring.clone(),
            producer,
            completion,
        });
        Ok(())
    }

    fn disable(&self) -> Result {
        let mut g = self.inner.lock();
        let g = &mut *g;
        if g.enabled.is_none() {
            return Err(EINVAL);
        }
        // Clones racing with the disable hypercall.
        if let Some((parent, child, count)) = g.faults.clone_at_disable.take() {
            if Self::add_op(g, parent, child, count).is_ok() {
                Self::pump_locked(g);
            }
        }
        let racy = core::mem::take(&mut g.faults.racy_entries_at_disable);
        if let Some(en) = g.enabled.as_mut() {
            for k in 0..racy {
                if !en.completion.has_room() {
                    break;
                }
                let idx = en.producer.force_produce(&en.ring, 0xfff0, k as u16);
                if !en.completion.add(idx) {
                    g.stats.assertion_failures += 1;
                }
                g.stats.injected += 1;
                g.stats.notified += 1;
            }
        }
        if let Some(e) = g.faults.disable_error {
            return Err(e);
        }
        if let Some(en) = g.enabled.take() {
            g.stats.waiting_at_disable += en.completion.waiting();
        }
        g.stats.unnotified_at_disable += g.backlog() as u64;
        g.ops.clear();
        Ok(())
    }

    /// `CLONEOP_clone_completion` (`completion_ring_done`), then the woken parents run.
    fn complete(&self, id: u32) -> Result {
        let mut g = self.inner.lock();
        let g = &mut *g;
        let Some(en) = g.enabled.as_mut() else {
            return Err(EPERM);
        };
        let c = &mut en.completion;
        let off = u64::from(id.wrapping_sub(c.cons as u32));
        if off >= c.waiting() {
            g.stats.invalid_completions += 1;
            return Err(EINVAL);
        }
        let idx = c.cons.wrapping_add(off);
        let slot = (idx & c.mask) as usize;
        match c.states[slot] {
            CState::Created => {}
            CState::Completed => {
                // ASSERT(state == CREATED) in a debug Xen.
                g.stats.double_completions += 1;
                return Ok(());
            }
            CState::None => g.stats.assertion_failures += 1,
        }
        c.states[slot] = CState::Completed;
        g.stats.completed += 1;
        g.log[g.log_pos] = id;
        g.log_pos = (g.log_pos + 1) % COMPLETED_LOG;
        g.log_len = (g.log_len + 1).min(COMPLETED_LOG);
        // wake_up_one(): the parent sleeping on it runs on (and purges).
        Self::pump_locked(g);
        Ok(())
    }
}

/// The device holds the simulated hypervisor through an [`Arc`], shared with its controls
/// (debugfs, tests).
impl Hypervisor for Arc<SimHv> {
    const SIMULATED: bool = true;

    fn enable(&self, ring: &Arc<RingMem>, flags: u64) -> Result {
        SimHv::enable(self, ring, flags)
    }

    fn disable(&self) -> Result {
        SimHv::disable(self)
    }

    fn complete(&self, id: u32) -> Result {
        SimHv::complete(self, id)
    }

    fn pump(&self) -> u64 {
        SimHv::pump(self)
    }

    fn has_backlog(&self) -> bool {
        self.parents_waiting() > 0
    }
}
