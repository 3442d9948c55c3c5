// SPDX-License-Identifier: GPL-2.0

//! `/dev/xen/clone`: consumes the ring into a [`Tracker`] and serves it to one daemon.

use crate::abi::XenCloneEntry;
use crate::abi::{
    Uapi, XenCloneComplete, XenCloneCounters, XenCloneInfo, XEN_CLONE_ABI_VERSION,
    XEN_CLONE_ENABLE_PAGE_SHARING_POOL, XEN_CLONE_ENTRY_AUTO_COMPLETED,
    XEN_CLONE_ENTRY_REDELIVERED, XEN_CLONE_INFO_SIMULATED, XEN_CLONE_IOC_COMPLETE,
    XEN_CLONE_IOC_INFO,
};
use crate::ffi::{ModuleRef, RingMem, POLL_READABLE};
use crate::hv::Hypervisor;
use crate::ring::{check_entries_num, entries_for_pages, Consumer};
use crate::tracker::Tracker;
use core::mem::size_of;
use kernel::{
    fmt,
    fs::File,
    iov::IovIterDest,
    new_mutex, new_poll_condvar,
    prelude::*,
    seq_file::SeqFile,
    seq_print,
    sync::atomic::{Acquire, Atomic, Release},
    sync::{
        poll::{PollCondVar, PollTable},
        Arc, Mutex,
    },
    time::{msecs_to_jiffies, Instant, Monotonic},
    transmute::AsBytes,
    uaccess::{UserPtr, UserSlice},
    workqueue::{self, impl_has_delayed_work, new_delayed_work, DelayedWork, WorkItem},
};

/// Work item id of the drain.
const DRAIN_WORK: u64 = 0;
/// Work item id of the orphan check.
const ORPHAN_WORK: u64 = 1;

/// Passes of a drain before yielding (each pass re-reads `prod_idx`).
const DRAIN_PASSES: u32 = 64;

/// How soon the orphan policy tries again a completion the hypervisor refused with `EINVAL`.
const ORPHAN_RETRY_MS: u32 = 500;

/// Entries one `read()` takes out of the tracker at a time, to copy them to userspace without
/// holding the lock (on the stack: 16 * 40 bytes).
const READ_BATCH: usize = 16;

/// Why `CLONEOP_enable` did not give the device a ring. Its `Display` is the `dmesg` line that
/// says what is wrong and what to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EnableError {
    /// `ENOSYS`: not Nephele's Xen.
    NoCloneSupport,
    /// `EBUSY` with no page-sharing pool flag (or again without it): `cloning_enabled` is set,
    /// another owner enabled the ring and never disabled it.
    RingBusy,
    /// `ENOMEM`; `pool`: the page-sharing pool (60% of Xen's free heap) was requested.
    NoMemory {
        /// `page_sharing_pool=1`.
        pool: bool,
    },
    /// `EINVAL`: Xen could not map the ring pages.
    RingRejected,
    /// Enabled, but with an `entries_num` that does not fit the pages (the ring was disabled
    /// again, or its pages leaked if that failed).
    BadEntriesNum {
        /// What the hypervisor wrote.
        written: u64,
        /// Ring size in pages.
        pages: u32,
    },
    /// Any other answer of the hypervisor.
    Hypervisor(Error),
}

impl EnableError {
    fn from_hypervisor(e: Error, flags: u64) -> Self {
        if e == ENOSYS {
            Self::NoCloneSupport
        } else if e == EBUSY {
            Self::RingBusy
        } else if e == ENOMEM {
            Self::NoMemory {
                pool: flags & XEN_CLONE_ENABLE_PAGE_SHARING_POOL != 0,
            }
        } else if e == EINVAL {
            Self::RingRejected
        } else {
            Self::Hypervisor(e)
        }
    }

    /// The error `insmod` gets.
    pub(crate) fn to_error(self) -> Error {
        match self {
            // Stock Xen: "no such device" rather than ENOSYS from insmod.
            Self::NoCloneSupport => ENODEV,
            Self::RingBusy => EBUSY,
            Self::NoMemory { .. } => ENOMEM,
            Self::RingRejected => EINVAL,
            Self::BadEntriesNum { .. } => EPROTO,
            Self::Hypervisor(e) => e,
        }
    }
}

