// SPDX-License-Identifier: GPL-2.0

//! The only module of this driver with `unsafe` code.
//!
//! It wraps the C shim (`shim.c`, declared by hand below because out-of-tree
//! Kbuild has no bindgen step) and the shared ring memory in small safe
//! abstractions, and hosts the `file_operations` entry points that the shim's
//! misc device points to. Everything else in the driver is safe Rust.

use crate::abi::{XenCloneComplete, XenCloneEntry, XenCloneInfo};
use crate::device::Device;
use core::ptr::NonNull;
use kernel::{
    bindings,
    ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void},
    fs::File,
    prelude::*,
    seq_file::SeqFile,
    sync::{
        atomic::{Atomic, Relaxed},
        poll::PollTable,
        Arc,
    },
    transmute::{AsBytes, FromBytes},
    types::ForeignOwnable,
    uaccess::{UserPtr, UserSlice},
};

/// `CLONEOP_enable`.
const CLONEOP_ENABLE: c_uint = 0;
/// `CLONEOP_disable`.
const CLONEOP_DISABLE: c_uint = 1;
/// `CLONEOP_clone_completion`.
const CLONEOP_CLONE_COMPLETION: c_uint = 3;

/// Size of a page as the hypervisor sees it.
pub(crate) const PAGE_SIZE: usize = 4096;

/// `POLLIN | POLLRDNORM`.
pub(crate) const POLL_READABLE: u32 = bindings::POLLIN | bindings::POLLRDNORM;

// Implemented in shim.c.
extern "C" {
    fn xcd_xen_env() -> c_int;
    fn xcd_clone_op(cmd: c_uint, arg: *mut c_void) -> c_long;
    fn xcd_virq_bind() -> c_int;
    fn xcd_virq_unbind(irq: c_int);
    fn xcd_ring_alloc(pages: c_uint) -> *mut c_void;
    fn xcd_ring_free(ring: *mut c_void, pages: c_uint);
    fn xcd_virt_rmb();
    fn xcd_virt_wmb();
    fn xcd_virt_mb();
    fn xcd_capable_sys_admin() -> bool;
    fn xcd_module_get();
    fn xcd_module_put();
    fn xcd_start(ctx: *mut c_void) -> c_int;
    fn xcd_stop() -> *mut c_void;
    fn xcd_ctx_get() -> *mut c_void;
    fn xcd_kick_drain();
    fn xcd_schedule_orphan(delay_ms: c_uint);
}

// SAFETY: `XenCloneEntry` is `repr(C)` with only integer fields and no padding (its size, 32,
// is the sum of its fields' sizes, checked at compile time in `abi.rs`).
unsafe impl AsBytes for XenCloneEntry {}
// SAFETY: `XenCloneInfo` and the embedded `XenCloneCounters` are `repr(C)` with only integer
// fields and no padding (size 120 = sum of the fields, checked at compile time in `abi.rs`).
unsafe impl AsBytes for XenCloneInfo {}
// SAFETY: `XenCloneComplete` is `repr(C)` with two `u32` fields; every bit pattern is valid.
unsafe impl FromBytes for XenCloneComplete {}

/// Where this kernel runs, as far as cloning is concerned.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum XenEnv {
    /// PV initial domain: the only place the clone ring works.
    PvDom0,
    /// Not running on Xen.
    NotXen,
    /// On Xen, but not a PV guest.
    NotPv,
    /// PV guest but not the initial domain.
    NotDom0,
}

/// Returns the environment the kernel runs in.
pub(crate) fn xen_env() -> XenEnv {
    // SAFETY: FFI call without preconditions.
    match unsafe { xcd_xen_env() } {
        0 => XenEnv::PvDom0,
        1 => XenEnv::NotXen,
        2 => XenEnv::NotPv,
        _ => XenEnv::NotDom0,
    }
}

fn hv_result(ret: c_long) -> Result {
    if ret == 0 {
        return Ok(());
    }
    match i32::try_from(ret) {
        Ok(e) if e < 0 => Err(Error::from_errno(e)),
        _ => Err(EIO),
    }
}

