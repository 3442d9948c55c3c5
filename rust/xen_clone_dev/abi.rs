// SPDX-License-Identifier: GPL-2.0

//! The userspace ABI of `/dev/xen/clone`.
//!
//! Defined once, in C: `include/uapi/xen/clone.h` (linux-patches/0006), reached here through the
//! kernel's bindings (linux-patches/0012) and by userspace through `userspace/xen-clone-abi`,
//! whose tests compare its layout with the same header.

use core::mem::{align_of, offset_of, size_of};
use kernel::{
    bindings,
    transmute::{AsBytes, FromBytes},
};

/// `struct xen_clone_entry`: one record of `read()`.
pub(crate) type XenCloneEntry = bindings::xen_clone_entry;
/// `struct xen_clone_complete`: the argument of [`XEN_CLONE_IOC_COMPLETE`].
pub(crate) type XenCloneComplete = bindings::xen_clone_complete;
/// `struct xen_clone_counters`.
pub(crate) type XenCloneCounters = bindings::xen_clone_counters;
/// `struct xen_clone_info`: the result of [`XEN_CLONE_IOC_INFO`].
pub(crate) type XenCloneInfo = bindings::xen_clone_info;

/// `XEN_CLONE_ABI_VERSION`.
pub(crate) const XEN_CLONE_ABI_VERSION: u32 = bindings::XEN_CLONE_ABI_VERSION;
/// `XEN_CLONE_ENTRY_REDELIVERED`.
pub(crate) const XEN_CLONE_ENTRY_REDELIVERED: u32 = bindings::XEN_CLONE_ENTRY_REDELIVERED;
/// `XEN_CLONE_ENTRY_AUTO_COMPLETED`.
pub(crate) const XEN_CLONE_ENTRY_AUTO_COMPLETED: u32 = bindings::XEN_CLONE_ENTRY_AUTO_COMPLETED;
/// `XEN_CLONE_INFO_SIMULATED`.
pub(crate) const XEN_CLONE_INFO_SIMULATED: u32 = bindings::XEN_CLONE_INFO_SIMULATED;
/// `XEN_CLONE_ENABLE_PAGE_SHARING_POOL`.
pub(crate) const XEN_CLONE_ENABLE_PAGE_SHARING_POOL: u64 =
    bindings::XEN_CLONE_ENABLE_PAGE_SHARING_POOL as u64;
/// `XEN_CLONE_IOC_COMPLETE`.
pub(crate) const XEN_CLONE_IOC_COMPLETE: u32 = bindings::XEN_CLONE_IOC_COMPLETE;
/// `XEN_CLONE_IOC_INFO`.
pub(crate) const XEN_CLONE_IOC_INFO: u32 = bindings::XEN_CLONE_IOC_INFO;

// The flag the module passes to `CLONEOP_enable` is the one of the ABI.
const _: () = assert!(
    XEN_CLONE_ENABLE_PAGE_SHARING_POOL == kernel::xen::clone::FLAG_USE_PAGE_SHARING_INFO_POOL
);

/// A UAPI structure as bytes for `copy_to_user()`/`copy_from_user()`.
#[repr(transparent)]
pub(crate) struct Uapi<T>(pub(crate) T);

// SAFETY: `struct xen_clone_entry` has only integer fields and no padding: its size is the sum of
// its fields' sizes (checked below).
unsafe impl AsBytes for Uapi<XenCloneEntry> {}
// SAFETY: `struct xen_clone_info` and the embedded `struct xen_clone_counters` have only integer
// fields and no padding (checked below).
unsafe impl AsBytes for Uapi<XenCloneInfo> {}
// SAFETY: `struct xen_clone_complete` has two `__u32` fields; every bit pattern is valid.
unsafe impl FromBytes for Uapi<XenCloneComplete> {}

// No padding anywhere (the impls above rely on it), and the layout userspace is told about.
const _: () = {
    assert!(size_of::<XenCloneEntry>() == 32 && align_of::<XenCloneEntry>() == 8);
    assert!(offset_of!(XenCloneEntry, id) == 8);
    assert!(offset_of!(XenCloneEntry, child_domid) == 14);
    assert!(offset_of!(XenCloneEntry, parent_start_info_mfn) == 16);
    assert!(offset_of!(XenCloneEntry, child_start_info_mfn) == 24);
    assert!(size_of::<XenCloneComplete>() == 8);
    assert!(size_of::<XenCloneCounters>() == 10 * 8);
    assert!(size_of::<XenCloneInfo>() == 2 * 4 + 4 * 8 + 4 * 4 + 10 * 8);
    assert!(offset_of!(XenCloneInfo, counters) == 56);
};
