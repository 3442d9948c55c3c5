//! Synchronous Xenstore client over the xenstored Unix socket or
//! `/dev/xen/xenbus`: requests, transactions with `EAGAIN` retry, watches,
//! permissions, `XS_INTRODUCE` and Nephele's `XS_CLONE`.
//!
//! Watch events that arrive while a request waits for its reply are queued
//! and handed out by [`Client::take_events`]. A connection dedicated to
//! watches can be polled (its fd) and drained with [`Client::read_events`].

use crate::error::{Error, Result};
use crate::perms::Perms;
use crate::wire::{self, CloneOp, Decoder, Dialect, Op, RawMsg, Reply, WatchEvent};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Default xenstored socket.
pub const DEFAULT_SOCKET: &str = "/run/xenstored/socket";
/// Kernel xenbus device (Dom0 without a local xenstored socket).
pub const XENBUS_DEVICE: &str = "/dev/xen/xenbus";

/// A transaction id (`0` = no transaction).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TxId(pub u32);

impl TxId {
    pub const NONE: TxId = TxId(0);
}

enum Transport {
    Unix(UnixStream),
    Dev(File),
}

impl Transport {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Transport::Unix(s) => s.read(buf),
            Transport::Dev(f) => f.read(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Transport::Unix(s) => s.write_all(buf),
            Transport::Dev(f) => f.write_all(buf),
        }
    }
    fn raw_fd(&self) -> RawFd {
        match self {
            Transport::Unix(s) => s.as_raw_fd(),
            Transport::Dev(f) => f.as_raw_fd(),
        }
    }
}

/// Where to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Socket(PathBuf),
    Device(PathBuf),
}

impl Endpoint {
    /// `$XENSTORED_PATH`, else `$XENSTORED_RUNDIR/socket`, else the default
    /// socket if it exists, else `/dev/xen/xenbus` (libxenstore's order).
    pub fn from_env() -> Endpoint {
        if let Ok(p) = std::env::var("XENSTORED_PATH") {
            return Endpoint::from_path(Path::new(&p));
        }
        if let Ok(d) = std::env::var("XENSTORED_RUNDIR") {
            return Endpoint::Socket(Path::new(&d).join("socket"));
        }
        if Path::new(DEFAULT_SOCKET).exists() {
            Endpoint::Socket(DEFAULT_SOCKET.into())
        } else {
            Endpoint::Device(XENBUS_DEVICE.into())
        }
    }

    /// A path under `/dev` is the xenbus device, anything else a socket.
    pub fn from_path(p: &Path) -> Endpoint {
        if p.starts_with("/dev") {
            Endpoint::Device(p.to_path_buf())
        } else {
            Endpoint::Socket(p.to_path_buf())
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Socket(p) | Endpoint::Device(p) => write!(f, "{}", p.display()),
        }
    }
}

/// One connection to xenstored.
pub struct Client {
    transport: Transport,
    decoder: Decoder,
    dialect: Dialect,
    next_req: u32,
    events: VecDeque<WatchEvent>,
    endpoint: Endpoint,
    /// Writes of requests to xenstored so far: each is one round trip.
    round_trips: u64,
}

/// How many times a transaction is retried on `EAGAIN`.
pub const TX_RETRIES: u32 = 16;

/// Destination (and source) of the dialect probe's `XS_CLONE`.
pub const PROBE_CLONE_PATH: &str = "/";

/// The dialect probe: message type 22 with an `XS_CLONE` payload that
/// clones the root `/` onto itself (`"0\00\01\0/\0/"`: domids 0, basic
/// op). See [`Probe`].
pub const PROBE_CLONE_PAYLOAD: &[u8] = b"0\x000\x001\x00/\x00/";

/// What a daemon answered to one probe request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeAnswer {
    /// `XS_ERROR` with this errno.
    Error(i32),
    /// A reply of this (non-error) type.
    Reply(u32),
}

impl ProbeAnswer {
    fn of(m: &RawMsg) -> ProbeAnswer {
        // XS_ERROR is 16 in every numbering.
        if m.ty == 16 {
            ProbeAnswer::Error(wire::parse_error(&m.payload))
        } else {
            ProbeAnswer::Reply(m.ty)
        }
    }
}

impl std::fmt::Display for ProbeAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeAnswer::Error(e) => write!(f, "{}", wire::errno::name(*e)),
            ProbeAnswer::Reply(ty) => write!(f, "reply type {ty}"),
        }
    }
}

