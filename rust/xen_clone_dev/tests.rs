// SPDX-License-Identifier: GPL-2.0

//! KUnit suites of the test-only module `xen_clone_sim` (run when it is loaded).
//!
//! The producer side is simulated with [`Producer`] over real ring pages, including a
//! concurrent producer on a workqueue while the test consumes.

use kernel::prelude::*;

#[kunit_tests(xen_clone_ring)]
mod ring_tests {
    use crate::ffi::{RingEntry, RingMem};
    use crate::ring::{entries_for_pages, Consumer, ProduceError, Producer};
    use kernel::{
        new_spinlock,
        prelude::*,
        sync::{
            atomic::{Atomic, Relaxed},
            Arc, Completion, SpinLock,
        },
        time::{delay::fsleep, Delta, Instant, Monotonic},
        workqueue,
    };

    fn mfn_parent(idx: u64) -> u64 {
        idx.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    fn mfn_child(idx: u64) -> u64 {
        !idx ^ 0x5555_0000_aaaa
    }

    fn produce_pattern(p: &mut Producer, ring: &RingMem) -> Result<u64, ProduceError> {
        let idx = p.prod();
        p.produce(
            ring,
            idx as u16,
            (idx >> 16) as u16,
            mfn_parent(idx),
            mfn_child(idx),
        )
    }

    fn matches_pattern(idx: u64, e: &RingEntry) -> bool {
        e.id == idx as u32
            && e.parent == idx as u16
            && e.child == (idx >> 16) as u16
            && e.parent_si_mfn == mfn_parent(idx)
            && e.child_si_mfn == mfn_child(idx)
    }

    #[test]
    fn entries_num_matches_xen() {
        for (pages, n) in [
            (1, 128),
            (2, 256),
            (3, 256),
            (4, 512),
            (6, 512),
            (7, 1024),
            (8, 1024),
            (13, 2048),
            (16, 2048),
            (25, 4096),
            (32, 4096),
        ] {
            assert_eq!(entries_for_pages(pages), n);
        }
    }

    #[test]
    fn batch_in_order() -> Result {
        let ring = RingMem::alloc(1)?;
        let mut p = Producer::enable(&ring, 128, 0)?;
        let mut c = Consumer::new(&ring, 128, 0)?;
        assert_eq!(c.consume(&ring, |_, _| true).consumed, 0);
        for _ in 0..10 {
            assert!(produce_pattern(&mut p, &ring).is_ok());
        }
        let mut next = 0u64;
        let mut ok = true;
        let pass = c.consume(&ring, |idx, e| {
            ok &= idx == next && matches_pattern(idx, &e);
            next += 1;
            true
        });
        assert!(ok);
        assert_eq!(pass.consumed, 10);
        assert!(!pass.was_full);
        assert_eq!(ring.cons(), 10);
        assert_eq!(ring.prod(), 10);
        Ok(())
    }

    #[test]
    fn ring_full_backpressure() -> Result {
        let ring = RingMem::alloc(1)?;
        let mut p = Producer::enable(&ring, 128, 0)?;
        let mut c = Consumer::new(&ring, 128, 0)?;
        for _ in 0..128 {
            assert!(produce_pattern(&mut p, &ring).is_ok());
        }
        // All N slots are usable; the next one is refused.
        assert_eq!(produce_pattern(&mut p, &ring), Err(ProduceError::Full));
        let pass = c.consume(&ring, |_, _| true);
        assert!(pass.was_full);
        assert_eq!(pass.consumed, 128);
        assert!(produce_pattern(&mut p, &ring).is_ok());
        Ok(())
    }

    #[test]
    fn sink_full_leaves_entries() -> Result {
        let ring = RingMem::alloc(1)?;
        let mut p = Producer::enable(&ring, 128, 0)?;
        let mut c = Consumer::new(&ring, 128, 0)?;
        for _ in 0..10 {
            assert!(produce_pattern(&mut p, &ring).is_ok());
        }
        let mut room = 3;
        let pass = c.consume(&ring, |_, _| {
            room -= 1;
            room >= 0
        });
        assert!(pass.sink_full);
        assert_eq!(pass.consumed, 3);
        assert_eq!(ring.cons(), 3);
        let pass = c.drain(&ring, 8, |_, _| true);
        assert_eq!(pass.consumed, 7);
        assert_eq!(ring.cons(), 10);
        Ok(())
    }

    #[test]
    fn wraparound_past_u32() -> Result {
        let start = u64::from(u32::MAX) - 4;
        let ring = RingMem::alloc(1)?;
        let mut p = Producer::enable(&ring, 128, start)?;
        let mut c = Consumer::new(&ring, 128, start)?;
        let mut next = start;
        let mut ok = true;
        let mut saw_zero = false;
        for _ in 0..3 {
            for _ in 0..100 {
                assert!(produce_pattern(&mut p, &ring).is_ok());
            }
            let pass = c.drain(&ring, 8, |idx, e| {
                ok &= idx == next && matches_pattern(idx, &e);
                saw_zero |= e.id == 0;
                next += 1;
                true
            });
            assert_eq!(pass.consumed, 100);
        }
        assert!(ok);
        assert!(saw_zero);
        assert_eq!(ring.cons(), start + 300);
        assert_eq!(c.cons(), start + 300);
        Ok(())
    }

    #[test]
    fn corrupt_header_is_reported_not_looped() -> Result {
        let ring = RingMem::alloc(1)?;
        let _p = Producer::enable(&ring, 128, 0)?;
        let mut c = Consumer::new(&ring, 128, 0)?;
        ring.sim_set_indices(129, 0);
        let pass = c.drain(&ring, 1000, |_, _| true);
        assert_eq!(pass.corrupt, Some((129, 0)));
        assert_eq!(pass.consumed, 0);
        assert_eq!(ring.cons(), 0);
        // prod behind cons is as bad.
        ring.sim_set_indices(u64::MAX, 0);
        assert!(c.consume(&ring, |_, _| true).corrupt.is_some());
        // Bad entries_num values are refused.
        assert!(Consumer::new(&ring, 0, 0).is_err());
        assert!(Consumer::new(&ring, 100, 0).is_err());
        assert!(Consumer::new(&ring, 256, 0).is_err());
        Ok(())
    }

    #[pin_data]
    struct Shared {
        ring: Arc<RingMem>,
        #[pin]
        done: Completion,
        full_retries: Atomic<u64>,
        #[pin]
        result: SpinLock<Result<(), ProduceError>>,
    }

    /// A producer on a workqueue fills a 128-entry ring 20000 times over the 2^32 id wrap
    /// while this thread consumes: every entry must arrive complete, in order, exactly once.
    #[test]
    fn concurrent_producer() -> Result {
        const TOTAL: u64 = 20_000;
        let start = u64::from(u32::MAX) - 9_999;
        let ring = Arc::new(RingMem::alloc(1)?, GFP_KERNEL)?;
        let mut c = Consumer::new(&ring, 128, start)?;
        let mut p = Producer::enable(&ring, 128, start)?;
        let producer_ring = ring.clone();
        let shared = Arc::pin_init(
            pin_init!(Shared {
                ring: producer_ring,
                done <- Completion::new(),
                full_retries: Atomic::new(0),
                result <- new_spinlock!(Ok(())),
            }),
            GFP_KERNEL,
        )?;
        let s = shared.clone();
        workqueue::system_unbound().try_spawn(GFP_KERNEL, move || {
            let mut produced = 0;
            while produced < TOTAL {
                match produce_pattern(&mut p, &s.ring) {
                    Ok(_) => produced += 1,
                    Err(ProduceError::Full) => {
                        s.full_retries.add(1, Relaxed);
                        fsleep(Delta::from_micros(100));
                    }
                    Err(e) => {
                        *s.result.lock() = Err(e);
                        break;
                    }
                }
            }
            s.done.complete_all();
        })?;

        let t0 = Instant::<Monotonic>::now();
        let mut next = start;
        let mut bad = 0u64;
        let mut corrupt = 0u64;
        let mut full_seen = 0u64;
        while next != start + TOTAL && t0.elapsed().as_millis() < 60_000 {
            let pass = c.drain(&ring, 4, |idx, e| {
                if idx != next || !matches_pattern(idx, &e) {
                    bad += 1;
                }
                next += 1;
                true
            });
            corrupt += u64::from(pass.corrupt.is_some());
            full_seen += u64::from(pass.was_full);
            // Let the producer run (and fill the ring) in between.
            fsleep(Delta::from_millis(2));
        }
        shared.done.wait_for_completion();
        assert!(shared.result.lock().is_ok());
        assert_eq!(next, start + TOTAL);
        assert_eq!(bad, 0);
        assert_eq!(corrupt, 0);
        assert_eq!(ring.cons(), start + TOTAL);
        // The consumer sleeps while the producer runs: back-pressure must have happened.
        assert!(shared.full_retries.load(Relaxed) > 0);
        assert!(full_seen > 0);
        Ok(())
    }
}

#[kunit_tests(xen_clone_tracker)]
mod tracker_tests {
    use crate::abi::XEN_CLONE_ENTRY_REDELIVERED;
    use crate::ffi::RingEntry;
    use crate::tracker::{LookupError, Tracker};
    use kernel::prelude::*;

