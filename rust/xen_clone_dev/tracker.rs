// SPDX-License-Identifier: GPL-2.0

//! Tracks every notification consumed from the ring until it is completed.
//!
//! Entries are consumed in index order, so the tracked ones form a window `[base, next)` of
//! free-running `u64` indices: everything below `base` is completed. Each slot of the window is
//! `Queued` (not handed to userspace yet, or handed out to a file that was released without
//! completing it: then `redelivered`), `Outstanding` (handed out, waiting for completion) or
//! `Completed` (completed out of order, waiting for the entries before it).
//!
//! An entry the module completed itself (orphan policy) stays `Queued`, flagged
//! `auto_completed`, so that the next reader still learns about its clone; it needs no
//! completion: handing it out frees it. When the window is full, the oldest such entry is
//! dropped to make room (the hypervisor waits for none of them).
//!
//! Userspace completes by `u32` id (the low bits of the index); [`Tracker::lookup`] maps an id
//! back to the most recent index with those bits, which is unambiguous as long as the window
//! is far smaller than 2^31 entries.

use crate::abi::{
    XenCloneEntry, XEN_CLONE_ABI_VERSION, XEN_CLONE_ENTRY_AUTO_COMPLETED,
    XEN_CLONE_ENTRY_REDELIVERED,
};
use crate::ffi::RingEntry;
use kernel::prelude::*;

/// State of a tracked notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotState {
    /// Not in the window.
    Free,
    /// Consumed from the ring, waiting to be read.
    Queued,
    /// Read by userspace, waiting for completion.
    Outstanding,
    /// Completed, waiting for earlier entries to be completed.
    Completed,
}

#[derive(Clone, Copy)]
struct Slot {
    state: SlotState,
    redelivered: bool,
    /// Completed by the module (orphan policy): reported to the next reader, not completed.
    auto_completed: bool,
    /// When the hypervisor first refused its completion (ms, caller's clock).
    rejected_ms: Option<u64>,
    /// When the orphan clock of this entry started (ms, caller's clock).
    since_ms: u64,
    entry: RingEntry,
}

const FREE: Slot = Slot {
    state: SlotState::Free,
    redelivered: false,
    auto_completed: false,
    rejected_ms: None,
    since_ms: 0,
    entry: RingEntry {
        id: 0,
        parent: 0,
        child: 0,
        parent_si_mfn: 0,
        child_si_mfn: 0,
    },
};

/// Why an id cannot be completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LookupError {
    /// Never handed out (unknown, in the future, or still queued for reading): `ENOENT`.
    NotHandedOut,
    /// Already completed: `EALREADY`.
    AlreadyCompleted,
}

impl From<LookupError> for Error {
    fn from(e: LookupError) -> Error {
        match e {
            LookupError::NotHandedOut => ENOENT,
            LookupError::AlreadyCompleted => EALREADY,
        }
    }
}

/// An entry that may be handed to a reader.
#[derive(Clone, Copy)]
pub(crate) struct Deliverable {
    /// Its index.
    pub(crate) idx: u64,
    /// The record for userspace.
    pub(crate) entry: XenCloneEntry,
}

/// The notification window.
///
/// # Invariants
///
/// - `slots.len()` is a power of two (`mask + 1`); index `i` lives in `slots[i & mask]`.
/// - `first <= base <= deliver <= next` (as free-running distances from `first`, the index the
///   tracker started at) and `next - base <= slots.len()`;
///   slots outside `[base, next)` are `Free`, the slot of `base` is never `Completed`.
/// - `queued`/`outstanding` count the slots in those states; no `Queued` slot lies below
///   `deliver`; `auto_queued` counts the `Queued` slots that are `auto_completed`.
pub(crate) struct Tracker {
    slots: KVVec<Slot>,
    mask: u64,
    first: u64,
    base: u64,
    next: u64,
    deliver: u64,
    queued: u32,
    outstanding: u32,
    auto_queued: u32,
    auto_dropped: u64,
}

