//! Kernel uevents (`NETLINK_KOBJECT_UEVENT`, the "kernel" group): parser and
//! socket. Netback announces a cloned vif with ACTION `online`, subsystem
//! `xen-backend` and a `cloned` property.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// One parsed uevent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uevent {
    pub action: String,
    pub devpath: String,
    pub props: BTreeMap<String, String>,
}

impl Uevent {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.props.get(key).map(String::as_str)
    }

    pub fn subsystem(&self) -> Option<&str> {
        self.get("SUBSYSTEM")
    }

    /// Last component of the devpath (`vif-18-0`).
    pub fn sysname(&self) -> &str {
        self.devpath.rsplit('/').next().unwrap_or("")
    }
}

/// What a xen-backend vif uevent tells the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VifEvent {
    Online(VifUevent),
    Offline(VifUevent),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VifUevent {
    /// Frontend (child) domid and device id, from the sysname `vif-<d>-<n>`.
    pub domid: u16,
    pub devid: u32,
    /// `XENBUS_PATH`, relative to Dom0's home (`backend/vif/18/0`).
    pub xenbus_path: String,
    /// `vif=` netdev name, if the kernel sent it.
    pub ifname: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("empty uevent")]
    Empty,
    #[error("udev-daemon message (not a kernel uevent)")]
    Udev,
    #[error("uevent header {0:?} is not ACTION@DEVPATH")]
    Header(String),
    #[error("uevent is not UTF-8")]
    NotUtf8,
}

/// Parses a kernel uevent datagram: `ACTION@DEVPATH\0KEY=VALUE\0...`.
pub fn parse(buf: &[u8]) -> Result<Uevent, ParseError> {
    if buf.is_empty() {
        return Err(ParseError::Empty);
    }
    if buf.starts_with(b"libudev\0") {
        return Err(ParseError::Udev);
    }
    let mut fields = buf.split(|b| *b == 0).filter(|f| !f.is_empty());
    let header = fields.next().ok_or(ParseError::Empty)?;
    let header = std::str::from_utf8(header).map_err(|_| ParseError::NotUtf8)?;
    let (action, devpath) = header
        .split_once('@')
        .filter(|(a, d)| !a.is_empty() && d.starts_with('/'))
        .ok_or_else(|| ParseError::Header(header.chars().take(64).collect()))?;
    let mut props = BTreeMap::new();
    for f in fields {
        let Ok(f) = std::str::from_utf8(f) else {
            return Err(ParseError::NotUtf8);
        };
        if let Some((k, v)) = f.split_once('=') {
            props.insert(k.to_string(), v.to_string());
        }
    }
    if let Some(a) = props.get("ACTION")
        && a != action
    {
        return Err(ParseError::Header(format!("ACTION {a} != header {action}")));
    }
    Ok(Uevent {
        action: action.to_string(),
        devpath: devpath.to_string(),
        props,
    })
}

/// Parses `vif-<domid>-<devid>`.
pub fn parse_vif_sysname(s: &str) -> Option<(u16, u32)> {
    let rest = s.strip_prefix("vif-")?;
    let (d, n) = rest.split_once('-')?;
    Some((d.parse().ok()?, n.parse().ok()?))
}

/// Classifies a uevent as a cloned vif online/offline, or `None` if the
/// daemon does not care (other subsystem, not cloned, other device).
pub fn classify_vif(ev: &Uevent) -> Option<VifEvent> {
    if ev.subsystem() != Some("xen-backend") || ev.get("cloned").is_none() {
        return None;
    }
    let (domid, devid) = parse_vif_sysname(ev.sysname())?;
    let xenbus_path = ev
        .get("XENBUS_PATH")
        .map(str::to_string)
        .unwrap_or_else(|| format!("backend/vif/{domid}/{devid}"));
    let v = VifUevent {
        domid,
        devid,
        xenbus_path,
        ifname: ev.get("vif").map(str::to_string),
    };
    match ev.action.as_str() {
        "online" => Some(VifEvent::Online(v)),
        "offline" => Some(VifEvent::Offline(v)),
        _ => None,
    }
}

