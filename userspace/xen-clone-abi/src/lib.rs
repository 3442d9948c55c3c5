//! Userspace ABI of `/dev/xen/clone`.
//!
//! The ABI is defined in C, in the kernel's `include/uapi/xen/clone.h`
//! (linux-patches/0006). This crate is its Rust binding: `src/abi.rs`, checked
//! field by field and constant by constant against the header itself by
//! `tests/c_layout.rs`, which fails if the two differ.
#![no_std]

include!("abi.rs");

/// The size of one [`XenCloneEntry`] record as `read()` returns it.
pub const XEN_CLONE_ENTRY_SIZE: usize = core::mem::size_of::<XenCloneEntry>();

/// The `N` bytes of `b` at `off` (`b` is one whole record).
fn at<const N: usize>(b: &[u8; XEN_CLONE_ENTRY_SIZE], off: usize) -> [u8; N] {
    let mut o = [0u8; N];
    o.copy_from_slice(&b[off..off + N]);
    o
}

/// The one decoder and encoder of the records of `/dev/xen/clone`: native
/// endianness, the field offsets of the `repr(C)` struct.
impl XenCloneEntry {
    /// Decodes one record, whatever its `version` (the caller checks it
    /// against [`XEN_CLONE_ABI_VERSION`]). `None` unless `b` is exactly one
    /// record long.
    pub fn from_bytes(b: &[u8]) -> Option<XenCloneEntry> {
        use core::mem::offset_of;
        let b: &[u8; XEN_CLONE_ENTRY_SIZE] = b.try_into().ok()?;
        Some(XenCloneEntry {
            version: u32::from_ne_bytes(at(b, offset_of!(XenCloneEntry, version))),
            flags: u32::from_ne_bytes(at(b, offset_of!(XenCloneEntry, flags))),
            id: u32::from_ne_bytes(at(b, offset_of!(XenCloneEntry, id))),
            parent_domid: u16::from_ne_bytes(at(b, offset_of!(XenCloneEntry, parent_domid))),
            child_domid: u16::from_ne_bytes(at(b, offset_of!(XenCloneEntry, child_domid))),
            parent_start_info_mfn: u64::from_ne_bytes(at(
                b,
                offset_of!(XenCloneEntry, parent_start_info_mfn),
            )),
            child_start_info_mfn: u64::from_ne_bytes(at(
                b,
                offset_of!(XenCloneEntry, child_start_info_mfn),
            )),
        })
    }

    /// The record as the device returns it (simulations, tests).
    pub fn to_bytes(&self) -> [u8; XEN_CLONE_ENTRY_SIZE] {
        use core::mem::offset_of;
        let mut b = [0u8; XEN_CLONE_ENTRY_SIZE];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(
            offset_of!(XenCloneEntry, version),
            &self.version.to_ne_bytes(),
        );
        put(offset_of!(XenCloneEntry, flags), &self.flags.to_ne_bytes());
        put(offset_of!(XenCloneEntry, id), &self.id.to_ne_bytes());
        put(
            offset_of!(XenCloneEntry, parent_domid),
            &self.parent_domid.to_ne_bytes(),
        );
        put(
            offset_of!(XenCloneEntry, child_domid),
            &self.child_domid.to_ne_bytes(),
        );
        put(
            offset_of!(XenCloneEntry, parent_start_info_mfn),
            &self.parent_start_info_mfn.to_ne_bytes(),
        );
        put(
            offset_of!(XenCloneEntry, child_start_info_mfn),
            &self.child_start_info_mfn.to_ne_bytes(),
        );
        b
    }

    /// The `id` of a record of any ABI version (every version keeps it at
    /// the same offset, so that an entry this side cannot decode can still
    /// be completed). `None` unless `b` is one record long.
    pub fn id_of(b: &[u8]) -> Option<u32> {
        let b: &[u8; XEN_CLONE_ENTRY_SIZE] = b.try_into().ok()?;
        Some(u32::from_ne_bytes(at(
            b,
            core::mem::offset_of!(XenCloneEntry, id),
        )))
    }
}

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
    fn entry_bytes_round_trip() {
        let e = XenCloneEntry {
            version: XEN_CLONE_ABI_VERSION,
            flags: XEN_CLONE_ENTRY_REDELIVERED,
            id: 0x0102_0304,
            parent_domid: 3,
            child_domid: 0xfff0,
            parent_start_info_mfn: 0x1122_3344_5566_7788,
            child_start_info_mfn: u64::MAX - 1,
        };
        let b = e.to_bytes();
        assert_eq!(b.len(), XEN_CLONE_ENTRY_SIZE);
        // The same bytes as the repr(C) struct in memory.
        // SAFETY: XenCloneEntry is repr(C), 32 bytes, no padding (asserted
        // by entry_layout).
        let raw: [u8; 32] = unsafe { core::mem::transmute(e) };
        assert_eq!(b, raw);
        assert_eq!(XenCloneEntry::from_bytes(&b), Some(e));
        assert_eq!(XenCloneEntry::id_of(&b), Some(0x0102_0304));
        assert_eq!(XenCloneEntry::from_bytes(&b[..31]), None);
        assert_eq!(XenCloneEntry::id_of(&[0u8; 33]), None);
    }

    #[test]
    fn info_layout() {
        assert_eq!(size_of::<XenCloneInfo>(), 136);
        assert_eq!(offset_of!(XenCloneInfo, entries_num), 8);
        assert_eq!(offset_of!(XenCloneInfo, queued), 40);
        assert_eq!(offset_of!(XenCloneInfo, counters), 56);
        assert_eq!(size_of::<XenCloneCounters>(), 80);
    }

    #[test]
    fn ioctl_numbers_match_linux_ioc_encoding() {
        // _IOW(0xC1, 1, 8 bytes) and _IOR(0xC1, 2, 136 bytes), computed by
        // hand from include/uapi/asm-generic/ioctl.h.
        assert_eq!(
            XEN_CLONE_IOC_COMPLETE,
            (1 << 30) | (8 << 16) | (0xC1 << 8) | 1
        );
        assert_eq!(
            XEN_CLONE_IOC_INFO,
            (2 << 30) | (136 << 16) | (0xC1 << 8) | 2
        );
        assert_eq!(XEN_CLONE_IOC_COMPLETE, 0x4008_c101);
        assert_eq!(XEN_CLONE_IOC_INFO, 0x8088_c102);
    }
}