impl fmt::Display for EnableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCloneSupport => f.write_str(
                "hypervisor has no clone support (CLONEOP_enable: -ENOSYS); is this Nephele's Xen?",
            ),
            Self::RingBusy => f.write_str(
                "clone ring already enabled by another owner (CLONEOP_enable: -EBUSY): a xencloned \
                 killed without disabling it, or an earlier xen_clone_dev whose CLONEOP_disable \
                 failed; run 'xencloned -R' to disable it, then load xen_clone_dev again",
            ),
            Self::NoMemory { pool: true } => f.write_str(
                "Xen is out of memory (CLONEOP_enable: -ENOMEM): page_sharing_pool=1 reserves 60% \
                 of its free heap; load with page_sharing_pool=0, or free hypervisor memory",
            ),
            Self::NoMemory { pool: false } => f.write_str(
                "Xen is out of memory for the ring mapping or its completion ring \
                 (CLONEOP_enable: -ENOMEM); load with fewer ring_pages, or free hypervisor memory",
            ),
            Self::RingRejected => f.write_str(
                "Xen could not map the ring pages (CLONEOP_enable: -EINVAL); /dev/xen/clone needs \
                 a PV Dom0 whose kernel memory Xen can walk",
            ),
            Self::BadEntriesNum { written, pages } => write!(
                f,
                "hypervisor wrote an invalid entries_num {} for {} page(s) (expected a power of \
                 two up to {}); the ring is disabled again",
                written,
                pages,
                entries_for_pages(*pages)
            ),
            Self::Hypervisor(e) => write!(f, "CLONEOP_enable failed: {:?}", e),
        }
    }
}

/// What [`Device::enable`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Enabled {
    /// Entries in the ring.
    pub(crate) entries_num: u64,
    /// `page_sharing_pool=1`, but Xen still had the pool of an earlier enable (it never frees
    /// it) and refused to create another with `EBUSY`: the ring was enabled without the flag,
    /// clones keep using that pool.
    pub(crate) pool_reused: bool,
}

/// What [`Device::shutdown`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ShutdownReport {
    /// Pending entries completed by the module (their parents do not block).
    pub(crate) auto_completed: u64,
    /// Entries the hypervisor published after the fence, found only after `CLONEOP_disable`:
    /// they can no longer be completed.
    pub(crate) stranded: u64,
    /// `CLONEOP_disable` succeeded (otherwise the pages are leaked).
    pub(crate) disabled: bool,
}

/// Static configuration (module parameters).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Config {
    /// Ring size in pages.
    pub(crate) ring_pages: u32,
    /// Flags for `CLONEOP_enable`.
    pub(crate) enable_flags: u64,
    /// Seconds without an opener before pending entries are auto-completed (0 = never).
    pub(crate) orphan_timeout_s: u32,
    /// How long after the hypervisor first refused a completion with `EINVAL` (the id is not in
    /// its completion ring) the module keeps the entry for retries, in ms.
    pub(crate) reject_grace_ms: u32,
}

/// Why the hypervisor refused a completion, for the `dmesg` line.
struct Refusal(Error);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == EINVAL {
            f.write_str(
                "CLONEOP_clone_completion: -EINVAL, the id is not in Xen's completion ring (it was \
                 notified while that ring was full and its parent's clone hypercall returned \
                 without queueing it, or it was purged already)",
            )
        } else if self.0 == EPERM {
            f.write_str("CLONEOP_clone_completion: -EPERM, cloning is disabled")
        } else {
            write!(f, "CLONEOP_clone_completion: {:?}", self.0)
        }
    }
}

struct State {
    /// `None` until the hypervisor accepted the ring, and again after a failed enable.
    consumer: Option<Consumer>,
    tracker: Tracker,
    counters: XenCloneCounters,
    /// A file is open (exclusive).
    open: bool,
    /// Held while entries are pending, so that the module cannot be unloaded.
    module_ref: Option<ModuleRef>,
    /// Corruption was reported (reset when the ring is consistent again).
    corrupt_reported: bool,
    /// The tracker-full condition was reported.
    full_reported: bool,
    /// Teardown started: no more hypervisor calls from files or work items.
    stopped: bool,
    /// [`Tracker::auto_dropped`] when last reported.
    auto_dropped_reported: u64,
}

/// The device: the consumer side of the ring and its userspace interface.
///
/// # Invariants
///
/// - `state.consumer` is `Some` exactly while the hypervisor may write `ring` (from a
///   successful [`Device::enable`] to [`Device::shutdown`]); its `cons` equals
///   `state.tracker.next()`: every consumed entry is tracked until completed.
/// - Once the hypervisor accepted `ring`, it is freed only after a successful `CLONEOP_disable`;
///   every path that cannot disable it leaks it ([`RingMem::leak`]).
/// - Unless `state.stopped`, `state.module_ref` is `Some` exactly while an entry of the tracker
///   needs a completion ([`Tracker::needs_completion`]), so the module cannot be unloaded while
///   a parent waits for a completion (auto-completed entries waiting to be reported, which no
///   parent waits for, do not hold it).
/// - `readers` is notified whenever entries become deliverable.
/// - The work items are only queued while `works_live` is set (between [`Device::start_works`]
///   and [`Device::stop_works`]); after `stop_works` none runs or is queued again.
#[pin_data]
pub(crate) struct Device<H: Hypervisor> {
    hv: H,
    ring: Arc<RingMem>,
    cfg: Config,
    epoch: Instant<Monotonic>,
    #[pin]
    state: Mutex<State>,
    #[pin]
    readers: PollCondVar,
    /// Drains the ring in process context (kicked by `VIRQ_CLONED`).
    #[pin]
    drain_work: DelayedWork<Device<H>, DRAIN_WORK>,
    /// Runs the orphan policy when the oldest queued entry is due.
    #[pin]
    orphan_work: DelayedWork<Device<H>, ORPHAN_WORK>,
    /// The work items may be queued.
    works_live: Atomic<bool>,
}