/// Builds a uevent datagram (tests, simulation).
#[cfg(any(test, feature = "test-support"))]
pub fn encode(action: &str, devpath: &str, props: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("{action}@{devpath}\0").into_bytes();
    for (k, v) in props {
        out.extend_from_slice(format!("{k}={v}\0").as_bytes());
    }
    out
}

/// Where uevents come from: the kernel socket, or a simulation.
pub trait UeventSource {
    fn fd(&self) -> BorrowedFd<'_>;
    /// Drains every pending datagram (non-blocking).
    fn recv_all(&mut self) -> io::Result<Vec<Vec<u8>>>;
    /// Datagrams dropped since the last call because they did not come
    /// from the kernel.
    fn take_foreign_dropped(&mut self) -> u64 {
        0
    }
}

/// Kernel uevent netlink socket, group 1 ("kernel"), non-blocking. Only
/// datagrams the kernel sent (sender port id 0) are handed out: any
/// process with `CAP_NET_ADMIN` can send to this group or to the socket's
/// own port id, and such a datagram must not enslave a vif.
pub struct KernelUevents {
    fd: OwnedFd,
    foreign_dropped: u64,
}

impl KernelUevents {
    pub fn open() -> io::Result<KernelUevents> {
        // SAFETY: plain socket(2) call; the result is checked and owned.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_KOBJECT_UEVENT,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh, valid fd we exclusively own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // A big receive buffer: a burst of clones must not overflow it.
        // The timeout + sysfs re-check covers what still gets lost.
        let size: libc::c_int = 32 << 20;
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: valid fd, pointer to a live c_int of the given size.
            let r = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r == 0 {
                break;
            }
        }
        // SAFETY: zeroed sockaddr_nl is a valid value; fields set below.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = 1;
        // SAFETY: valid fd and a properly sized sockaddr_nl.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(KernelUevents {
            fd,
            foreign_dropped: 0,
        })
    }

    /// The socket's netlink port id (the kernel assigns it at bind).
    pub fn port_id(&self) -> io::Result<u32> {
        // SAFETY: zeroed sockaddr_nl is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: valid fd, address buffer and its length.
        let r = unsafe {
            libc::getsockname(
                self.fd.as_raw_fd(),
                (&mut addr as *mut libc::sockaddr_nl).cast(),
                &mut len,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(addr.nl_pid)
    }
}

/// Who sent a datagram: a netlink port id, or nothing to check.
enum Sender {
    /// Netlink: `recvfrom`'s `nl_pid` (0 = the kernel).
    Netlink(u32),
    Unchecked,
}

/// One non-blocking receive into `buf`: `Ok(None)` when nothing is left.
fn recv_one(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    netlink: bool,
) -> io::Result<Option<(usize, Sender)>> {
    loop {
        // SAFETY: zeroed sockaddr_nl is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        let (ap, lp) = if netlink {
            (
                (&mut addr as *mut libc::sockaddr_nl).cast::<libc::sockaddr>(),
                &mut len as *mut libc::socklen_t,
            )
        } else {
            (std::ptr::null_mut(), std::ptr::null_mut())
        };
        // SAFETY: valid fd; buffer pointer/length from a live slice; the
        // address buffer (or null) with its length.
        let n = unsafe {
            libc::recvfrom(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
                ap,
                lp,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => return Ok(None),
                io::ErrorKind::Interrupted => continue,
                _ if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    // Overflow: events were lost; timeouts recover them.
                    tracing::warn!(
                        "uevent socket overflow (ENOBUFS): events lost, relying on timeouts"
                    );
                    continue;
                }
                _ => return Err(e),
            }
        }
        let sender = if netlink {
            Sender::Netlink(addr.nl_pid)
        } else {
            Sender::Unchecked
        };
        return Ok(Some((n as usize, sender)));
    }
}

