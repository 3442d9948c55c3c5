//! Network operations on clone vifs, in-process (no `ip` child processes):
//! rtnetlink `RTM_NEWLINK` with `IFLA_MASTER` (enslave / release) and
//! `IFF_UP` (messages from `netlink-packet-route`, a blocking `netlink-sys`
//! socket), plus sysfs look-ups (bond or bridge, netdev present, master)
//! and ARP frames out of a vif (`AF_PACKET`).
//!
//! [`NetOps`] is the seam the pipeline uses; [`Rtnl`] is the real one and is
//! exercised by `xencloned net ...` inside the test VM (the host has no
//! bonding) and, for the generic parts, against a bridge in a private
//! network namespace in this crate's tests.

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

/// What kind of master a vif is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MasterKind {
    Bond,
    Bridge,
    Other,
    Missing,
}

/// Parses a `/sys/class/net/<dev>/uevent` file's `DEVTYPE`.
pub fn master_kind_from_uevent(text: &str) -> MasterKind {
    match text
        .lines()
        .find_map(|l| l.strip_prefix("DEVTYPE="))
        .map(str::trim)
    {
        Some("bond") => MasterKind::Bond,
        Some("bridge") => MasterKind::Bridge,
        _ => MasterKind::Other,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{dev}: no such network device")]
    NoDevice { dev: String },
    #[error("{op} {dev}: {source}")]
    Netlink {
        op: &'static str,
        dev: String,
        #[source]
        source: io::Error,
    },
}

/// The network operations the clone pipeline needs.
pub trait NetOps {
    /// Kind of the device `name` (sysfs `DEVTYPE`).
    fn master_kind(&self, name: &str) -> MasterKind;
    /// Whether the netdev exists (lost-uevent recovery).
    fn exists(&self, name: &str) -> bool;
    /// Current master of `dev`, if any.
    fn master_of(&self, dev: &str) -> Option<String>;
    /// `ip link set <dev> master <master>` (the device must be down for bonds).
    fn set_master(&mut self, dev: &str, master: &str) -> Result<(), NetError>;
    /// `ip link set <dev> nomaster`.
    fn release(&mut self, dev: &str) -> Result<(), NetError>;
    /// `ip link set <dev> up`.
    fn set_up(&mut self, dev: &str) -> Result<(), NetError>;
    /// Sends one ARP request out of `dev` claiming `sender_ip` (with
    /// `dev`'s MAC) and asking for `target_ip`: what Nephele's experiments
    /// did with `arping -I <vif> <guest-ip> -s <gw-ip>`, so a clone learns
    /// the gateway's MAC through its own vif.
    fn send_arp(
        &mut self,
        dev: &str,
        sender_ip: Ipv4Addr,
        target_ip: Ipv4Addr,
    ) -> Result<(), NetError>;
}

/// Parses a backend `ip` value (`"<ip> <mask> <gw>"`): (guest ip, gateway).
pub fn parse_backend_ip(v: &str) -> Option<(Ipv4Addr, Option<Ipv4Addr>)> {
    let mut it = v.split_whitespace();
    let ip = it.next()?.parse().ok()?;
    let _mask = it.next();
    let gw = it.next().and_then(|g| g.parse().ok());
    Some((ip, gw))
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut n = 0;
    for (i, part) in s.trim().split(':').enumerate() {
        *out.get_mut(i)? = u8::from_str_radix(part, 16).ok()?;
        n = i + 1;
    }
    (n == 6).then_some(out)
}

/// An Ethernet broadcast ARP request (42 bytes).
pub fn arp_request_frame(src_mac: [u8; 6], sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(&src_mac);
    f[28..32].copy_from_slice(&sender_ip.octets());
    // target MAC stays zero
    f[38..42].copy_from_slice(&target_ip.octets());
    f
}

/// An AF_PACKET socket for ARP frames and the link-layer address of
/// interface `ifindex` (no hardware address set).
fn arp_packet_socket(ifindex: i32) -> io::Result<(OwnedFd, libc::sockaddr_ll)> {
    let proto = (libc::ETH_P_ARP as u16).to_be();
    // SAFETY: plain socket(2); result checked and owned.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd exclusively owned from here on.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: zeroed sockaddr_ll is valid; fields set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = proto;
    addr.sll_ifindex = ifindex;
    Ok((fd, addr))
}

/// Sends a raw Ethernet frame out of interface `ifindex` (AF_PACKET).
pub fn send_frame(ifindex: i32, frame: &[u8]) -> io::Result<()> {
    let (fd, mut addr) = arp_packet_socket(ifindex)?;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: valid fd, live frame buffer and a properly sized sockaddr_ll.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `RTM_NEWLINK` for `link`, with `NLM_F_REQUEST | NLM_F_ACK | flags`, as
/// the bytes to send.
pub fn newlink_request(seq: u32, flags: u16, link: LinkMessage) -> Vec<u8> {
    let mut m = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::from(RouteNetlinkMessage::NewLink(link)),
    );
    m.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    m.header.sequence_number = seq;
    m.finalize();
    let mut buf = vec![0u8; m.buffer_len()];
    m.serialize(&mut buf);
    buf
}

/// `RTM_NEWLINK` of the existing link `index`: its header, `attributes`,
/// and the `flags` to change (`change` is their mask).
fn link_message(index: u32, flags: LinkFlags, attributes: Vec<LinkAttribute>) -> LinkMessage {
    let mut link = LinkMessage::default();
    link.header.index = index;
    link.header.flags = flags;
    link.header.change_mask = flags;
    link.attributes = attributes;
    link
}

/// The answer to request `seq` in one datagram: `Some(Ok(()))` for its
/// ack, `Some(Err(_))` for its error (the errno) or a datagram that is not
/// netlink, `None` when the datagram does not answer `seq`.
pub fn ack_of(buf: &[u8], seq: u32) -> Option<io::Result<()>> {
    let mut off = 0;
    while off < buf.len() {
        let bad = |e: &dyn std::fmt::Display| {
            Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("malformed rtnetlink reply: {e}"),
            )))
        };
        let len = match NetlinkBuffer::new_checked(&buf[off..]) {
            Ok(b) => b.length() as usize,
            Err(e) => return bad(&e),
        };
        if NetlinkBuffer::new(&buf[off..]).sequence_number() == seq {
            let m = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[off..off + len]) {
                Ok(m) => m,
                Err(e) => return bad(&e),
            };
            if let NetlinkPayload::Error(e) = m.payload {
                return Some(match e.code {
                    None => Ok(()),
                    Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                });
            }
        }
        // Messages are NLMSG_ALIGNTO (4) aligned.
        off += (len + 3) & !3;
    }
    None
}

