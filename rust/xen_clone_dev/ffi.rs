// SPDX-License-Identifier: GPL-2.0

//! The memory of the ring shared with the hypervisor, the module reference and `capable()`.
//!
//! The Xen pieces come from `kernel::xen` (`nephele.rs`), the userspace ABI from
//! `include/uapi/xen/clone.h` through the kernel's bindings (`abi.rs`), the file operations from
//! `kernel::miscdevice` (`file.rs`). This module wraps what is left, with the driver's
//! `unsafe` code but for `CLONEOP_enable` (`nephele.rs`) and the work items' and registration's
//! lookups (`device.rs`, `file.rs`).

use core::ptr::NonNull;
use kernel::{
    bindings,
    ffi::{c_int, c_void},
    prelude::*,
    sync::atomic::{Atomic, Relaxed},
    xen::{self, clone},
    ModuleMetadata,
};

/// Size of a page as the hypervisor sees it.
pub(crate) const PAGE_SIZE: usize = 4096;

/// `POLLIN | POLLRDNORM`.
pub(crate) const POLL_READABLE: u32 = bindings::POLLIN | bindings::POLLRDNORM;

/// Whether the current task has `CAP_SYS_ADMIN`.
pub(crate) fn capable_sys_admin() -> bool {
    // CAST: `CAP_SYS_ADMIN` is a small constant.
    // SAFETY: `capable()` has no preconditions; this runs in process context (fops).
    unsafe { bindings::capable(bindings::CAP_SYS_ADMIN as c_int) }
}

/// A reference on this module, so that `rmmod` fails with `EBUSY` while it is held.
///
/// # Invariants
///
/// Each instance owns exactly one reference taken with `__module_get(THIS_MODULE)`.
pub(crate) struct ModuleRef(());

impl ModuleRef {
    /// Takes a reference on this module.
    pub(crate) fn get() -> Self {
        let module = <crate::LocalModule as ModuleMetadata>::THIS_MODULE.as_ptr();
        // SAFETY: The module is live (we are running its code), so `__module_get` is allowed.
        unsafe { bindings::__module_get(module) };
        // INVARIANT: We just took the reference.
        Self(())
    }
}

impl Drop for ModuleRef {
    fn drop(&mut self) {
        let module = <crate::LocalModule as ModuleMetadata>::THIS_MODULE.as_ptr();
        // SAFETY: By the type invariant we own one reference.
        unsafe { bindings::module_put(module) };
    }
}

/// Offset of `prod_idx`/`cons_idx`/entries in the shared ring.
const HDR_ENTRIES_NUM: usize = 0;
const HDR_PROD: usize = 8;
const HDR_CONS: usize = 16;
/// Size of the ring header (`clone_notification_ring_header`).
pub(crate) const RING_HEADER_SIZE: usize = 24;

/// One `clone_notification` as laid out in the shared ring (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RingEntry {
    /// The hypervisor's id: `prod_idx` when written, truncated to 32 bits.
    pub(crate) id: u32,
    /// Parent domid.
    pub(crate) parent: u16,
    /// Child domid.
    pub(crate) child: u16,
    /// MFN of the parent's start_info.
    pub(crate) parent_si_mfn: u64,
    /// MFN of the child's start_info.
    pub(crate) child_si_mfn: u64,
}

/// Size of a ring entry.
pub(crate) const RING_ENTRY_SIZE: usize = core::mem::size_of::<RingEntry>();
const _: () = assert!(RING_ENTRY_SIZE == clone::RING_ENTRY_SIZE);
const _: () = assert!(RING_HEADER_SIZE == clone::RING_HEADER_SIZE);

