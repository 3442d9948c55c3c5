// SPDX-License-Identifier: GPL-2.0

//! TEST ONLY: a simulated Nephele hypervisor (module parameter `simulate=1`).
//!
//! It produces into the same ring layout as Xen and keeps Xen's completion semantics
//! (Nephele `xen/common/clone.c`, see the reference §2.1):
//! - the id of an entry is the `prod_idx` it was written at, truncated to `u32`;
//! - a child is notified only if the notification ring has room (`prod - cons < N`) and the
//!   completion ring has room; otherwise it waits in a backlog (the parent's hypercall keeps
//!   looping) and the back-pressure is counted;
//! - a completion is accepted for an id in the completion window `[cons, prod)` that is
//!   `CREATED`; any other id gets `EINVAL`; completing a `COMPLETED` id again is a no-op that
//!   Xen asserts on in debug builds (counted here as `double_completions`); once disabled,
//!   completions get `EPERM`;
//! - slots are freed over the contiguous completed prefix;
//! - `CLONEOP_enable` answers `EBUSY` while the ring is enabled, and, with
//!   `CLONEOP_FLAG_USE_PAGE_SHARING_INFO_POOL`, also when the page-sharing pool exists: it is
//!   created by the first enable with the flag and never freed, not even by `CLONEOP_disable`;
//! - `CLONEOP_disable` does not wait for anything: entries still waiting for completion are
//!   dropped (in Xen their parents sleep on freed memory: counted as `waiting_at_disable`), and
//!   children not notified yet stay paused forever (`unnotified_at_disable`).
//!
//! Test-only fault knobs ([`SimFaults`]) make it misbehave like a hypervisor can: a bad
//! `entries_num`, a failing `CLONEOP_disable`, clones racing with `CLONEOP_disable`.
//!
//! Control from userspace goes through debugfs (see the module documentation).

use crate::abi::XEN_CLONE_ENABLE_PAGE_SHARING_POOL;
use crate::ffi::RingMem;
use crate::hv::Hypervisor;
use crate::ring::{entries_for_pages, ProduceError, Producer};
use kernel::{fmt, new_mutex, prelude::*, sync::Arc, sync::Mutex};

/// Children that can wait for ring space at most (beyond this, injection fails).
pub(crate) const BACKLOG_MAX: usize = 16384;

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
/// `states.len()` is a power of two (`mask + 1`), `prod - cons <= states.len()`; slots outside
/// `[cons, prod)` are `None`.
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

    fn has_room(&self) -> bool {
        self.prod.wrapping_sub(self.cons) <= self.mask
    }

    fn push(&mut self, idx: u64) {
        self.states[(idx & self.mask) as usize] = CState::Created;
        self.prod = idx.wrapping_add(1);
    }

    fn waiting(&self) -> u64 {
        self.prod.wrapping_sub(self.cons)
    }
}

/// A FIFO of `(parent, child)` waiting to be notified.
///
/// # Invariants
///
/// `items.len() == BACKLOG_MAX`; the queue is `items[head..head + len]` modulo the length.
struct Backlog {
    items: KVVec<(u16, u16)>,
    head: usize,
    len: usize,
}

impl Backlog {
    fn new() -> Result<Self> {
        Ok(Self {
            items: KVVec::from_elem((0, 0), BACKLOG_MAX, GFP_KERNEL)?,
            head: 0,
            len: 0,
        })
    }

    fn push(&mut self, v: (u16, u16)) -> bool {
        if self.len == BACKLOG_MAX {
            return false;
        }
        let i = (self.head + self.len) % BACKLOG_MAX;
        self.items[i] = v;
        self.len += 1;
        true
    }

    fn front(&self) -> Option<(u16, u16)> {
        (self.len > 0).then(|| self.items[self.head])
    }

    fn pop(&mut self) {
        if self.len > 0 {
            self.head = (self.head + 1) % BACKLOG_MAX;
            self.len -= 1;
        }
    }

    fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
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
    /// Times a child could not be notified because a ring was full.
    pub(crate) backpressure: u64,
    /// Completions refused with `EINVAL` (id not outstanding).
    pub(crate) invalid_completions: u64,
    /// Completions of an id already completed (Xen asserts on these in debug builds).
    pub(crate) double_completions: u64,
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
}