/// `struct clone_enable_info` (24 bytes).
#[repr(C)]
struct CloneEnableInfo {
    ring_vaddr: u64,
    pages_num: u64,
    flags: u64,
}

/// `struct clone_completion` (4 bytes).
#[repr(C)]
struct CloneCompletion {
    id: u32,
}

const _: () = assert!(core::mem::size_of::<CloneEnableInfo>() == 24);
const _: () = assert!(core::mem::size_of::<CloneCompletion>() == 4);

/// `CLONEOP_enable` for `ring`: the hypervisor maps the ring pages and starts producing.
///
/// The caller must keep `ring` alive (and not free it) until a successful [`clone_op_disable`];
/// [`RingMem::leak`] exists for when that is impossible.
pub(crate) fn clone_op_enable(ring: &RingMem, flags: u64) -> Result {
    let mut info = CloneEnableInfo {
        ring_vaddr: ring.vaddr() as u64,
        pages_num: u64::from(ring.pages()),
        flags,
    };
    // SAFETY: `info` is a valid `clone_enable_info` on the stack for the duration of the call;
    // the hypervisor only reads it. The ring address it carries is owned by `ring`.
    hv_result(unsafe {
        xcd_clone_op(
            CLONEOP_ENABLE,
            core::ptr::from_mut(&mut info).cast::<c_void>(),
        )
    })
}

/// `CLONEOP_disable`.
pub(crate) fn clone_op_disable() -> Result {
    // SAFETY: `CLONEOP_disable` takes no argument (libxc passes NULL as well).
    hv_result(unsafe { xcd_clone_op(CLONEOP_DISABLE, core::ptr::null_mut()) })
}

/// `CLONEOP_clone_completion` for notification `id`.
pub(crate) fn clone_op_complete(id: u32) -> Result {
    let mut arg = CloneCompletion { id };
    // SAFETY: `arg` is a valid `clone_completion` for the duration of the call.
    hv_result(unsafe {
        xcd_clone_op(
            CLONEOP_CLONE_COMPLETION,
            core::ptr::from_mut(&mut arg).cast::<c_void>(),
        )
    })
}

/// Whether the current task has `CAP_SYS_ADMIN`.
pub(crate) fn capable_sys_admin() -> bool {
    // SAFETY: FFI call without preconditions; runs in process context (fops).
    unsafe { xcd_capable_sys_admin() }
}

/// A binding of the global `VIRQ_CLONED` on CPU 0 to an IRQ handler that schedules a drain.
///
/// # Invariants
///
/// `irq` was returned by a successful `bind_virq_to_irqhandler()` and is unbound exactly once,
/// on drop.
pub(crate) struct VirqBinding {
    irq: c_int,
}

impl VirqBinding {
    /// Binds `VIRQ_CLONED`; events schedule [`Device`] drains via the work item of the shim.
    ///
    /// `EEXIST` if it is bound already in this domain (by another process through
    /// `/dev/xen/evtchn`, e.g. Nephele's `xencloned`): that binding is left alone.
    pub(crate) fn bind() -> Result<Self> {
        // SAFETY: FFI call without preconditions; process context.
        let irq = unsafe { xcd_virq_bind() };
        if irq < 0 {
            return Err(Error::from_errno(irq));
        }
        // INVARIANT: `irq` was just bound.
        Ok(Self { irq })
    }
}

impl Drop for VirqBinding {
    fn drop(&mut self) {
        // SAFETY: By the type invariant `irq` is bound, and this is the only unbind.
        unsafe { xcd_virq_unbind(self.irq) };
    }
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
        // SAFETY: The module is live (we are running its code), so `__module_get` is allowed.
        unsafe { xcd_module_get() };
        // INVARIANT: We just took the reference.
        Self(())
    }
}

impl Drop for ModuleRef {
    fn drop(&mut self) {
        // SAFETY: By the type invariant we own one reference.
        unsafe { xcd_module_put() };
    }
}