impl Tracker {
    /// A window of `capacity` entries (rounded up to a power of two), starting at index `start`.
    pub(crate) fn new(capacity: u64, start: u64) -> Result<Self> {
        let cap = capacity.max(1).checked_next_power_of_two().ok_or(EINVAL)?;
        if cap > (1 << 24) {
            return Err(EINVAL);
        }
        let slots = KVVec::from_elem(FREE, cap as usize, GFP_KERNEL)?;
        Ok(Self {
            slots,
            mask: cap - 1,
            first: start,
            base: start,
            next: start,
            deliver: start,
            queued: 0,
            outstanding: 0,
            auto_queued: 0,
            auto_dropped: 0,
        })
    }

    /// Empties the window and restarts it at index `start`, without allocating.
    pub(crate) fn reset(&mut self, start: u64) {
        for s in self.slots.iter_mut() {
            *s = FREE;
        }
        self.first = start;
        self.base = start;
        self.next = start;
        self.deliver = start;
        self.queued = 0;
        self.outstanding = 0;
        self.auto_queued = 0;
    }

    fn slot(&self, idx: u64) -> &Slot {
        &self.slots[(idx & self.mask) as usize]
    }

    fn slot_mut(&mut self, idx: u64) -> &mut Slot {
        &mut self.slots[(idx & self.mask) as usize]
    }

    /// Capacity of the window.
    pub(crate) fn capacity(&self) -> u64 {
        self.mask + 1
    }

    /// Lowest index not completed.
    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    /// Next index to be added.
    pub(crate) fn next(&self) -> u64 {
        self.next
    }

    /// Entries waiting to be read.
    pub(crate) fn queued(&self) -> u32 {
        self.queued
    }

    /// Entries read and not completed.
    pub(crate) fn outstanding(&self) -> u32 {
        self.outstanding
    }

    #[cfg(xen_clone_sim)]
    /// Whether nothing is pending (all consumed entries completed).
    pub(crate) fn is_idle(&self) -> bool {
        self.base == self.next
    }

    /// Whether some entry still needs a completion (queued or outstanding, not auto-completed):
    /// a parent may be waiting for it.
    pub(crate) fn needs_completion(&self) -> bool {
        self.queued - self.auto_queued + self.outstanding > 0
    }

    /// Auto-completed entries waiting to be reported to a reader.
    pub(crate) fn auto_queued(&self) -> u32 {
        self.auto_queued
    }

    /// Auto-completed entries dropped unreported to make room, since the tracker was created.
    pub(crate) fn auto_dropped(&self) -> u64 {
        self.auto_dropped
    }

    /// Whether the window has no room for another entry.
    pub(crate) fn is_full(&self) -> bool {
        self.next.wrapping_sub(self.base) > self.mask
    }

    /// Adds the entry consumed at index `idx` (which must be [`Tracker::next`]). Returns
    /// `false` (and adds nothing) if the window is full or `idx` is not the next index.
    ///
    /// A full window whose oldest entry is an unreported auto-completed one drops it to make
    /// room ([`Tracker::auto_dropped`]).
    pub(crate) fn push(&mut self, idx: u64, entry: RingEntry, now_ms: u64) -> bool {
        if self.is_full() {
            let b = self.base;
            let s = *self.slot(b);
            if s.state == SlotState::Queued && s.auto_completed {
                self.queued -= 1;
                self.auto_queued -= 1;
                self.auto_dropped += 1;
                self.slot_mut(b).state = SlotState::Completed;
                self.slide();
            }
        }
        if self.is_full() || idx != self.next {
            return false;
        }
        *self.slot_mut(idx) = Slot {
            state: SlotState::Queued,
            redelivered: false,
            auto_completed: false,
            rejected_ms: None,
            since_ms: now_ms,
            entry,
        };
        self.next = idx.wrapping_add(1);
        self.queued += 1;
        true
    }

    /// The next entry to hand to a reader: redelivered ones first (they are the oldest).
    pub(crate) fn peek(&mut self) -> Option<Deliverable> {
        while self.deliver != self.next {
            let s = *self.slot(self.deliver);
            if s.state == SlotState::Queued {
                return Some(Deliverable {
                    idx: self.deliver,
                    entry: XenCloneEntry {
                        version: XEN_CLONE_ABI_VERSION,
                        flags: if s.redelivered {
                            XEN_CLONE_ENTRY_REDELIVERED
                        } else {
                            0
                        } | if s.auto_completed {
                            XEN_CLONE_ENTRY_AUTO_COMPLETED
                        } else {
                            0
                        },
                        id: s.entry.id,
                        parent_domid: s.entry.parent,
                        child_domid: s.entry.child,
                        parent_start_info_mfn: s.entry.parent_si_mfn,
                        child_start_info_mfn: s.entry.child_si_mfn,
                    },
                });
            }
            self.deliver = self.deliver.wrapping_add(1);
        }
        None
    }

