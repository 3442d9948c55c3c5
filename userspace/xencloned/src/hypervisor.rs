//! Hypervisor operations without libxenctrl, through `/dev/xen/privcmd`:
//! foreign page mapping (`IOCTL_PRIVCMD_MMAPBATCH_V2`) to read start_info
//! and copy the Xenstore/console pages, and `XEN_DOMCTL_unpausedomain`
//! issued as a raw hypercall (`IOCTL_PRIVCMD_HYPERCALL`).
//!
//! The pipeline only sees the [`Hypervisor`] trait; the struct encodings are
//! pure functions tested here (nothing can run without Xen on the host).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

pub const PAGE_SIZE: usize = 4096;

/// The start_info fields the daemon needs (x86_64 offsets, reference §2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StartInfo {
    pub store_mfn: u64,
    pub store_evtchn: u32,
    pub console_mfn: u64,
    pub console_evtchn: u32,
}

pub const SI_STORE_MFN: usize = 56;
pub const SI_STORE_EVTCHN: usize = 64;
pub const SI_CONSOLE_MFN: usize = 72;
pub const SI_CONSOLE_EVTCHN: usize = 80;

/// Decodes start_info from the first bytes of its page.
pub fn parse_start_info(page: &[u8]) -> Option<StartInfo> {
    let u64_at = |o: usize| {
        page.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    };
    let u32_at = |o: usize| {
        page.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
    };
    Some(StartInfo {
        store_mfn: u64_at(SI_STORE_MFN)?,
        store_evtchn: u32_at(SI_STORE_EVTCHN)?,
        console_mfn: u64_at(SI_CONSOLE_MFN)?,
        console_evtchn: u32_at(SI_CONSOLE_EVTCHN)?,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum HvError {
    #[error("open {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("map page mfn {mfn:#x} of domain {domid}: {source}")]
    Map {
        domid: u16,
        mfn: u64,
        #[source]
        source: io::Error,
    },
    #[error(
        "domctl {cmd} for domain {domid} refused with EACCES: interface version {version:#x} does not match the hypervisor (Nephele's Xen uses 0x14, Xen 4.17 0x15; see --domctl-version)"
    )]
    DomctlVersion { cmd: u32, domid: u16, version: u32 },
    #[error("domctl {cmd} for domain {domid}: {source}")]
    Domctl {
        cmd: u32,
        domid: u16,
        #[source]
        source: io::Error,
    },
    #[error("no domctl interface version accepted by the hypervisor (tried {tried:?})")]
    NoVersion { tried: Vec<u32> },
    #[error(
        "{op} (hypercall {HYPERVISOR_CLONE_OP}) through {path}: {source}{}",
        clone_op_hint(source)
    )]
    CloneOp {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
}

/// What an errno of the clone op most likely means.
fn clone_op_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOSYS) => {
            " (the hypervisor has no clone op: not Nephele's Xen, so no clone ring can be enabled)"
        }
        Some(libc::EPERM) | Some(libc::EACCES) => {
            " (privcmd refused the hypercall: run as root in Dom0)"
        }
        Some(libc::ENOTTY) => " (not a privcmd device)",
        _ => "",
    }
}

/// What the pipeline needs from the hypervisor.
pub trait Hypervisor {
    /// Reads a domain's start_info page (PV: the MFN from the clone entry).
    fn start_info(&mut self, domid: u16, mfn: u64) -> Result<StartInfo, HvError>;
    /// Copies pages of `src_dom` to pages of `dst_dom`, `(src_mfn,
    /// dst_mfn)` each. Privcmd maps all the pages of a domain at once (one
    /// mmap, one ioctl, one munmap per domain instead of per page).
    fn copy_pages(
        &mut self,
        src_dom: u16,
        dst_dom: u16,
        pages: &[(u64, u64)],
    ) -> Result<(), HvError>;
    /// `XEN_DOMCTL_unpausedomain`.
    fn unpause(&mut self, domid: u16) -> Result<(), HvError>;
}

/// No hypervisor access (`--no-hypervisor`, test setups such as the clone
/// test-only `xen_clone_sim` device): start_info reads as all-zero MFNs, so page
/// copies, `XS_INTRODUCE` and MFN fix-ups are skipped; unpause is a no-op.
/// Xenstore, console and vif cloning and completion run as usual.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHypervisor;