    fn entry(idx: u64) -> RingEntry {
        RingEntry {
            id: idx as u32,
            parent: 1,
            child: idx as u16,
            parent_si_mfn: 0x100,
            child_si_mfn: idx,
        }
    }

    fn push_n(t: &mut Tracker, n: u64, now: u64) -> bool {
        let mut ok = true;
        for _ in 0..n {
            let i = t.next();
            ok &= t.push(i, entry(i), now);
        }
        ok
    }

    fn deliver_n(t: &mut Tracker, n: u32) -> bool {
        let mut ok = true;
        for _ in 0..n {
            match t.peek() {
                Some(d) => t.mark_delivered(d.idx),
                None => ok = false,
            }
        }
        ok
    }

    #[test]
    fn complete_ok_twice_unknown() -> Result {
        let mut t = Tracker::new(16, 0)?;
        assert!(push_n(&mut t, 3, 0));
        assert!(deliver_n(&mut t, 2));
        assert_eq!(t.queued(), 1);
        assert_eq!(t.outstanding(), 2);
        let idx = t.lookup(0);
        assert_eq!(idx, Ok(0));
        t.mark_completed(0);
        assert_eq!(t.lookup(0), Err(LookupError::AlreadyCompleted));
        // Id 2 is consumed but not handed out yet.
        assert_eq!(t.lookup(2), Err(LookupError::NotHandedOut));
        // Never produced.
        assert_eq!(t.lookup(3), Err(LookupError::NotHandedOut));
        assert_eq!(t.lookup(100), Err(LookupError::NotHandedOut));
        assert_eq!(t.lookup(u32::MAX), Err(LookupError::NotHandedOut));
        assert_eq!(Error::from(LookupError::NotHandedOut), ENOENT);
        assert_eq!(Error::from(LookupError::AlreadyCompleted), EALREADY);
        Ok(())
    }

    #[test]
    fn out_of_order_completion() -> Result {
        let mut t = Tracker::new(16, 0)?;
        assert!(push_n(&mut t, 4, 0));
        assert!(deliver_n(&mut t, 4));
        for id in [2, 3] {
            let idx = t.lookup(id);
            assert_eq!(idx, Ok(u64::from(id)));
            t.mark_completed(u64::from(id));
        }
        assert_eq!(t.base(), 0);
        assert_eq!(t.lookup(3), Err(LookupError::AlreadyCompleted));
        t.mark_completed(0);
        assert_eq!(t.base(), 1);
        t.mark_completed(1);
        assert_eq!(t.base(), 4);
        assert!(t.is_idle());
        assert_eq!(t.outstanding(), 0);
        assert_eq!(t.lookup(2), Err(LookupError::AlreadyCompleted));
        Ok(())
    }

    #[test]
    fn redelivered_first_after_release() -> Result {
        let mut t = Tracker::new(16, 0)?;
        assert!(push_n(&mut t, 4, 0));
        assert!(deliver_n(&mut t, 3));
        t.mark_completed(1);
        assert_eq!(t.release_all(10), 2);
        assert_eq!(t.outstanding(), 0);
        assert_eq!(t.queued(), 3);
        let mut order = [(0u64, 0u32); 3];
        for o in order.iter_mut() {
            let d = t.peek().ok_or(EINVAL)?;
            *o = (d.idx, d.entry.flags);
            t.mark_delivered(d.idx);
        }
        assert_eq!(order[0], (0, XEN_CLONE_ENTRY_REDELIVERED));
        assert_eq!(order[1], (2, XEN_CLONE_ENTRY_REDELIVERED));
        assert_eq!(order[2], (3, 0));
        assert!(t.peek().is_none());
        assert!(!t.has_deliverable());
        Ok(())
    }