impl_has_delayed_work! {
    impl{H: Hypervisor} HasDelayedWork<Device<H>, DRAIN_WORK> for Device<H> { self.drain_work }
}

impl_has_delayed_work! {
    impl{H: Hypervisor} HasDelayedWork<Device<H>, ORPHAN_WORK> for Device<H> { self.orphan_work }
}

impl<H: Hypervisor> WorkItem<DRAIN_WORK> for Device<H> {
    type Pointer = Arc<Self>;

    fn run(this: Arc<Self>) {
        this.drain();
    }
}

impl<H: Hypervisor> WorkItem<ORPHAN_WORK> for Device<H> {
    type Pointer = Arc<Self>;

    fn run(this: Arc<Self>) {
        this.orphan_check();
    }
}

impl<H: Hypervisor> Device<H> {
    /// A device for `ring` (not yet enabled); allocates all its bookkeeping up front (the
    /// tracker at its full size), so that nothing can fail for lack of memory once the
    /// hypervisor writes the ring.
    pub(crate) fn new(hv: H, ring: Arc<RingMem>, cfg: Config) -> Result<Arc<Self>> {
        // Twice the ring: entries consumed but not completed leave the ring.
        let tracker = Tracker::new(2 * crate::ring::entries_for_pages(cfg.ring_pages), 0)?;
        Arc::pin_init(
            pin_init!(Self {
                hv,
                ring,
                cfg,
                epoch: Instant::now(),
                state <- new_mutex!(State {
                    consumer: None,
                    tracker,
                    counters: XenCloneCounters::default(),
                    open: false,
                    module_ref: None,
                    corrupt_reported: false,
                    full_reported: false,
                    stopped: false,
                    auto_dropped_reported: 0,
                }),
                readers <- new_poll_condvar!("xen_clone_dev::readers"),
                drain_work <- new_delayed_work!("xen_clone_dev::drain"),
                orphan_work <- new_delayed_work!("xen_clone_dev::orphan"),
                works_live: Atomic::new(false),
            }),
            GFP_KERNEL,
        )
    }

    #[cfg(xen_clone_sim)]
    /// The hypervisor.
    pub(crate) fn hv(&self) -> &H {
        &self.hv
    }

    /// Lets the work items run (the device is published: VIRQ, misc device).
    pub(crate) fn start_works(&self) {
        self.works_live.store(true, Release);
    }

    /// Stops the work items: none runs or is queued after this returns.
    pub(crate) fn stop_works(this: &Arc<Self>) {
        this.works_live.store(false, Release);
        DelayedWork::<Self, DRAIN_WORK>::disable_sync(this);
        DelayedWork::<Self, ORPHAN_WORK>::disable_sync(this);
    }

    /// Schedules a drain of the ring in process context (what the VIRQ handler does); callable
    /// from any context. Does nothing unless the works are started.
    pub(crate) fn kick_drain(self: &Arc<Self>) {
        if self.works_live.load(Acquire) {
            // Already queued (it drains everything), or stopped: nothing to do either way.
            let _ = workqueue::system_unbound().enqueue_delayed::<_, DRAIN_WORK>(self.clone(), 0);
        }
    }

    /// Arms the orphan check to run in `delay_ms` milliseconds, unless it is queued already (it
    /// then runs earlier and re-arms itself for what is not due yet).
    fn schedule_orphan_check(self: &Arc<Self>, delay_ms: u32) {
        if self.works_live.load(Acquire) {
            let _ = workqueue::system_unbound()
                .enqueue_delayed::<_, ORPHAN_WORK>(self.clone(), msecs_to_jiffies(delay_ms));
        }
    }

    #[cfg(xen_clone_sim)]
    /// The ring memory.
    pub(crate) fn ring(&self) -> &Arc<RingMem> {
        &self.ring
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(0)
    }