impl Hypervisor for NoHypervisor {
    fn start_info(&mut self, _domid: u16, _mfn: u64) -> Result<StartInfo, HvError> {
        Ok(StartInfo::default())
    }
    fn copy_pages(&mut self, _: u16, _: u16, _: &[(u64, u64)]) -> Result<(), HvError> {
        Ok(())
    }
    fn unpause(&mut self, domid: u16) -> Result<(), HvError> {
        tracing::info!(child = domid, "--no-hypervisor: not unpausing");
        Ok(())
    }
}

pub const HYPERVISOR_DOMCTL: u64 = 36;
/// `__HYPERVISOR_clone_op` of Nephele's Xen (`xen/include/public/xen.h`;
/// also `HYPERVISOR_clone_op()` of linux-patches/0007): `(unsigned int cmd, void *arg)`.
pub const HYPERVISOR_CLONE_OP: u64 = 43;
/// `CLONEOP_disable` (Nephele's `xen/include/public/clone.h`): no argument
/// (libxc passes NULL). 0 on success, `-EINVAL` if cloning is not enabled.
pub const CLONEOP_DISABLE: u64 = 1;

/// One raw hypercall (privcmd's `IOCTL_PRIVCMD_HYPERCALL`). A seam, so the
/// argument encoding is tested without Xen.
pub trait Hypercall {
    /// Hypercall `op` with `args`: the non-negative return value, or the
    /// negative one as an errno.
    fn hypercall(&mut self, op: u64, args: [u64; 5]) -> io::Result<i64>;
}

/// How `CLONEOP_disable` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisableOutcome {
    /// The ring was enabled; the hypervisor let go of it.
    Disabled,
    /// `-EINVAL`: cloning was not enabled, nothing to disable.
    NotEnabled,
}

/// Issues `CLONEOP_disable` (hypercall 43, cmd 1, arg NULL), as Nephele's
/// `xencloned -R` does through libxc's `xc_cloning_disable`. `path` names
/// the hypercall device in errors.
pub fn clone_op_disable(h: &mut dyn Hypercall, path: &str) -> Result<DisableOutcome, HvError> {
    match h.hypercall(HYPERVISOR_CLONE_OP, [CLONEOP_DISABLE, 0, 0, 0, 0]) {
        Ok(_) => Ok(DisableOutcome::Disabled),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(DisableOutcome::NotEnabled),
        Err(source) => Err(HvError::CloneOp {
            op: "CLONEOP_disable",
            path: path.to_string(),
            source,
        }),
    }
}
pub const XEN_DOMCTL_GETDOMAININFO: u32 = 5;
pub const XEN_DOMCTL_UNPAUSEDOMAIN: u32 = 4;
/// Interface versions: Nephele's tree (4.16-unstable) and Xen 4.17.
pub const DOMCTL_VERSIONS: [u32; 2] = [0x15, 0x14];
/// `sizeof(struct xen_domctl)`: cmd, interface_version, domain, pad[3], union (128).
pub const DOMCTL_SIZE: usize = 16 + 128;

/// Encodes a `struct xen_domctl` with an empty union.
pub fn encode_domctl(cmd: u32, version: u32, domid: u16) -> [u8; DOMCTL_SIZE] {
    let mut b = [0u8; DOMCTL_SIZE];
    b[0..4].copy_from_slice(&cmd.to_le_bytes());
    b[4..8].copy_from_slice(&version.to_le_bytes());
    b[8..10].copy_from_slice(&domid.to_le_bytes());
    b
}

/// `struct privcmd_hypercall { __u64 op; __u64 arg[5]; }`.
#[repr(C)]
struct PrivcmdHypercall {
    op: u64,
    arg: [u64; 5],
}

/// `struct privcmd_mmapbatch_v2 { unsigned int num; domid_t dom; __u64 addr;
/// const xen_pfn_t *arr; int *err; }`.
#[repr(C)]
struct PrivcmdMmapbatchV2 {
    num: u32,
    dom: u16,
    addr: u64,
    arr: *const u64,
    err: *mut i32,
}