/// Real implementation: an rtnetlink socket (`netlink-sys`, blocking, no
/// async runtime) with messages of `netlink-packet-route`, and sysfs.
pub struct Rtnl {
    sock: Socket,
    seq: u32,
    sysfs: PathBuf,
}

impl Rtnl {
    pub fn open(sysfs_root: PathBuf) -> io::Result<Rtnl> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Rtnl {
            sock,
            seq: 1,
            sysfs: sysfs_root,
        })
    }

    fn ifindex(&self, dev: &str) -> Result<u32, NetError> {
        nix::net::if_::if_nametoindex(dev).map_err(|_| NetError::NoDevice { dev: dev.into() })
    }

    /// Sends `RTM_NEWLINK` for `link` and waits for its ack; an error
    /// names `op`, `dev` and the errno.
    fn request(
        &mut self,
        op: &'static str,
        dev: &str,
        flags: u16,
        link: LinkMessage,
    ) -> Result<(), NetError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let err = |source: io::Error| NetError::Netlink {
            op,
            dev: dev.into(),
            source,
        };
        self.sock
            .send(&newlink_request(seq, flags, link), 0)
            .map_err(err)?;
        let mut buf = vec![0u8; 8192];
        loop {
            let n = match self.sock.recv(&mut &mut buf[..], 0) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(err(e)),
            };
            if let Some(r) = ack_of(&buf[..n], seq) {
                return r.map_err(err);
            }
        }
    }

    fn set_master_index(
        &mut self,
        op: &'static str,
        dev: &str,
        master: u32,
    ) -> Result<(), NetError> {
        let idx = self.ifindex(dev)?;
        let link = link_message(
            idx,
            LinkFlags::empty(),
            vec![LinkAttribute::Controller(master)],
        );
        self.request(op, dev, 0, link)
    }
}