/// The pages of the clone-notification ring shared with the hypervisor.
///
/// Layout (Nephele `clone_notification_ring_header`, then the entries):
/// `entries_num` @0, `prod_idx` @8, `cons_idx` @16 (each `u64`), entries of 24 bytes from
/// offset 24. Ownership of the indices: **the hypervisor alone writes `entries_num` (at enable)
/// and `prod_idx`**; **this driver alone writes `cons_idx`**. Entries in `[cons, prod)` belong to
/// the consumer, the others to the producer. Indices run free; the slot is `idx & (N - 1)`.
///
/// All accesses are volatile (`READ_ONCE`/`WRITE_ONCE`): the memory is written concurrently by
/// the hypervisor, outside the Rust memory model. The `sim_*` methods (test-only module) act as the
/// producer side for the simulated hypervisor and the tests.
///
/// # Invariants
///
/// - `ptr` points to `pages * PAGE_SIZE` bytes (`1 <= pages <= 32`) of page-aligned kernel memory
///   obtained from `alloc_pages_exact()`, zeroed at allocation and owned by this object.
/// - It is freed on drop, unless `leaked` is set (then it is never freed).
pub(crate) struct RingMem {
    ptr: NonNull<u8>,
    pages: u32,
    leaked: Atomic<bool>,
}

// SAFETY: The memory is owned by the object and only accessed through volatile, naturally
// aligned loads and stores (atomic on x86-64), so it can be used and dropped from any thread.
unsafe impl Send for RingMem {}
// SAFETY: See `Send`; all `&self` methods are race-tolerant volatile accesses.
unsafe impl Sync for RingMem {}

impl RingMem {
    /// Allocates `pages` zeroed pages (`1..=32`).
    pub(crate) fn alloc(pages: u32) -> Result<Self> {
        if !(1..=32).contains(&pages) {
            return Err(EINVAL);
        }
        // Zeroed, physically contiguous, in the direct map (4 KiB PTEs on PV), so its address
        // is a plain kernel address the hypervisor can walk.
        // SAFETY: `alloc_pages_exact()` has no preconditions; `pages` is in range. (The `_noprof`
        // variant is the function behind the macro, as `kernel::alloc` uses for `krealloc`.)
        let ptr = unsafe {
            bindings::alloc_pages_exact_noprof(
                pages as usize * PAGE_SIZE,
                bindings::GFP_KERNEL | bindings::__GFP_ZERO,
            )
        };
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(ENOMEM)?;
        // INVARIANT: `ptr` is `pages` zeroed pages we now own.
        Ok(Self {
            ptr,
            pages,
            leaked: Atomic::new(false),
        })
    }

    /// Number of pages.
    pub(crate) fn pages(&self) -> u32 {
        self.pages
    }

    /// The first page, for the hypervisor (`ring_vaddr`).
    #[cfg(not(xen_clone_sim))]
    pub(crate) fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Number of whole entries that fit after the header.
    pub(crate) fn slots(&self) -> u64 {
        ((self.pages as usize * PAGE_SIZE - RING_HEADER_SIZE) / RING_ENTRY_SIZE) as u64
    }

    /// Never free the pages (the hypervisor may still write them).
    pub(crate) fn leak(&self) {
        self.leaked.store(true, Relaxed);
    }

    /// Whether [`RingMem::leak`] was called.
    #[cfg(xen_clone_sim)]
    pub(crate) fn is_leaked(&self) -> bool {
        self.leaked.load(Relaxed)
    }

    fn hdr(&self, off: usize) -> *mut u64 {
        // The header fields are 8-byte aligned in a page-aligned allocation; `off <= 16`.
        self.ptr.as_ptr().wrapping_add(off).cast::<u64>()
    }

    fn read_hdr(&self, off: usize) -> u64 {
        // SAFETY: By the type invariant the header lies within the allocation, aligned.
        unsafe { self.hdr(off).read_volatile() }
    }

    fn write_hdr(&self, off: usize, v: u64) {
        // SAFETY: As for `read_hdr`.
        unsafe { self.hdr(off).write_volatile(v) }
    }

    /// `entries_num` as written by the hypervisor at enable.
    pub(crate) fn entries_num(&self) -> u64 {
        self.read_hdr(HDR_ENTRIES_NUM)
    }

    /// `prod_idx`, without ordering (for reporting).
    pub(crate) fn prod(&self) -> u64 {
        self.read_hdr(HDR_PROD)
    }

