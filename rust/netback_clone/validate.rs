// SPDX-License-Identifier: GPL-2.0

//! Validation of a cloned vif: pure logic, no I/O.
//!
//! A cloned backend node (`backend/vif/<child>/<n>`, `cloned = "true"`) and
//! its frontend were copied from a connected parent. Before any grant is
//! mapped, every key the attach needs is read through a [`Store`] and checked
//! here: the frontend must be Connected, ring references and event channels
//! must be present and well-formed, `request-rx-copy` must be set. The
//! event-channel ports are then checked against the hypervisor's view
//! ([`check_port`]): each must be unbound toward the backend domain, which is
//! what a cloning hypervisor leaves behind.

use kernel::{fmt, prelude::*};

/// `XenbusStateConnected`.
pub(crate) const STATE_CONNECTED: u32 = 4;
/// Grant references below this are reserved (`GNTTAB_NR_RESERVED_ENTRIES`).
pub(crate) const FIRST_GRANT_REF: u32 = 8;
/// Event-channel ports are below this (`EVTCHN_FIFO_NR_CHANNELS`); 0 is invalid.
pub(crate) const PORT_LIMIT: u32 = 1 << 17;
/// The largest vif handle accepted (it becomes part of `vif<domid>.<handle>`).
pub(crate) const HANDLE_MAX: u32 = 0xffff;
/// Longest value read from the store (a MAC address needs 17 bytes).
pub(crate) const VALUE_MAX: usize = 64;

/// `EVTCHNSTAT_*` values of `EVTCHNOP_status`.
pub(crate) const EVTCHNSTAT_CLOSED: u32 = 0;
/// The port is allocated and waits for a peer to bind it.
pub(crate) const EVTCHNSTAT_UNBOUND: u32 = 1;
/// The port is connected to a port of another domain.
pub(crate) const EVTCHNSTAT_INTERDOMAIN: u32 = 2;

/// Which node a key belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// The frontend directory (`<frontend>/...`).
    Frontend,
    /// The cloned backend node itself.
    Backend,
}

/// A key of the store, relative to its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    /// The node the key belongs to.
    pub(crate) side: Side,
    /// `Some(n)` for a key under `queue-<n>/` (multi-queue frontends).
    pub(crate) queue: Option<u32>,
    /// The key's name.
    pub(crate) name: &'static str,
}

impl Key {
    const fn fe(name: &'static str) -> Self {
        Key {
            side: Side::Frontend,
            queue: None,
            name,
        }
    }

    const fn be(name: &'static str) -> Self {
        Key {
            side: Side::Backend,
            queue: None,
            name,
        }
    }

    const fn in_queue(self, queue: Option<u32>) -> Self {
        Key { queue, ..self }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.queue {
            Some(q) => write!(f, "queue-{}/{}", q, self.name),
            None => f.write_str(self.name),
        }
    }
}

/// Frontend `state`.
pub(crate) const FE_STATE: Key = Key::fe("state");
/// Frontend `request-rx-copy`.
pub(crate) const REQUEST_RX_COPY: Key = Key::fe("request-rx-copy");
/// Frontend `multi-queue-num-queues` (optional, default 1).
pub(crate) const NUM_QUEUES: Key = Key::fe("multi-queue-num-queues");
/// Per queue: transmit ring grant reference.
pub(crate) const TX_RING_REF: Key = Key::fe("tx-ring-ref");
/// Per queue: receive ring grant reference.
pub(crate) const RX_RING_REF: Key = Key::fe("rx-ring-ref");
/// Per queue: split event channel, transmit.
pub(crate) const EVTCHN_TX: Key = Key::fe("event-channel-tx");
/// Per queue: split event channel, receive.
pub(crate) const EVTCHN_RX: Key = Key::fe("event-channel-rx");
/// Per queue: shared event channel.
pub(crate) const EVTCHN: Key = Key::fe("event-channel");
/// Optional control ring grant reference.
pub(crate) const CTRL_RING_REF: Key = Key::fe("ctrl-ring-ref");
/// Control ring event channel (required with `ctrl-ring-ref`).
pub(crate) const EVTCHN_CTRL: Key = Key::fe("event-channel-ctrl");
/// Backend `handle` (the vif's device id).
pub(crate) const HANDLE: Key = Key::be("handle");
/// Backend `mac` (the guest's MAC address).
pub(crate) const MAC: Key = Key::be("mac");