/// Result of [`Client::probe_dialect`].
///
/// The probe asks for what the daemon uses: message type 22 carrying
/// [`PROBE_CLONE_PAYLOAD`], an `XS_CLONE` of the root `/` onto itself. It
/// can change nothing anywhere:
/// - Nephele's oxenstored (22 = `XS_CLONE`, `do_clone`): 5 fields, numbers
///   and paths are valid; the destination's parent (the root's parent is
///   the root) exists, so `create_implicit_path` creates nothing; the
///   source exists (`get_node` of the root); the destination exists, so
///   `Store.clone` raises `Already_exist` before touching the store:
///   **`EEXIST`**. No watch fires (only on success); like any failed
///   write it only bumps oxenstored's commit counter.
/// - The upstream C xenstored (22 = `XS_DIRECTORY_PART`, a read): a
///   payload of 4 NULs is not the 2 strings it wants: **`EINVAL`**. Any
///   other upstream answer (a directory part, `ENOENT`, `EACCES`) is a read's
///   answer too; no read can answer `EEXIST`, so only oxenstored's answer
///   means `XS_CLONE`.
/// - Nephele's C xenstored (its `xs_wire.h` has 22 = `XS_CLONE` but no
///   handler, and 23 = `XS_DIRECTORY_PART`): **`ENOSYS`**. Only then a second
///   request, `XS_DIRECTORY_PART` (23) of `/` (a read), tells its numbering
///   (a directory part) from a daemon that knows neither 22 nor 23 (`ENOSYS`
///   again). Oxenstored has no 23 (`ENOSYS`) and never gets it.
///
/// So `XS_DIRECTORY_PART` is never sent as 22 to a daemon where 22 is
/// `XS_CLONE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The numbering: [`Dialect::Nephele`] for both of Nephele's daemons.
    pub dialect: Dialect,
    /// The daemon implements `XS_CLONE` (Nephele's oxenstored).
    pub xs_clone: bool,
    /// (message type sent, answer), in order.
    pub answers: Vec<(u32, ProbeAnswer)>,
}

impl Probe {
    /// Which daemon this looks like, for the log.
    pub fn daemon(&self) -> &'static str {
        match (self.dialect, self.xs_clone) {
            (Dialect::Nephele, true) => "Nephele's oxenstored (XS_CLONE = 22)",
            (Dialect::Nephele, false) => {
                "Nephele's numbering without XS_CLONE (Nephele's C xenstored: XS_DIRECTORY_PART = 23)"
            }
            (Dialect::Upstream, _) => "upstream numbering (XS_DIRECTORY_PART = 22, no XS_CLONE)",
        }
    }
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; answers:", self.daemon())?;
        for (ty, a) in &self.answers {
            write!(f, " type {ty} -> {a}")?;
        }
        Ok(())
    }
}

/// Most requests sent in one [`Client::pipeline`]: their replies wait in
/// xenstored until the whole lot is written, and xenstored bounds what a
/// connection may have outstanding. Longer lists go in several.
pub const PIPELINE_MAX: usize = 32;

/// One request of a [`Client::pipeline`], built by its constructors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub op: Op,
    pub tx: TxId,
    pub payload: Vec<u8>,
    /// For errors and logs.
    pub path: String,
}

impl Request {
    /// `XS_WRITE`.
    pub fn write(tx: TxId, path: &str, value: &[u8]) -> Result<Request> {
        let payload = wire::write_payload(path, value).map_err(|source| Error::Wire {
            op: Op::Write,
            path: path.into(),
            source,
        })?;
        Ok(Request {
            op: Op::Write,
            tx,
            payload,
            path: path.into(),
        })
    }

    /// `XS_WRITE` of a string value.
    pub fn write_str(tx: TxId, path: &str, value: &str) -> Result<Request> {
        Request::write(tx, path, value.as_bytes())
    }

    /// `XS_SET_PERMS`.
    pub fn set_perms(tx: TxId, path: &str, perms: &Perms) -> Result<Request> {
        let strings = perms.to_strings();
        let mut args: Vec<&str> = vec![path];
        args.extend(strings.iter().map(String::as_str));
        let payload = wire::args_payload(&args).map_err(|source| Error::Wire {
            op: Op::SetPerms,
            path: path.into(),
            source,
        })?;
        Ok(Request {
            op: Op::SetPerms,
            tx,
            payload,
            path: path.into(),
        })
    }

    /// Nephele's `XS_CLONE` (outside any transaction).
    pub fn clone_tree(
        parent: u16,
        child: u16,
        op: CloneOp,
        parent_path: &str,
        child_path: &str,
    ) -> Result<Request> {
        let payload =
            wire::clone_payload(parent, child, op, parent_path, child_path).map_err(|source| {
                Error::Wire {
                    op: Op::Clone,
                    path: parent_path.into(),
                    source,
                }
            })?;
        Ok(Request {
            op: Op::Clone,
            tx: TxId::NONE,
            payload,
            path: parent_path.into(),
        })
    }

    /// `XS_INTRODUCE` (Nephele's optional 4th field: the parent domid).
    pub fn introduce(domid: u16, mfn: u64, port: u32, parent: Option<u16>) -> Request {
        Request {
            op: Op::Introduce,
            tx: TxId::NONE,
            payload: wire::introduce_payload(domid, mfn, port, parent),
            path: format!("domain {domid}"),
        }
    }
}

impl Client {
    pub fn connect(endpoint: &Endpoint, dialect: Dialect) -> Result<Client> {
        let err = |source| Error::Connect {
            endpoint: endpoint.to_string(),
            source,
        };
        let transport = match endpoint {
            Endpoint::Socket(p) => Transport::Unix(connect_retry(p).map_err(err)?),
            Endpoint::Device(p) => Transport::Dev(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(p)
                    .map_err(err)?,
            ),
        };
        Ok(Client {
            transport,
            decoder: Decoder::default(),
            dialect,
            next_req: 1,
            events: VecDeque::new(),
            endpoint: endpoint.clone(),
            round_trips: 0,
        })
    }