const fn ioc_none(ty: u8, nr: u8, size: usize) -> libc::c_ulong {
    ((size as libc::c_ulong) << 16) | ((ty as libc::c_ulong) << 8) | nr as libc::c_ulong
}

/// `_IOC(_IOC_NONE, 'P', 0, sizeof(struct privcmd_hypercall))`.
pub const IOCTL_PRIVCMD_HYPERCALL: libc::c_ulong = ioc_none(b'P', 0, 48);
/// `_IOC(_IOC_NONE, 'P', 4, sizeof(struct privcmd_mmapbatch_v2))`.
pub const IOCTL_PRIVCMD_MMAPBATCH_V2: libc::c_ulong = ioc_none(b'P', 4, 32);

const _: () = assert!(std::mem::size_of::<PrivcmdHypercall>() == 48);
const _: () = assert!(std::mem::size_of::<PrivcmdMmapbatchV2>() == 32);

/// `/dev/xen/privcmd`.
pub struct Privcmd {
    file: File,
    version: Option<u32>,
}

/// Foreign pages mapped into our address space; unmapped on drop.
struct Mapping {
    addr: *mut libc::c_void,
    len: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `addr` came from a successful mmap of `len` bytes.
        unsafe { libc::munmap(self.addr, self.len) };
    }
}

impl Privcmd {
    /// Opens privcmd. `version`: a fixed domctl interface version, or
    /// `None` to probe it (harmless `getdomaininfo` of Dom0) on first use.
    pub fn open(path: &Path, version: Option<u32>) -> Result<Privcmd, HvError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| HvError::Open {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Privcmd { file, version })
    }

    fn map(&self, domid: u16, mfn: u64, writable: bool) -> Result<Mapping, HvError> {
        self.map_n(domid, &[mfn], writable)
    }

    /// Maps `mfns` of `domid`, in order, in one VMA (one mmap and one
    /// `MMAPBATCH_V2`).
    fn map_n(&self, domid: u16, mfns: &[u64], writable: bool) -> Result<Mapping, HvError> {
        let mfn = mfns.first().copied().unwrap_or_default();
        let err = |mfn, source| HvError::Map { domid, mfn, source };
        let len = PAGE_SIZE * mfns.len().max(1);
        let prot = libc::PROT_READ | if writable { libc::PROT_WRITE } else { 0 };
        // SAFETY: mapping privcmd reserves a VMA for the foreign page; the
        // result is checked.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                self.file.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(err(mfn, io::Error::last_os_error()));
        }
        let m = Mapping { addr, len };
        let arr = mfns.to_vec();
        let mut errs = vec![0i32; mfns.len()];
        let mut batch = PrivcmdMmapbatchV2 {
            num: mfns.len() as u32,
            dom: domid,
            addr: addr as u64,
            arr: arr.as_ptr(),
            err: errs.as_mut_ptr(),
        };
        // SAFETY: the ioctl reads `batch` and the arrays it points to, all
        // alive for the call, and fills the VMA created above.
        let r = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                IOCTL_PRIVCMD_MMAPBATCH_V2,
                &mut batch,
            )
        };
        if r < 0 {
            return Err(err(mfn, io::Error::last_os_error()));
        }
        if let Some((i, e)) = errs.iter().enumerate().find(|(_, e)| **e != 0) {
            return Err(err(mfns[i], io::Error::from_raw_os_error(-e)));
        }
        Ok(m)
    }

    fn domctl_raw(&self, cmd: u32, version: u32, domid: u16) -> io::Result<()> {
        // The buffer is a whole locked page: Xen may write back the union.
        let mut page = vec![0u8; PAGE_SIZE];
        page[..DOMCTL_SIZE].copy_from_slice(&encode_domctl(cmd, version, domid));
        // SAFETY: locking our own live buffer.
        unsafe { libc::mlock(page.as_ptr().cast(), PAGE_SIZE) };
        let mut call = PrivcmdHypercall {
            op: HYPERVISOR_DOMCTL,
            arg: [page.as_mut_ptr() as u64, 0, 0, 0, 0],
        };
        // SAFETY: privcmd passes `call` to Xen, which accesses `page`,
        // alive and locked for the duration of the call.
        let r = unsafe { libc::ioctl(self.file.as_raw_fd(), IOCTL_PRIVCMD_HYPERCALL, &mut call) };
        let res = if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        };
        // SAFETY: unlocking the same buffer.
        unsafe { libc::munlock(page.as_ptr().cast(), PAGE_SIZE) };
        res
    }

    /// The domctl interface version, probing it if not configured.
    pub fn domctl_version(&mut self) -> Result<u32, HvError> {
        if let Some(v) = self.version {
            return Ok(v);
        }
        for v in DOMCTL_VERSIONS {
            match self.domctl_raw(XEN_DOMCTL_GETDOMAININFO, v, 0) {
                Ok(()) => {
                    tracing::info!("domctl interface version {v:#x}");
                    self.version = Some(v);
                    return Ok(v);
                }
                Err(e) if e.raw_os_error() == Some(libc::EACCES) => continue,
                Err(source) => {
                    return Err(HvError::Domctl {
                        cmd: XEN_DOMCTL_GETDOMAININFO,
                        domid: 0,
                        source,
                    });
                }
            }
        }
        Err(HvError::NoVersion {
            tried: DOMCTL_VERSIONS.to_vec(),
        })
    }
}