    #[test]
    fn ids_wrap_past_u32() -> Result {
        let start = u64::from(u32::MAX) - 1;
        let mut t = Tracker::new(16, start)?;
        assert!(push_n(&mut t, 4, 0));
        assert!(deliver_n(&mut t, 4));
        // ids: 0xfffffffe, 0xffffffff, 0, 1
        for id in [0u32, 1, 0xffff_fffe] {
            let idx = t.lookup(id).map_err(|_| EINVAL)?;
            assert_eq!(idx as u32, id);
            t.mark_completed(idx);
        }
        assert_eq!(t.lookup(0xffff_ffff), Ok(start + 1));
        t.mark_completed(start + 1);
        assert!(t.is_idle());
        assert_eq!(t.lookup(0), Err(LookupError::AlreadyCompleted));
        assert_eq!(t.lookup(0xffff_fffe), Err(LookupError::AlreadyCompleted));
        assert_eq!(t.lookup(5), Err(LookupError::NotHandedOut));
        // Below the first index this tracker saw: never handed out.
        assert_eq!(t.lookup(0xffff_fff0), Err(LookupError::NotHandedOut));
        Ok(())
    }

    #[test]
    fn window_capacity() -> Result {
        let mut t = Tracker::new(4, 0)?;
        assert!(push_n(&mut t, 4, 0));
        assert!(t.is_full());
        assert!(!t.push(4, entry(4), 0));
        // Wrong index is refused too.
        assert!(!t.push(7, entry(7), 0));
        assert!(deliver_n(&mut t, 1));
        t.mark_completed(0);
        assert!(t.push(4, entry(4), 0));
        Ok(())
    }

    /// A reader that could not copy entries hands them back: they are queued again, in order,
    /// ahead of later ones, with their redelivered flag.
    #[test]
    fn undeliver_puts_back_in_place() -> Result {
        let mut t = Tracker::new(16, 0)?;
        assert!(push_n(&mut t, 4, 0));
        assert!(deliver_n(&mut t, 3));
        t.undeliver(2);
        t.undeliver(1);
        assert_eq!(t.queued(), 3);
        assert_eq!(t.outstanding(), 1);
        assert_eq!(t.lookup(1), Err(LookupError::NotHandedOut));
        assert_eq!(t.peek().map(|d| d.idx), Some(1));
        // Completed in between: nothing to put back.
        t.mark_completed(0);
        t.undeliver(0);
        assert_eq!(t.queued(), 3);
        // The redelivered flag survives.
        assert!(deliver_n(&mut t, 1));
        assert_eq!(t.release_all(0), 1);
        let d = t.peek().ok_or(EINVAL)?;
        assert_eq!((d.idx, d.entry.flags), (1, XEN_CLONE_ENTRY_REDELIVERED));
        t.mark_delivered(1);
        t.undeliver(1);
        let d = t.peek().ok_or(EINVAL)?;
        assert_eq!((d.idx, d.entry.flags), (1, XEN_CLONE_ENTRY_REDELIVERED));
        Ok(())
    }

    /// Restarting the window allocates nothing and forgets everything.
    #[test]
    fn reset_restarts_window() -> Result {
        let mut t = Tracker::new(16, 0)?;
        assert!(push_n(&mut t, 3, 0));
        assert!(deliver_n(&mut t, 1));
        t.reset(1000);
        assert!(t.is_idle());
        assert_eq!(
            (t.base(), t.next(), t.queued(), t.outstanding()),
            (1000, 1000, 0, 0)
        );
        assert!(t.peek().is_none());
        assert!(!t.push(3, entry(3), 0));
        assert!(push_n(&mut t, 1, 0));
        assert_eq!(t.capacity(), 16);
        Ok(())
    }

    #[test]
    fn orphans_due_in_order() -> Result {
        let mut t = Tracker::new(16, 0)?;
        assert!(push_n(&mut t, 1, 0));
        assert!(push_n(&mut t, 1, 1000));
        assert!(push_n(&mut t, 1, 2000));
        let mut out = [0u64; 8];
        let (n, next) = t.due_orphans(59_999, 60_000, &mut out);
        assert_eq!(n, 0);
        assert_eq!(next, Some(1));
        let (n, next) = t.due_orphans(61_000, 60_000, &mut out);
        assert_eq!(n, 2);
        assert_eq!(out[..2], [0, 1]);
        assert_eq!(next, Some(1000));
        // Handed-out entries are not orphans while open; release restarts their clock.
        assert!(deliver_n(&mut t, 1));
        let (n, _) = t.due_orphans(1_000_000, 60_000, &mut out);
        assert_eq!(n, 2);
        t.release_all(1_000_000);
        let (n, next) = t.due_orphans(1_000_000, 60_000, &mut out);
        assert_eq!(n, 0);
        assert_eq!(next, Some(60_000));
        Ok(())
    }
}

#[kunit_tests(xen_clone_sim)]
mod sim_tests {
    use crate::abi::XEN_CLONE_ENABLE_PAGE_SHARING_POOL;
    use crate::ffi::RingMem;
    use crate::hv::Hypervisor;
    use crate::ring::Consumer;
    use crate::sim::{SimFaults, SimHv};
    use kernel::{prelude::*, sync::Arc};

    #[test]
    fn completion_semantics() -> Result {
        let ring = Arc::new(RingMem::alloc(1)?, GFP_KERNEL)?;
        let sim = SimHv::new(0)?;
        assert_eq!(sim.inject(1, 10, 1), Err(EPERM));
        sim.enable(&ring, 0)?;
        assert_eq!(sim.enable(&ring, 0), Err(EBUSY));
        assert_eq!(ring.entries_num(), 128);
        assert_eq!(sim.inject(1, 10, 3), Ok(3));
        assert_eq!(ring.prod(), 3);
        assert_eq!(sim.complete(5), Err(EINVAL));
        assert_eq!(sim.complete(1), Ok(()));
        // Xen asserts on a double completion (debug) and ignores it otherwise.
        assert_eq!(sim.complete(1), Ok(()));
        assert_eq!(sim.stats().double_completions, 1);
        assert_eq!(sim.complete(0), Ok(()));
        // 0 and 1 are purged now.
        assert_eq!(sim.complete(0), Err(EINVAL));
        assert_eq!(sim.waiting(), 1);
        assert_eq!(sim.complete(2), Ok(()));
        assert_eq!(sim.waiting(), 0);
        assert_eq!(sim.stats().invalid_completions, 2);
        sim.disable()?;
        assert_eq!(sim.disable(), Err(EINVAL));
        Ok(())
    }

