//! Userspace ABI of `/dev/xen/clone`.
//!
//! The definitions live in `rust/xen_clone_dev/abi.rs`, the one file shared
//! with the kernel module; this crate only includes it and tests the layout
//! from the userspace side.
#![no_std]

include!("../../../rust/xen_clone_dev/abi.rs");

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn entry_layout() {
        assert_eq!(size_of::<XenCloneEntry>(), 32);
        assert_eq!(offset_of!(XenCloneEntry, version), 0);
        assert_eq!(offset_of!(XenCloneEntry, flags), 4);
        assert_eq!(offset_of!(XenCloneEntry, id), 8);
        assert_eq!(offset_of!(XenCloneEntry, parent_domid), 12);
        assert_eq!(offset_of!(XenCloneEntry, child_domid), 14);
        assert_eq!(offset_of!(XenCloneEntry, parent_start_info_mfn), 16);
        assert_eq!(offset_of!(XenCloneEntry, child_start_info_mfn), 24);
    }

    #[test]
    fn info_layout() {
        assert_eq!(size_of::<XenCloneInfo>(), 120);
        assert_eq!(offset_of!(XenCloneInfo, entries_num), 8);
        assert_eq!(offset_of!(XenCloneInfo, queued), 40);
        assert_eq!(offset_of!(XenCloneInfo, counters), 56);
        assert_eq!(size_of::<XenCloneCounters>(), 64);
    }

    #[test]
    fn ioctl_numbers_match_linux_ioc_encoding() {
        // _IOW(0xC1, 1, 8 bytes) and _IOR(0xC1, 2, 120 bytes), computed by
        // hand from include/uapi/asm-generic/ioctl.h.
        assert_eq!(
            XEN_CLONE_IOC_COMPLETE,
            (1 << 30) | (8 << 16) | (0xC1 << 8) | 1
        );
        assert_eq!(
            XEN_CLONE_IOC_INFO,
            (2 << 30) | (120 << 16) | (0xC1 << 8) | 2
        );
        assert_eq!(XEN_CLONE_IOC_COMPLETE, 0x4008_c101);
        assert_eq!(XEN_CLONE_IOC_INFO, 0x8078_c102);
    }
}
