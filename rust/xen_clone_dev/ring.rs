// SPDX-License-Identifier: GPL-2.0

//! Ring logic over [`RingMem`]: the consumer (this driver's side) and, in the test-only module,
//! a producer (the hypervisor's side, used by the simulated hypervisor and the tests).
//!
//! Protocol (Nephele's `clone_notification` ring; nephele-dom0.md §2.1, §7): the producer
//! fills the entry at `prod & (N - 1)` and then publishes `prod + 1`; the ring is full when
//! `prod - cons >= N`. The consumer reads `prod` with acquire semantics (`READ_ONCE` +
//! `virt_rmb`), copies each entry in `[cons, prod)` and only then publishes `cons + 1`
//! (`virt_mb` + `WRITE_ONCE`). Indices are free-running `u64`; an entry's id is its index
//! truncated to `u32`.

use crate::ffi::{RingEntry, RingMem, PAGE_SIZE, RING_ENTRY_SIZE, RING_HEADER_SIZE};
use kernel::prelude::*;

/// `entries_num` the hypervisor derives from the number of pages: the largest power of two
/// `<= (pages * 4096 - 24) / 24`.
pub(crate) const fn entries_for_pages(pages: u32) -> u64 {
    let slots = ((pages as usize * PAGE_SIZE - RING_HEADER_SIZE) / RING_ENTRY_SIZE) as u64;
    if slots == 0 {
        return 0;
    }
    1u64 << (63 - slots.leading_zeros())
}

/// Validates the `entries_num` the hypervisor wrote: a non-zero power of two that fits.
pub(crate) fn check_entries_num(ring: &RingMem, n: u64) -> Result<u64> {
    if n == 0 || !n.is_power_of_two() || n > ring.slots() {
        return Err(EPROTO);
    }
    Ok(n)
}

/// What one [`Consumer::consume`] pass saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pass {
    /// Entries consumed (and handed to the sink).
    pub(crate) consumed: u64,
    /// The ring was full (`prod - cons == N`) when the pass started: producer back-pressure.
    pub(crate) was_full: bool,
    /// The sink refused an entry (no room downstream); the rest stays in the ring.
    pub(crate) sink_full: bool,
    /// The header was inconsistent (`prod - cons > N`); nothing was consumed.
    pub(crate) corrupt: Option<(u64, u64)>,
}

/// The consumer side of the ring.
///
/// # Invariants
///
/// `n` is a power of two not larger than the ring's slot count; `cons` is the index of the next
/// entry to consume (this side owns `cons_idx`). The last value published to `cons_idx` is
/// `cons`, or `cons - n` once `fenced`: the producer then sees a full ring for good.
pub(crate) struct Consumer {
    n: u64,
    cons: u64,
    fenced: bool,
}

impl Consumer {
    /// A consumer for a ring of `n` entries (checked with [`check_entries_num`]) whose
    /// `cons_idx` is `cons`.
    pub(crate) fn new(ring: &RingMem, n: u64, cons: u64) -> Result<Self> {
        let n = check_entries_num(ring, n)?;
        Ok(Self {
            n,
            cons,
            fenced: false,
        })
    }

    /// The value of `cons_idx` that tells the producer how far this side consumed.
    fn published(&self) -> u64 {
        if self.fenced {
            self.cons.wrapping_sub(self.n)
        } else {
            self.cons
        }
    }

    /// Stops the producer for good: from now on `cons_idx` is published `n` entries behind the
    /// real consumer index, so the producer (which checks `prod - cons_idx >= n` before every
    /// entry and validates nothing else, Nephele `clone.c` `CLONING_RING_IS_FULL`) sees a full
    /// ring, however much is consumed. Entries it published before seeing the fence are still
    /// consumed normally. The full barrier orders the fence before the next read of
    /// `prod_idx`.
    ///
    /// This is how teardown stops notifications while completions still work (the hypervisor
    /// has no other way: `CLONEOP_disable` also refuses every later completion).
    pub(crate) fn fence(&mut self, ring: &RingMem) {
        self.fenced = true;
        ring.publish_cons(self.published());
        ring.full_barrier();
    }

    /// Whether [`Consumer::fence`] was called.
    #[cfg(xen_clone_sim)]
    pub(crate) fn is_fenced(&self) -> bool {
        self.fenced
    }

    /// Entries published and not consumed yet, or `None` if the header is inconsistent.
    #[cfg(xen_clone_sim)]
    pub(crate) fn pending(&self, ring: &RingMem) -> Option<u64> {
        let avail = ring.prod_acquire().wrapping_sub(self.cons);
        (avail <= self.n).then_some(avail)
    }

    /// Ring size.
    pub(crate) fn entries_num(&self) -> u64 {
        self.n
    }

    #[cfg(xen_clone_sim)]
    /// Next index to consume.
    pub(crate) fn cons(&self) -> u64 {
        self.cons
    }