/// Drains `fd`. With `netlink`, datagrams whose sender is not the kernel
/// are dropped (logged, and counted in the returned number).
pub(crate) fn recv_datagrams(fd: BorrowedFd<'_>, netlink: bool) -> io::Result<(Vec<Vec<u8>>, u64)> {
    let mut out = Vec::new();
    let mut dropped = 0;
    let mut buf = vec![0u8; 16384];
    while let Some((n, sender)) = recv_one(fd, &mut buf, netlink)? {
        match sender {
            Sender::Netlink(0) | Sender::Unchecked => out.push(buf[..n].to_vec()),
            Sender::Netlink(pid) => {
                dropped += 1;
                tracing::warn!(
                    sender_port = pid,
                    bytes = n,
                    "dropping a uevent not sent by the kernel (netlink port {pid})"
                );
            }
        }
    }
    Ok((out, dropped))
}

impl UeventSource for KernelUevents {
    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
    fn recv_all(&mut self) -> io::Result<Vec<Vec<u8>>> {
        let (out, dropped) = recv_datagrams(self.fd.as_fd(), true)?;
        self.foreign_dropped += dropped;
        Ok(out)
    }
    fn take_foreign_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.foreign_dropped)
    }
}

/// Simulated uevents: the test writes datagrams into the other end.
#[cfg(any(test, feature = "test-support"))]
pub struct SimUevents {
    rx: std::os::unix::net::UnixDatagram,
}

#[cfg(any(test, feature = "test-support"))]
impl SimUevents {
    /// Returns the source and the sender the test writes uevents to.
    pub fn pair() -> io::Result<(SimUevents, std::os::unix::net::UnixDatagram)> {
        let (rx, tx) = std::os::unix::net::UnixDatagram::pair()?;
        rx.set_nonblocking(true)?;
        Ok((SimUevents { rx }, tx))
    }
}