/// What is wrong with a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Problem {
    /// The key is absent.
    Missing,
    /// The value does not parse; the text says what was expected.
    Malformed(&'static str),
    /// The value parses but is outside `min..=max`.
    OutOfRange {
        /// The value read.
        value: u64,
        /// Smallest valid value.
        min: u64,
        /// Largest valid value.
        max: u64,
    },
    /// The frontend is not Connected; its state is given.
    NotConnected(u32),
    /// `request-rx-copy` is 0: netback only does receive-side copy.
    RxCopyNotSet,
    /// Present without the key named here.
    Unpaired(&'static str),
    /// The transmit and receive rings share one grant reference.
    SameGrant(u32),
    /// The port is not unbound toward the backend domain.
    PortState {
        /// The port number.
        port: u32,
        /// `EVTCHNSTAT_*`.
        status: u32,
        /// Peer domain for unbound/interdomain ports.
        remote: u32,
        /// The domain the port should be unbound toward.
        expected: u32,
    },
    /// The hypervisor does not know the port (`EVTCHNOP_status` failed).
    NoSuchPort {
        /// The port number.
        port: u32,
        /// The hypercall's error.
        errno: i32,
    },
    /// Reading the key failed with this errno.
    Read(i32),
    /// Out of memory while collecting the queues.
    NoMemory,
}

impl Problem {
    /// The kernel error code reported for this problem.
    pub(crate) fn errno(&self) -> Error {
        match self {
            Problem::Missing => ENOENT,
            Problem::NotConnected(_) => ENOTCONN,
            Problem::RxCopyNotSet => EOPNOTSUPP,
            Problem::PortState { .. } => EBUSY,
            Problem::NoMemory => ENOMEM,
            Problem::Read(e) | Problem::NoSuchPort { errno: e, .. } => errno_error(*e),
            Problem::Malformed(_)
            | Problem::OutOfRange { .. }
            | Problem::Unpaired(_)
            | Problem::SameGrant(_) => EINVAL,
        }
    }
}

/// A negative errno as an [`Error`]; anything else becomes `EIO`.
pub(crate) fn errno_error(e: i32) -> Error {
    if (-4095..0).contains(&e) {
        Error::from_errno(e)
    } else {
        EIO
    }
}

fn port_status_name(status: u32) -> &'static str {
    match status {
        EVTCHNSTAT_CLOSED => "closed",
        EVTCHNSTAT_UNBOUND => "unbound",
        EVTCHNSTAT_INTERDOMAIN => "bound (interdomain)",
        3 => "bound to a PIRQ",
        4 => "bound to a VIRQ",
        5 => "bound to an IPI",
        _ => "in an unknown state",
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Problem::Missing => f.write_str("missing"),
            Problem::Malformed(what) => write!(f, "malformed (expected {what})"),
            Problem::OutOfRange { value, min, max } => {
                write!(f, "{value} is out of range {min}..{max}")
            }
            Problem::NotConnected(state) => {
                write!(
                    f,
                    "frontend state is {state}, not {STATE_CONNECTED} (Connected)"
                )
            }
            Problem::RxCopyNotSet => f.write_str("is 0 (netback needs rx-copy)"),
            Problem::Unpaired(other) => write!(f, "present without {other}"),
            Problem::SameGrant(gref) => write!(f, "tx and rx rings share grant {gref}"),
            Problem::PortState {
                port,
                status,
                remote,
                expected,
            } => {
                write!(f, "port {port} is {}", port_status_name(status))?;
                if status == EVTCHNSTAT_UNBOUND || status == EVTCHNSTAT_INTERDOMAIN {
                    write!(f, " toward domain {remote}")?;
                }
                write!(f, ", not unbound toward domain {expected}")
            }
            Problem::NoSuchPort { port, errno } => {
                write!(f, "port {port} does not exist ({errno})")
            }
            Problem::Read(errno) => write!(f, "read failed ({errno})"),
            Problem::NoMemory => f.write_str("out of memory"),
        }
    }
}