    /// `cons_idx` (for reporting, and for the producer side).
    pub(crate) fn cons(&self) -> u64 {
        self.read_hdr(HDR_CONS)
    }

    /// Consumer: `READ_ONCE(prod_idx)` then `virt_rmb()`, so that entries below the returned
    /// index are read after it.
    pub(crate) fn prod_acquire(&self) -> u64 {
        let p = self.read_hdr(HDR_PROD);
        xen::virt_rmb();
        p
    }

    /// Consumer: `virt_mb()` then `WRITE_ONCE(cons_idx, cons)`: every entry below `cons` was
    /// fully copied before the producer may reuse its slot.
    pub(crate) fn publish_cons(&self, cons: u64) {
        xen::virt_mb();
        self.write_hdr(HDR_CONS, cons);
    }

    /// `virt_mb()`: orders this side's earlier stores before its later loads (e.g. a store
    /// of `cons_idx` before the next load of `prod_idx`).
    pub(crate) fn full_barrier(&self) {
        xen::virt_mb();
    }

    fn entry_ptr(&self, slot: u64) -> Option<*mut RingEntry> {
        if slot >= self.slots() {
            return None;
        }
        let off = RING_HEADER_SIZE + slot as usize * RING_ENTRY_SIZE;
        Some(self.ptr.as_ptr().wrapping_add(off).cast::<RingEntry>())
    }

    /// Copies the entry in `slot` (`None` if the slot lies outside the pages).
    pub(crate) fn read_entry(&self, slot: u64) -> Option<RingEntry> {
        let p = self.entry_ptr(slot)?;
        // SAFETY: `entry_ptr` checked that the entry lies within the allocation; entries are
        // 8-byte aligned (24-byte header and entries in a page-aligned buffer).
        Some(unsafe { p.read_volatile() })
    }

    #[cfg(xen_clone_sim)]
    /// Producer (simulated hypervisor): what `CLONEOP_enable` does to the header.
    pub(crate) fn sim_init_header(&self, entries_num: u64, start: u64) {
        self.write_hdr(HDR_ENTRIES_NUM, entries_num);
        self.write_hdr(HDR_PROD, start);
        self.write_hdr(HDR_CONS, start);
    }

    #[cfg(xen_clone_sim)]
    /// Producer: overwrites the header fields as given (tests of corrupted headers).
    pub(crate) fn sim_set_indices(&self, prod: u64, cons: u64) {
        self.write_hdr(HDR_PROD, prod);
        self.write_hdr(HDR_CONS, cons);
    }

    #[cfg(xen_clone_sim)]
    /// Producer: writes `e` into `slot`. Returns `false` if the slot lies outside the pages.
    pub(crate) fn sim_write_entry(&self, slot: u64, e: &RingEntry) -> bool {
        let Some(p) = self.entry_ptr(slot) else {
            return false;
        };
        // SAFETY: As for `read_entry`.
        unsafe { p.write_volatile(*e) };
        true
    }

    #[cfg(xen_clone_sim)]
    /// Producer: `virt_wmb()` then `WRITE_ONCE(prod_idx, prod)`, publishing written entries.
    pub(crate) fn sim_publish_prod(&self, prod: u64) {
        xen::virt_wmb();
        self.write_hdr(HDR_PROD, prod);
    }

    #[cfg(xen_clone_sim)]
    /// Producer: reads `cons_idx` the way the hypervisor does (plain load), plus a full
    /// barrier so that the slot reuse that follows is ordered after it.
    pub(crate) fn sim_cons(&self) -> u64 {
        let c = self.read_hdr(HDR_CONS);
        xen::virt_mb();
        c
    }
}

impl Drop for RingMem {
    fn drop(&mut self) {
        if self.leaked.load(Relaxed) {
            return;
        }
        // SAFETY: By the type invariant we own `pages` pages from `alloc_pages_exact()`, not
        // leaked.
        unsafe {
            bindings::free_pages_exact(
                self.ptr.as_ptr().cast::<c_void>(),
                self.pages as usize * PAGE_SIZE,
            )
        };
    }
}