    /// Xen's two `EBUSY`s of `CLONEOP_enable`: ring enabled, or page-sharing pool left by an
    /// earlier enable (never freed); completions after disable get `EPERM`.
    #[test]
    fn enable_busy_causes() -> Result {
        let ring = Arc::new(RingMem::alloc(1)?, GFP_KERNEL)?;
        let sim = SimHv::new(0)?;
        sim.enable(&ring, XEN_CLONE_ENABLE_PAGE_SHARING_POOL)?;
        assert!(sim.has_pool());
        assert_eq!(sim.enable(&ring, 0), Err(EBUSY));
        assert_eq!(sim.inject(1, 10, 1), Ok(1));
        sim.disable()?;
        assert_eq!(sim.complete(0), Err(EPERM));
        assert!(sim.has_pool());
        assert_eq!(
            sim.enable(&ring, XEN_CLONE_ENABLE_PAGE_SHARING_POOL),
            Err(EBUSY)
        );
        assert!(!sim.is_enabled());
        sim.enable(&ring, 0)?;
        sim.disable()?;
        Ok(())
    }

    /// The fenced consumer: the producer sees a full ring, entries already published are
    /// still consumed.
    #[test]
    fn fence_stops_producer() -> Result {
        let ring = Arc::new(RingMem::alloc(1)?, GFP_KERNEL)?;
        let sim = SimHv::new(u64::from(u32::MAX) - 1)?;
        sim.enable(&ring, 0)?;
        let mut c = Consumer::new(&ring, 128, u64::from(u32::MAX) - 1)?;
        assert_eq!(sim.inject(1, 10, 3), Ok(3));
        assert_eq!(c.drain(&ring, 8, |_, _| true).consumed, 3);
        assert_eq!(sim.inject(2, 20, 2), Ok(2));
        c.fence(&ring);
        assert!(c.is_fenced());
        // Xen's loop: the ring looks full, nothing is queued to wait for, the hypercall
        // returns and the child is never notified.
        assert_eq!(sim.inject(3, 30, 1), Ok(0));
        assert_eq!(sim.backlog(), 0);
        assert_eq!(sim.stats().abandoned_unnotified, 1);
        assert_eq!(c.pending(&ring), Some(2));
        assert_eq!(c.drain(&ring, 8, |_, _| true).consumed, 2);
        assert_eq!(c.pending(&ring), Some(0));
        for id in 0..5u64 {
            sim.complete((u64::from(u32::MAX) - 1 + id) as u32)?;
        }
        // Room in the completion ring, the notification ring still looks full.
        assert_eq!(sim.pump(), 0);
        sim.disable()?;
        assert_eq!(sim.stats().unnotified_at_disable, 0);
        assert_eq!(sim.stats().waiting_at_disable, 0);
        Ok(())
    }

    /// Issue 12 item 2: Xen writes a notification whenever the notification ring has room,
    /// even with its completion ring full; the id then stays out of the completion ring
    /// (`EINVAL` for its completion) until the parent, after purging, queues it on a restart
    /// of its hypercall.
    #[test]
    fn notified_while_completion_ring_full() -> Result {
        let ring = Arc::new(RingMem::alloc(1)?, GFP_KERNEL)?;
        let sim = SimHv::new(0)?;
        sim.enable(&ring, 0)?;
        let mut c = Consumer::new(&ring, 128, 0)?;
        // 130 children, 128 fit in both rings.
        assert_eq!(sim.inject(1, 100, 130), Ok(128));
        assert_eq!(sim.backlog(), 2);
        assert_eq!(c.drain(&ring, 8, |_, _| true).consumed, 128);
        // Room in the notification ring: still nothing, the parent sleeps on id 0.
        assert_eq!(sim.pump(), 0);
        // Completing 0 wakes it: purge (1 slot), restart: both children are notified, 128
        // takes the free slot, 129 does not enter the completion ring.
        sim.complete(0)?;
        assert_eq!(sim.backlog(), 0);
        assert_eq!(sim.stats().notified, 130);
        assert!(sim.stats().completion_full > 0);
        assert_eq!(c.drain(&ring, 8, |_, _| true).consumed, 2);
        assert_eq!(sim.complete(129), Err(EINVAL));
        assert_eq!(sim.waiting(), 128);
        // Completing 1 frees a slot at the parent's next purge: 129 enters, in order.
        sim.complete(1)?;
        assert_eq!(sim.complete(129), Ok(()));
        for id in 2..129 {
            sim.complete(id)?;
        }
        assert_eq!(sim.waiting(), 0);
        assert_eq!(sim.parents_waiting(), 0);
        let s = sim.stats();
        assert_eq!((s.abandoned_unnotified, s.abandoned_unqueued), (0, 0));
        assert_eq!(s.assertion_failures, 0);
        sim.disable()?;
        Ok(())
    }

    /// Issue 12 item 2: a parent that is not preempted runs its wait loop to the end and
    /// returns: the ids it left out of the full completion ring never enter it. And a second
    /// parent cloning while the completion ring is full gets notifications nobody can complete.
    #[test]
    fn unqueued_ids_are_never_accepted() -> Result {
        let ring = Arc::new(RingMem::alloc(1)?, GFP_KERNEL)?;
        let sim = SimHv::new(0)?;
        sim.enable(&ring, 0)?;
        sim.set_faults(SimFaults {
            no_preempt: true,
            ..SimFaults::default()
        });
        let mut c = Consumer::new(&ring, 128, 0)?;
        assert_eq!(sim.inject(1, 100, 128), Ok(128));
        assert_eq!(c.drain(&ring, 8, |_, _| true).consumed, 128);
        // Parent 2: notified, not queued; nothing to wait for: its hypercall returns.
        assert_eq!(sim.inject(2, 200, 1), Ok(1));
        assert_eq!(sim.stats().abandoned_unqueued, 1);
        assert_eq!(sim.parents_waiting(), 1);
        assert_eq!(c.drain(&ring, 8, |_, _| true).consumed, 1);
        for id in 0..128 {
            sim.complete(id)?;
        }
        assert_eq!(sim.waiting(), 0);
        assert_eq!(sim.complete(128), Err(EINVAL));
        sim.disable()?;
        Ok(())
    }

