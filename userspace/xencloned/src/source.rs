//! Where clone notifications come from and where completions go:
//! `/dev/xen/clone` ([`DeviceSource`]) or a simulation with the same ABI
//! ([`SimSource`], for tests). **A clone enters the daemon here.**

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use xen_clone_abi::{
    XEN_CLONE_ABI_VERSION, XEN_CLONE_IOC_COMPLETE, XEN_CLONE_IOC_INFO, XenCloneComplete,
    XenCloneEntry, XenCloneInfo,
};

pub const ENTRY_SIZE: usize = xen_clone_abi::XEN_CLONE_ENTRY_SIZE;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("complete id {id}: {source}")]
    Complete {
        id: u32,
        #[source]
        source: io::Error,
    },
    #[error("entry id {id} with ABI version {version}, expected {XEN_CLONE_ABI_VERSION}")]
    Version { version: u32, id: u32 },
    #[error("read returned {0} bytes, not a multiple of the 32-byte entry")]
    Short(usize),
}

/// Decodes one 32-byte [`XenCloneEntry`] (native endianness, as read())
/// with the ABI crate's decoder, and checks its version.
pub fn decode_entry(b: &[u8]) -> Result<XenCloneEntry, SourceError> {
    let e = XenCloneEntry::from_bytes(b).ok_or(SourceError::Short(b.len()))?;
    if e.version != XEN_CLONE_ABI_VERSION {
        return Err(SourceError::Version {
            version: e.version,
            id: e.id,
        });
    }
    Ok(e)
}

/// Decodes the entries of one read of `path` (a whole number of entries).
/// An entry that cannot be decoded (another ABI version) was handed out
/// all the same, so it is outstanding and its parent waits on it: it is
/// logged and completed at once with `complete` (its id is where every
/// version of the ABI has it), never silently dropped. The others of the
/// same read are returned.
pub fn decode_batch(
    buf: &[u8],
    path: &str,
    complete: &mut dyn FnMut(u32) -> Result<(), SourceError>,
) -> Vec<XenCloneEntry> {
    let mut out = Vec::with_capacity(buf.len() / ENTRY_SIZE);
    for chunk in buf.chunks_exact(ENTRY_SIZE) {
        match decode_entry(chunk) {
            Ok(e) => out.push(e),
            Err(e @ SourceError::Version { id, version }) => {
                tracing::error!(
                    path,
                    id,
                    version,
                    "undecodable clone entry: {e}; completing it"
                );
                match complete(id) {
                    Ok(()) => tracing::warn!(
                        path,
                        id,
                        "undecodable clone entry {id} completed: its parent continues, its child is left paused"
                    ),
                    Err(ce) => tracing::error!(path, id, "completing undecodable entry: {ce}"),
                }
            }
            Err(e) => tracing::error!(path, "clone entry: {e}"),
        }
    }
    out
}

/// Encodes an entry as the device returns it (simulation, tests).
pub fn encode_entry(e: &XenCloneEntry) -> [u8; ENTRY_SIZE] {
    e.to_bytes()
}

/// A pollable source of clone entries that takes completions.
pub trait CloneSource {
    /// Readable when entries are pending.
    fn fd(&self) -> BorrowedFd<'_>;
    /// Every pending entry (non-blocking; empty if none).
    fn read_entries(&mut self) -> Result<Vec<XenCloneEntry>, SourceError>;
    /// Completes entry `id` (hypervisor releases the parent's wait on it).
    fn complete(&mut self, id: u32) -> Result<(), SourceError>;
    /// Device configuration and counters, if the source has any.
    fn info(&mut self) -> Result<Option<XenCloneInfo>, SourceError>;
}

/// Most entries a source hands out per [`CloneSource::read_entries`]: a
/// burst is set up in batches, with the event loop (netback uevents, hence
/// completions) served between them, so the first clones of a long burst
/// complete without waiting for the last to be set up.
pub const READ_BATCH: usize = 64;

/// `/dev/xen/clone`.
pub struct DeviceSource {
    file: File,
    path: String,
}

impl DeviceSource {
    pub fn open(path: &Path) -> Result<DeviceSource, SourceError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| SourceError::Io {
                path: path.display().to_string(),
                source,
            })?;
        Ok(DeviceSource {
            file,
            path: path.display().to_string(),
        })
    }
}