/// A key and what is wrong with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyError {
    /// The offending key.
    pub(crate) key: Key,
    /// What is wrong with it.
    pub(crate) problem: Problem,
}

impl KeyError {
    fn new(key: Key, problem: Problem) -> Self {
        KeyError { key, problem }
    }
}

/// A value read from the store.
///
/// # Invariants
///
/// `len <= VALUE_MAX`.
#[derive(Clone, Copy)]
pub(crate) struct Value {
    buf: [u8; VALUE_MAX],
    len: usize,
}

impl Value {
    /// A value holding `bytes`, or `None` if it is longer than [`VALUE_MAX`].
    pub(crate) fn new(bytes: &[u8]) -> Option<Self> {
        let mut buf = [0u8; VALUE_MAX];
        buf.get_mut(..bytes.len())?.copy_from_slice(bytes);
        // INVARIANT: `get_mut` succeeded, so `bytes.len() <= VALUE_MAX`.
        Some(Value {
            buf,
            len: bytes.len(),
        })
    }

    /// The bytes of the value.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        // By the type invariant `len <= VALUE_MAX`, so this never falls back.
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

/// Read access to the cloned backend node and its frontend.
pub(crate) trait Store {
    /// Reads `key`: `Ok(None)` if it does not exist.
    fn read(&self, key: Key) -> Result<Option<Value>, KeyError>;
}

/// Parses a decimal `u32`: digits only, no sign, no blanks, no overflow.
pub(crate) fn parse_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 10 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(c - b'0');
    }
    u32::try_from(v).ok()
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Parses a MAC address `xx:xx:xx:xx:xx:xx` (one or two hex digits per byte).
pub(crate) fn parse_mac(s: &[u8]) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(|&c| c == b':');
    for byte in mac.iter_mut() {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 2 {
            return None;
        }
        *byte = part
            .iter()
            .try_fold(0u8, |acc, &c| Some(acc * 16 + hex_digit(c)?))?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(mac)
}

fn required(store: &dyn Store, key: Key) -> Result<Value, KeyError> {
    store.read(key)?.ok_or(KeyError::new(key, Problem::Missing))
}

fn number(key: Key, v: &Value, min: u32, max: u32) -> Result<u32, KeyError> {
    let n = parse_u32(v.as_bytes())
        .ok_or(KeyError::new(key, Problem::Malformed("a decimal number")))?;
    if n < min || n > max {
        return Err(KeyError::new(
            key,
            Problem::OutOfRange {
                value: n.into(),
                min: min.into(),
                max: max.into(),
            },
        ));
    }
    Ok(n)
}

fn grant_ref(key: Key, v: &Value) -> Result<u32, KeyError> {
    number(key, v, FIRST_GRANT_REF, u32::MAX)
}

fn port(key: Key, v: &Value) -> Result<u32, KeyError> {
    number(key, v, 1, PORT_LIMIT - 1)
}

/// Checks that the frontend is Connected.
pub(crate) fn check_frontend_state(v: &Value) -> Result<(), KeyError> {
    let state = number(FE_STATE, v, 0, u32::MAX)?;
    if state != STATE_CONNECTED {
        return Err(KeyError::new(FE_STATE, Problem::NotConnected(state)));
    }
    Ok(())
}

/// Checks `request-rx-copy`: present and non-zero.
pub(crate) fn check_rx_copy(v: Option<&Value>) -> Result<(), KeyError> {
    let v = v.ok_or(KeyError::new(REQUEST_RX_COPY, Problem::Missing))?;
    if number(REQUEST_RX_COPY, v, 0, u32::MAX)? == 0 {
        return Err(KeyError::new(REQUEST_RX_COPY, Problem::RxCopyNotSet));
    }
    Ok(())
}