    /// A parent has one clone hypercall at a time: its next batch runs once the previous one
    /// returned, so completions out of order never leave its ids out of the completion ring.
    /// `parallel_batches` models batches that do not wait (each its own wait loop).
    #[test]
    fn parent_batches_wait_for_the_previous_one() -> Result {
        let ring = Arc::new(RingMem::alloc(1)?, GFP_KERNEL)?;
        let sim = SimHv::new(0)?;
        sim.enable(&ring, 0)?;
        let mut c = Consumer::new(&ring, 128, 0)?;
        assert_eq!(sim.inject(1, 100, 2), Ok(2));
        // Parent 1 is in its hypercall: this batch waits; parent 2 is not held up.
        assert_eq!(sim.inject(1, 200, 1), Ok(0));
        assert_eq!(sim.backlog(), 1);
        assert_eq!(sim.inject(2, 300, 1), Ok(1));
        assert_eq!(c.drain(&ring, 8, |_, _| true).consumed, 3);
        sim.complete(0)?;
        assert_eq!(sim.backlog(), 1);
        sim.complete(1)?;
        // Parent 1's first hypercall returned: its next batch ran.
        assert_eq!(sim.backlog(), 0);
        assert_eq!(c.drain(&ring, 8, |_, _| true).consumed, 1);
        sim.complete(3)?;
        sim.complete(2)?;
        assert_eq!(sim.waiting(), 0);
        assert_eq!(sim.parents_waiting(), 0);
        sim.set_faults(SimFaults {
            parallel_batches: true,
            ..SimFaults::default()
        });
        assert_eq!(sim.inject(1, 400, 1), Ok(1));
        assert_eq!(sim.inject(1, 500, 1), Ok(1));
        assert_eq!(sim.parents_waiting(), 2);
        assert_eq!(c.drain(&ring, 8, |_, _| true).consumed, 2);
        sim.complete(5)?;
        sim.complete(4)?;
        assert_eq!(sim.waiting(), 0);
        assert_eq!(sim.parents_waiting(), 0);
        let s = sim.stats();
        assert_eq!((s.abandoned_unnotified, s.abandoned_unqueued), (0, 0));
        assert_eq!((s.invalid_completions, s.assertion_failures), (0, 0));
        sim.disable()?;
        Ok(())
    }

    /// A completion does not free its slot: only the waiting parent's purge does.
    #[test]
    fn purge_only_by_the_waiting_parent() -> Result {
        let ring = Arc::new(RingMem::alloc(1)?, GFP_KERNEL)?;
        let sim = SimHv::new(0)?;
        sim.enable(&ring, 0)?;
        assert_eq!(sim.inject(1, 100, 3), Ok(3));
        // Out of order: the parent sleeps on 0, nothing is purged.
        sim.complete(2)?;
        sim.complete(1)?;
        assert_eq!(sim.waiting(), 3);
        assert_eq!(sim.complete(2), Ok(()));
        assert_eq!(sim.stats().double_completions, 1);
        sim.complete(0)?;
        assert_eq!(sim.waiting(), 0);
        assert_eq!(sim.parents_waiting(), 0);
        sim.disable()?;
        Ok(())
    }
}

#[kunit_tests(xen_clone_device)]
mod device_tests {
    use crate::abi::{
        XenCloneEntry, XEN_CLONE_ENABLE_PAGE_SHARING_POOL, XEN_CLONE_ENTRY_REDELIVERED,
    };
    use crate::device::{Config, Device, EnableError, Enabled};
    use crate::ffi::RingMem;
    use crate::hv::Hypervisor;
    use crate::sim::{SimFaults, SimHv};
    use crate::SimDevice;
    use kernel::{
        prelude::*,
        str::CString,
        sync::Arc,
        time::{delay::fsleep, Delta},
    };

    const SZ: usize = core::mem::size_of::<XenCloneEntry>();

    fn new_device_with(
        sim: &Arc<SimHv>,
        ring_pages: u32,
        cfg_pages: u32,
        enable_flags: u64,
        orphan_timeout_s: u32,
    ) -> Result<Arc<SimDevice>> {
        let ring = Arc::new(RingMem::alloc(ring_pages)?, GFP_KERNEL)?;
        let cfg = Config {
            ring_pages: cfg_pages,
            enable_flags,
            orphan_timeout_s,
            reject_grace_ms: 200,
        };
        Device::new(sim.clone(), ring, cfg)
    }

    fn new_device(orphan_timeout_s: u32) -> Result<(Arc<SimHv>, Arc<SimDevice>)> {
        let sim = SimHv::new(0)?;
        let dev = new_device_with(&sim, 1, 1, 0, orphan_timeout_s)?;
        Ok((sim, dev))
    }

    fn entries_num(dev: &SimDevice) -> Result<u64, EnableError> {
        dev.enable().map(|e| e.entries_num)
    }

    /// The `dmesg` line of a load refusal.
    fn message(e: EnableError) -> Result<CString> {
        CString::try_from_fmt(fmt!("{}", e))
    }

    fn says(e: EnableError, what: &str) -> Result<bool> {
        Ok(message(e)?.to_str().map_err(|_| EINVAL)?.contains(what))
    }

    /// Reads up to `max` entries without blocking into `out`; returns how many.
    fn read_n(dev: &SimDevice, max: usize, out: &mut KVec<XenCloneEntry>) -> Result<usize> {
        let n = dev.read_entries(true, max, |e| {
            out.push(*e, GFP_KERNEL)?;
            Ok(())
        })?;
        Ok(n / SZ)
    }