/// The simulated hypervisor's view of an enabled ring.
///
/// # Invariants
///
/// `producer.prod() == completion.prod`: an entry is notified and queued for completion
/// together (the sim only notifies when both rings have room).
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
    backlog: Backlog,
    stats: SimStats,
    log: [u32; COMPLETED_LOG],
    log_len: usize,
    log_pos: usize,
    /// Whether the last pump could not notify everything (a parent is blocked).
    blocked: bool,
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
        let backlog = Backlog::new()?;
        Arc::pin_init(
            pin_init!(Self {
                start,
                inner <- new_mutex!(SimState {
                    enabled: None,
                    pool: false,
                    faults: SimFaults::default(),
                    backlog,
                    stats: SimStats::default(),
                    log: [0; COMPLETED_LOG],
                    log_len: 0,
                    log_pos: 0,
                    blocked: false,
                }),
            }),
            GFP_KERNEL,
        )
    }

    /// Queues `count` children `child, child + 1, ...` of `parent` and notifies as many as the
    /// rings allow (like one `CLONEOP_clone` batch). Returns how many were notified now; the
    /// others wait for room. `ENOSPC` if the backlog cannot take them all (none queued then);
    /// `EPERM` if cloning is not enabled (like Xen).
    pub(crate) fn inject(&self, parent: u16, child: u16, count: u32) -> Result<u64> {
        let mut g = self.inner.lock();
        if g.enabled.is_none() {
            return Err(EPERM);
        }
        if g.backlog.len + count as usize > BACKLOG_MAX {
            return Err(ENOSPC);
        }
        for k in 0..count {
            // Cannot fail: room was checked above.
            g.backlog.push((parent, child.wrapping_add(k as u16)));
        }
        g.stats.injected += u64::from(count);
        Ok(Self::pump_locked(&mut g))
    }

    /// Notifies waiting children while the rings have room.
    pub(crate) fn pump(&self) -> u64 {
        let mut g = self.inner.lock();
        Self::pump_locked(&mut g)
    }

    fn pump_locked(g: &mut SimState) -> u64 {
        let SimState {
            enabled,
            backlog,
            stats,
            blocked,
            ..
        } = g;
        let mut n = 0;
        let Some(en) = enabled.as_mut() else {
            return 0;
        };
        while let Some((parent, child)) = backlog.front() {
            if !en.completion.has_room() {
                stats.backpressure += 1;
                *blocked = true;
                return n;
            }
            match en.producer.produce(
                &en.ring,
                parent,
                child,
                0x1000_0000 + u64::from(parent),
                0x2000_0000 + u64::from(child),
            ) {
                Ok(idx) => {
                    en.completion.push(idx);
                    backlog.pop();
                    stats.notified += 1;
                    n += 1;
                }
                Err(ProduceError::Full | ProduceError::Corrupt) => {
                    stats.backpressure += 1;
                    *blocked = true;
                    return n;
                }
            }
        }
        *blocked = false;
        n
    }

    /// Sets the test-only faults.
    #[cfg(CONFIG_KUNIT = "y")]
    pub(crate) fn set_faults(&self, faults: SimFaults) {
        self.inner.lock().faults = faults;
    }

    /// Whether the ring is enabled (the hypervisor may write its pages).
    #[cfg(CONFIG_KUNIT = "y")]
    pub(crate) fn is_enabled(&self) -> bool {
        self.inner.lock().enabled.is_some()
    }

    /// Whether the page-sharing pool exists.
    #[cfg(CONFIG_KUNIT = "y")]
    pub(crate) fn has_pool(&self) -> bool {
        self.inner.lock().pool
    }

    /// Children waiting for ring space.
    pub(crate) fn backlog(&self) -> usize {
        self.inner.lock().backlog.len
    }

    /// A copy of the counters.
    pub(crate) fn stats(&self) -> SimStats {
        self.inner.lock().stats
    }

    /// Entries notified and not yet freed from the completion ring (parents still waiting).
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
        writeln!(f, "backlog: {}", g.backlog.len)?;
        writeln!(f, "blocked: {}", u8::from(g.blocked))?;
        writeln!(f, "injected: {}", s.injected)?;
        writeln!(f, "notified: {}", s.notified)?;
        writeln!(f, "completed: {}", s.completed)?;
        writeln!(f, "backpressure: {}", s.backpressure)?;
        writeln!(f, "invalid_completions: {}", s.invalid_completions)?;
        writeln!(f, "double_completions: {}", s.double_completions)?;
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
            for k in 0..count {
                if !g.backlog.push((parent, child.wrapping_add(k as u16))) {
                    break;
                }
                g.stats.injected += 1;
            }
            Self::pump_locked(g);
        }
        let racy = core::mem::take(&mut g.faults.racy_entries_at_disable);
        if let Some(en) = g.enabled.as_mut() {
            for k in 0..racy {
                if !en.completion.has_room() {
                    break;
                }
                let idx = en.producer.force_produce(&en.ring, 0xfff0, k as u16);
                en.completion.push(idx);
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
        g.stats.unnotified_at_disable += g.backlog.len as u64;
        g.backlog.clear();
        g.blocked = false;
        Ok(())
    }

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
                g.stats.double_completions += 1;
                return Ok(());
            }
            CState::None => {
                g.stats.invalid_completions += 1;
                return Err(EINVAL);
            }
        }
        c.states[slot] = CState::Completed;
        while c.cons != c.prod && c.states[(c.cons & c.mask) as usize] == CState::Completed {
            c.states[(c.cons & c.mask) as usize] = CState::None;
            c.cons = c.cons.wrapping_add(1);
        }
        g.stats.completed += 1;
        g.log[g.log_pos] = id;
        g.log_pos = (g.log_pos + 1) % COMPLETED_LOG;
        g.log_len = (g.log_len + 1).min(COMPLETED_LOG);
        Ok(())
    }
}