/// `XEN_CLONE_IOC_COMPLETE` of entry `id` on the device.
fn complete_fd(file: &File, id: u32) -> Result<(), SourceError> {
    let arg = XenCloneComplete { id, flags: 0 };
    // SAFETY: the ioctl reads the 8-byte struct we pass by pointer.
    let r = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            XEN_CLONE_IOC_COMPLETE as libc::c_ulong,
            &arg as *const XenCloneComplete,
        )
    };
    if r < 0 {
        return Err(SourceError::Complete {
            id,
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

impl CloneSource for DeviceSource {
    fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    fn read_entries(&mut self) -> Result<Vec<XenCloneEntry>, SourceError> {
        let mut out = Vec::new();
        let mut buf = [0u8; ENTRY_SIZE * READ_BATCH];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => return Ok(out),
                Ok(n) if n % ENTRY_SIZE != 0 => return Err(SourceError::Short(n)),
                Ok(n) => {
                    // One undecodable entry must not lose the others of
                    // the same read (they are outstanding now), nor stay
                    // outstanding itself.
                    let file = &self.file;
                    out.extend(decode_batch(&buf[..n], &self.path, &mut |id| {
                        complete_fd(file, id)
                    }));
                    // One read (at most READ_BATCH entries) per wake-up: the
                    // rest stays readable, so the event loop serves uevents
                    // between batches of a long burst.
                    return Ok(out);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(out),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(SourceError::Io {
                        path: self.path.clone(),
                        source,
                    });
                }
            }
        }
    }

    fn complete(&mut self, id: u32) -> Result<(), SourceError> {
        complete_fd(&self.file, id)
    }

    fn info(&mut self) -> Result<Option<XenCloneInfo>, SourceError> {
        let mut info = XenCloneInfo::default();
        // SAFETY: the ioctl writes one XenCloneInfo into `info`.
        let r = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                XEN_CLONE_IOC_INFO as libc::c_ulong,
                &mut info as *mut XenCloneInfo,
            )
        };
        if r < 0 {
            return Err(SourceError::Io {
                path: self.path.clone(),
                source: io::Error::last_os_error(),
            });
        }
        Ok(Some(info))
    }
}

/// No clone device (`xencloned --adopt-only`, e.g. on a Xen without clone
/// support, where `xen_clone_dev` refuses to load): never readable, hands
/// out no entry, so nothing can be completed. The daemon then only serves
/// netback's cloned vifs through its uevent and reconcile paths (adoption).
pub struct IdleSource {
    never: nix::sys::eventfd::EventFd,
}

impl IdleSource {
    pub fn new() -> io::Result<IdleSource> {
        use nix::sys::eventfd::{EfdFlags, EventFd};
        // An eventfd nobody writes: epoll never reports it readable.
        let never =
            EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                .map_err(io::Error::from)?;
        Ok(IdleSource { never })
    }
}

impl CloneSource for IdleSource {
    fn fd(&self) -> BorrowedFd<'_> {
        self.never.as_fd()
    }

    fn read_entries(&mut self) -> Result<Vec<XenCloneEntry>, SourceError> {
        Ok(Vec::new())
    }

    fn complete(&mut self, id: u32) -> Result<(), SourceError> {
        // Nothing was ever handed out.
        Err(SourceError::Complete {
            id,
            source: io::Error::from_raw_os_error(libc::ENOENT),
        })
    }

    fn info(&mut self) -> Result<Option<XenCloneInfo>, SourceError> {
        Ok(None)
    }
}

/// Shared state of a simulated device: what the test queued and what the
/// daemon completed.
#[derive(Default, Debug)]
pub struct SimState {
    pub queued: VecDeque<XenCloneEntry>,
    /// Raw 32-byte entries, handed out before `queued` (e.g. another ABI
    /// version, which the daemon cannot decode).
    pub queued_raw: VecDeque<[u8; ENTRY_SIZE]>,
    pub outstanding: Vec<u32>,
    pub completed: Vec<u32>,
    /// Completion attempts for ids not outstanding (must stay empty).
    pub bad_completions: Vec<u32>,
    /// `(id, errno, times)`: the next `times` completions of `id` fail
    /// with `errno`, as the device answers for a completion the hypervisor
    /// refuses (`EAGAIN`: not yet; `ECANCELED`: released, for good).
    pub refuse: Vec<(u32, i32, u32)>,
    /// Completion attempts answered from `refuse`.
    pub refused: Vec<(u32, i32)>,
    pub info: XenCloneInfo,
}

/// Simulated `/dev/xen/clone`: same entries and completion rules (an id
/// can be completed once, only after it was read), pollable via a pipe.
pub struct SimSource {
    state: Arc<Mutex<SimState>>,
    rx: std::os::unix::net::UnixStream,
    tx: Arc<std::os::unix::net::UnixStream>,
}

/// The test's handle on a [`SimSource`]. `xencloned --simulate` only keeps
/// it (the device's other end); the helpers that queue entries and read
/// completions are for tests (`test-support`).
#[derive(Clone)]
pub struct SimHandle {
    pub state: Arc<Mutex<SimState>>,
    #[cfg_attr(not(any(test, feature = "test-support")), allow(dead_code))]
    tx: Arc<std::os::unix::net::UnixStream>,
}