    /// `CLONEOP_enable`, then checks `entries_num` and starts consuming at `cons_idx`.
    ///
    /// `EBUSY` has two causes in Xen (`do_clone_op`, `CLONEOP_enable`): the ring is enabled
    /// already (checked first), or, with the page-sharing pool flag, the pool exists (Xen never
    /// frees it, not even at `CLONEOP_disable`, so every enable with the flag after the first
    /// one gets `EBUSY`). With the flag, an `EBUSY` is retried without it: `EBUSY` again means
    /// the ring is taken; success means the pool was there already, and clones keep using it.
    ///
    /// Nothing after a successful `CLONEOP_enable` allocates. On every error after it, the ring
    /// is disabled again before this returns, and its pages are leaked (with a `dmesg` line) if
    /// that fails, so the caller may drop the device.
    pub(crate) fn enable(&self) -> Result<Enabled, EnableError> {
        let flags = self.cfg.enable_flags;
        let pool = XEN_CLONE_ENABLE_PAGE_SHARING_POOL;
        let mut pool_reused = false;
        match self.hv.enable(&self.ring, flags) {
            Ok(()) => {}
            Err(e) if e == EBUSY && flags & pool != 0 => {
                match self.hv.enable(&self.ring, flags & !pool) {
                    Ok(()) => pool_reused = true,
                    Err(e) => return Err(EnableError::from_hypervisor(e, flags & !pool)),
                }
            }
            Err(e) => return Err(EnableError::from_hypervisor(e, flags)),
        }
        // The hypervisor maps the pages now.
        match self.start_consuming() {
            Ok(entries_num) => Ok(Enabled {
                entries_num,
                pool_reused,
            }),
            Err(e) => {
                self.disable_or_leak("after a failed enable");
                Err(e)
            }
        }
    }

    /// Checks what `CLONEOP_enable` wrote and sets up the consumer; allocates nothing.
    fn start_consuming(&self) -> Result<u64, EnableError> {
        let n = self.ring.entries_num();
        let bad = EnableError::BadEntriesNum {
            written: n,
            pages: self.ring.pages(),
        };
        check_entries_num(&self.ring, n).map_err(|_| bad)?;
        let cons = self.ring.cons();
        let mut g = self.state.lock();
        if g.tracker.capacity() < n {
            return Err(bad);
        }
        let consumer = Consumer::new(&self.ring, n, cons).map_err(|_| bad)?;
        g.tracker.reset(cons);
        g.consumer = Some(consumer);
        Ok(n)
    }

    /// `CLONEOP_disable`; if the hypervisor refuses, its ring pages must never be freed.
    fn disable_or_leak(&self, when: &str) -> bool {
        match self.hv.disable() {
            Ok(()) => true,
            Err(e) => {
                self.ring.leak();
                pr_err!(
                    "CLONEOP_disable failed {} ({:?}); leaking the {} ring page(s), the hypervisor may still write them\n",
                    when,
                    e,
                    self.ring.pages()
                );
                false
            }
        }
    }

    /// Drains the ring until it is empty (called on every VIRQ, after enable and on open).
    pub(crate) fn drain(self: &Arc<Self>) {
        let mut g = self.state.lock();
        if g.stopped {
            return;
        }
        let new = self.drain_locked(&mut g);
        self.update_module_ref(&mut g);
        let dropped = g.tracker.auto_dropped();
        if dropped != g.auto_dropped_reported {
            pr_warn!(
                "{} auto-completed clone(s) dropped unreported to make room: no reader came for them\n",
                dropped - g.auto_dropped_reported
            );
            g.auto_dropped_reported = dropped;
        }
        if new > 0 {
            self.readers.notify_all();
            if !g.open {
                self.arm_orphan_check(&mut g);
            }
        }
    }

    fn drain_locked(&self, g: &mut State) -> u64 {
        let now = self.now_ms();
        let mut new = 0;
        loop {
            let State {
                consumer,
                tracker,
                counters,
                corrupt_reported,
                full_reported,
                ..
            } = g;
            let Some(consumer) = consumer.as_mut() else {
                return new;
            };
            let pass = consumer.drain(&self.ring, DRAIN_PASSES, |idx, e| tracker.push(idx, e, now));
            counters.notifications += pass.consumed;
            new += pass.consumed;
            if pass.was_full {
                counters.ring_full += 1;
            }
            if let Some((prod, cons)) = pass.corrupt {
                counters.ring_corruptions += 1;
                if !*corrupt_reported {
                    pr_err!(
                        "ring corrupted: prod_idx {} - cons_idx {} > entries_num {}; not consuming\n",
                        prod,
                        cons,
                        consumer.entries_num()
                    );
                    *corrupt_reported = true;
                }
                return new;
            }
            *corrupt_reported = false;
            if pass.sink_full {
                if !*full_reported {
                    pr_warn!(
                        "{} clone(s) pending; leaving new notifications in the ring until some complete\n",
                        tracker.capacity()
                    );
                    *full_reported = true;
                }
                return new;
            }
            *full_reported = false;
            // The simulated hypervisor notifies waiting children once there is room.
            if self.hv.pump() == 0 {
                return new;
            }
        }
    }

    fn update_module_ref(&self, g: &mut State) {
        if !g.tracker.needs_completion() || g.stopped {
            g.module_ref = None;
        } else if g.module_ref.is_none() {
            g.module_ref = Some(ModuleRef::get());
        }
    }

    /// Arms the orphan check for the earliest queued entry, if the policy is on.
    fn arm_orphan_check(self: &Arc<Self>, g: &mut State) {
        let timeout_ms = u64::from(self.cfg.orphan_timeout_s) * 1000;
        if timeout_ms == 0 || g.open || g.stopped {
            return;
        }
        let (_, next) = g.tracker.due_orphans(self.now_ms(), timeout_ms, &mut []);
        if let Some(left) = next {
            self.schedule_orphan_check(u32::try_from(left).unwrap_or(u32::MAX));
        }
    }