    /// One pass: consume everything published when the pass starts, handing each entry and its
    /// index to `sink` until it returns `false`.
    pub(crate) fn consume(
        &mut self,
        ring: &RingMem,
        mut sink: impl FnMut(u64, RingEntry) -> bool,
    ) -> Pass {
        let mut pass = Pass::default();
        let prod = ring.prod_acquire();
        let avail = prod.wrapping_sub(self.cons);
        if avail > self.n {
            pass.corrupt = Some((prod, self.cons));
            return pass;
        }
        pass.was_full = avail == self.n;
        while self.cons != prod {
            let Some(e) = ring.read_entry(self.cons & (self.n - 1)) else {
                // Unreachable by the invariant (`n <= slots`); treat as corruption.
                pass.corrupt = Some((prod, self.cons));
                break;
            };
            if !sink(self.cons, e) {
                pass.sink_full = true;
                break;
            }
            self.cons = self.cons.wrapping_add(1);
            ring.publish_cons(self.published());
            pass.consumed += 1;
        }
        pass
    }

    /// Consumes until the ring is empty (or the sink is full, or the header is corrupt),
    /// accumulating the passes. Each pass re-reads `prod`, so events that coalesced while
    /// draining are not lost. Returns after at most `max_passes` passes.
    pub(crate) fn drain(
        &mut self,
        ring: &RingMem,
        max_passes: u32,
        mut sink: impl FnMut(u64, RingEntry) -> bool,
    ) -> Pass {
        let mut total = Pass::default();
        for _ in 0..max_passes {
            let p = self.consume(ring, &mut sink);
            total.consumed += p.consumed;
            total.was_full |= p.was_full;
            total.sink_full |= p.sink_full;
            if p.corrupt.is_some() {
                total.corrupt = p.corrupt;
            }
            if p.consumed == 0 || p.sink_full || p.corrupt.is_some() {
                break;
            }
        }
        total
    }
}

/// Why a producer could not add an entry.
#[cfg(xen_clone_sim)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProduceError {
    /// `prod - cons >= N`: the ring is full.
    Full,
    /// The ring header is inconsistent (`prod - cons > N`): the consumer published garbage.
    Corrupt,
}

#[cfg(xen_clone_sim)]
/// The producer side of the ring, as the hypervisor implements it (one producer at a time:
/// the hypervisor holds a global lock; callers serialise).
///
/// # Invariants
///
/// `n` is a power of two not larger than the ring's slot count; `prod` is the next index to
/// produce and the last value published to `prod_idx` (this side owns `prod_idx`).
pub(crate) struct Producer {
    n: u64,
    prod: u64,
}

#[cfg(xen_clone_sim)]
impl Producer {
    /// Initialises the header like `CLONEOP_enable` (`entries_num = n`, both indices `start`).
    pub(crate) fn enable(ring: &RingMem, n: u64, start: u64) -> Result<Self> {
        if n == 0 || !n.is_power_of_two() || n > ring.slots() {
            return Err(EINVAL);
        }
        ring.sim_init_header(n, start);
        Ok(Self { n, prod: start })
    }

    /// Next index (and, truncated, next id).
    pub(crate) fn prod(&self) -> u64 {
        self.prod
    }

    /// Entries in the ring not yet consumed, per `cons_idx`.
    pub(crate) fn in_flight(&self, ring: &RingMem) -> u64 {
        self.prod.wrapping_sub(ring.cons())
    }

    /// Whether there is room for one more entry.
    pub(crate) fn has_room(&self, ring: &RingMem) -> Result<bool, ProduceError> {
        let used = self.prod.wrapping_sub(ring.sim_cons());
        if used > self.n {
            return Err(ProduceError::Corrupt);
        }
        Ok(used < self.n)
    }

    /// Writes one entry (id = current `prod`, truncated) and publishes it without checking for
    /// room: a producer whose room check ran before the consumer's last `cons_idx` update.
    /// Returns the index. Test-only.
    pub(crate) fn force_produce(&mut self, ring: &RingMem, parent: u16, child: u16) -> u64 {
        let idx = self.prod;
        let e = RingEntry {
            id: idx as u32,
            parent,
            child,
            parent_si_mfn: 0,
            child_si_mfn: 0,
        };
        // `n` fits the pages by the type invariant, so the slot is always inside.
        ring.sim_write_entry(idx & (self.n - 1), &e);
        self.prod = idx.wrapping_add(1);
        ring.sim_publish_prod(self.prod);
        idx
    }

    /// Writes one entry (id = current `prod`, truncated) and publishes it. Returns the index.
    pub(crate) fn produce(
        &mut self,
        ring: &RingMem,
        parent: u16,
        child: u16,
        parent_si_mfn: u64,
        child_si_mfn: u64,
    ) -> Result<u64, ProduceError> {
        if !self.has_room(ring)? {
            return Err(ProduceError::Full);
        }
        let idx = self.prod;
        let e = RingEntry {
            id: idx as u32,
            parent,
            child,
            parent_si_mfn,
            child_si_mfn,
        };
        if !ring.sim_write_entry(idx & (self.n - 1), &e) {
            return Err(ProduceError::Corrupt);
        }
        self.prod = idx.wrapping_add(1);
        ring.sim_publish_prod(self.prod);
        Ok(idx)
    }
}