    /// Whether an entry is waiting to be read.
    pub(crate) fn has_deliverable(&self) -> bool {
        self.queued > 0
    }

    /// Marks the entry `idx` returned by [`Tracker::peek`] as handed out.
    pub(crate) fn mark_delivered(&mut self, idx: u64) {
        if !self.in_window(idx) || self.slot(idx).state != SlotState::Queued {
            return;
        }
        self.slot_mut(idx).state = SlotState::Outstanding;
        self.queued -= 1;
        self.outstanding += 1;
        if self.slot(idx).auto_completed {
            self.auto_queued -= 1;
        }
        if idx == self.deliver {
            self.deliver = idx.wrapping_add(1);
        }
    }

    /// Takes back the entry `idx` handed out by [`Tracker::mark_delivered`] that never reached
    /// its reader: it is queued again, in its place (it is the next one [`Tracker::peek`]
    /// returns if no earlier entry is queued), keeping its redelivered flag. Does nothing if the
    /// entry is not outstanding any more.
    pub(crate) fn undeliver(&mut self, idx: u64) {
        if !self.in_window(idx) || self.slot(idx).state != SlotState::Outstanding {
            return;
        }
        self.slot_mut(idx).state = SlotState::Queued;
        self.outstanding -= 1;
        self.queued += 1;
        if self.slot(idx).auto_completed {
            self.auto_queued += 1;
        }
        if idx.wrapping_sub(self.base) < self.deliver.wrapping_sub(self.base) {
            self.deliver = idx;
        }
    }

    fn in_window(&self, idx: u64) -> bool {
        idx.wrapping_sub(self.base) < self.next.wrapping_sub(self.base)
    }

    /// Maps a completion `id` to the index of an outstanding entry.
    pub(crate) fn lookup(&self, id: u32) -> Result<u64, LookupError> {
        // Distance back from `next` to the most recent index with these low bits.
        let back = u64::from((self.next as u32).wrapping_sub(id));
        if back == 0 || back > (1 << 31) {
            // `next` itself or "ahead": never produced.
            return Err(LookupError::NotHandedOut);
        }
        let idx = self.next.wrapping_sub(back);
        let mut found = None;
        if self.in_window(idx) && self.slot(idx).entry.id == id {
            found = Some(idx);
        } else if !self.in_window(idx) {
            // Below the window: completed long ago, if it ever existed.
            let existed = back <= self.next.wrapping_sub(self.first);
            return if existed {
                Err(LookupError::AlreadyCompleted)
            } else {
                Err(LookupError::NotHandedOut)
            };
        } else {
            // The hypervisor's id did not match its index: search the window.
            let mut i = self.base;
            while i != self.next {
                if self.slot(i).state != SlotState::Free && self.slot(i).entry.id == id {
                    found = Some(i);
                    break;
                }
                i = i.wrapping_add(1);
            }
        }
        let idx = found.ok_or(LookupError::NotHandedOut)?;
        match self.slot(idx).state {
            SlotState::Outstanding if self.slot(idx).auto_completed => {
                Err(LookupError::AlreadyCompleted)
            }
            SlotState::Outstanding => Ok(idx),
            SlotState::Completed => Err(LookupError::AlreadyCompleted),
            SlotState::Queued | SlotState::Free => Err(LookupError::NotHandedOut),
        }
    }

    /// Whether `idx` is queued or outstanding and still needs a completion (not auto-completed).
    pub(crate) fn is_pending(&self, idx: u64) -> bool {
        self.in_window(idx)
            && !self.slot(idx).auto_completed
            && matches!(
                self.slot(idx).state,
                SlotState::Queued | SlotState::Outstanding
            )
    }