    /// Orphan policy: completes queued entries that waited `orphan_timeout` seconds with no
    /// opener, so that no parent stays blocked forever. They stay queued, flagged
    /// [`XEN_CLONE_ENTRY_AUTO_COMPLETED`], for the next reader. A completion the hypervisor
    /// refuses is retried like one from userspace (see [`Device::complete`]).
    pub(crate) fn orphan_check(self: &Arc<Self>) {
        let timeout_ms = u64::from(self.cfg.orphan_timeout_s) * 1000;
        let mut g = self.state.lock();
        if timeout_ms == 0 || g.open || g.stopped {
            return;
        }
        let mut due = [0u64; 64];
        let mut done = 0u64;
        let mut first = None;
        let mut last = 0;
        let mut errors = 0u64;
        let mut retry = false;
        loop {
            let (k, next) = g.tracker.due_orphans(self.now_ms(), timeout_ms, &mut due);
            let mut progress = false;
            for &idx in &due[..k] {
                let id = g.tracker.id_of(idx);
                if let Err(e) = self.hv.complete(id) {
                    if self.refused(&mut g, idx, e) == EAGAIN {
                        retry = true;
                        continue;
                    }
                    errors += 1;
                } else {
                    g.counters.auto_completions += 1;
                    g.tracker.mark_auto_completed(idx);
                }
                progress = true;
                first.get_or_insert(id);
                last = id;
                done += 1;
            }
            if k < due.len() || !progress {
                let left = match (next, retry) {
                    (Some(l), true) => Some(l.min(u64::from(ORPHAN_RETRY_MS))),
                    (None, true) => Some(u64::from(ORPHAN_RETRY_MS)),
                    (n, false) => n,
                };
                if let Some(left) = left {
                    self.schedule_orphan_check(u32::try_from(left).unwrap_or(u32::MAX));
                }
                break;
            }
        }
        if let Some(first) = first {
            pr_warn!(
                "no reader of /dev/xen/clone for {}s: auto-completed {} clone(s) (ids {}..{}, {} refused) to unblock their parents; the children stay paused until a reader sets them up (their entries go to the next reader flagged AUTO_COMPLETED)\n",
                self.cfg.orphan_timeout_s,
                done,
                first,
                last,
                errors
            );
        }
        self.update_module_ref(&mut g);
        if self.hv.has_backlog() {
            self.kick_drain();
        }
    }

    /// Open: exclusive, `CAP_SYS_ADMIN` only; drains once.
    pub(crate) fn open(this: &Arc<Self>, _file: &File) -> Result {
        if !crate::ffi::capable_sys_admin() {
            return Err(EPERM);
        }
        {
            let mut g = this.state.lock();
            if g.stopped {
                return Err(ENODEV);
            }
            if g.open {
                return Err(EBUSY);
            }
            g.open = true;
        }
        this.drain();
        Ok(())
    }

    /// Release: entries handed out and not completed go back to the queue, redelivered first
    /// to the next opener; the orphan clock starts.
    pub(crate) fn release(self: &Arc<Self>) {
        let mut g = self.state.lock();
        g.open = false;
        let n = g.tracker.release_all(self.now_ms());
        if n > 0 {
            pr_info!(
                "reader closed with {} clone(s) not completed; they go to the next reader first\n",
                n
            );
        }
        self.arm_orphan_check(&mut g);
    }

    /// `read()`: whole [`XenCloneEntry`] records; `nonblock`: `EAGAIN` rather than waiting for
    /// the first one.
    pub(crate) fn read(&self, nonblock: bool, out: &mut IovIterDest<'_>) -> Result<usize> {
        const SZ: usize = size_of::<XenCloneEntry>();
        let max = out.len() / SZ;
        self.read_entries(nonblock, max, |e| {
            let rec = Uapi(*e);
            if out.copy_to_iter(rec.as_bytes()) == SZ {
                Ok(())
            } else {
                Err(EFAULT)
            }
        })
    }