/// Number of queues: `multi-queue-num-queues` if present (1..=max), else 1.
pub(crate) fn num_queues(v: Option<&Value>, max: u32) -> Result<u32, KeyError> {
    match v {
        None => Ok(1),
        Some(v) => number(NUM_QUEUES, v, 1, max),
    }
}

/// Rings and event channels of one queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QueueRings {
    /// Transmit ring grant reference.
    pub(crate) tx_ring_ref: u32,
    /// Receive ring grant reference.
    pub(crate) rx_ring_ref: u32,
    /// Transmit event-channel port.
    pub(crate) tx_port: u32,
    /// Receive event-channel port (equal to `tx_port` when shared).
    pub(crate) rx_port: u32,
}

impl QueueRings {
    /// Whether one event channel serves both directions.
    pub(crate) fn shared_port(&self) -> bool {
        self.tx_port == self.rx_port
    }
}

/// Event channels of a queue: split (`-tx` and `-rx`) or shared.
pub(crate) fn event_channels(
    queue: Option<u32>,
    tx: Option<&Value>,
    rx: Option<&Value>,
    shared: Option<&Value>,
) -> Result<(u32, u32), KeyError> {
    let tx_key = EVTCHN_TX.in_queue(queue);
    let rx_key = EVTCHN_RX.in_queue(queue);
    match (tx, rx) {
        (Some(tx), Some(rx)) => Ok((port(tx_key, tx)?, port(rx_key, rx)?)),
        (Some(_), None) => Err(KeyError::new(tx_key, Problem::Unpaired(EVTCHN_RX.name))),
        (None, Some(_)) => Err(KeyError::new(rx_key, Problem::Unpaired(EVTCHN_TX.name))),
        (None, None) => {
            let key = EVTCHN.in_queue(queue);
            let p = port(key, shared.ok_or(KeyError::new(key, Problem::Missing))?)?;
            Ok((p, p))
        }
    }
}

/// Reads and checks the rings of one queue.
pub(crate) fn queue_rings(store: &dyn Store, queue: Option<u32>) -> Result<QueueRings, KeyError> {
    let tx_key = TX_RING_REF.in_queue(queue);
    let rx_key = RX_RING_REF.in_queue(queue);
    let tx_ring_ref = grant_ref(tx_key, &required(store, tx_key)?)?;
    let rx_ring_ref = grant_ref(rx_key, &required(store, rx_key)?)?;
    if tx_ring_ref == rx_ring_ref {
        return Err(KeyError::new(rx_key, Problem::SameGrant(rx_ring_ref)));
    }
    let tx = store.read(EVTCHN_TX.in_queue(queue))?;
    let rx = store.read(EVTCHN_RX.in_queue(queue))?;
    let shared = if tx.is_none() && rx.is_none() {
        store.read(EVTCHN.in_queue(queue))?
    } else {
        None
    };
    let (tx_port, rx_port) = event_channels(queue, tx.as_ref(), rx.as_ref(), shared.as_ref())?;
    Ok(QueueRings {
        tx_ring_ref,
        rx_ring_ref,
        tx_port,
        rx_port,
    })
}

/// Everything needed to attach a cloned vif, validated.
pub(crate) struct CloneConfig {
    /// The vif's handle (device id).
    pub(crate) handle: u32,
    /// The guest's MAC address.
    pub(crate) mac: [u8; 6],
    /// One entry per queue, in order.
    pub(crate) queues: KVec<QueueRings>,
    /// Control ring grant reference and port, if the frontend has one.
    pub(crate) ctrl: Option<(u32, u32)>,
}