impl NetOps for Rtnl {
    fn master_kind(&self, name: &str) -> MasterKind {
        match std::fs::read_to_string(self.sysfs.join("class/net").join(name).join("uevent")) {
            Ok(t) => master_kind_from_uevent(&t),
            Err(_) => MasterKind::Missing,
        }
    }

    fn exists(&self, name: &str) -> bool {
        self.sysfs.join("class/net").join(name).exists()
    }

    fn master_of(&self, dev: &str) -> Option<String> {
        let link =
            std::fs::read_link(self.sysfs.join("class/net").join(dev).join("master")).ok()?;
        link.file_name().map(|f| f.to_string_lossy().into_owned())
    }

    fn set_master(&mut self, dev: &str, master: &str) -> Result<(), NetError> {
        let m = self.ifindex(master)?;
        self.set_master_index("enslave", dev, m)
    }

    fn release(&mut self, dev: &str) -> Result<(), NetError> {
        self.set_master_index("nomaster", dev, 0)
    }

    fn set_up(&mut self, dev: &str) -> Result<(), NetError> {
        let idx = self.ifindex(dev)?;
        self.request("up", dev, 0, link_message(idx, LinkFlags::Up, Vec::new()))
    }

    fn send_arp(
        &mut self,
        dev: &str,
        sender_ip: Ipv4Addr,
        target_ip: Ipv4Addr,
    ) -> Result<(), NetError> {
        let idx = self.ifindex(dev)?;
        let mac = std::fs::read_to_string(self.sysfs.join("class/net").join(dev).join("address"))
            .ok()
            .and_then(|m| parse_mac(&m))
            .ok_or_else(|| NetError::NoDevice { dev: dev.into() })?;
        send_frame(idx as i32, &arp_request_frame(mac, sender_ip, target_ip)).map_err(|source| {
            NetError::Netlink {
                op: "arp",
                dev: dev.into(),
                source,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
    use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkInfo};

    #[test]
    fn devtype_parsing() {
        assert_eq!(
            master_kind_from_uevent("DEVTYPE=bond\nINTERFACE=bond0\nIFINDEX=3\n"),
            MasterKind::Bond
        );
        assert_eq!(
            master_kind_from_uevent("DEVTYPE=bridge\nINTERFACE=br0\n"),
            MasterKind::Bridge
        );
        assert_eq!(
            master_kind_from_uevent("INTERFACE=eth0\nIFINDEX=2\n"),
            MasterKind::Other
        );
    }

    #[test]
    fn newlink_encoding() {
        let m = newlink_request(
            42,
            0,
            link_message(5, LinkFlags::Up, vec![LinkAttribute::Controller(7)]),
        );
        let word = |o: usize| u32::from_ne_bytes([m[o], m[o + 1], m[o + 2], m[o + 3]]);
        // nlmsghdr (16), ifinfomsg (16), IFLA_MASTER (8).
        assert_eq!(m.len(), 40);
        assert_eq!(word(0), 40);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), libc::RTM_NEWLINK);
        assert_eq!(
            u16::from_ne_bytes([m[6], m[7]]),
            (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16
        );
        assert_eq!(word(8), 42);
        assert_eq!(m[16], libc::AF_UNSPEC as u8);
        assert_eq!(word(20), 5);
        assert_eq!(word(24), libc::IFF_UP as u32);
        assert_eq!(word(28), libc::IFF_UP as u32);
        assert_eq!(&m[32..34], &8u16.to_ne_bytes());
        assert_eq!(&m[34..36], &libc::IFLA_MASTER.to_ne_bytes());
        assert_eq!(word(36), 7);
    }

    #[test]
    fn arp_frame_layout() {
        let mac = parse_mac("00:16:3e:aa:bb:0c").expect("mac");
        assert_eq!(mac, [0, 0x16, 0x3e, 0xaa, 0xbb, 0x0c]);
        assert_eq!(parse_mac("00:16:3e"), None);
        assert_eq!(parse_mac("00:16:3e:aa:bb:0c:11"), None);
        let f = arp_request_frame(mac, Ipv4Addr::new(10, 8, 0, 1), Ipv4Addr::new(10, 8, 0, 3));
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &mac);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[14..22], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&f[22..28], &mac);
        assert_eq!(&f[28..32], &[10, 8, 0, 1]);
        assert_eq!(&f[32..38], &[0; 6]);
        assert_eq!(&f[38..42], &[10, 8, 0, 3]);
        assert_eq!(
            parse_backend_ip("10.8.0.3 255.255.255.0 10.8.0.1"),
            Some((Ipv4Addr::new(10, 8, 0, 3), Some(Ipv4Addr::new(10, 8, 0, 1))))
        );
        assert_eq!(
            parse_backend_ip("10.8.0.3"),
            Some((Ipv4Addr::new(10, 8, 0, 3), None))
        );
        assert_eq!(parse_backend_ip("bogus"), None);
    }

