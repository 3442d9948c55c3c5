// SPDX-License-Identifier: GPL-2.0 OR MIT

// Userspace ABI of `/dev/xen/clone`, the Rust side of the C definition
// `include/uapi/xen/clone.h` (added to the kernel by
// linux-patches/0006-xen-uapi-add-the-dev-xen-clone-interface.patch), which is
// the one source of the ABI: the module reaches it through bindgen, and the
// tests of this crate (`tests/c_layout.rs`) compile that header and compare
// every size, offset and constant below with it.
//
// Protocol:
// - `read()` returns whole [`XenCloneEntry`] records (a buffer shorter than
//   one entry gets `EINVAL`); it blocks unless `O_NONBLOCK` (then `EAGAIN`).
//   `poll()` reports `POLLIN` while an entry is available.
// - Every entry must be acknowledged with [`XEN_CLONE_IOC_COMPLETE`] carrying
//   its `id`; the hypervisor's clone hypercall returns only when all children
//   it notified are completed. Completion order is free.
// - Entries read but not completed when the file is released are delivered
//   again, first, to the next opener, with [`XEN_CLONE_ENTRY_REDELIVERED`].
// - Entries the module completed itself (orphan policy: no reader for
//   `orphan_timeout` seconds) are still delivered to the next reader, with
//   [`XEN_CLONE_ENTRY_AUTO_COMPLETED`]; they need no completion (the ioctl
//   answers `EALREADY`).
// - A completion the hypervisor refuses (`CLONEOP_clone_completion`:
//   `-EINVAL`, the id is not in Xen's completion ring) gets `EAGAIN` while it
//   may still be accepted (the entry stays outstanding: retry later), and
//   `ECANCELED` once the module gives up on it (the entry is released; its
//   child stays paused; `dmesg` says why).

/// Version of this ABI, carried in every entry and in [`XenCloneInfo`].
pub const XEN_CLONE_ABI_VERSION: u32 = 2;

/// Path of the device node.
pub const XEN_CLONE_DEV_PATH: &str = "/dev/xen/clone";

/// [`XenCloneEntry::flags`]: this entry was handed out before, to a file that
/// was released without completing it.
pub const XEN_CLONE_ENTRY_REDELIVERED: u32 = 1 << 0;

/// [`XenCloneEntry::flags`]: the module completed this entry itself (no reader
/// for `orphan_timeout` seconds): the parent has returned from its clone
/// hypercall; the child is still paused, its devices not set up. It needs no
/// completion ([`XEN_CLONE_IOC_COMPLETE`] answers `EALREADY`).
pub const XEN_CLONE_ENTRY_AUTO_COMPLETED: u32 = 1 << 1;

/// One clone notification: a child domain waiting for its Dom0 devices.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenCloneEntry {
    /// [`XEN_CLONE_ABI_VERSION`].
    pub version: u32,
    /// `XEN_CLONE_ENTRY_*` flags.
    pub flags: u32,
    /// The hypervisor's notification id; the key for completion.
    pub id: u32,
    /// Domain id of the parent.
    pub parent_domid: u16,
    /// Domain id of the child (created paused).
    pub child_domid: u16,
    /// MFN of the parent's start_info page.
    pub parent_start_info_mfn: u64,
    /// MFN of the child's start_info page.
    pub child_start_info_mfn: u64,
}

/// Argument of [`XEN_CLONE_IOC_COMPLETE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenCloneComplete {
    /// [`XenCloneEntry::id`] of the entry being completed.
    pub id: u32,
    /// Reserved, must be zero (`EINVAL` otherwise).
    pub flags: u32,
}

/// Event counters, monotonically increasing since module load.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenCloneCounters {
    /// Entries consumed from the hypervisor ring.
    pub notifications: u64,
    /// Completions forwarded to the hypervisor on behalf of userspace.
    pub completions: u64,
    /// Entries delivered again after their reader released the file.
    pub redeliveries: u64,
    /// Entries completed by the module's no-consumer policy.
    pub auto_completions: u64,
    /// Times the ring was observed full (producer back-pressure).
    pub ring_full: u64,
    /// Completion requests for ids never handed out or already completed.
    pub bad_ids: u64,
    /// Ring header found inconsistent (`prod - cons > entries_num`).
    pub ring_corruptions: u64,
    /// Completions the hypervisor refused (each attempt).
    pub hypervisor_errors: u64,
    /// Entries released because the hypervisor refused their completion for
    /// good (`ECANCELED`): their children stay paused.
    pub rejected_completions: u64,
    /// Auto-completed entries delivered to a reader.
    pub auto_completed_reported: u64,
}