impl CloneConfig {
    /// Every distinct event-channel port of the frontend, with its key.
    pub(crate) fn for_each_port(
        &self,
        mut f: impl FnMut(Key, u32) -> Result<(), KeyError>,
    ) -> Result<(), KeyError> {
        let multi = self.queues.len() > 1;
        for (i, q) in self.queues.iter().enumerate() {
            let queue = if multi { u32::try_from(i).ok() } else { None };
            if q.shared_port() {
                f(EVTCHN.in_queue(queue), q.tx_port)?;
            } else {
                f(EVTCHN_TX.in_queue(queue), q.tx_port)?;
                f(EVTCHN_RX.in_queue(queue), q.rx_port)?;
            }
        }
        if let Some((_, p)) = self.ctrl {
            f(EVTCHN_CTRL, p)?;
        }
        Ok(())
    }
}

/// Reads and validates the whole cloned node; touches no grant.
pub(crate) fn validate(store: &dyn Store, max_queues: u32) -> Result<CloneConfig, KeyError> {
    check_frontend_state(&required(store, FE_STATE)?)?;
    let handle = number(HANDLE, &required(store, HANDLE)?, 0, HANDLE_MAX)?;
    let mac = parse_mac(required(store, MAC)?.as_bytes())
        .ok_or(KeyError::new(MAC, Problem::Malformed("xx:xx:xx:xx:xx:xx")))?;
    check_rx_copy(store.read(REQUEST_RX_COPY)?.as_ref())?;
    let n = num_queues(store.read(NUM_QUEUES)?.as_ref(), max_queues)?;

    let mut queues = KVec::new();
    for i in 0..n {
        let queue = if n == 1 { None } else { Some(i) };
        let rings = queue_rings(store, queue)?;
        queues
            .push(rings, GFP_KERNEL)
            .map_err(|_| KeyError::new(NUM_QUEUES, Problem::NoMemory))?;
    }

    let ctrl = match store.read(CTRL_RING_REF)? {
        None => None,
        Some(r) => {
            let gref = grant_ref(CTRL_RING_REF, &r)?;
            let p = store
                .read(EVTCHN_CTRL)?
                .ok_or(KeyError::new(EVTCHN_CTRL, Problem::Missing))?;
            Some((gref, port(EVTCHN_CTRL, &p)?))
        }
    };

    Ok(CloneConfig {
        handle,
        mac,
        queues,
        ctrl,
    })
}

/// Checks the hypervisor's view of a port (`EVTCHNOP_status` of the
/// frontend's domain): it must be unbound toward `backend_domid`.
pub(crate) fn check_port(
    key: Key,
    port: u32,
    status: Result<(u32, u32), i32>,
    backend_domid: u32,
) -> Result<(), KeyError> {
    match status {
        Err(errno) => Err(KeyError::new(key, Problem::NoSuchPort { port, errno })),
        Ok((EVTCHNSTAT_UNBOUND, remote)) if remote == backend_domid => Ok(()),
        Ok((status, remote)) => Err(KeyError::new(
            key,
            Problem::PortState {
                port,
                status,
                remote,
                expected: backend_domid,
            },
        )),
    }
}

#[kunit_tests(netback_clone_validate)]
mod tests {
    use super::*;