    /// Hands up to `max` deliverable entries, oldest first, to `copy` (the copy to the
    /// reader's buffer); returns the number of bytes handed over. Blocks for the first entry
    /// unless `nonblock` (then `EAGAIN`).
    ///
    /// `copy` runs without the device lock held: a reader whose buffer faults (or sleeps in a
    /// page fault, e.g. on `userfaultfd` or a slow file mapping) must not stall the drain worker,
    /// completions or the orphan check. Entries are therefore taken out of the tracker under the
    /// lock, at most [`READ_BATCH`] at a time, marked handed out, copied, and any that `copy`
    /// refused are put back in their place (queued, delivered again next, nothing lost).
    /// An error of `copy` is returned only if nothing was copied.
    pub(crate) fn read_entries(
        &self,
        nonblock: bool,
        max: usize,
        mut copy: impl FnMut(&XenCloneEntry) -> Result,
    ) -> Result<usize> {
        const SZ: usize = size_of::<XenCloneEntry>();
        if max == 0 {
            return Err(EINVAL);
        }
        let mut done = 0;
        while done < max {
            let mut batch = [(0u64, XenCloneEntry::default()); READ_BATCH];
            let mut taken = 0;
            {
                let mut g = self.state.lock();
                if done == 0 {
                    while !g.tracker.has_deliverable() {
                        if nonblock {
                            return Err(EAGAIN);
                        }
                        if self.readers.wait_interruptible(&mut g) {
                            return Err(ERESTARTSYS);
                        }
                    }
                }
                while taken < READ_BATCH && done + taken < max {
                    let Some(d) = g.tracker.peek() else {
                        break;
                    };
                    g.tracker.mark_delivered(d.idx);
                    batch[taken] = (d.idx, d.entry);
                    taken += 1;
                }
            }
            if taken == 0 {
                break;
            }
            // Unlocked: see above.
            let mut copied = 0;
            let mut fault = None;
            for (_, e) in &batch[..taken] {
                if let Err(e) = copy(e) {
                    fault = Some(e);
                    break;
                }
                copied += 1;
            }
            let redelivered = batch[..copied]
                .iter()
                .filter(|(_, e)| e.flags & XEN_CLONE_ENTRY_REDELIVERED != 0)
                .count() as u64;
            let auto = batch[..copied]
                .iter()
                .filter(|(_, e)| e.flags & XEN_CLONE_ENTRY_AUTO_COMPLETED != 0)
                .count() as u64;
            if copied < taken || redelivered > 0 || auto > 0 {
                let mut g = self.state.lock();
                g.counters.redeliveries += redelivered;
                g.counters.auto_completed_reported += auto;
                for &(idx, e) in &batch[..copied] {
                    if e.flags & XEN_CLONE_ENTRY_AUTO_COMPLETED != 0 {
                        // Reported: nothing more to do for it.
                        g.tracker.finish_auto(idx);
                    }
                }
                for &(idx, _) in &batch[copied..taken] {
                    g.tracker.undeliver(idx);
                }
            }
            done += copied;
            if let Some(e) = fault {
                // Another reader (thread) may take what was put back.
                self.readers.notify_all();
                if done == 0 {
                    return Err(e);
                }
                break;
            }
        }
        Ok(done * SZ)
    }

    /// Test helper: whether the device holds its module reference.
    #[cfg(xen_clone_sim)]
    pub(crate) fn holds_module_ref(&self) -> bool {
        self.state.lock().module_ref.is_some()
    }

    /// Test helper: whether the device lock is free right now.
    #[cfg(xen_clone_sim)]
    pub(crate) fn lock_is_free(&self) -> bool {
        self.state.try_lock().is_some()
    }

    /// `poll()`: readable while an entry waits.
    pub(crate) fn poll(&self, file: &File, table: &PollTable<'_>) -> u32 {
        table.register_wait(file, &self.readers);
        if self.state.lock().tracker.has_deliverable() {
            POLL_READABLE
        } else {
            0
        }
    }

    /// `ioctl()`.
    pub(crate) fn ioctl(self: &Arc<Self>, cmd: u32, arg: usize) -> Result<isize> {
        if !crate::ffi::capable_sys_admin() {
            return Err(EPERM);
        }
        match cmd {
            XEN_CLONE_IOC_COMPLETE => {
                let Uapi(c) =
                    UserSlice::new(UserPtr::from_addr(arg), size_of::<XenCloneComplete>())
                        .reader()
                        .read::<Uapi<XenCloneComplete>>()?;
                if c.flags != 0 {
                    return Err(EINVAL);
                }
                self.complete(c.id)?;
                Ok(0)
            }
            XEN_CLONE_IOC_INFO => {
                let info = self.info();
                UserSlice::new(UserPtr::from_addr(arg), size_of::<XenCloneInfo>())
                    .writer()
                    .write(&Uapi(info))?;
                Ok(0)
            }
            _ => Err(ENOTTY),
        }
    }

    /// The hypervisor refused the completion of `idx` with `e`. `EINVAL` (the id is not in
    /// Xen's completion ring) may still turn into a success: Xen queues ids notified while its
    /// completion ring was full once their parent purged it, in order, when the parent's clone
    /// hypercall restarts. So for `reject_grace_ms` after the first refusal the entry is kept
    /// and `EAGAIN` returned (retry later). After that, or for any other error, the entry is
    /// released (no parent waits for an id Xen does not have; its child stays paused), with a
    /// `dmesg` line, and `ECANCELED` returned.
    fn refused(&self, g: &mut State, idx: u64, e: Error) -> Error {
        g.counters.hypervisor_errors += 1;
        let now = self.now_ms();
        let first = g.tracker.first_rejection(idx, now);
        let grace = u64::from(self.cfg.reject_grace_ms);
        if e == EINVAL && now.saturating_sub(first) < grace {
            return EAGAIN;
        }
        let ent = g.tracker.entry_of(idx);
        pr_err!(
            "completion of clone id {} (parent domid {}, child domid {}) refused by the hypervisor for {} ms ({}); released: the child stays paused (xl unpause {} or xl destroy {}), no parent waits for it\n",
            ent.id,
            ent.parent,
            ent.child,
            now.saturating_sub(first),
            Refusal(e),
            ent.child,
            ent.child
        );
        g.counters.rejected_completions += 1;
        g.tracker.mark_completed(idx);
        self.update_module_ref(g);
        ECANCELED
    }