impl Hypercall for Privcmd {
    fn hypercall(&mut self, op: u64, args: [u64; 5]) -> io::Result<i64> {
        let mut call = PrivcmdHypercall { op, arg: args };
        // SAFETY: privcmd reads `call` and issues the hypercall; the callers
        // of this seam pass no pointers (CLONEOP_disable takes NULL).
        let r = unsafe { libc::ioctl(self.file.as_raw_fd(), IOCTL_PRIVCMD_HYPERCALL, &mut call) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(i64::from(r))
        }
    }
}

impl Hypervisor for Privcmd {
    fn start_info(&mut self, domid: u16, mfn: u64) -> Result<StartInfo, HvError> {
        let m = self.map(domid, mfn, false)?;
        // SAFETY: `m` maps PAGE_SIZE readable bytes for its lifetime.
        let page = unsafe { std::slice::from_raw_parts(m.addr as *const u8, PAGE_SIZE) };
        let si = parse_start_info(page);
        si.ok_or(HvError::Map {
            domid,
            mfn,
            source: io::Error::new(io::ErrorKind::InvalidData, "short start_info"),
        })
    }

    fn copy_pages(
        &mut self,
        src_dom: u16,
        dst_dom: u16,
        pages: &[(u64, u64)],
    ) -> Result<(), HvError> {
        if pages.is_empty() {
            return Ok(());
        }
        let (s, d): (Vec<u64>, Vec<u64>) = pages.iter().copied().unzip();
        let src = self.map_n(src_dom, &s, false)?;
        let dst = self.map_n(dst_dom, &d, true)?;
        // SAFETY: two distinct live mappings of `pages.len()` pages each.
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.addr as *const u8,
                dst.addr as *mut u8,
                PAGE_SIZE * pages.len(),
            )
        };
        Ok(())
    }

    fn unpause(&mut self, domid: u16) -> Result<(), HvError> {
        let version = self.domctl_version()?;
        match self.domctl_raw(XEN_DOMCTL_UNPAUSEDOMAIN, version, domid) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => Err(HvError::DomctlVersion {
                cmd: XEN_DOMCTL_UNPAUSEDOMAIN,
                domid,
                version,
            }),
            Err(source) => Err(HvError::Domctl {
                cmd: XEN_DOMCTL_UNPAUSEDOMAIN,
                domid,
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_info_offsets() {
        let mut page = vec![0u8; PAGE_SIZE];
        page[56..64].copy_from_slice(&0x1234_5678u64.to_le_bytes());
        page[64..68].copy_from_slice(&3u32.to_le_bytes());
        page[72..80].copy_from_slice(&0xabcdu64.to_le_bytes());
        page[80..84].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(
            parse_start_info(&page),
            Some(StartInfo {
                store_mfn: 0x1234_5678,
                store_evtchn: 3,
                console_mfn: 0xabcd,
                console_evtchn: 2
            })
        );
        assert_eq!(parse_start_info(&page[..80]), None);
    }

    #[test]
    fn domctl_encoding() {
        let b = encode_domctl(XEN_DOMCTL_UNPAUSEDOMAIN, 0x15, 0x1234);
        assert_eq!(b.len(), 144);
        assert_eq!(&b[0..4], &[4, 0, 0, 0]);
        assert_eq!(&b[4..8], &[0x15, 0, 0, 0]);
        assert_eq!(&b[8..10], &[0x34, 0x12]);
        assert!(b[10..].iter().all(|x| *x == 0));
    }

    #[test]
    fn privcmd_ioctl_numbers() {
        // From linux/include/uapi/xen/privcmd.h, _IOC_NONE = 0.
        assert_eq!(IOCTL_PRIVCMD_HYPERCALL, 0x0030_5000);
        assert_eq!(IOCTL_PRIVCMD_MMAPBATCH_V2, 0x0020_5004);
        assert_eq!(std::mem::offset_of!(PrivcmdMmapbatchV2, addr), 8);
        assert_eq!(std::mem::offset_of!(PrivcmdMmapbatchV2, arr), 16);
        assert_eq!(std::mem::offset_of!(PrivcmdMmapbatchV2, err), 24);
    }

    /// Records each hypercall and answers with a scripted result.
    struct FakeHypercall {
        calls: Calls,
        answer: fn() -> io::Result<i64>,
    }

    impl Hypercall for FakeHypercall {
        fn hypercall(&mut self, op: u64, args: [u64; 5]) -> io::Result<i64> {
            self.calls.push((op, args));
            (self.answer)()
        }
    }

    type Calls = Vec<(u64, [u64; 5])>;

    fn disable_with(answer: fn() -> io::Result<i64>) -> (Calls, Result<DisableOutcome, HvError>) {
        let mut h = FakeHypercall {
            calls: Vec::new(),
            answer,
        };
        let r = clone_op_disable(&mut h, "/dev/xen/privcmd");
        (h.calls, r)
    }

    #[test]
    fn clone_op_disable_is_hypercall_43_cmd_1_with_a_null_arg() {
        let (calls, r) = disable_with(|| Ok(0));
        // privcmd_hypercall{op = __HYPERVISOR_clone_op, arg = {cmd, arg, ..}}.
        assert_eq!(calls, vec![(43, [1, 0, 0, 0, 0])]);
        assert_eq!(r.expect("disabled"), DisableOutcome::Disabled);
        let (calls, r) = disable_with(|| Err(io::Error::from_raw_os_error(libc::EINVAL)));
        assert_eq!(calls.len(), 1, "no retry");
        assert_eq!(r.expect("not enabled"), DisableOutcome::NotEnabled);
    }

    #[test]
    fn clone_op_disable_errors_name_op_device_and_errno() {
        let (_, r) = disable_with(|| Err(io::Error::from_raw_os_error(libc::ENOSYS)));
        let s = r.expect_err("ENOSYS").to_string();
        assert!(
            s.contains("CLONEOP_disable")
                && s.contains("hypercall 43")
                && s.contains("/dev/xen/privcmd")
                && s.contains("os error 38")
                && s.contains("not Nephele's Xen"),
            "{s}"
        );
        let (_, r) = disable_with(|| Err(io::Error::from_raw_os_error(libc::EPERM)));
        let s = r.expect_err("EPERM").to_string();
        assert!(s.contains("os error 1") && s.contains("root"), "{s}");
    }

    #[test]
    fn privcmd_hypercall_struct_layout() {
        assert_eq!(std::mem::offset_of!(PrivcmdHypercall, op), 0);
        assert_eq!(std::mem::offset_of!(PrivcmdHypercall, arg), 8);
        // Nephele's public headers.
        assert_eq!((HYPERVISOR_CLONE_OP, CLONEOP_DISABLE), (43, 1));
    }

    #[test]
    fn version_error_is_explicit() {
        let e = HvError::DomctlVersion {
            cmd: 4,
            domid: 7,
            version: 0x15,
        };
        let s = e.to_string();
        assert!(
            s.contains("EACCES") && s.contains("0x15") && s.contains("domain 7"),
            "{s}"
        );
    }
}