    /// Consumption into the tracker, id checks, and the unload path: pending entries are
    /// completed exactly once, then the ring is disabled.
    #[test]
    fn drain_complete_and_shutdown() -> Result {
        let (sim, dev) = new_device(0)?;
        assert_eq!(entries_num(&dev), Ok(128));
        assert_eq!(sim.inject(1, 10, 3), Ok(3));
        dev.drain();
        let i = dev.info();
        assert_eq!(i.counters.notifications, 3);
        assert_eq!(i.queued, 3);
        assert_eq!(i.prod_idx, 3);
        assert_eq!(i.cons_idx, 3);
        // Consumed but not read: never handed out.
        assert_eq!(dev.complete(0), Err(ENOENT));
        assert_eq!(dev.complete(77), Err(ENOENT));
        assert_eq!(dev.info().counters.bad_ids, 2);
        let r = dev.shutdown();
        assert_eq!((r.auto_completed, r.stranded, r.disabled), (3, 0, true));
        let s = sim.stats();
        assert_eq!(s.completed, 3);
        assert_eq!(s.double_completions, 0);
        assert_eq!(s.invalid_completions, 0);
        assert_eq!(sim.waiting(), 0);
        assert_eq!(dev.info().counters.auto_completions, 3);
        // Disabled: the simulated hypervisor refuses clones.
        assert_eq!(sim.inject(1, 20, 1), Err(EPERM));
        assert!(!dev.ring().is_leaked());
        Ok(())
    }

    /// More children than the rings hold: the device drains everything the producer can
    /// notify, the rest waits in the parent's hypercall until completions free slots.
    #[test]
    fn backpressure_through_device() -> Result {
        let (sim, dev) = new_device(0)?;
        assert_eq!(entries_num(&dev), Ok(128));
        assert_eq!(sim.inject(2, 0, 300), Ok(128));
        dev.drain();
        let i = dev.info();
        assert_eq!(i.queued, 128);
        assert_eq!(i.counters.ring_full, 1);
        assert_eq!(sim.backlog(), 172);
        dev.shutdown();
        // Shutdown fenced the ring and completed the 128: the parent found no room for the
        // other 172 and returned without notifying them (they stay paused, no parent waits).
        let s = sim.stats();
        assert_eq!(s.completed, 128);
        assert_eq!(s.waiting_at_disable, 0);
        assert_eq!(s.abandoned_unnotified, 172);
        assert_eq!(s.unnotified_at_disable, 0);
        assert_eq!(sim.backlog(), 0);
        Ok(())
    }

    /// No reader: entries are completed by the orphan policy once they waited long enough.
    /// Issue 12 item 6: they are still reported to the next reader, flagged AUTO_COMPLETED,
    /// need no completion (`EALREADY`) and do not keep the module pinned.
    #[test]
    fn orphan_policy_completes() -> Result {
        let (sim, dev) = new_device(1)?;
        assert_eq!(entries_num(&dev), Ok(128));
        assert_eq!(sim.inject(3, 30, 2), Ok(2));
        dev.drain();
        assert!(dev.holds_module_ref());
        dev.orphan_check();
        assert_eq!(dev.info().counters.auto_completions, 0);
        fsleep(Delta::from_millis(1100));
        dev.orphan_check();
        let i = dev.info();
        assert_eq!(i.counters.auto_completions, 2);
        assert_eq!(sim.waiting(), 0);
        assert_eq!(sim.stats().completed, 2);
        // Still there for the next reader, without pinning the module.
        assert_eq!(i.queued, 2);
        assert!(!dev.holds_module_ref());
        // A later clone is delivered normally, after the two.
        assert_eq!(sim.inject(3, 32, 1), Ok(1));
        dev.drain();
        let mut got = KVec::new();
        assert_eq!(read_n(&dev, 8, &mut got)?, 3);
        let auto = crate::abi::XEN_CLONE_ENTRY_AUTO_COMPLETED;
        assert_eq!(got[0].flags, auto);
        assert_eq!((got[0].child_domid, got[1].child_domid), (30, 31));
        assert_eq!(got[1].flags, auto);
        assert_eq!(got[2].flags, 0);
        // Reported once; completing it again is answered cleanly, without the hypervisor.
        assert_eq!(dev.complete(got[0].id), Err(EALREADY));
        assert_eq!(sim.stats().invalid_completions, 0);
        dev.complete(got[2].id)?;
        let i = dev.info();
        assert_eq!((i.queued, i.outstanding), (0, 0));
        assert_eq!(i.counters.auto_completed_reported, 2);
        assert_eq!(i.counters.hypervisor_errors, 0);
        assert!(!dev.holds_module_ref());
        assert_eq!(dev.shutdown().auto_completed, 0);
        Ok(())
    }

    /// Issue 12 item 6: auto-completed entries no reader comes for do not fill the tracker:
    /// the oldest is dropped when a new notification needs its slot.
    #[test]
    fn unreported_auto_completed_make_room() -> Result {
        let (sim, dev) = new_device(1)?;
        assert_eq!(entries_num(&dev), Ok(128));
        // The tracker holds 256: 128 auto-completed entries, then 128 pending ones.
        assert_eq!(sim.inject(5, 0, 64), Ok(64));
        assert_eq!(sim.inject(6, 64, 64), Ok(64));
        dev.drain();
        fsleep(Delta::from_millis(1100));
        dev.orphan_check();
        assert_eq!(dev.info().counters.auto_completions, 128);
        assert_eq!(sim.inject(7, 128, 64), Ok(64));
        dev.drain();
        assert_eq!(sim.inject(8, 192, 64), Ok(64));
        dev.drain();
        assert_eq!(dev.info().queued, 256);
        // 64 more: each takes the slot of the oldest auto-completed entry.
        assert_eq!(sim.inject(9, 256, 64), Ok(64));
        dev.drain();
        let i = dev.info();
        assert_eq!(i.counters.notifications, 320);
        assert_eq!(i.queued, 256);
        let mut got = KVec::new();
        assert_eq!(read_n(&dev, 1, &mut got)?, 1);
        assert_eq!(got[0].child_domid, 64);
        assert_eq!(got[0].flags, crate::abi::XEN_CLONE_ENTRY_AUTO_COMPLETED);
        dev.shutdown();
        Ok(())
    }

    /// Issue 12 item 2: a completion Xen refuses with `EINVAL` because the id is not in its
    /// completion ring yet gets `EAGAIN` and stays outstanding; once the parent purged and
    /// queued it, the retry succeeds.
    #[test]
    fn refused_completion_retried() -> Result {
        let (sim, dev) = new_device(0)?;
        assert_eq!(entries_num(&dev), Ok(128));
        assert_eq!(sim.inject(1, 100, 130), Ok(128));
        dev.drain();
        let mut got = KVec::new();
        assert_eq!(read_n(&dev, 128, &mut got)?, 128);
        dev.complete(0)?;
        // The parent woke, notified 128 and 129; 129 is not in the completion ring.
        dev.drain();
        assert_eq!(read_n(&dev, 8, &mut got)?, 2);
        assert_eq!(dev.complete(129), Err(EAGAIN));
        assert_eq!(dev.info().outstanding, 129);
        dev.complete(1)?;
        dev.complete(129)?;
        for id in 2..129 {
            dev.complete(id)?;
        }
        let i = dev.info();
        assert_eq!(i.outstanding, 0);
        assert_eq!(i.counters.hypervisor_errors, 1);
        assert_eq!(i.counters.rejected_completions, 0);
        assert!(!dev.holds_module_ref());
        assert_eq!(sim.parents_waiting(), 0);
        dev.shutdown();
        Ok(())
    }