    /// An `NLMSG_ERROR` answer to `seq` with `errno` (0: an ack).
    fn nlmsgerr(seq: u32, errno: i32) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&(-errno).to_ne_bytes());
        // The request's header, as the kernel echoes it.
        m.extend_from_slice(&16u32.to_ne_bytes());
        m.extend_from_slice(&libc::RTM_NEWLINK.to_ne_bytes());
        m.extend_from_slice(&[0u8; 10]);
        m
    }

    #[test]
    fn ack_parsing() {
        let e = ack_of(&nlmsgerr(9, libc::EPERM), 9)
            .expect("answers 9")
            .expect_err("EPERM");
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        assert!(ack_of(&nlmsgerr(9, 0), 9).expect("answers 9").is_ok());
        assert!(ack_of(&nlmsgerr(9, libc::EPERM), 8).is_none());
        // The answer may follow another message in the same datagram.
        let mut two = nlmsgerr(3, 0);
        two.extend(nlmsgerr(4, libc::ENODEV));
        let e = ack_of(&two, 4).expect("answers 4").expect_err("ENODEV");
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV));
        // A truncated datagram is an error, never a wait for more.
        let e = ack_of(&nlmsgerr(9, 0)[..10], 9)
            .expect("malformed")
            .expect_err("malformed");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    impl Rtnl {
        /// Creates a link of `kind` (a bridge, a dummy).
        fn create_link(&mut self, name: &str, kind: InfoKind) -> Result<(), NetError> {
            let mut link = LinkMessage::default();
            link.attributes = vec![
                LinkAttribute::IfName(name.into()),
                LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind)]),
            ];
            self.request("create", name, NLM_F_CREATE | NLM_F_EXCL, link)
        }

        /// Creates a veth pair `name`/`peer`.
        fn create_veth(&mut self, name: &str, peer: &str) -> Result<(), NetError> {
            let mut peer_link = LinkMessage::default();
            peer_link.attributes = vec![LinkAttribute::IfName(peer.into())];
            let mut link = LinkMessage::default();
            link.attributes = vec![
                LinkAttribute::IfName(name.into()),
                LinkAttribute::LinkInfo(vec![
                    LinkInfo::Kind(InfoKind::Veth),
                    LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_link))),
                ]),
            ];
            self.request("create", name, NLM_F_CREATE | NLM_F_EXCL, link)
        }
    }

    /// An AF_PACKET ARP listener on `ifindex` with a 200 ms timeout.
    fn packet_listener(ifindex: i32) -> io::Result<OwnedFd> {
        let (fd, addr) = arp_packet_socket(ifindex)?;
        // SAFETY: valid fd and sockaddr_ll.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: valid fd, pointer to a live timeval.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        Ok(fd)
    }

    /// Why the netns test did not pass: a component of the machine is
    /// missing (it may skip, see `xenstore::testing::skip`), or the code
    /// failed (never a skip).
    #[derive(Debug)]
    enum NsOutcome {
        Missing(String),
        Failed(String),
    }

    /// Only a kernel without the device kind (`EOPNOTSUPP`: no bridge or
    /// veth driver) is a missing component; any other error of the code
    /// under test is a failure.
    fn kind_unsupported(e: &NetError) -> bool {
        matches!(e, NetError::Netlink { source, .. } if source.raw_os_error() == Some(libc::EOPNOTSUPP))
    }

    fn failed(e: impl std::fmt::Display) -> NsOutcome {
        NsOutcome::Failed(e.to_string())
    }

    fn create_or_missing(r: Result<(), NetError>, what: &str) -> Result<(), NsOutcome> {
        r.map_err(|e| {
            if kind_unsupported(&e) {
                NsOutcome::Missing(format!("{what}: kernel without it: {e}"))
            } else {
                NsOutcome::Failed(format!("{what}: {e}"))
            }
        })
    }

    #[test]
    fn only_an_unsupported_kind_is_a_missing_component() {
        let err = |errno| NetError::Netlink {
            op: "create bridge",
            dev: "xcbr0".into(),
            source: io::Error::from_raw_os_error(errno),
        };
        assert!(matches!(
            create_or_missing(Err(err(libc::EOPNOTSUPP)), "bridge"),
            Err(NsOutcome::Missing(_))
        ));
        for errno in [libc::EEXIST, libc::EINVAL, libc::EPERM, libc::ENODEV] {
            assert!(
                matches!(
                    create_or_missing(Err(err(errno)), "bridge"),
                    Err(NsOutcome::Failed(_))
                ),
                "errno {errno} must fail the test"
            );
        }
        let e = NetError::NoDevice { dev: "x".into() };
        assert!(matches!(
            create_or_missing(Err(e), "veth"),
            Err(NsOutcome::Failed(_))
        ));
        assert!(create_or_missing(Ok(()), "veth").is_ok());
    }

    /// Generic rtnetlink path against a real kernel: in a private network
    /// namespace (this thread only), create a bridge and a veth
    /// port, enslave, bring up, release. Bonds need the QEMU kernel.
    /// Without a network namespace (not root) or a kernel without bridge or
    /// veth the test skips where skipping is allowed (not in CI); every
    /// error of the rtnetlink code fails it.
    #[test]
    fn rtnetlink_in_private_netns() {
        let h = std::thread::spawn(|| -> Result<(), NsOutcome> {
            // SAFETY: unshare(2) affects only this thread's net namespace.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(NsOutcome::Missing(format!(
                    "unshare(CLONE_NEWNET): {}",
                    io::Error::last_os_error()
                )));
            }
            let mut n = Rtnl::open(PathBuf::from("/sys")).map_err(failed)?;
            create_or_missing(n.create_link("xcbr0", InfoKind::Bridge), "create bridge")?;
            create_or_missing(n.create_veth("xcport0", "xcpeer0"), "create veth")?;
            n.set_master("xcport0", "xcbr0").map_err(failed)?;
            n.set_up("xcport0").map_err(failed)?;
            // Errors are reported with the device name and errno.
            let e = n
                .set_master("nonexistent0", "xcbr0")
                .expect_err("no such device");
            assert!(e.to_string().contains("nonexistent0"), "{e}");
            let e = n
                .create_link("xcbr0", InfoKind::Bridge)
                .expect_err("exists");
            assert!(e.to_string().contains("File exists"), "{e}");
            n.release("xcport0").map_err(failed)?;
            // ARP out of one veth end arrives at the other.
            n.set_up("xcpeer0").map_err(failed)?;
            let peer = n.ifindex("xcpeer0").map_err(failed)? as i32;
            let rx = packet_listener(peer).map_err(failed)?;
            let port = n.ifindex("xcport0").map_err(failed)? as i32;
            let frame = arp_request_frame(
                [2, 0, 0, 0, 0, 1],
                Ipv4Addr::new(10, 8, 0, 1),
                Ipv4Addr::new(10, 8, 0, 3),
            );
            // The veth pair's qdisc activates asynchronously after "up":
            // early frames may be dropped, so retry a few times.
            let mut buf = [0u8; 128];
            let mut got = -1;
            for _ in 0..20 {
                send_frame(port, &frame).map_err(failed)?;
                // SAFETY: valid fd and live buffer.
                got = unsafe { libc::recv(rx.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if got >= 42 {
                    break;
                }
            }
            if got < 42 {
                return Err(NsOutcome::Failed(format!(
                    "no ARP frame received: {}",
                    io::Error::last_os_error()
                )));
            }
            assert_eq!(&buf[..42], &frame[..]);
            Ok(())
        });
        match h.join().expect("thread") {
            Ok(()) => {}
            Err(NsOutcome::Missing(why)) => {
                xenstore::testing::skip("rtnetlink_in_private_netns", &why)
            }
            Err(NsOutcome::Failed(e)) => panic!("{e}"),
        }
    }
}