#[cfg(any(test, feature = "test-support"))]
impl UeventSource for SimUevents {
    fn fd(&self) -> BorrowedFd<'_> {
        self.rx.as_fd()
    }
    fn recv_all(&mut self) -> io::Result<Vec<Vec<u8>>> {
        Ok(recv_datagrams(self.rx.as_fd(), false)?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn online() -> Vec<u8> {
        encode(
            "online",
            "/devices/vif-18-0",
            &[
                ("ACTION", "online"),
                ("DEVPATH", "/devices/vif-18-0"),
                ("SUBSYSTEM", "xen-backend"),
                ("XENBUS_TYPE", "vif"),
                ("XENBUS_PATH", "backend/vif/18/0"),
                ("XENBUS_BASE_PATH", "backend"),
                ("script", "/etc/xen/scripts/vif-bridge"),
                ("vif", "vif18.0"),
                ("cloned", "1"),
                ("SEQNUM", "1234"),
            ],
        )
    }

    #[test]
    fn parses_kernel_uevent() {
        let ev = parse(&online()).expect("valid");
        assert_eq!(ev.action, "online");
        assert_eq!(ev.sysname(), "vif-18-0");
        assert_eq!(ev.subsystem(), Some("xen-backend"));
        assert_eq!(ev.get("vif"), Some("vif18.0"));
        assert_eq!(
            classify_vif(&ev),
            Some(VifEvent::Online(VifUevent {
                domid: 18,
                devid: 0,
                xenbus_path: "backend/vif/18/0".into(),
                ifname: Some("vif18.0".into()),
            }))
        );
    }

    #[test]
    fn ignores_uninteresting_events() {
        let not_cloned = encode(
            "online",
            "/devices/vif-18-0",
            &[("SUBSYSTEM", "xen-backend"), ("vif", "vif18.0")],
        );
        assert_eq!(classify_vif(&parse(&not_cloned).expect("valid")), None);
        let other = encode(
            "add",
            "/devices/virtual/net/lo",
            &[("SUBSYSTEM", "net"), ("cloned", "1")],
        );
        assert_eq!(classify_vif(&parse(&other).expect("valid")), None);
        let vbd = encode(
            "add",
            "/devices/vbd-3-51712",
            &[("SUBSYSTEM", "xen-backend"), ("cloned", "1")],
        );
        assert_eq!(classify_vif(&parse(&vbd).expect("valid")), None);
        let change = encode(
            "change",
            "/devices/vif-3-0",
            &[("SUBSYSTEM", "xen-backend"), ("cloned", "1")],
        );
        assert_eq!(classify_vif(&parse(&change).expect("valid")), None);
        let off = encode(
            "offline",
            "/devices/vif-3-1",
            &[("SUBSYSTEM", "xen-backend"), ("cloned", "1")],
        );
        assert!(matches!(
            classify_vif(&parse(&off).expect("valid")),
            Some(VifEvent::Offline(VifUevent {
                domid: 3,
                devid: 1,
                ..
            }))
        ));
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(parse(b""), Err(ParseError::Empty));
        assert_eq!(parse(b"libudev\0xxxx"), Err(ParseError::Udev));
        assert!(matches!(parse(b"noat\0A=B\0"), Err(ParseError::Header(_))));
        assert!(matches!(
            parse(b"add@relative\0"),
            Err(ParseError::Header(_))
        ));
        assert_eq!(parse(b"add@/x\0A=\xff\0"), Err(ParseError::NotUtf8));
        assert!(matches!(
            parse(b"add@/x\0ACTION=remove\0"),
            Err(ParseError::Header(_))
        ));
        assert_eq!(parse_vif_sysname("vif-1-x"), None);
        assert_eq!(parse_vif_sysname("vbd-1-2"), None);
        assert_eq!(parse_vif_sysname("vif-70000-0"), None);
    }

    #[test]
    fn sim_source_roundtrip() {
        let (mut src, tx) = SimUevents::pair().expect("pair");
        assert!(src.recv_all().expect("recv").is_empty());
        tx.send(&online()).expect("send");
        tx.send(b"x@/y\0").expect("send");
        let got = src.recv_all().expect("recv");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], online());
    }

    /// A datagram another process sends to the uevent socket (here to its
    /// port id; root may also send to the kernel group) is dropped and
    /// counted, never handed out as a uevent.
    #[test]
    fn datagram_not_from_the_kernel_is_dropped() {
        let mut k = KernelUevents::open().expect("uevent socket");
        let port = k.port_id().expect("port id");
        assert_ne!(port, 0);
        // SAFETY: plain socket(2); the result is checked and owned below.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_KOBJECT_UEVENT,
            )
        };
        assert!(raw >= 0, "socket: {}", io::Error::last_os_error());
        // SAFETY: `raw` is a fresh fd we own.
        let spoofer = unsafe { OwnedFd::from_raw_fd(raw) };
        let fake = encode(
            "online",
            "/devices/vif-77-0",
            &[
                ("SUBSYSTEM", "xen-backend"),
                ("vif", "vif77.0"),
                ("cloned", "1"),
            ],
        );
        // SAFETY: zeroed sockaddr_nl is valid; fields set below.
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        to.nl_pid = port;
        // SAFETY: valid fd, live buffer, properly sized address.
        let r = unsafe {
            libc::sendto(
                spoofer.as_raw_fd(),
                fake.as_ptr().cast(),
                fake.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        assert_eq!(
            r,
            fake.len() as isize,
            "sendto uevent port {port} (needs root): {}",
            io::Error::last_os_error()
        );
        let got = k.recv_all().expect("recv");
        assert!(!got.contains(&fake), "spoofed uevent handed out");
        assert_eq!(k.take_foreign_dropped(), 1);
        assert_eq!(k.take_foreign_dropped(), 0, "taken");
    }
}