#[cfg(any(test, feature = "test-support"))]
impl SimHandle {
    /// Queues an entry (as the hypervisor + module would) and wakes the poller.
    pub fn push(&self, e: XenCloneEntry) {
        if let Ok(mut s) = self.state.lock() {
            s.queued.push_back(e);
        }
        // Non-blocking: when the socket is full, a wake-up is pending anyway.
        let _ = (&*self.tx).write(&[1]);
    }

    /// Queues raw entry bytes, as a device of another ABI would hand out.
    pub fn push_raw(&self, b: [u8; ENTRY_SIZE]) {
        if let Ok(mut s) = self.state.lock() {
            s.queued_raw.push_back(b);
        }
        let _ = (&*self.tx).write(&[1]);
    }

    pub fn completed(&self) -> Vec<u32> {
        self.state
            .lock()
            .map(|s| s.completed.clone())
            .unwrap_or_default()
    }

    /// The next `times` completions of `id` fail with `errno` (see
    /// [`SimState::refuse`]).
    pub fn refuse(&self, id: u32, errno: i32, times: u32) {
        if let Ok(mut s) = self.state.lock() {
            s.refuse.push((id, errno, times));
        }
    }

    pub fn refused(&self) -> Vec<(u32, i32)> {
        self.state
            .lock()
            .map(|s| s.refused.clone())
            .unwrap_or_default()
    }

    pub fn bad_completions(&self) -> Vec<u32> {
        self.state
            .lock()
            .map(|s| s.bad_completions.clone())
            .unwrap_or_default()
    }
}

impl SimSource {
    pub fn new(info: XenCloneInfo) -> io::Result<(SimSource, SimHandle)> {
        let (rx, tx) = std::os::unix::net::UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        let tx = Arc::new(tx);
        let state = Arc::new(Mutex::new(SimState {
            info,
            ..Default::default()
        }));
        Ok((
            SimSource {
                state: state.clone(),
                rx,
                tx: tx.clone(),
            },
            SimHandle { state, tx },
        ))
    }
}

/// The device's completion rule: once, only for an outstanding id.
fn sim_complete(s: &mut SimState, id: u32) -> Result<(), SourceError> {
    let outstanding = s.outstanding.contains(&id);
    if let Some(r) = s
        .refuse
        .iter_mut()
        .find(|r| r.0 == id && r.2 > 0 && outstanding)
    {
        r.2 -= 1;
        let errno = r.1;
        s.refused.push((id, errno));
        if errno == libc::ECANCELED {
            // Released by the module.
            s.outstanding.retain(|x| *x != id);
        }
        return Err(SourceError::Complete {
            id,
            source: io::Error::from_raw_os_error(errno),
        });
    }
    if let Some(i) = s.outstanding.iter().position(|x| *x == id) {
        s.outstanding.swap_remove(i);
        s.completed.push(id);
        s.info.counters.completions += 1;
        Ok(())
    } else {
        s.bad_completions.push(id);
        Err(SourceError::Complete {
            id,
            source: io::Error::from_raw_os_error(libc::ENOENT),
        })
    }
}