    /// Completes a handed-out entry by id, forwarding to the hypervisor. See
    /// [`Device::refused`] for `EAGAIN` and `ECANCELED`.
    pub(crate) fn complete(self: &Arc<Self>, id: u32) -> Result {
        let mut g = self.state.lock();
        if g.stopped {
            return Err(ENODEV);
        }
        let idx = match g.tracker.lookup(id) {
            Ok(idx) => idx,
            Err(e) => {
                g.counters.bad_ids += 1;
                return Err(e.into());
            }
        };
        if let Err(e) = self.hv.complete(id) {
            return Err(self.refused(&mut g, idx, e));
        }
        g.tracker.mark_completed(idx);
        g.counters.completions += 1;
        self.update_module_ref(&mut g);
        drop(g);
        if self.hv.has_backlog() {
            self.kick_drain();
        }
        Ok(())
    }

    /// Ring geometry and counters.
    pub(crate) fn info(&self) -> XenCloneInfo {
        let g = self.state.lock();
        XenCloneInfo {
            version: XEN_CLONE_ABI_VERSION,
            ring_pages: self.cfg.ring_pages,
            entries_num: g.consumer.as_ref().map_or(0, |c| c.entries_num()),
            enable_flags: self.cfg.enable_flags,
            prod_idx: self.ring.prod(),
            cons_idx: self.ring.cons(),
            queued: g.tracker.queued(),
            outstanding: g.tracker.outstanding(),
            orphan_timeout_secs: self.cfg.orphan_timeout_s,
            flags: if H::SIMULATED {
                XEN_CLONE_INFO_SIMULATED
            } else {
                0
            },
            counters: g.counters,
        }
    }

    /// `/proc/<pid>/fdinfo/<fd>`.
    pub(crate) fn show_fdinfo(&self, m: &SeqFile) {
        let i = self.info();
        let c = &i.counters;
        seq_print!(
            m,
            "entries_num:\t{}\nprod_idx:\t{}\ncons_idx:\t{}\nqueued:\t{}\noutstanding:\t{}\n",
            i.entries_num,
            i.prod_idx,
            i.cons_idx,
            i.queued,
            i.outstanding
        );
        seq_print!(
            m,
            "notifications:\t{}\ncompletions:\t{}\nredeliveries:\t{}\nauto_completions:\t{}\n",
            c.notifications,
            c.completions,
            c.redeliveries,
            c.auto_completions
        );
        seq_print!(
            m,
            "ring_full:\t{}\nbad_ids:\t{}\nring_corruptions:\t{}\nhypervisor_errors:\t{}\n",
            c.ring_full,
            c.bad_ids,
            c.ring_corruptions,
            c.hypervisor_errors
        );
        seq_print!(
            m,
            "rejected_completions:\t{}\nauto_completed_reported:\t{}\n",
            c.rejected_completions,
            c.auto_completed_reported
        );
    }

    /// Writes the counters for debugfs (`name value` lines).
    pub(crate) fn fmt_counters(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.info().counters;
        writeln!(f, "notifications {}", c.notifications)?;
        writeln!(f, "completions {}", c.completions)?;
        writeln!(f, "redeliveries {}", c.redeliveries)?;
        writeln!(f, "auto_completions {}", c.auto_completions)?;
        writeln!(f, "ring_full {}", c.ring_full)?;
        writeln!(f, "bad_ids {}", c.bad_ids)?;
        writeln!(f, "ring_corruptions {}", c.ring_corruptions)?;
        writeln!(f, "hypervisor_errors {}", c.hypervisor_errors)?;
        writeln!(f, "rejected_completions {}", c.rejected_completions)?;
        writeln!(f, "auto_completed_reported {}", c.auto_completed_reported)
    }

    /// Writes the ring and queue state for debugfs (`name value` lines).
    pub(crate) fn fmt_state(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = self.info();
        let open = self.state.lock().open;
        writeln!(
            f,
            "simulated {}",
            u8::from(i.flags & XEN_CLONE_INFO_SIMULATED != 0)
        )?;
        writeln!(f, "ring_pages {}", i.ring_pages)?;
        writeln!(f, "entries_num {}", i.entries_num)?;
        writeln!(f, "enable_flags {:#x}", i.enable_flags)?;
        writeln!(f, "prod_idx {}", i.prod_idx)?;
        writeln!(f, "cons_idx {}", i.cons_idx)?;
        writeln!(f, "queued {}", i.queued)?;
        writeln!(f, "outstanding {}", i.outstanding)?;
        writeln!(f, "open {}", u8::from(open))?;
        writeln!(f, "orphan_timeout {}", i.orphan_timeout_secs)
    }