    /// Issue 12 item 2: an id Xen will never accept (notified while its completion ring was
    /// full, by a parent whose hypercall then returned) is released after the grace period:
    /// `ECANCELED`, counted, no longer outstanding, the module no longer pinned by it.
    #[test]
    fn refused_completion_released() -> Result {
        let (sim, dev) = new_device(0)?;
        assert_eq!(entries_num(&dev), Ok(128));
        sim.set_faults(SimFaults {
            no_preempt: true,
            ..SimFaults::default()
        });
        assert_eq!(sim.inject(1, 100, 128), Ok(128));
        dev.drain();
        assert_eq!(sim.inject(2, 200, 1), Ok(1));
        dev.drain();
        let mut got = KVec::new();
        assert_eq!(read_n(&dev, 129, &mut got)?, 129);
        for id in 0..128 {
            dev.complete(id)?;
        }
        assert_eq!(got[128].child_domid, 200);
        assert_eq!(dev.complete(128), Err(EAGAIN));
        assert!(dev.holds_module_ref());
        fsleep(Delta::from_millis(250));
        assert_eq!(dev.complete(128), Err(ECANCELED));
        let i = dev.info();
        assert_eq!(i.outstanding, 0);
        assert_eq!(i.counters.rejected_completions, 1);
        assert_eq!(i.counters.hypervisor_errors, 2);
        assert!(!dev.holds_module_ref());
        assert_eq!(dev.complete(128), Err(EALREADY));
        let r = dev.shutdown();
        assert_eq!((r.auto_completed, r.disabled), (0, true));
        Ok(())
    }

    /// Issue 11: `page_sharing_pool=1` after an earlier enable with the pool (Xen never frees
    /// it) is not "another owner": the ring is enabled without the flag, the pool is reused.
    #[test]
    fn enable_with_pool_left_by_earlier_enable() -> Result {
        let sim = SimHv::new(0)?;
        let first = new_device_with(&sim, 1, 1, XEN_CLONE_ENABLE_PAGE_SHARING_POOL, 0)?;
        assert_eq!(
            first.enable(),
            Ok(Enabled {
                entries_num: 128,
                pool_reused: false
            })
        );
        assert!(first.shutdown().disabled);
        assert!(sim.has_pool());
        // The reload.
        let dev = new_device_with(&sim, 1, 1, XEN_CLONE_ENABLE_PAGE_SHARING_POOL, 0)?;
        assert_eq!(
            dev.enable(),
            Ok(Enabled {
                entries_num: 128,
                pool_reused: true
            })
        );
        assert!(sim.is_enabled());
        assert_eq!(sim.inject(1, 10, 1), Ok(1));
        dev.drain();
        assert_eq!(dev.info().queued, 1);
        dev.shutdown();
        Ok(())
    }

    /// Issue 11: a ring enabled by someone else is reported as such, with the remedy, with or
    /// without the pool flag, and that owner's ring is left alone.
    #[test]
    fn enable_ring_taken_by_another_owner() -> Result {
        let sim = SimHv::new(0)?;
        let other = Arc::new(RingMem::alloc(1)?, GFP_KERNEL)?;
        sim.enable(&other, XEN_CLONE_ENABLE_PAGE_SHARING_POOL)?;
        for flags in [0, XEN_CLONE_ENABLE_PAGE_SHARING_POOL] {
            let dev = new_device_with(&sim, 1, 1, flags, 0)?;
            let e = dev.enable();
            assert_eq!(e, Err(EnableError::RingBusy));
            assert_eq!(e.map_err(|e| e.to_error()).err(), Some(EBUSY));
            assert!(sim.is_enabled());
            assert!(!dev.shutdown().disabled);
        }
        assert!(says(EnableError::RingBusy, "another owner")?);
        assert!(says(EnableError::RingBusy, "'xencloned -R'")?);
        assert!(says(EnableError::NoCloneSupport, "no clone support")?);
        assert!(says(
            EnableError::NoMemory { pool: true },
            "page_sharing_pool=0"
        )?);
        assert!(!says(
            EnableError::NoMemory { pool: false },
            "page_sharing_pool"
        )?);
        assert_eq!(EnableError::NoCloneSupport.to_error(), ENODEV);
        sim.disable()?;
        Ok(())
    }

    /// Issue 12 item 1: an enable that fails after `CLONEOP_enable` succeeded disables the ring
    /// before returning (the caller then frees the pages).
    #[test]
    fn failed_enable_disables() -> Result {
        let sim = SimHv::new(0)?;
        sim.set_faults(SimFaults {
            bad_entries_num: Some(100),
            ..SimFaults::default()
        });
        let dev = new_device_with(&sim, 1, 1, 0, 0)?;
        assert_eq!(
            dev.enable(),
            Err(EnableError::BadEntriesNum {
                written: 100,
                pages: 1
            })
        );
        assert!(!sim.is_enabled());
        assert!(!dev.ring().is_leaked());
        assert!(says(
            EnableError::BadEntriesNum {
                written: 100,
                pages: 1
            },
            "invalid entries_num 100 for 1 page(s)"
        )?);
        // A ring larger than the tracker was sized for (4 pages = 512 entries, tracker for 1
        // page = 256) is refused the same way, before anything is consumed.
        let sim = SimHv::new(0)?;
        let dev = new_device_with(&sim, 4, 1, 0, 0)?;
        assert_eq!(
            dev.enable(),
            Err(EnableError::BadEntriesNum {
                written: 512,
                pages: 4
            })
        );
        assert!(!sim.is_enabled());
        assert_eq!(dev.info().entries_num, 0);
        Ok(())
    }