/// Schedules a drain of the ring in process context (what the VIRQ handler does).
///
/// Does nothing unless a [`Runtime`] is started.
pub(crate) fn kick_drain() {
    // SAFETY: FFI call without preconditions; `mod_delayed_work` is callable from any context and
    // the work item is disabled (so this is a no-op) once the runtime is stopped.
    unsafe { xcd_kick_drain() };
}

/// (Re)arms the orphan check of the running [`Runtime`] to run in `delay_ms` milliseconds.
pub(crate) fn schedule_orphan_check(delay_ms: u32) {
    // SAFETY: As for `kick_drain`.
    unsafe { xcd_schedule_orphan(delay_ms) };
}

/// The registered misc device `/dev/xen/clone` and the shim's work items, serving `device`.
///
/// # Invariants
///
/// Between construction and drop, the shim's context pointer is `Arc::into_foreign()` of the
/// device, owned by this object and given back (and dropped) by `xcd_stop()` in [`Drop`].
pub(crate) struct Runtime(());

impl Runtime {
    /// Publishes `device` to the shim and registers the misc device.
    pub(crate) fn start(device: Arc<Device>) -> Result<Self> {
        let ctx = device.into_foreign();
        // SAFETY: `ctx` is a valid foreign `Arc<Device>`; the shim only stores it.
        let ret = unsafe { xcd_start(ctx) };
        if ret != 0 {
            // SAFETY: `xcd_start` failed and cleared its copy, so we own `ctx` again.
            drop(unsafe { Arc::<Device>::from_foreign(ctx) });
            return Err(Error::from_errno(ret));
        }
        // INVARIANT: The shim holds `ctx` until `xcd_stop`.
        Ok(Self(()))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the runtime is started; `xcd_stop` deregisters the device,
        // waits for and disables the work items, and returns the context.
        let ctx = unsafe { xcd_stop() };
        if !ctx.is_null() {
            // SAFETY: `ctx` came from `Arc::into_foreign` in `start`, and no C code uses it any
            // more after `xcd_stop`.
            drop(unsafe { Arc::<Device>::from_foreign(ctx) });
        }
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
const _: () = assert!(RING_ENTRY_SIZE == 24);

/// The pages of the clone-notification ring shared with the hypervisor.
///
/// Layout (Nephele `clone_notification_ring_header`, then the entries):
/// `entries_num` @0, `prod_idx` @8, `cons_idx` @16 (each `u64`), entries of 24 bytes from
/// offset 24. Ownership of the indices: **the hypervisor alone writes `entries_num` (at enable)
/// and `prod_idx`**; **this driver alone writes `cons_idx`**. Entries in `[cons, prod)` belong to
/// the consumer, the others to the producer. Indices run free; the slot is `idx & (N - 1)`.
///
/// All accesses are volatile (`READ_ONCE`/`WRITE_ONCE`): the memory is written concurrently by
/// the hypervisor, outside the Rust memory model. The `sim_*` methods act as the producer side
/// for the simulated hypervisor and the tests.
///
/// # Invariants
///
/// - `ptr` points to `pages * PAGE_SIZE` bytes (`1 <= pages <= 32`) of page-aligned kernel memory
///   obtained from `xcd_ring_alloc()`, zeroed at allocation and owned by this object.
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
        // SAFETY: FFI call; `pages` is in range.
        let ptr = unsafe { xcd_ring_alloc(pages) };
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

    /// Kernel virtual address of the first page (the hypervisor's `ring_vaddr`).
    pub(crate) fn vaddr(&self) -> usize {
        self.ptr.as_ptr() as usize
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
    #[cfg(CONFIG_KUNIT = "y")]
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
        // SAFETY: FFI call without preconditions.
        unsafe { xcd_virt_rmb() };
        p
    }

    /// Consumer: `virt_mb()` then `WRITE_ONCE(cons_idx, cons)`: every entry below `cons` was
    /// fully copied before the producer may reuse its slot.
    pub(crate) fn publish_cons(&self, cons: u64) {
        // SAFETY: FFI call without preconditions.
        unsafe { xcd_virt_mb() };
        self.write_hdr(HDR_CONS, cons);
    }

    /// `virt_mb()`: orders this side's earlier stores before its later loads (e.g. a store
    /// of `cons_idx` before the next load of `prod_idx`).
    pub(crate) fn full_barrier(&self) {
        // SAFETY: FFI call without preconditions.
        unsafe { xcd_virt_mb() };
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

    /// Producer (simulated hypervisor): what `CLONEOP_enable` does to the header.
    pub(crate) fn sim_init_header(&self, entries_num: u64, start: u64) {
        self.write_hdr(HDR_ENTRIES_NUM, entries_num);
        self.write_hdr(HDR_PROD, start);
        self.write_hdr(HDR_CONS, start);
    }

    /// Producer: overwrites the header fields as given (tests of corrupted headers).
    pub(crate) fn sim_set_indices(&self, prod: u64, cons: u64) {
        self.write_hdr(HDR_PROD, prod);
        self.write_hdr(HDR_CONS, cons);
    }

    /// Producer: writes `e` into `slot`. Returns `false` if the slot lies outside the pages.
    pub(crate) fn sim_write_entry(&self, slot: u64, e: &RingEntry) -> bool {
        let Some(p) = self.entry_ptr(slot) else {
            return false;
        };
        // SAFETY: As for `read_entry`.
        unsafe { p.write_volatile(*e) };
        true
    }

    /// Producer: `virt_wmb()` then `WRITE_ONCE(prod_idx, prod)`, publishing written entries.
    pub(crate) fn sim_publish_prod(&self, prod: u64) {
        // SAFETY: FFI call without preconditions.
        unsafe { xcd_virt_wmb() };
        self.write_hdr(HDR_PROD, prod);
    }

    /// Producer: reads `cons_idx` the way the hypervisor does (plain load), plus a full
    /// barrier so that the slot reuse that follows is ordered after it.
    pub(crate) fn sim_cons(&self) -> u64 {
        let c = self.read_hdr(HDR_CONS);
        // SAFETY: FFI call without preconditions.
        unsafe { xcd_virt_mb() };
        c
    }
}

impl Drop for RingMem {
    fn drop(&mut self) {
        if self.leaked.load(Relaxed) {
            return;
        }
        // SAFETY: By the type invariant we own `pages` pages from `xcd_ring_alloc`, not leaked.
        unsafe { xcd_ring_free(self.ptr.as_ptr().cast::<c_void>(), self.pages) };
    }
}

// ---------------------------------------------------------------------------------------------
// file_operations of /dev/xen/clone (the struct itself is in shim.c).
//
// `private_data` of an open file holds `Arc::into_foreign()` of the device, set in open and
// taken back in release.

/// # Safety
///
/// Called by the VFS through `xcd_fops` for a file being opened on the shim's misc device.
#[no_mangle]
unsafe extern "C" fn xcd_rs_open(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    // SAFETY: FFI call without preconditions.
    let ctx = unsafe { xcd_ctx_get() };
    if ctx.is_null() {
        return ENODEV.to_errno();
    }
    // SAFETY: `ctx` is the foreign `Arc<Device>` of the started `Runtime`; it stays valid during
    // open because `xcd_stop` deregisters the device first, which serialises with `misc_open`.
    let device: Arc<Device> = unsafe { <Arc<Device> as ForeignOwnable>::borrow(ctx) }.into();
    // SAFETY: `file` is valid for the duration of the call, with no `fdget_pos` region active.
    let f = unsafe { File::from_raw_file(file) };
    match Device::open(&device, f) {
        Ok(()) => {
            // SAFETY: Open owns `private_data`; from now on it holds our `Arc<Device>`.
            unsafe { (*file).private_data = device.into_foreign() };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// Called by the VFS for a file opened by `xcd_rs_open`, being released.
#[no_mangle]
unsafe extern "C" fn xcd_rs_release(
    _inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> c_int {
    // SAFETY: `private_data` was set by `xcd_rs_open`; release takes ownership back.
    let device = unsafe { Arc::<Device>::from_foreign((*file).private_data) };
    device.release();
    0
}

/// # Safety
///
/// Called by the VFS for a file opened by `xcd_rs_open`; `buf` is a user pointer.
#[no_mangle]
unsafe extern "C" fn xcd_rs_read(
    file: *mut bindings::file,
    buf: *mut c_char,
    len: usize,
    _pos: *mut bindings::loff_t,
) -> isize {
    // SAFETY: `private_data` holds the `Arc<Device>` set by `xcd_rs_open` until release.
    let device = unsafe { Arc::<Device>::borrow((*file).private_data) };
    // SAFETY: `file` is valid for the duration of the call, with no `fdget_pos` region active.
    let f = unsafe { File::from_raw_file(file) };
    let writer = UserSlice::new(UserPtr::from_ptr(buf.cast::<c_void>()), len).writer();
    match device.read(f, writer) {
        Ok(n) => n as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// # Safety
///
/// Called by the VFS for a file opened by `xcd_rs_open`; `wait` is null or a valid poll table.
#[no_mangle]
unsafe extern "C" fn xcd_rs_poll(
    file: *mut bindings::file,
    wait: *mut bindings::poll_table,
) -> bindings::__poll_t {
    // SAFETY: `private_data` holds the `Arc<Device>` set by `xcd_rs_open` until release.
    let device = unsafe { Arc::<Device>::borrow((*file).private_data) };
    // SAFETY: `file` is valid for the duration of the call, with no `fdget_pos` region active.
    let f = unsafe { File::from_raw_file(file) };
    // SAFETY: The VFS passes a null or valid poll table, valid for the duration of the call.
    let table = unsafe { PollTable::from_raw(wait) };
    device.poll(f, &table)
}

/// # Safety
///
/// Called by the VFS for a file opened by `xcd_rs_open`; `arg` is untrusted.
#[no_mangle]
unsafe extern "C" fn xcd_rs_ioctl(file: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> c_long {
    // SAFETY: `private_data` holds the `Arc<Device>` set by `xcd_rs_open` until release.
    let device = unsafe { Arc::<Device>::borrow((*file).private_data) };
    match device.ioctl(cmd, arg) {
        Ok(v) => v as c_long,
        Err(e) => e.to_errno() as c_long,
    }
}

/// # Safety
///
/// Called by procfs for a file opened by `xcd_rs_open`; `m` is a valid seq_file.
#[no_mangle]
unsafe extern "C" fn xcd_rs_show_fdinfo(m: *mut bindings::seq_file, file: *mut bindings::file) {
    // SAFETY: `private_data` holds the `Arc<Device>` set by `xcd_rs_open` until release.
    let device = unsafe { Arc::<Device>::borrow((*file).private_data) };
    // SAFETY: `m` is valid and exclusively ours for the duration of the call.
    let m = unsafe { SeqFile::from_raw(m) };
    device.show_fdinfo(m);
}

/// # Safety
///
/// Called by the shim's drain work item with the context of the started `Runtime`.
#[no_mangle]
unsafe extern "C" fn xcd_rs_drain(ctx: *mut c_void) {
    // SAFETY: The shim only runs this work between `xcd_start` and `xcd_stop`, and `xcd_stop`
    // waits for it before handing the context back, so the foreign `Arc<Device>` is valid.
    let device = unsafe { Arc::<Device>::borrow(ctx) };
    device.drain();
}

/// # Safety
///
/// Called by the shim's orphan work item with the context of the started `Runtime`.
#[no_mangle]
unsafe extern "C" fn xcd_rs_orphan(ctx: *mut c_void) {
    // SAFETY: As for `xcd_rs_drain`.
    let device = unsafe { Arc::<Device>::borrow(ctx) };
    device.orphan_check();
}