    /// A store made of `(side, queue, name, value)` entries.
    struct Fake<'a>(&'a [(Side, Option<u32>, &'static str, &'static str)]);

    impl Store for Fake<'_> {
        fn read(&self, key: Key) -> Result<Option<Value>, KeyError> {
            for &(side, queue, name, value) in self.0 {
                if side == key.side && queue == key.queue && name == key.name {
                    return Value::new(value.as_bytes())
                        .map(Some)
                        .ok_or(KeyError::new(key, Problem::Read(-7)));
                }
            }
            Ok(None)
        }
    }

    const F: Side = Side::Frontend;
    const B: Side = Side::Backend;

    const SINGLE: &[(Side, Option<u32>, &str, &str)] = &[
        (F, None, "state", "4"),
        (F, None, "request-rx-copy", "1"),
        (F, None, "tx-ring-ref", "768"),
        (F, None, "rx-ring-ref", "769"),
        (F, None, "event-channel-tx", "7"),
        (F, None, "event-channel-rx", "8"),
        (B, None, "handle", "0"),
        (B, None, "mac", "00:16:3e:00:00:02"),
    ];

    fn without(
        entries: &[(Side, Option<u32>, &'static str, &'static str)],
        name: &str,
    ) -> KVec<(Side, Option<u32>, &'static str, &'static str)> {
        let mut v = KVec::new();
        for e in entries {
            if e.2 != name {
                let _ = v.push(*e, GFP_KERNEL);
            }
        }
        v
    }

    fn with(
        entries: &[(Side, Option<u32>, &'static str, &'static str)],
        extra: (Side, Option<u32>, &'static str, &'static str),
    ) -> KVec<(Side, Option<u32>, &'static str, &'static str)> {
        let mut v = without(entries, extra.2);
        let _ = v.push(extra, GFP_KERNEL);
        v
    }

    fn err_of(entries: &[(Side, Option<u32>, &'static str, &'static str)]) -> Option<KeyError> {
        validate(&Fake(entries), 8).err()
    }

    #[test]
    fn parse_u32_strict() {
        assert_eq!(parse_u32(b"0"), Some(0));
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_u32(b"99999999999"), None);
        assert_eq!(parse_u32(b""), None);
        assert_eq!(parse_u32(b"-1"), None);
        assert_eq!(parse_u32(b"+1"), None);
        assert_eq!(parse_u32(b" 1"), None);
        assert_eq!(parse_u32(b"12a"), None);
        assert_eq!(parse_u32(b"0x10"), None);
    }

    #[test]
    fn parse_mac_forms() {
        assert_eq!(
            parse_mac(b"00:16:3e:0A:b:ff"),
            Some([0, 0x16, 0x3e, 0x0a, 0x0b, 0xff])
        );
        assert_eq!(parse_mac(b"00:16:3e:00:00"), None);
        assert_eq!(parse_mac(b"00:16:3e:00:00:02:03"), None);
        assert_eq!(parse_mac(b"00:16:3e:00:00:002"), None);
        assert_eq!(parse_mac(b"00:16:3e:00::02"), None);
        assert_eq!(parse_mac(b"00:16:3e:00:00:0g"), None);
        assert_eq!(parse_mac(b""), None);
    }

    #[test]
    fn value_length_bound() {
        assert!(Value::new(&[b'1'; VALUE_MAX]).is_some());
        assert!(Value::new(&[b'1'; VALUE_MAX + 1]).is_none());
    }

    #[test]
    fn single_queue_split_channels() {
        let cfg = validate(&Fake(SINGLE), 8);
        assert!(cfg.is_ok());
        if let Ok(cfg) = cfg {
            assert_eq!(cfg.handle, 0);
            assert_eq!(cfg.mac, [0, 0x16, 0x3e, 0, 0, 2]);
            assert_eq!(cfg.queues.len(), 1);
            assert_eq!(
                cfg.queues.first().copied(),
                Some(QueueRings {
                    tx_ring_ref: 768,
                    rx_ring_ref: 769,
                    tx_port: 7,
                    rx_port: 8
                })
            );
            assert!(cfg.ctrl.is_none());
        }
    }

    #[test]
    fn single_queue_shared_channel() {
        let e = without(SINGLE, "event-channel-tx");
        let e = without(&e, "event-channel-rx");
        let e = with(&e, (F, None, "event-channel", "9"));
        let cfg = validate(&Fake(&e), 8);
        assert!(cfg.is_ok());
        if let Ok(cfg) = cfg {
            let q = cfg.queues.first().copied();
            assert_eq!(q.map(|q| (q.tx_port, q.rx_port)), Some((9, 9)));
            assert_eq!(q.map(|q| q.shared_port()), Some(true));
        }
    }

    #[test]
    fn multi_queue() {
        let e: &[(Side, Option<u32>, &str, &str)] = &[
            (F, None, "state", "4"),
            (F, None, "request-rx-copy", "1"),
            (F, None, "multi-queue-num-queues", "2"),
            (F, Some(0), "tx-ring-ref", "10"),
            (F, Some(0), "rx-ring-ref", "11"),
            (F, Some(0), "event-channel", "5"),
            (F, Some(1), "tx-ring-ref", "12"),
            (F, Some(1), "rx-ring-ref", "13"),
            (F, Some(1), "event-channel-tx", "6"),
            (F, Some(1), "event-channel-rx", "7"),
            (B, None, "handle", "3"),
            (B, None, "mac", "00:16:3e:00:00:02"),
        ];
        let cfg = validate(&Fake(e), 8);
        assert!(cfg.is_ok());
        if let Ok(cfg) = cfg {
            assert_eq!(cfg.queues.len(), 2);
            assert_eq!(cfg.queues.get(1).map(|q| q.rx_ring_ref), Some(13));
            let mut ports = KVec::new();
            let r = cfg.for_each_port(|k, p| {
                let _ = ports.push((k, p), GFP_KERNEL);
                Ok(())
            });
            assert!(r.is_ok());
            assert_eq!(ports.len(), 3);
            assert_eq!(ports.first().map(|x| x.0), Some(EVTCHN.in_queue(Some(0))));
            assert_eq!(
                ports.get(2).copied(),
                Some((EVTCHN_RX.in_queue(Some(1)), 7))
            );
        }
        // Queue keys at the top level do not count for a multi-queue frontend.
        let top = with(SINGLE, (F, None, "multi-queue-num-queues", "2"));
        assert_eq!(
            err_of(&top),
            Some(KeyError::new(
                TX_RING_REF.in_queue(Some(0)),
                Problem::Missing
            ))
        );
        // More queues than netback supports.
        let many = with(SINGLE, (F, None, "multi-queue-num-queues", "9"));
        assert_eq!(err_of(&many).map(|e| e.key), Some(NUM_QUEUES));
        let zero = with(SINGLE, (F, None, "multi-queue-num-queues", "0"));
        assert_eq!(err_of(&zero).map(|e| e.problem.errno()), Some(EINVAL));
    }

    #[test]
    fn frontend_not_connected() {
        for s in ["1", "3", "5", "6"] {
            let e = with(SINGLE, (F, None, "state", s));
            let err = err_of(&e);
            assert_eq!(err.map(|e| e.key), Some(FE_STATE));
            assert_eq!(err.map(|e| e.problem.errno()), Some(ENOTCONN));
        }
        let e = with(SINGLE, (F, None, "state", "connected"));
        assert_eq!(err_of(&e).map(|e| e.problem.errno()), Some(EINVAL));
        let e = without(SINGLE, "state");
        assert_eq!(err_of(&e), Some(KeyError::new(FE_STATE, Problem::Missing)));
    }

    #[test]
    fn missing_ring_refs() {
        for key in [TX_RING_REF, RX_RING_REF] {
            let e = without(SINGLE, key.name);
            assert_eq!(err_of(&e), Some(KeyError::new(key, Problem::Missing)));
        }
    }

    #[test]
    fn malformed_ring_refs() {
        let e = with(SINGLE, (F, None, "rx-ring-ref", "12x"));
        assert_eq!(err_of(&e).map(|e| e.key), Some(RX_RING_REF));
        // Reserved grant references.
        let e = with(SINGLE, (F, None, "tx-ring-ref", "1"));
        let err = err_of(&e);
        assert_eq!(err.map(|e| e.key), Some(TX_RING_REF));
        assert!(matches!(
            err.map(|e| e.problem),
            Some(Problem::OutOfRange { value: 1, .. })
        ));
        let e = with(SINGLE, (F, None, "rx-ring-ref", "768"));
        assert_eq!(
            err_of(&e),
            Some(KeyError::new(RX_RING_REF, Problem::SameGrant(768)))
        );
    }

    #[test]
    fn bad_event_channels() {
        let e = without(SINGLE, "event-channel-rx");
        assert_eq!(
            err_of(&e),
            Some(KeyError::new(
                EVTCHN_TX,
                Problem::Unpaired("event-channel-rx")
            ))
        );
        let e = without(SINGLE, "event-channel-tx");
        let e = without(&e, "event-channel-rx");
        assert_eq!(err_of(&e), Some(KeyError::new(EVTCHN, Problem::Missing)));
        for bad in ["0", "131072", "-3", "abc", ""] {
            let e = with(SINGLE, (F, None, "event-channel-tx", bad));
            assert_eq!(err_of(&e).map(|e| e.key), Some(EVTCHN_TX));
        }
        let e = with(SINGLE, (F, None, "event-channel-rx", "131071"));
        assert!(err_of(&e).is_none());
    }

    #[test]
    fn rx_copy_required() {
        let e = without(SINGLE, "request-rx-copy");
        assert_eq!(
            err_of(&e),
            Some(KeyError::new(REQUEST_RX_COPY, Problem::Missing))
        );
        let e = with(SINGLE, (F, None, "request-rx-copy", "0"));
        assert_eq!(
            err_of(&e),
            Some(KeyError::new(REQUEST_RX_COPY, Problem::RxCopyNotSet))
        );
    }

    #[test]
    fn backend_keys() {
        let e = with(SINGLE, (B, None, "mac", "00:16:3e:00:00"));
        assert_eq!(err_of(&e).map(|e| e.key), Some(MAC));
        let e = without(SINGLE, "handle");
        assert_eq!(err_of(&e), Some(KeyError::new(HANDLE, Problem::Missing)));
        let e = with(SINGLE, (B, None, "handle", "65536"));
        assert_eq!(err_of(&e).map(|e| e.key), Some(HANDLE));
    }

    #[test]
    fn ctrl_ring() {
        let e = with(SINGLE, (F, None, "ctrl-ring-ref", "900"));
        assert_eq!(
            err_of(&e),
            Some(KeyError::new(EVTCHN_CTRL, Problem::Missing))
        );
        let e = with(&e, (F, None, "event-channel-ctrl", "11"));
        let cfg = validate(&Fake(&e), 8);
        assert_eq!(cfg.ok().and_then(|c| c.ctrl), Some((900, 11)));
    }

    #[test]
    fn read_errors_propagate() {
        let long = "1111111111111111111111111111111111111111111111111111111111111111111";
        let e = with(SINGLE, (F, None, "tx-ring-ref", long));
        assert_eq!(
            err_of(&e),
            Some(KeyError::new(TX_RING_REF, Problem::Read(-7)))
        );
    }

    #[test]
    fn port_status() {
        let k = EVTCHN_TX;
        assert!(check_port(k, 7, Ok((EVTCHNSTAT_UNBOUND, 0)), 0).is_ok());
        let bound = check_port(k, 7, Ok((EVTCHNSTAT_INTERDOMAIN, 0)), 0);
        assert_eq!(bound.err().map(|e| e.problem.errno()), Some(EBUSY));
        let other = check_port(k, 7, Ok((EVTCHNSTAT_UNBOUND, 3)), 0);
        assert!(matches!(
            other.err().map(|e| e.problem),
            Some(Problem::PortState {
                remote: 3,
                expected: 0,
                ..
            })
        ));
        let closed = check_port(k, 7, Ok((EVTCHNSTAT_CLOSED, 0)), 0);
        assert!(closed.is_err());
        let gone = check_port(k, 4000, Err(-22), 0);
        assert_eq!(gone.err().map(|e| e.problem.errno()), Some(EINVAL));
    }

    #[test]
    fn messages_name_the_key() {
        let err = KeyError::new(RX_RING_REF.in_queue(Some(1)), Problem::Missing);
        let s = kernel::str::CString::try_from_fmt(fmt!("{}: {}", err.key, err.problem));
        assert!(s.is_ok());
        if let Ok(s) = s {
            assert_eq!(s.to_bytes(), b"queue-1/rx-ring-ref: missing");
        }
    }
}