    /// Round trips to xenstored so far: one per [`Client::request`] and
    /// one per [`Client::pipeline`], however many requests it carries.
    pub fn round_trips(&self) -> u64 {
        self.round_trips
    }

    /// Bounds every blocking read (socket transport only; `None` = wait
    /// forever, the default).
    pub fn set_read_timeout(&self, t: Option<std::time::Duration>) -> std::io::Result<()> {
        match &self.transport {
            Transport::Unix(s) => s.set_read_timeout(t),
            Transport::Dev(_) => Ok(()),
        }
    }

    /// A client over an already connected stream (tests, socket activation).
    pub fn from_stream(stream: UnixStream, dialect: Dialect, endpoint: Endpoint) -> Client {
        Client {
            round_trips: 0,
            transport: Transport::Unix(stream),
            decoder: Decoder::default(),
            dialect,
            next_req: 1,
            events: VecDeque::new(),
            endpoint,
        }
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn set_dialect(&mut self, d: Dialect) {
        self.dialect = d;
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Opens a second connection to the same endpoint, same dialect.
    pub fn reconnect(&self) -> Result<Client> {
        Client::connect(&self.endpoint, self.dialect)
    }

    fn read_msg(&mut self, op: Op, path: &str) -> Result<RawMsg> {
        loop {
            match self.decoder.next_msg() {
                Ok(Some(m)) => return Ok(m),
                Ok(None) => {}
                Err(source) => {
                    return Err(Error::Wire {
                        op,
                        path: path.into(),
                        source,
                    });
                }
            }
            let mut buf = [0u8; 4096 + 16];
            let n = self.transport.read(&mut buf).map_err(|source| Error::Io {
                op,
                path: path.into(),
                source,
            })?;
            if n == 0 {
                return Err(Error::Io {
                    op,
                    path: path.into(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "xenstored closed the connection",
                    ),
                });
            }
            self.decoder.push(&buf[..n]);
        }
    }

    /// Sends one raw message (wire type `ty`) and returns the raw reply.
    /// Watch events received meanwhile are queued.
    pub fn raw_request(
        &mut self,
        ty: u32,
        tx: TxId,
        payload: Vec<u8>,
        op: Op,
        path: &str,
    ) -> Result<RawMsg> {
        let req_id = self.next_req;
        self.next_req = self.next_req.wrapping_add(1);
        let bytes = RawMsg {
            ty,
            req_id,
            tx_id: tx.0,
            payload,
        }
        .encode()
        .map_err(|source| Error::Wire {
            op,
            path: path.into(),
            source,
        })?;
        self.round_trips += 1;
        self.transport
            .write_all(&bytes)
            .map_err(|source| Error::Io {
                op,
                path: path.into(),
                source,
            })?;
        loop {
            let m = self.read_msg(op, path)?;
            if self.dialect.op(m.ty) == Some(Op::WatchEvent) {
                match wire::parse_watch_event(&m.payload) {
                    Ok(ev) => self.events.push_back(ev),
                    Err(e) => tracing::warn!("dropping malformed watch event: {e}"),
                }
                continue;
            }
            if m.req_id != req_id {
                return Err(Error::Unexpected {
                    op,
                    path: path.into(),
                    ty: m.ty,
                    req_id: m.req_id,
                });
            }
            // Watch events that came in the same read as the reply must not
            // sit unparsed in the decoder (epoll would not signal them).
            self.drain_decoder();
            return Ok(m);
        }
    }

    /// Sends every request of `reqs` in ONE write, before reading any
    /// reply, then reads their replies (xenstored serves one connection's
    /// requests in order, each with its `req_id`): one round trip, and one
    /// wake-up of xenstored and of the caller, for the lot instead of one
    /// each. Requests must not depend on an earlier one's reply (a later
    /// request is served after an earlier one, whatever its answer).
    /// Returns each request's outcome in order; the outer error is the
    /// connection's (I/O, wire), after which the connection is unusable.
    /// Watch events received meanwhile are queued.
    pub fn pipeline(&mut self, reqs: &[Request]) -> Result<Vec<Result<Vec<u8>>>> {
        let mut bytes = Vec::new();
        let first = self.next_req;
        for r in reqs {
            let ty = self.dialect.code(r.op).ok_or(Error::Unsupported {
                op: r.op,
                dialect: self.dialect,
            })?;
            let req_id = self.next_req;
            self.next_req = self.next_req.wrapping_add(1);
            let m = RawMsg {
                ty,
                req_id,
                tx_id: r.tx.0,
                payload: r.payload.clone(),
            }
            .encode()
            .map_err(|source| Error::Wire {
                op: r.op,
                path: r.path.clone(),
                source,
            })?;
            bytes.extend_from_slice(&m);
        }
        let Some(r0) = reqs.first() else {
            return Ok(Vec::new());
        };
        self.round_trips += 1;
        self.transport
            .write_all(&bytes)
            .map_err(|source| Error::Io {
                op: r0.op,
                path: r0.path.clone(),
                source,
            })?;
        let mut out: Vec<Option<Result<Vec<u8>>>> = (0..reqs.len()).map(|_| None).collect();
        let mut left = reqs.len();
        while left > 0 {
            // The first request still unanswered names a read error.
            let pending = out.iter().position(Option::is_none).unwrap_or(0);
            let (op, path) = (reqs[pending].op, reqs[pending].path.clone());
            let m = self.read_msg(op, &path)?;
            if self.dialect.op(m.ty) == Some(Op::WatchEvent) {
                match wire::parse_watch_event(&m.payload) {
                    Ok(ev) => self.events.push_back(ev),
                    Err(e) => tracing::warn!("dropping malformed watch event: {e}"),
                }
                continue;
            }
            let i = m.req_id.wrapping_sub(first) as usize;
            if i >= reqs.len() || out[i].is_some() {
                return Err(Error::Unexpected {
                    op,
                    path,
                    ty: m.ty,
                    req_id: m.req_id,
                });
            }
            let r = &reqs[i];
            out[i] = Some(match wire::classify(self.dialect, m) {
                Ok(Reply::Ok(p)) => Ok(p),
                Ok(Reply::Err(errno)) => Err(Error::Xs {
                    op: r.op,
                    path: r.path.clone(),
                    errno,
                }),
                Ok(Reply::Event(_)) => unreachable_event(r.op, &r.path),
                Err(source) => Err(Error::Wire {
                    op: r.op,
                    path: r.path.clone(),
                    source,
                }),
            });
            left -= 1;
        }
        self.drain_decoder();
        Ok(out
            .into_iter()
            .map(|r| r.expect("every reply read"))
            .collect())
    }

    /// One request; returns the success payload or the Xenstore errno.
    pub fn request(&mut self, op: Op, tx: TxId, payload: Vec<u8>, path: &str) -> Result<Vec<u8>> {
        let ty = self.dialect.code(op).ok_or(Error::Unsupported {
            op,
            dialect: self.dialect,
        })?;
        let m = self.raw_request(ty, tx, payload, op, path)?;
        match wire::classify(self.dialect, m) {
            Ok(Reply::Ok(p)) => Ok(p),
            Ok(Reply::Err(errno)) => Err(Error::Xs {
                op,
                path: path.into(),
                errno,
            }),
            Ok(Reply::Event(_)) => unreachable_event(op, path),
            Err(source) => Err(Error::Wire {
                op,
                path: path.into(),
                source,
            }),
        }
    }

    fn args(&self, op: Op, path: &str, args: &[&str]) -> Result<Vec<u8>> {
        wire::args_payload(args).map_err(|source| Error::Wire {
            op,
            path: path.into(),
            source,
        })
    }

    pub fn read(&mut self, tx: TxId, path: &str) -> Result<Vec<u8>> {
        let p = self.args(Op::Read, path, &[path])?;
        self.request(Op::Read, tx, p, path)
    }

    /// Reads a UTF-8 value.
    pub fn read_string(&mut self, tx: TxId, path: &str) -> Result<String> {
        let v = self.read(tx, path)?;
        String::from_utf8(v).map_err(|_| Error::NotUtf8 { path: path.into() })
    }

    /// Reads a value, `None` if the node does not exist.
    pub fn read_opt(&mut self, tx: TxId, path: &str) -> Result<Option<String>> {
        match self.read_string(tx, path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_enoent() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn exists(&mut self, tx: TxId, path: &str) -> Result<bool> {
        match self.read(tx, path) {
            Ok(_) => Ok(true),
            Err(e) if e.is_enoent() => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn write(&mut self, tx: TxId, path: &str, value: &[u8]) -> Result<()> {
        let r = Request::write(tx, path, value)?;
        self.request(r.op, tx, r.payload, path).map(drop)
    }

    pub fn write_str(&mut self, tx: TxId, path: &str, value: &str) -> Result<()> {
        self.write(tx, path, value.as_bytes())
    }

    pub fn mkdir(&mut self, tx: TxId, path: &str) -> Result<()> {
        let p = self.args(Op::Mkdir, path, &[path])?;
        self.request(Op::Mkdir, tx, p, path).map(drop)
    }

    pub fn rm(&mut self, tx: TxId, path: &str) -> Result<()> {
        let p = self.args(Op::Rm, path, &[path])?;
        self.request(Op::Rm, tx, p, path).map(drop)
    }

    /// Children names of `path`. A listing too big for one reply (`E2BIG`)
    /// is fetched with `XS_DIRECTORY_PART` (22 upstream, 23 Nephele).
    pub fn directory(&mut self, tx: TxId, path: &str) -> Result<Vec<String>> {
        let p = self.args(Op::Directory, path, &[path])?;
        let r = match self.request(Op::Directory, tx, p, path) {
            Err(e) if e.errno() == Some(wire::errno::E2BIG) => {
                return self.directory_parts(tx, path);
            }
            r => r?,
        };
        wire::split_strings(&r).map_err(|source| Error::Wire {
            op: Op::Directory,
            path: path.into(),
            source,
        })
    }

    /// `XS_DIRECTORY_PART` loop; restarts if the node changes meanwhile
    /// (its generation count differs).
    pub fn directory_parts(&mut self, tx: TxId, path: &str) -> Result<Vec<String>> {
        let wire_err = |source| Error::Wire {
            op: Op::DirectoryPart,
            path: path.into(),
            source,
        };
        'restart: for _ in 0..8 {
            let mut names = Vec::new();
            let mut offset = 0usize;
            let mut generation: Option<String> = None;
            loop {
                let off = offset.to_string();
                let p = self.args(Op::DirectoryPart, path, &[path, &off])?;
                let r = self.request(Op::DirectoryPart, tx, p, path)?;
                let part = wire::parse_directory_part(&r).map_err(wire_err)?;
                match &generation {
                    None => generation = Some(part.generation.clone()),
                    Some(g) if *g != part.generation => continue 'restart,
                    Some(_) => {}
                }
                offset += part.names.iter().map(|n| n.len() + 1).sum::<usize>();
                names.extend(part.names);
                if part.complete {
                    return Ok(names);
                }
            }
        }
        Err(Error::Xs {
            op: Op::DirectoryPart,
            path: path.into(),
            errno: wire::errno::EAGAIN,
        })
    }

    pub fn get_perms(&mut self, tx: TxId, path: &str) -> Result<Perms> {
        let p = self.args(Op::GetPerms, path, &[path])?;
        let r = self.request(Op::GetPerms, tx, p, path)?;
        wire::split_strings(&r)
            .and_then(|s| Perms::parse(&s))
            .map_err(|source| Error::Wire {
                op: Op::GetPerms,
                path: path.into(),
                source,
            })
    }

    pub fn set_perms(&mut self, tx: TxId, path: &str, perms: &Perms) -> Result<()> {
        let r = Request::set_perms(tx, path, perms)?;
        self.request(r.op, tx, r.payload, path).map(drop)
    }

    pub fn watch(&mut self, path: &str, token: &str) -> Result<()> {
        let p = self.args(Op::Watch, path, &[path, token])?;
        self.request(Op::Watch, TxId::NONE, p, path).map(drop)
    }

    pub fn unwatch(&mut self, path: &str, token: &str) -> Result<()> {
        let p = self.args(Op::Unwatch, path, &[path, token])?;
        self.request(Op::Unwatch, TxId::NONE, p, path).map(drop)
    }

    pub fn get_domain_path(&mut self, domid: u16) -> Result<String> {
        let d = domid.to_string();
        let p = self.args(Op::GetDomainPath, &d, &[&d])?;
        let r = self.request(Op::GetDomainPath, TxId::NONE, p, &d)?;
        let body = r.strip_suffix(&[0]).unwrap_or(&r);
        String::from_utf8(body.to_vec()).map_err(|_| Error::NotUtf8 { path: d })
    }

    /// `XS_INTRODUCE` (Nephele's optional 4th field: the parent domid).
    pub fn introduce(
        &mut self,
        domid: u16,
        mfn: u64,
        port: u32,
        parent: Option<u16>,
    ) -> Result<()> {
        let path = format!("domain {domid}");
        let p = wire::introduce_payload(domid, mfn, port, parent);
        self.request(Op::Introduce, TxId::NONE, p, &path).map(drop)
    }

    pub fn is_domain_introduced(&mut self, domid: u16) -> Result<bool> {
        let d = domid.to_string();
        let p = self.args(Op::IsDomainIntroduced, &d, &[&d])?;
        let r = self.request(Op::IsDomainIntroduced, TxId::NONE, p, &d)?;
        Ok(r.starts_with(b"T"))
    }

    /// Nephele's `XS_CLONE` (always sent outside any transaction, as an
    /// atomic operation of its own).
    pub fn clone_tree(
        &mut self,
        parent: u16,
        child: u16,
        op: CloneOp,
        parent_path: &str,
        child_path: &str,
    ) -> Result<()> {
        let r = Request::clone_tree(parent, child, op, parent_path, child_path)?;
        self.request(r.op, r.tx, r.payload, &r.path).map(drop)
    }

    pub fn transaction_start(&mut self) -> Result<TxId> {
        let r = self.request(Op::TransactionStart, TxId::NONE, vec![0], "")?;
        wire::parse_u32_reply(&r)
            .map(TxId)
            .map_err(|source| Error::Wire {
                op: Op::TransactionStart,
                path: String::new(),
                source,
            })
    }

    pub fn transaction_end(&mut self, tx: TxId, commit: bool) -> Result<()> {
        let p = if commit {
            b"T\0".to_vec()
        } else {
            b"F\0".to_vec()
        };
        self.request(Op::TransactionEnd, tx, p, "").map(drop)
    }

    /// Runs `f` in a transaction, retrying the whole closure when the
    /// commit (or any step) fails with `EAGAIN`, up to `retries` times.
    /// On any other error the transaction is aborted.
    pub fn transaction<T>(
        &mut self,
        retries: u32,
        mut f: impl FnMut(&mut Client, TxId) -> Result<T>,
    ) -> Result<T> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let tx = self.transaction_start()?;
            match f(self, tx) {
                Ok(v) => match self.transaction_end(tx, true) {
                    Ok(()) => return Ok(v),
                    Err(e) if e.is_eagain() && attempt <= retries => {
                        tracing::debug!(attempt, "xenstore transaction conflict, retrying");
                    }
                    Err(e) => return Err(e),
                },
                Err(e) => {
                    let _ = self.transaction_end(tx, false);
                    if !(e.is_eagain() && attempt <= retries) {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Probes which numbering the daemon speaks and whether it has
    /// `XS_CLONE`, without side effects, and sets the client's dialect to
    /// the answer. See [`Probe`] for the requests and what each daemon
    /// answers.
    pub fn probe_dialect(&mut self) -> Result<Probe> {
        let path = PROBE_CLONE_PATH;
        let m = self.raw_request(
            22,
            TxId::NONE,
            PROBE_CLONE_PAYLOAD.to_vec(),
            Op::Clone,
            path,
        )?;
        let first = ProbeAnswer::of(&m);
        let probe = match first {
            ProbeAnswer::Error(wire::errno::EEXIST) => Probe {
                dialect: Dialect::Nephele,
                xs_clone: true,
                answers: vec![(22, first)],
            },
            ProbeAnswer::Error(wire::errno::ENOSYS) => {
                // No operation 22 at all: Nephele's C xenstored (its
                // xs_wire.h has XS_CLONE = 22, unimplemented, and
                // XS_DIRECTORY_PART = 23) or a daemon older than
                // XS_DIRECTORY_PART. A directory part of "/" (a read) tells.
                let p = wire::args_payload(&["/", "0"]).map_err(|source| Error::Wire {
                    op: Op::DirectoryPart,
                    path: "/".into(),
                    source,
                })?;
                let m = self.raw_request(23, TxId::NONE, p, Op::DirectoryPart, "/")?;
                let second = ProbeAnswer::of(&m);
                let dialect = match second {
                    ProbeAnswer::Error(wire::errno::ENOSYS) => Dialect::Upstream,
                    _ => Dialect::Nephele,
                };
                Probe {
                    dialect,
                    xs_clone: false,
                    answers: vec![(22, first), (23, second)],
                }
            }
            // EINVAL: the upstream C xenstored's XS_DIRECTORY_PART refuses a
            // payload of 5 fields; a directory part or any other error: 22
            // is not XS_CLONE there either.
            _ => Probe {
                dialect: Dialect::Upstream,
                xs_clone: false,
                answers: vec![(22, first)],
            },
        };
        self.dialect = probe.dialect;
        Ok(probe)
    }

    /// [`Client::probe_dialect`], returning only the numbering.
    pub fn detect_dialect(&mut self) -> Result<Dialect> {
        self.probe_dialect().map(|p| p.dialect)
    }

    /// Queued watch events (from replies interleaved with events).
    pub fn take_events(&mut self) -> Vec<WatchEvent> {
        self.events.drain(..).collect()
    }

    pub fn has_queued_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Moves every complete buffered message into the event queue.
    fn drain_decoder(&mut self) {
        loop {
            match self.decoder.next_msg() {
                Ok(Some(m)) => match wire::classify(self.dialect, m) {
                    Ok(Reply::Event(ev)) => self.events.push_back(ev),
                    Ok(other) => tracing::warn!("unexpected xenstore message: {other:?}"),
                    Err(e) => tracing::warn!("dropping malformed watch event: {e}"),
                },
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("xenstore stream: {e}");
                    return;
                }
            }
        }
    }

    /// For a connection used only for watches: call when its fd is readable.
    /// Returns the queued events if there are any, else does one `read()`
    /// and returns every complete event.
    pub fn read_events(&mut self) -> Result<Vec<WatchEvent>> {
        self.drain_decoder();
        if !self.events.is_empty() {
            return Ok(self.take_events());
        }
        let mut buf = [0u8; 4096 + 16];
        let n = self.transport.read(&mut buf).map_err(|source| Error::Io {
            op: Op::WatchEvent,
            path: String::new(),
            source,
        })?;
        if n == 0 {
            return Err(Error::Io {
                op: Op::WatchEvent,
                path: String::new(),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "xenstored closed the connection",
                ),
            });
        }
        self.decoder.push(&buf[..n]);
        while let Some(m) = self.decoder.next_msg().map_err(|source| Error::Wire {
            op: Op::WatchEvent,
            path: String::new(),
            source,
        })? {
            match wire::classify(self.dialect, m) {
                Ok(Reply::Event(ev)) => self.events.push_back(ev),
                Ok(other) => tracing::warn!("unexpected message on watch connection: {other:?}"),
                Err(e) => tracing::warn!("dropping malformed watch event: {e}"),
            }
        }
        Ok(self.take_events())
    }

    /// Blocks until at least one watch event is available.
    pub fn wait_event(&mut self) -> Result<WatchEvent> {
        loop {
            if let Some(ev) = self.events.pop_front() {
                return Ok(ev);
            }
            let evs = self.read_events()?;
            self.events.extend(evs);
        }
    }
}

/// xenstored listens with a backlog of 1: a busy daemon refuses
/// connections for a moment. Retry for up to a second.
fn connect_retry(p: &Path) -> std::io::Result<UnixStream> {
    let mut attempt = 0;
    loop {
        match UnixStream::connect(p) {
            Err(e)
                if attempt < 100
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::WouldBlock
                    ) =>
            {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

fn unreachable_event<T>(op: Op, path: &str) -> Result<T> {
    Err(Error::Unexpected {
        op,
        path: path.into(),
        ty: 15,
        req_id: 0,
    })
}

impl AsRawFd for Client {
    fn as_raw_fd(&self) -> RawFd {
        self.transport.raw_fd()
    }
}

impl AsFd for Client {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.transport {
            Transport::Unix(s) => s.as_fd(),
            Transport::Dev(f) => f.as_fd(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted server: reads one request, answers with `reply(req)`.
    fn serve(mut srv: UnixStream, reply: impl Fn(&RawMsg) -> Vec<u8> + Send + 'static) {
        std::thread::spawn(move || {
            let mut d = Decoder::default();
            let mut buf = [0u8; 8192];
            while let Ok(n) = srv.read(&mut buf) {
                if n == 0 {
                    return;
                }
                d.push(&buf[..n]);
                while let Ok(Some(m)) = d.next_msg() {
                    if srv.write_all(&reply(&m)).is_err() {
                        return;
                    }
                }
            }
        });
    }

    fn msg(ty: u32, req_id: u32, payload: &[u8]) -> Vec<u8> {
        RawMsg {
            ty,
            req_id,
            tx_id: 0,
            payload: payload.to_vec(),
        }
        .encode()
        .unwrap_or_default()
    }

    fn pair(dialect: Dialect) -> (Client, UnixStream) {
        let (a, b) = UnixStream::pair().expect("pair");
        a.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("timeout");
        (
            Client::from_stream(a, dialect, Endpoint::Socket("/test".into())),
            b,
        )
    }

    #[test]
    fn event_in_the_same_read_as_a_reply_is_not_lost() {
        let (mut c, srv) = pair(Dialect::Upstream);
        serve(srv, |m| {
            // Reply and the watch's first event in ONE write.
            let mut out = msg(4, m.req_id, b"OK\0");
            out.extend(msg(15, 0, b"/p\0tok\0"));
            out
        });
        c.watch("/p", "tok").expect("watch");
        assert!(c.has_queued_events(), "event parsed with the reply");
        let evs = c.read_events().expect("no blocking read needed");
        assert_eq!(
            evs,
            vec![WatchEvent {
                path: "/p".into(),
                token: "tok".into()
            }]
        );
    }

    #[test]
    fn events_before_a_reply_are_queued_and_errors_carry_path_and_errno() {
        let (mut c, srv) = pair(Dialect::Upstream);
        serve(srv, |m| {
            let mut out = msg(15, 0, b"/a\0t\0");
            out.extend(msg(16, m.req_id, b"EACCES\0"));
            out
        });
        let e = c.read(TxId::NONE, "/secret").expect_err("error reply");
        assert_eq!(e.errno(), Some(wire::errno::EACCES));
        assert_eq!(e.to_string(), "xenstore Read /secret: EACCES (errno 13)");
        assert_eq!(c.take_events().len(), 1);
    }

    /// Nephele's oxenstored, as far as the probe goes: its op table ends
    /// `... Set_target; Invalid; Reset_watches; Clone` (22); every number
    /// past it is `Invalid`, answered `ENOSYS`. `XS_CLONE` onto an existing
    /// destination is `EEXIST` (`Store.clone`), a payload that is not 5
    /// fields `EINVAL`.
    fn oxenstored(m: &RawMsg) -> Vec<u8> {
        match m.ty {
            22 => {
                let fields = m.payload.splitn(5, |b| *b == 0).collect::<Vec<_>>();
                if fields.len() != 5 {
                    msg(16, m.req_id, b"EINVAL\0")
                } else if fields[4] == b"/" {
                    msg(16, m.req_id, b"EEXIST\0")
                } else {
                    msg(22, m.req_id, b"OK\0")
                }
            }
            ty if ty >= 23 => msg(16, m.req_id, b"ENOSYS\0"),
            ty => msg(ty, m.req_id, b"OK\0"),
        }
    }

    /// The upstream C xenstored: 22 = XS_DIRECTORY_PART, which wants
    /// exactly 2 strings (`xs_count_strings`), else `EINVAL`; no 23.
    fn upstream_c(m: &RawMsg) -> Vec<u8> {
        match m.ty {
            22 if m.payload.iter().filter(|b| **b == 0).count() != 2 => {
                msg(16, m.req_id, b"EINVAL\0")
            }
            22 => msg(22, m.req_id, b"1\0local\0\0"),
            ty if ty >= 23 => msg(16, m.req_id, b"ENOSYS\0"),
            ty => msg(ty, m.req_id, b"OK\0"),
        }
    }

    /// Nephele's C xenstored: XS_CLONE (22) has no handler (`ENOSYS`),
    /// XS_DIRECTORY_PART is 23.
    fn nephele_c(m: &RawMsg) -> Vec<u8> {
        match m.ty {
            22 => msg(16, m.req_id, b"ENOSYS\0"),
            23 => msg(23, m.req_id, b"1\0local\0\0"),
            ty if ty > 23 => msg(16, m.req_id, b"ENOSYS\0"),
            ty => msg(ty, m.req_id, b"OK\0"),
        }
    }

    type Seen = std::sync::Arc<std::sync::Mutex<Vec<(u32, Vec<u8>)>>>;

    fn recording(srv: UnixStream, daemon: fn(&RawMsg) -> Vec<u8>) -> Seen {
        let seen: Seen = Default::default();
        let s2 = seen.clone();
        serve(srv, move |m| {
            if let Ok(mut v) = s2.lock() {
                v.push((m.ty, m.payload.clone()));
            }
            daemon(m)
        });
        seen
    }

    #[test]
    fn probe_picks_xs_clone_on_oxenstored_and_sends_clone_as_22() {
        let (mut c, srv) = pair(Dialect::Upstream);
        let seen = recording(srv, oxenstored);
        let p = c.probe_dialect().expect("probe");
        assert_eq!(p.dialect, Dialect::Nephele, "{p}");
        assert!(p.xs_clone, "{p}");
        assert_eq!(
            p.answers,
            vec![(22, ProbeAnswer::Error(wire::errno::EEXIST))]
        );
        assert_eq!(c.dialect(), Dialect::Nephele);
        c.clone_tree(1, 2, CloneOp::DevVif, "/a", "/b")
            .expect("clone");
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(
            seen,
            vec![
                (22, b"0\x000\x001\x00/\x00/".to_vec()),
                (22, b"1\x002\x003\x00/a\x00/b".to_vec()),
            ],
            "one probe request, no 23 ever sent"
        );
    }

    #[test]
    fn probe_picks_upstream_on_the_c_xenstored() {
        let (mut c, srv) = pair(Dialect::Nephele);
        let seen = recording(srv, upstream_c);
        let p = c.probe_dialect().expect("probe");
        assert_eq!((p.dialect, p.xs_clone), (Dialect::Upstream, false), "{p}");
        assert_eq!(
            p.answers,
            vec![(22, ProbeAnswer::Error(wire::errno::EINVAL))]
        );
        assert_eq!(c.dialect(), Dialect::Upstream);
        assert_eq!(seen.lock().expect("lock").len(), 1);
    }

    #[test]
    fn probe_on_nephele_c_xenstored_keeps_its_numbering_without_xs_clone() {
        let (mut c, srv) = pair(Dialect::Upstream);
        let seen = recording(srv, nephele_c);
        let p = c.probe_dialect().expect("probe");
        assert_eq!((p.dialect, p.xs_clone), (Dialect::Nephele, false), "{p}");
        assert_eq!(
            p.answers,
            vec![
                (22, ProbeAnswer::Error(wire::errno::ENOSYS)),
                (23, ProbeAnswer::Reply(23))
            ]
        );
        // Its XS_DIRECTORY_PART is 23; 22 (its unimplemented XS_CLONE) is
        // never sent a directory part.
        assert_eq!(c.dialect().code(Op::DirectoryPart), Some(23));
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(seen[1], (23, b"/\x000\x00".to_vec()));
    }

    #[test]
    fn probe_on_a_daemon_without_22_or_23_is_upstream_without_xs_clone() {
        let (mut c, srv) = pair(Dialect::Upstream);
        serve(srv, |m| match m.ty {
            22 | 23 => msg(16, m.req_id, b"ENOSYS\0"),
            ty => msg(ty, m.req_id, b"OK\0"),
        });
        let p = c.probe_dialect().expect("probe");
        assert_eq!((p.dialect, p.xs_clone), (Dialect::Upstream, false), "{p}");
        assert_eq!(p.answers.len(), 2);
    }

    #[test]
    fn probe_answers_never_read_as_xs_clone_except_eexist() {
        // Whatever a read (an upstream XS_DIRECTORY_PART) can answer.
        for answer in [
            msg(16, 1, b"EINVAL\0"),
            msg(16, 1, b"ENOENT\0"),
            msg(16, 1, b"EACCES\0"),
            msg(16, 1, b"E2BIG\0"),
            msg(22, 1, b"7\0a\0b\0\0"),
            msg(22, 1, b"OK\0"),
        ] {
            let (mut c, srv) = pair(Dialect::Upstream);
            serve(srv, move |m| {
                let mut out = answer.clone();
                out[4..8].copy_from_slice(&m.req_id.to_le_bytes());
                out
            });
            let p = c.probe_dialect().expect("probe");
            assert!(!p.xs_clone && p.dialect == Dialect::Upstream, "{p}");
        }
    }

    #[test]
    fn unexpected_reply_id_is_a_protocol_error() {
        let (mut c, srv) = pair(Dialect::Upstream);
        serve(srv, |m| msg(2, m.req_id + 7, b"x"));
        let e = c.read(TxId::NONE, "/x").expect_err("mismatch");
        assert!(matches!(e, Error::Unexpected { .. }), "{e}");
    }
}