    /// Teardown (module exit, or a load that failed after enable). The caller has already
    /// stopped opens and work items (no file is open: each holds a module reference), and
    /// unbinds the VIRQ only after this returns.
    ///
    /// Order, from what Nephele's `CLONEOP_disable` does (`clone.c`, `do_clone_op`): it unmaps
    /// the ring and frees the completion ring at once, even under parents still waiting there,
    /// and every completion after it gets `EPERM`. So disabling first would strand every entry
    /// not yet completed, and a notification that arrives between a last drain and the disable
    /// would strand its parent. Instead:
    ///
    /// 1. Fence the ring ([`Consumer::fence`]): the hypervisor sees it full and notifies no
    ///    more children (those it clones from now on stay paused without a notification, as
    ///    on a full ring, and their parents do not wait for them); completions still work.
    /// 2. Drain what was published before the fence, and complete every pending entry, queued
    ///    or handed out (nobody can complete them any more), so no parent waits when the
    ///    completion ring goes away. Bounded: nothing new enters the ring.
    /// 3. `CLONEOP_disable`: the hypervisor lets go of the pages. They are freed with the
    ///    device only if it did, and leaked otherwise ([`Device::disable_or_leak`]).
    /// 4. Look at the ring once more: an entry published by a producer whose room check ran
    ///    before the fence landed could only show up now; it cannot be completed any more, so
    ///    it is reported (`stranded`).
    ///
    /// What is left is on Xen's side: `notification_ring_add` re-checks for room in an
    /// `ASSERT`, a few instructions after the check that let it in, so a fence landing exactly
    /// between the two trips that assertion on a debug hypervisor (on a release one the entry
    /// is added and ends up `stranded`). Without the fence, the window was everything from the
    /// last drain to the disable, and ended with Xen freeing the completion ring under the
    /// parent.
    pub(crate) fn shutdown(&self) -> ShutdownReport {
        let mut report = ShutdownReport::default();
        let mut g = self.state.lock();
        g.stopped = true;
        if let Some(c) = g.consumer.as_mut() {
            c.fence(&self.ring);
        } else {
            // Never enabled (or a failed enable already disabled it).
            g.module_ref = None;
            return report;
        }
        loop {
            let new = self.drain_locked(&mut g);
            let done = self.complete_all_locked(&mut g);
            report.auto_completed += done;
            // Completing may have made room in the tracker for what is left in the ring.
            if new == 0 && done == 0 {
                break;
            }
        }
        if report.auto_completed > 0 {
            pr_warn!(
                "unloading with {} clone(s) pending: completed them so their parents do not block\n",
                report.auto_completed
            );
        }
        let unreported = g.tracker.auto_queued();
        if unreported > 0 {
            pr_warn!(
                "unloading with {} auto-completed clone(s) never reported to a reader: their children stay paused\n",
                unreported
            );
        }
        g.module_ref = None;
        report.disabled = self.disable_or_leak("at unload");
        if report.disabled {
            pr_info!("clone ring disabled\n");
            report.stranded = self.count_stranded(&mut g);
        }
        g.consumer = None;
        report
    }

    /// Completes every queued or outstanding entry (teardown); returns how many.
    fn complete_all_locked(&self, g: &mut State) -> u64 {
        let mut pending = 0;
        let mut idx = g.tracker.base();
        let end = g.tracker.next();
        while idx != end {
            if g.tracker.is_pending(idx) {
                pending += 1;
                if self.hv.complete(g.tracker.id_of(idx)).is_err() {
                    g.counters.hypervisor_errors += 1;
                }
                g.tracker.mark_completed(idx);
            }
            idx = idx.wrapping_add(1);
        }
        g.counters.auto_completions += pending;
        pending
    }

    /// After a successful `CLONEOP_disable`: entries published since the last drain, which the
    /// hypervisor no longer accepts completions for. Consumes and reports them.
    fn count_stranded(&self, g: &mut State) -> u64 {
        /// Lines at most, one per entry.
        const REPORT_MAX: u64 = 16;
        let Some(c) = g.consumer.as_mut() else {
            return 0;
        };
        let mut n = 0u64;
        c.consume(&self.ring, |_, e| {
            if n < REPORT_MAX {
                pr_err!(
                    "clone notification id {} (parent domid {}, child domid {}) arrived while the ring was being disabled; Xen no longer accepts its completion: the child stays paused, its parent may stay blocked\n",
                    e.id,
                    e.parent,
                    e.child
                );
            }
            n += 1;
            true
        });
        if n > REPORT_MAX {
            pr_err!(
                "{} clone notifications in all arrived while the ring was being disabled\n",
                n
            );
        }
        n
    }
}