    /// Issue 12 item 1: if that disable fails too, the pages are leaked, never freed.
    #[test]
    fn failed_enable_and_disable_leaks() -> Result {
        let sim = SimHv::new(0)?;
        sim.set_faults(SimFaults {
            bad_entries_num: Some(3),
            disable_error: Some(EIO),
            ..SimFaults::default()
        });
        let dev = new_device_with(&sim, 1, 1, 0, 0)?;
        assert!(dev.enable().is_err());
        assert!(sim.is_enabled());
        assert!(dev.ring().is_leaked());
        Ok(())
    }

    /// Issue 12 item 3: a parent cloning between the last drain and `CLONEOP_disable` must
    /// not be notified (its notification could never be completed, and Xen frees the
    /// completion ring under it): unload fences the ring first.
    #[test]
    fn shutdown_fences_before_disable() -> Result {
        let (sim, dev) = new_device(0)?;
        assert_eq!(entries_num(&dev), Ok(128));
        assert_eq!(sim.inject(1, 10, 2), Ok(2));
        dev.drain();
        let mut got = KVec::new();
        assert_eq!(read_n(&dev, 1, &mut got)?, 1);
        sim.set_faults(SimFaults {
            clone_at_disable: Some((7, 70, 3)),
            ..SimFaults::default()
        });
        let r = dev.shutdown();
        assert_eq!((r.auto_completed, r.stranded, r.disabled), (2, 0, true));
        let s = sim.stats();
        assert_eq!(s.waiting_at_disable, 0);
        assert_eq!(s.notified, s.completed);
        // The racing parent finds the fenced ring full and returns without notifying.
        assert_eq!(s.abandoned_unnotified, 3);
        assert_eq!((s.invalid_completions, s.double_completions), (0, 0));
        assert!(!dev.ring().is_leaked());
        Ok(())
    }

    /// Issue 12 item 3: what still slipped past the fence is found after the disable and
    /// reported, not completed (Xen refuses completions once disabled).
    #[test]
    fn shutdown_reports_stranded() -> Result {
        let (sim, dev) = new_device(0)?;
        assert_eq!(entries_num(&dev), Ok(128));
        sim.set_faults(SimFaults {
            racy_entries_at_disable: 2,
            ..SimFaults::default()
        });
        let r = dev.shutdown();
        assert_eq!((r.auto_completed, r.stranded, r.disabled), (0, 2, true));
        assert_eq!(dev.info().counters.hypervisor_errors, 0);
        assert_eq!(sim.stats().waiting_at_disable, 2);
        // Idempotent.
        assert_eq!(dev.shutdown().stranded, 0);
        Ok(())
    }

    /// A failed `CLONEOP_disable` at unload leaks the pages.
    #[test]
    fn shutdown_disable_fails_leaks() -> Result {
        let (sim, dev) = new_device(0)?;
        assert_eq!(entries_num(&dev), Ok(128));
        sim.set_faults(SimFaults {
            disable_error: Some(EIO),
            ..SimFaults::default()
        });
        assert!(!dev.shutdown().disabled);
        assert!(dev.ring().is_leaked());
        sim.set_faults(SimFaults::default());
        sim.disable()?;
        Ok(())
    }

    /// Issue 12 item 5: entries are copied to the reader without the device lock held, in
    /// order, over several batches.
    #[test]
    fn read_copies_outside_the_lock() -> Result {
        let (sim, dev) = new_device(0)?;
        assert_eq!(entries_num(&dev), Ok(128));
        assert_eq!(sim.inject(1, 100, 40), Ok(40));
        dev.drain();
        let mut unlocked = true;
        let mut next = 0u32;
        let mut in_order = true;
        let n = dev.read_entries(true, 64, |e| {
            unlocked &= dev.lock_is_free();
            in_order &= e.id == next;
            next += 1;
            Ok(())
        })?;
        assert_eq!(n, 40 * SZ);
        assert!(unlocked);
        assert!(in_order);
        let i = dev.info();
        assert_eq!((i.queued, i.outstanding), (0, 40));
        assert_eq!(dev.read_entries(true, 1, |_| Ok(())), Err(EAGAIN));
        dev.shutdown();
        Ok(())
    }

    /// Issue 12 item 5: entries a reader's buffer could not take are put back, in order,
    /// delivered next; nothing is lost or marked handed out.
    #[test]
    fn read_fault_puts_back() -> Result {
        let (sim, dev) = new_device(0)?;
        assert_eq!(entries_num(&dev), Ok(128));
        assert_eq!(sim.inject(1, 100, 5), Ok(5));
        dev.drain();
        // The third copy faults: two entries read.
        let mut k = 0;
        let n = dev.read_entries(true, 5, |_| {
            k += 1;
            if k == 3 {
                Err(EFAULT)
            } else {
                Ok(())
            }
        })?;
        assert_eq!(n, 2 * SZ);
        let i = dev.info();
        assert_eq!((i.queued, i.outstanding), (3, 2));
        assert_eq!(dev.complete(2), Err(ENOENT));
        // The first copy faults: the error, nothing handed out.
        assert_eq!(dev.read_entries(true, 5, |_| Err(EFAULT)), Err(EFAULT));
        assert_eq!(dev.info().outstanding, 2);
        let mut got = KVec::new();
        assert_eq!(read_n(&dev, 8, &mut got)?, 3);
        assert_eq!(got.iter().map(|e| e.id).sum::<u32>(), 2 + 3 + 4);
        assert!(got[0].id == 2 && got[2].id == 4);
        assert!(got.iter().all(|e| e.flags == 0));
        assert_eq!(dev.info().counters.redeliveries, 0);
        // Redelivered entries keep their flag when put back, and count once, when read.
        dev.release();
        assert_eq!(dev.read_entries(true, 5, |_| Err(EFAULT)), Err(EFAULT));
        assert_eq!(dev.info().counters.redeliveries, 0);
        let mut got = KVec::new();
        assert_eq!(read_n(&dev, 8, &mut got)?, 5);
        assert!(got.iter().all(|e| e.flags == XEN_CLONE_ENTRY_REDELIVERED));
        assert_eq!(dev.info().counters.redeliveries, 5);
        for id in 0..5 {
            dev.complete(id)?;
        }
        assert_eq!(sim.stats().completed, 5);
        assert_eq!(dev.read_entries(true, 1, |_| Ok(())), Err(EAGAIN));
        assert_eq!(dev.read_entries(true, 0, |_| Ok(())), Err(EINVAL));
        dev.shutdown();
        Ok(())
    }
}