    /// The hypervisor id of the entry at `idx`.
    pub(crate) fn id_of(&self, idx: u64) -> u32 {
        self.slot(idx).entry.id
    }

    /// The ring entry at `idx`.
    pub(crate) fn entry_of(&self, idx: u64) -> RingEntry {
        self.slot(idx).entry
    }

    /// When the hypervisor first refused the completion of `idx`; records `now_ms` if this is
    /// the first time.
    pub(crate) fn first_rejection(&mut self, idx: u64, now_ms: u64) -> u64 {
        *self.slot_mut(idx).rejected_ms.get_or_insert(now_ms)
    }

    /// The module completed the queued entry `idx` itself: it stays queued, flagged, for the
    /// next reader, and needs no completion any more.
    pub(crate) fn mark_auto_completed(&mut self, idx: u64) {
        if !self.in_window(idx) {
            return;
        }
        let s = self.slot_mut(idx);
        if s.state != SlotState::Queued || s.auto_completed {
            return;
        }
        s.auto_completed = true;
        self.auto_queued += 1;
    }

    /// The auto-completed entry `idx` reached its reader: it is done.
    pub(crate) fn finish_auto(&mut self, idx: u64) {
        if self.in_window(idx)
            && self.slot(idx).auto_completed
            && self.slot(idx).state == SlotState::Outstanding
        {
            self.mark_completed(idx);
        }
    }

    /// Marks `idx` completed and slides the window over the completed prefix.
    pub(crate) fn mark_completed(&mut self, idx: u64) {
        if !self.in_window(idx) {
            return;
        }
        match self.slot(idx).state {
            SlotState::Outstanding => self.outstanding -= 1,
            SlotState::Queued => {
                self.queued -= 1;
                if self.slot(idx).auto_completed {
                    self.auto_queued -= 1;
                }
            }
            SlotState::Completed | SlotState::Free => return,
        }
        self.slot_mut(idx).state = SlotState::Completed;
        self.slide();
    }

    /// Slides the window over the completed prefix.
    fn slide(&mut self) {
        while self.base != self.next && self.slot(self.base).state == SlotState::Completed {
            let b = self.base;
            *self.slot_mut(b) = FREE;
            self.base = b.wrapping_add(1);
        }
        if self.deliver.wrapping_sub(self.base) > self.next.wrapping_sub(self.base) {
            self.deliver = self.base;
        }
    }

    /// The reader went away: every outstanding entry becomes queued again, flagged
    /// redelivered; the orphan clock of every queued entry restarts at `now_ms`. Returns how
    /// many entries were outstanding.
    pub(crate) fn release_all(&mut self, now_ms: u64) -> u32 {
        let mut n = 0;
        let mut i = self.base;
        while i != self.next {
            let s = self.slot_mut(i);
            if s.state == SlotState::Outstanding {
                s.state = SlotState::Queued;
                s.redelivered = true;
                n += 1;
            }
            if s.state == SlotState::Queued {
                s.since_ms = now_ms;
            }
            i = i.wrapping_add(1);
        }
        self.outstanding -= n;
        self.queued += n;
        self.deliver = self.base;
        n
    }

    /// Queued entries whose orphan clock is at least `timeout_ms` old at `now_ms`, oldest first,
    /// at most `out.len()`. Returns how many were written to `out` and, if some queued entry is
    /// not yet due, the time until the earliest is.
    pub(crate) fn due_orphans(
        &self,
        now_ms: u64,
        timeout_ms: u64,
        out: &mut [u64],
    ) -> (usize, Option<u64>) {
        let mut n = 0;
        let mut next_due: Option<u64> = None;
        let mut i = self.base;
        while i != self.next {
            let s = self.slot(i);
            if s.state == SlotState::Queued && !s.auto_completed {
                let due = s.since_ms.saturating_add(timeout_ms);
                if due <= now_ms {
                    if n < out.len() {
                        out[n] = i;
                        n += 1;
                    } else {
                        next_due = Some(0);
                    }
                } else {
                    let left = due - now_ms;
                    next_due = Some(next_due.map_or(left, |d| d.min(left)));
                }
            }
            i = i.wrapping_add(1);
        }
        (n, next_due)
    }
}