impl CloneSource for SimSource {
    fn fd(&self) -> BorrowedFd<'_> {
        self.rx.as_fd()
    }

    fn read_entries(&mut self) -> Result<Vec<XenCloneEntry>, SourceError> {
        let mut drain = [0u8; 64];
        while let Ok(n) = (&self.rx).read(&mut drain) {
            if n == 0 {
                break;
            }
        }
        let mut s = self.state.lock().map_err(|_| SourceError::Short(0))?;
        // What one read() of the device returns: at most READ_BATCH
        // entries, in the wire encoding.
        let mut buf = Vec::with_capacity(ENTRY_SIZE * READ_BATCH);
        while buf.len() < ENTRY_SIZE * READ_BATCH {
            let Some(raw) = s.queued_raw.pop_front() else {
                break;
            };
            buf.extend_from_slice(&raw);
        }
        let n = s.queued.len().min(READ_BATCH - buf.len() / ENTRY_SIZE);
        for e in s.queued.drain(..n) {
            buf.extend_from_slice(&encode_entry(&e));
        }
        if !s.queued.is_empty() || !s.queued_raw.is_empty() {
            // Stay readable for the rest, as the device does.
            let _ = (&*self.tx).write(&[1]);
        }
        // Handed out: outstanding until completed (ids sit at bytes 8..12).
        s.outstanding.extend(
            buf.chunks_exact(ENTRY_SIZE)
                .filter_map(XenCloneEntry::id_of),
        );
        Ok(decode_batch(&buf, "simulated device", &mut |id| {
            sim_complete(&mut s, id)
        }))
    }

    fn complete(&mut self, id: u32) -> Result<(), SourceError> {
        let mut s = self.state.lock().map_err(|_| SourceError::Short(0))?;
        sim_complete(&mut s, id)
    }

    fn info(&mut self) -> Result<Option<XenCloneInfo>, SourceError> {
        Ok(self.state.lock().ok().map(|s| s.info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xen_clone_abi::XEN_CLONE_ENTRY_REDELIVERED;

    fn entry(id: u32) -> XenCloneEntry {
        XenCloneEntry {
            version: XEN_CLONE_ABI_VERSION,
            flags: XEN_CLONE_ENTRY_REDELIVERED,
            id,
            parent_domid: 3,
            child_domid: 0x1234,
            parent_start_info_mfn: 0x1122_3344_5566,
            child_start_info_mfn: 0x99,
        }
    }

    #[test]
    fn sim_source_hands_out_bursts_in_batches_and_stays_readable() {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let (mut src, h) = SimSource::new(XenCloneInfo::default()).expect("sim source");
        // More pushes than the socket buffer holds wake-up bytes: never blocks.
        let total = 20_000u32;
        for id in 0..total {
            h.push(entry(id));
        }
        let mut seen = Vec::new();
        loop {
            let mut fds = [PollFd::new(src.fd(), PollFlags::POLLIN)];
            let ready = poll(&mut fds, PollTimeout::ZERO).expect("poll");
            let got = src.read_entries().expect("read");
            if got.is_empty() {
                break;
            }
            assert_eq!(ready, 1, "entries queued but the source is not readable");
            assert!(got.len() <= READ_BATCH, "{} entries in one read", got.len());
            seen.extend(got.iter().map(|e| e.id));
        }
        assert_eq!(seen, (0..total).collect::<Vec<_>>());
    }

    #[test]
    fn entry_codec_matches_abi_layout() {
        let e = entry(7);
        let b = encode_entry(&e);
        assert_eq!(&b[8..12], &7u32.to_ne_bytes());
        assert_eq!(&b[12..14], &3u16.to_ne_bytes());
        assert_eq!(&b[14..16], &0x1234u16.to_ne_bytes());
        assert_eq!(decode_entry(&b).expect("valid"), e);
        // Same bytes as the in-memory repr(C) struct.
        // SAFETY: XenCloneEntry is repr(C), 32 bytes, no padding.
        let raw: [u8; 32] = unsafe { std::mem::transmute(e) };
        assert_eq!(raw, b);
        let mut bad = b;
        bad[0] = 9;
        assert!(matches!(
            decode_entry(&bad),
            Err(SourceError::Version { version: 9, id: 7 })
        ));
        assert!(matches!(
            decode_entry(&b[..31]),
            Err(SourceError::Short(31))
        ));
    }

    #[test]
    fn idle_source_is_never_readable_and_hands_out_nothing() {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut src = IdleSource::new().expect("idle source");
        let mut fds = [PollFd::new(src.fd(), PollFlags::POLLIN)];
        assert_eq!(poll(&mut fds, PollTimeout::ZERO).expect("poll"), 0);
        assert!(src.read_entries().expect("read").is_empty());
        assert!(matches!(
            src.complete(1),
            Err(SourceError::Complete { id: 1, .. })
        ));
        assert!(src.info().expect("info").is_none());
    }

    /// An entry of another ABI version is completed (its parent must not
    /// wait forever) and the others of the same read are handed out.
    #[test]
    fn undecodable_entry_is_completed_not_dropped() {
        let (mut src, h) = SimSource::new(XenCloneInfo::default()).expect("sim");
        let mut bad = encode_entry(&entry(5));
        bad[0..4].copy_from_slice(&9u32.to_ne_bytes());
        h.push_raw(bad);
        h.push(entry(6));
        let got = src.read_entries().expect("read");
        assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), vec![6]);
        assert_eq!(h.completed(), vec![5], "undecodable entry completed");
        assert!(h.bad_completions().is_empty());
        src.complete(6).expect("complete");
        assert_eq!(h.completed(), vec![5, 6]);
    }

    #[test]
    fn sim_source_enforces_completion_rules() {
        let (mut src, h) = SimSource::new(XenCloneInfo::default()).expect("sim");
        assert!(src.read_entries().expect("read").is_empty());
        assert!(src.complete(1).is_err(), "never handed out");
        h.push(entry(1));
        h.push(entry(2));
        let got = src.read_entries().expect("read");
        assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), vec![1, 2]);
        src.complete(2).expect("complete");
        assert!(src.complete(2).is_err(), "twice");
        src.complete(1).expect("complete");
        assert_eq!(h.completed(), vec![2, 1]);
        assert_eq!(h.bad_completions(), vec![1, 2]);
    }
}