/// Result of [`XEN_CLONE_IOC_INFO`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenCloneInfo {
    /// [`XEN_CLONE_ABI_VERSION`].
    pub version: u32,
    /// Ring size in 4 KiB pages (module parameter `ring_pages`).
    pub ring_pages: u32,
    /// Entries in the ring, as written by the hypervisor (a power of two).
    pub entries_num: u64,
    /// Flags passed to `CLONEOP_enable` (`XEN_CLONE_ENABLE_*`).
    pub enable_flags: u64,
    /// Producer index in the shared ring header.
    pub prod_idx: u64,
    /// Consumer index in the shared ring header.
    pub cons_idx: u64,
    /// Entries consumed from the ring but not yet read by userspace.
    pub queued: u32,
    /// Entries read by userspace and not yet completed.
    pub outstanding: u32,
    /// Seconds without a reader after which pending entries are completed
    /// by the module (module parameter `orphan_timeout`; 0 = never).
    pub orphan_timeout_secs: u32,
    /// `XEN_CLONE_INFO_*` flags.
    pub flags: u32,
    /// Event counters.
    pub counters: XenCloneCounters,
}

/// [`XenCloneInfo::flags`]: the module runs against its test-only simulated
/// hypervisor (module parameter `simulate`), not Xen.
pub const XEN_CLONE_INFO_SIMULATED: u32 = 1 << 0;

/// `CLONEOP_enable` flag: reserve a page-sharing-info pool in the hypervisor.
pub const XEN_CLONE_ENABLE_PAGE_SHARING_POOL: u64 = 0x1;

/// ioctl type byte of `/dev/xen/clone`.
pub const XEN_CLONE_IOC_MAGIC: u32 = 0xC1;

const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

/// Linux `_IOC()` for the asm-generic layout (x86).
pub const fn xen_clone_ioc(dir: u32, nr: u32, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | (XEN_CLONE_IOC_MAGIC << 8) | nr
}

/// `_IOW(0xC1, 1, struct XenCloneComplete)`: complete one entry by id.
///
/// Errors: `ENOENT` the id was never handed out by this device (or is not
/// outstanding); `EALREADY` the id was already completed (also by the module:
/// [`XEN_CLONE_ENTRY_AUTO_COMPLETED`]); `EINVAL` nonzero `flags`; `EPERM`
/// without `CAP_SYS_ADMIN`; `EAGAIN` the hypervisor refused the completion
/// (`-EINVAL`: the id is not in its completion ring yet) and the entry stays
/// outstanding: retry later; `ECANCELED` the hypervisor refused it for good
/// (still `-EINVAL` after the module's grace period, or any other error): the
/// entry is released, its child stays paused.
pub const XEN_CLONE_IOC_COMPLETE: u32 =
    xen_clone_ioc(IOC_WRITE, 1, core::mem::size_of::<XenCloneComplete>());

/// `_IOR(0xC1, 2, struct XenCloneInfo)`: ring geometry and counters.
pub const XEN_CLONE_IOC_INFO: u32 =
    xen_clone_ioc(IOC_READ, 2, core::mem::size_of::<XenCloneInfo>());

// Layout checks, evaluated at compile time on both sides.
const _: () = assert!(core::mem::size_of::<XenCloneEntry>() == 32);
const _: () = assert!(core::mem::align_of::<XenCloneEntry>() == 8);
const _: () = assert!(core::mem::size_of::<XenCloneComplete>() == 8);
const _: () = assert!(core::mem::size_of::<XenCloneCounters>() == 80);
const _: () = assert!(core::mem::size_of::<XenCloneInfo>() == 56 + 80);
