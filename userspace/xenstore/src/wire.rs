//! Xenstore wire protocol: message header, operation numbering per dialect,
//! payload encoders and reply parsers. Pure code, no I/O.
//!
//! A message is a 16-byte header (`type`, `req_id`, `tx_id`, `len`, all
//! native-endian `u32`, i.e. little-endian on x86) followed by `len` bytes of
//! payload (at most [`PAYLOAD_MAX`]).

use std::fmt;

/// Size of the message header.
pub const HEADER_LEN: usize = 16;
/// Largest payload xenstored accepts (`XENSTORE_PAYLOAD_MAX`).
pub const PAYLOAD_MAX: usize = 4096;

/// Xenstore error names and the Linux errno they stand for (`xsd_errors`).
pub mod errno {
    pub const EPERM: i32 = 1;
    pub const ENOENT: i32 = 2;
    pub const EIO: i32 = 5;
    pub const E2BIG: i32 = 7;
    pub const EAGAIN: i32 = 11;
    pub const ENOMEM: i32 = 12;
    pub const EACCES: i32 = 13;
    pub const EBUSY: i32 = 16;
    pub const EEXIST: i32 = 17;
    pub const EISDIR: i32 = 21;
    pub const EINVAL: i32 = 22;
    pub const ENOSPC: i32 = 28;
    pub const EROFS: i32 = 30;
    pub const ENOSYS: i32 = 38;
    pub const ENOTEMPTY: i32 = 39;
    pub const EISCONN: i32 = 106;
    pub const EQUOTA: i32 = 122; // EDQUOT

    pub(crate) const TABLE: &[(&str, i32)] = &[
        ("EINVAL", EINVAL),
        ("EACCES", EACCES),
        ("EEXIST", EEXIST),
        ("EISDIR", EISDIR),
        ("ENOENT", ENOENT),
        ("ENOMEM", ENOMEM),
        ("ENOSPC", ENOSPC),
        ("EIO", EIO),
        ("ENOTEMPTY", ENOTEMPTY),
        ("ENOSYS", ENOSYS),
        ("EROFS", EROFS),
        ("EBUSY", EBUSY),
        ("EAGAIN", EAGAIN),
        ("EISCONN", EISCONN),
        ("E2BIG", E2BIG),
        ("EPERM", EPERM),
        ("EQUOTA", EQUOTA),
    ];

    /// Errno for a Xenstore error name; unknown names map to `EIO`.
    pub fn from_name(name: &str) -> i32 {
        TABLE
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(EIO, |(_, e)| *e)
    }

    /// Xenstore error name of an errno (`"E?"` if it has none).
    pub fn name(errno: i32) -> &'static str {
        TABLE
            .iter()
            .find(|(_, e)| *e == errno)
            .map_or("E?", |(n, _)| n)
    }
}

/// A Xenstore operation, independent of its wire number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Control,
    Directory,
    Read,
    GetPerms,
    Watch,
    Unwatch,
    TransactionStart,
    TransactionEnd,
    Introduce,
    Release,
    GetDomainPath,
    Write,
    Mkdir,
    Rm,
    SetPerms,
    WatchEvent,
    Error,
    IsDomainIntroduced,
    Resume,
    SetTarget,
    Restrict,
    ResetWatches,
    DirectoryPart,
    /// Nephele's `XS_CLONE` (only in the Nephele dialect).
    Clone,
}

const COMMON_OPS: [Op; 22] = [
    Op::Control,
    Op::Directory,
    Op::Read,
    Op::GetPerms,
    Op::Watch,
    Op::Unwatch,
    Op::TransactionStart,
    Op::TransactionEnd,
    Op::Introduce,
    Op::Release,
    Op::GetDomainPath,
    Op::Write,
    Op::Mkdir,
    Op::Rm,
    Op::SetPerms,
    Op::WatchEvent,
    Op::Error,
    Op::IsDomainIntroduced,
    Op::Resume,
    Op::SetTarget,
    Op::Restrict,
    Op::ResetWatches,
];

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Which numbering the daemon speaks.
///
/// Upstream Xen: 22 = `XS_DIRECTORY_PART`. Nephele: 22 = `XS_CLONE`, which
/// shifts `XS_DIRECTORY_PART` to 23. Operations 0..=21 are the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Dialect {
    #[default]
    Upstream,
    Nephele,
}

impl Dialect {
    /// Wire number of `op`, or `None` if this dialect lacks it.
    pub fn code(self, op: Op) -> Option<u32> {
        if let Some(i) = COMMON_OPS.iter().position(|o| *o == op) {
            return Some(i as u32);
        }
        match (self, op) {
            (Dialect::Upstream, Op::DirectoryPart) => Some(22),
            (Dialect::Nephele, Op::Clone) => Some(22),
            (Dialect::Nephele, Op::DirectoryPart) => Some(23),
            _ => None,
        }
    }

    /// Operation of a wire number, or `None` if unknown in this dialect.
    pub fn op(self, code: u32) -> Option<Op> {
        if let Some(op) = COMMON_OPS.get(code as usize) {
            return Some(*op);
        }
        match (self, code) {
            (Dialect::Upstream, 22) => Some(Op::DirectoryPart),
            (Dialect::Nephele, 22) => Some(Op::Clone),
            (Dialect::Nephele, 23) => Some(Op::DirectoryPart),
            _ => None,
        }
    }
}

impl std::str::FromStr for Dialect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "upstream" => Ok(Dialect::Upstream),
            "nephele" => Ok(Dialect::Nephele),
            _ => Err(format!("unknown dialect {s:?} (upstream|nephele)")),
        }
    }
}

/// `enum xs_clone_op` of Nephele's `xs_wire.h`, without `XS_CLONE_DEV_9PFS`
/// (4): xen-clone clones no 9pfs device, so the daemon never sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloneOp {
    Full = 0,
    Basic = 1,
    DevConsole = 2,
    DevVif = 3,
}

impl CloneOp {
    pub fn is_device(self) -> bool {
        matches!(self, CloneOp::DevConsole | CloneOp::DevVif)
    }
}

/// Wire error: the byte stream is not a valid Xenstore message stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("payload of {0} bytes exceeds the Xenstore maximum of 4096")]
    TooLong(usize),
    #[error("string argument contains a NUL byte: {0:?}")]
    EmbeddedNul(String),
    #[error("reply payload is not valid UTF-8")]
    NotUtf8,
    #[error("malformed {what} payload")]
    Malformed { what: &'static str },
}

/// A decoded message (header fields plus payload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawMsg {
    pub ty: u32,
    pub req_id: u32,
    pub tx_id: u32,
    pub payload: Vec<u8>,
}

impl RawMsg {
    /// Encodes header and payload into one buffer (one `write()`).
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        if self.payload.len() > PAYLOAD_MAX {
            return Err(WireError::TooLong(self.payload.len()));
        }
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        out.extend_from_slice(&self.ty.to_le_bytes());
        out.extend_from_slice(&self.req_id.to_le_bytes());
        out.extend_from_slice(&self.tx_id.to_le_bytes());
        out.extend_from_slice(&(self.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.payload);
        Ok(out)
    }
}

/// Incremental decoder: feed bytes, take whole messages out.
#[derive(Default, Debug)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered but not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Next complete message, `Ok(None)` if more bytes are needed.
    pub fn next_msg(&mut self) -> Result<Option<RawMsg>, WireError> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let word = |i: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&self.buf[i * 4..i * 4 + 4]);
            u32::from_le_bytes(w)
        };
        let (ty, req_id, tx_id, len) = (word(0), word(1), word(2), word(3) as usize);
        if len > PAYLOAD_MAX {
            return Err(WireError::TooLong(len));
        }
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let payload = self.buf[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.buf.drain(..HEADER_LEN + len);
        Ok(Some(RawMsg {
            ty,
            req_id,
            tx_id,
            payload,
        }))
    }
}

fn check_arg(s: &str) -> Result<(), WireError> {
    if s.as_bytes().contains(&0) {
        return Err(WireError::EmbeddedNul(s.to_string()));
    }
    Ok(())
}

/// Payload of NUL-terminated string arguments (`"a\0b\0"`).
pub fn args_payload(args: &[&str]) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    for a in args {
        check_arg(a)?;
        out.extend_from_slice(a.as_bytes());
        out.push(0);
    }
    Ok(out)
}

/// Payload of `XS_WRITE`: `path\0` followed by the raw value (no NUL).
pub fn write_payload(path: &str, value: &[u8]) -> Result<Vec<u8>, WireError> {
    let mut out = args_payload(&[path])?;
    out.extend_from_slice(value);
    Ok(out)
}

/// Payload of Nephele's `XS_CLONE`: `parent\0child\0op\0parent_path\0child_path`
/// (decimal numbers, the last field WITHOUT a trailing NUL: oxenstored splits
/// on NUL into at most 5 parts, so a trailing NUL would end up in the path).
pub fn clone_payload(
    parent: u16,
    child: u16,
    op: CloneOp,
    parent_path: &str,
    child_path: &str,
) -> Result<Vec<u8>, WireError> {
    check_arg(parent_path)?;
    check_arg(child_path)?;
    let s = format!(
        "{parent}\0{child}\0{}\0{parent_path}\0{child_path}",
        op as u32
    );
    Ok(s.into_bytes())
}

/// Payload of `XS_INTRODUCE`: `domid\0mfn\0port\0` plus Nephele's optional
/// 4th field `parent\0` (sent only for a non-zero parent).
pub fn introduce_payload(domid: u16, mfn: u64, port: u32, parent: Option<u16>) -> Vec<u8> {
    let mut s = format!("{domid}\0{mfn}\0{port}\0");
    if let Some(p) = parent.filter(|p| *p != 0) {
        s.push_str(&format!("{p}\0"));
    }
    s.into_bytes()
}

/// Splits a reply made of NUL-terminated strings (`XS_DIRECTORY`,
/// `XS_GET_PERMS`, watch events). A missing final NUL is tolerated.
pub fn split_strings(payload: &[u8]) -> Result<Vec<String>, WireError> {
    if payload.is_empty() {
        return Ok(Vec::new());
    }
    let body = payload.strip_suffix(&[0]).unwrap_or(payload);
    body.split(|b| *b == 0)
        .map(|s| String::from_utf8(s.to_vec()).map_err(|_| WireError::NotUtf8))
        .collect()
}

/// One `XS_DIRECTORY_PART` reply: `generation\0name\0...` and, on the
/// last part, one more `\0` (an empty name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryPart {
    pub generation: String,
    pub names: Vec<String>,
    pub complete: bool,
}

pub fn parse_directory_part(payload: &[u8]) -> Result<DirectoryPart, WireError> {
    let bad = WireError::Malformed {
        what: "directory part",
    };
    let mut fields = payload.split(|b| *b == 0);
    let generation = fields.next().ok_or(bad.clone())?;
    let generation = String::from_utf8(generation.to_vec()).map_err(|_| WireError::NotUtf8)?;
    let rest = &payload[generation.len()..];
    let rest = rest.strip_prefix(&[0]).ok_or(bad)?;
    // `rest` is "a\0b\0" (more to come) or "a\0b\0\0" / "\0" (complete).
    let complete = rest.is_empty() || rest == [0] || rest.ends_with(&[0, 0]);
    let body = if complete {
        rest.strip_suffix(&[0]).unwrap_or(rest)
    } else {
        rest
    };
    let names = split_strings(body)?
        .into_iter()
        .filter(|n| !n.is_empty())
        .collect();
    Ok(DirectoryPart {
        generation,
        names,
        complete,
    })
}

/// Errno carried by an `XS_ERROR` reply (`"ENOENT\0"`).
pub fn parse_error(payload: &[u8]) -> i32 {
    let body = payload.strip_suffix(&[0]).unwrap_or(payload);
    match std::str::from_utf8(body) {
        Ok(name) => errno::from_name(name),
        Err(_) => errno::EIO,
    }
}

/// A watch event: the path that changed and the watch's token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub path: String,
    pub token: String,
}

/// Parses an `XS_WATCH_EVENT` payload (`path\0token\0`).
pub fn parse_watch_event(payload: &[u8]) -> Result<WatchEvent, WireError> {
    let mut parts = split_strings(payload)?;
    if parts.len() < 2 {
        return Err(WireError::Malformed {
            what: "watch event",
        });
    }
    let token = parts.swap_remove(1);
    let path = parts.swap_remove(0);
    Ok(WatchEvent { path, token })
}

/// Parses the transaction id of an `XS_TRANSACTION_START` reply (`"42\0"`).
pub fn parse_u32_reply(payload: &[u8]) -> Result<u32, WireError> {
    let body = payload.strip_suffix(&[0]).unwrap_or(payload);
    std::str::from_utf8(body)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or(WireError::Malformed {
            what: "numeric reply",
        })
}

/// A classified reply: success payload or Xenstore errno.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Ok(Vec<u8>),
    Err(i32),
    Event(WatchEvent),
}

/// Classifies a decoded message in `dialect`.
pub fn classify(dialect: Dialect, msg: RawMsg) -> Result<Reply, WireError> {
    match dialect.op(msg.ty) {
        Some(Op::Error) => Ok(Reply::Err(parse_error(&msg.payload))),
        Some(Op::WatchEvent) => Ok(Reply::Event(parse_watch_event(&msg.payload)?)),
        _ => Ok(Reply::Ok(msg.payload)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialect_numbering() {
        assert_eq!(Dialect::Upstream.code(Op::Read), Some(2));
        assert_eq!(Dialect::Nephele.code(Op::Read), Some(2));
        assert_eq!(Dialect::Upstream.code(Op::ResetWatches), Some(21));
        assert_eq!(Dialect::Upstream.code(Op::DirectoryPart), Some(22));
        assert_eq!(Dialect::Upstream.code(Op::Clone), None);
        assert_eq!(Dialect::Nephele.code(Op::Clone), Some(22));
        assert_eq!(Dialect::Nephele.code(Op::DirectoryPart), Some(23));
        assert_eq!(Dialect::Upstream.op(22), Some(Op::DirectoryPart));
        assert_eq!(Dialect::Nephele.op(22), Some(Op::Clone));
        assert_eq!(Dialect::Nephele.op(23), Some(Op::DirectoryPart));
        assert_eq!(Dialect::Upstream.op(23), None);
        for d in [Dialect::Upstream, Dialect::Nephele] {
            for code in 0..24 {
                if let Some(op) = d.op(code) {
                    assert_eq!(d.code(op), Some(code));
                }
            }
        }
        assert_eq!(Dialect::Upstream.code(Op::Introduce), Some(8));
        assert_eq!(Dialect::Upstream.code(Op::WatchEvent), Some(15));
        assert_eq!(Dialect::Upstream.code(Op::Error), Some(16));
    }

    #[test]
    fn xs_clone_payload_is_byte_exact() {
        let p = clone_payload(3, 7, CloneOp::DevVif, "/local/domain/3/device/vif/0", "/x")
            .expect("valid");
        assert_eq!(
            p,
            b"3\x007\x003\x00/local/domain/3/device/vif/0\x00/x".to_vec()
        );
        assert_ne!(p.last(), Some(&0), "no trailing NUL");
        assert_eq!(p.iter().filter(|b| **b == 0).count(), 4);
        let basic = clone_payload(
            12,
            65534,
            CloneOp::Basic,
            "/local/domain/12",
            "/local/domain/65534",
        )
        .expect("valid");
        assert_eq!(
            basic,
            b"12\x0065534\x001\x00/local/domain/12\x00/local/domain/65534"
        );
        assert!(clone_payload(1, 2, CloneOp::Basic, "/a\0b", "/c").is_err());
    }

    #[test]
    fn xs_clone_full_message_layout() {
        let payload = clone_payload(1, 2, CloneOp::DevConsole, "/a", "/b").expect("valid");
        let msg = RawMsg {
            ty: Dialect::Nephele.code(Op::Clone).expect("nephele has clone"),
            req_id: 5,
            tx_id: 0,
            payload,
        };
        let bytes = msg.encode().expect("encode");
        let mut expected = vec![22, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 11, 0, 0, 0];
        expected.extend_from_slice(b"1\x002\x002\x00/a\x00/b");
        assert_eq!(bytes, expected);
    }

    #[test]
    fn op_values() {
        assert_eq!(CloneOp::Full as u32, 0);
        assert_eq!(CloneOp::Basic as u32, 1);
        assert_eq!(CloneOp::DevConsole as u32, 2);
        assert_eq!(CloneOp::DevVif as u32, 3);
        assert!(!CloneOp::Basic.is_device());
        assert!(CloneOp::DevVif.is_device());
    }

    #[test]
    fn header_roundtrip_and_partial_input() {
        let m = RawMsg {
            ty: 2,
            req_id: 0xdead_beef,
            tx_id: 9,
            payload: b"/local\0".to_vec(),
        };
        let bytes = m.encode().expect("encode");
        assert_eq!(&bytes[..4], &[2, 0, 0, 0]);
        assert_eq!(&bytes[4..8], &0xdead_beefu32.to_le_bytes());
        assert_eq!(&bytes[12..16], &[7, 0, 0, 0]);
        let mut d = Decoder::default();
        d.push(&bytes[..10]);
        assert_eq!(d.next_msg(), Ok(None));
        d.push(&bytes[10..]);
        d.push(&bytes);
        assert_eq!(d.next_msg(), Ok(Some(m.clone())));
        assert_eq!(d.next_msg(), Ok(Some(m)));
        assert_eq!(d.next_msg(), Ok(None));
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn oversized_messages_are_rejected() {
        let m = RawMsg {
            ty: 11,
            req_id: 0,
            tx_id: 0,
            payload: vec![b'a'; 4097],
        };
        assert_eq!(m.encode(), Err(WireError::TooLong(4097)));
        let mut d = Decoder::default();
        d.push(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x10, 0, 0]);
        assert_eq!(d.next_msg(), Err(WireError::TooLong(4097)));
    }

    #[test]
    fn payload_helpers() {
        assert_eq!(args_payload(&["/a", "tok"]).expect("ok"), b"/a\0tok\0");
        assert_eq!(write_payload("/a", b"v").expect("ok"), b"/a\0v");
        assert_eq!(
            introduce_payload(5, 0x1234, 1, Some(3)),
            b"5\x004660\x001\x003\x00"
        );
        assert_eq!(introduce_payload(5, 16, 1, Some(0)), b"5\x0016\x001\x00");
        assert_eq!(introduce_payload(5, 16, 1, None), b"5\x0016\x001\x00");
        assert!(args_payload(&["a\0"]).is_err());
    }

    #[test]
    fn reply_parsers() {
        assert_eq!(split_strings(b"").expect("ok"), Vec::<String>::new());
        assert_eq!(split_strings(b"a\0bb\0").expect("ok"), vec!["a", "bb"]);
        assert_eq!(split_strings(b"a\0bb").expect("ok"), vec!["a", "bb"]);
        assert!(split_strings(b"\xff\0").is_err());
        assert_eq!(parse_error(b"ENOENT\0"), errno::ENOENT);
        assert_eq!(parse_error(b"EAGAIN"), errno::EAGAIN);
        assert_eq!(parse_error(b"EWHAT\0"), errno::EIO);
        assert_eq!(errno::name(errno::EEXIST), "EEXIST");
        assert_eq!(
            parse_watch_event(b"/local/domain/1\0dom1\0").expect("ok"),
            WatchEvent {
                path: "/local/domain/1".into(),
                token: "dom1".into()
            }
        );
        assert!(parse_watch_event(b"/only\0").is_err());
        assert_eq!(parse_u32_reply(b"17\0"), Ok(17));
        assert!(parse_u32_reply(b"x\0").is_err());
    }

    #[test]
    fn directory_part_replies() {
        let p = parse_directory_part(b"7\0a\0bb\0").expect("valid");
        assert_eq!((p.generation.as_str(), p.complete), ("7", false));
        assert_eq!(p.names, vec!["a", "bb"]);
        let p = parse_directory_part(b"7\0c\0\0").expect("valid");
        assert!(p.complete);
        assert_eq!(p.names, vec!["c"]);
        let p = parse_directory_part(b"7\0\0").expect("valid");
        assert!(p.complete && p.names.is_empty());
        assert!(parse_directory_part(b"7").is_err());
    }

    #[test]
    fn classify_replies() {
        let err = RawMsg {
            ty: 16,
            req_id: 1,
            tx_id: 0,
            payload: b"EEXIST\0".to_vec(),
        };
        assert_eq!(
            classify(Dialect::Upstream, err),
            Ok(Reply::Err(errno::EEXIST))
        );
        let ev = RawMsg {
            ty: 15,
            req_id: 0,
            tx_id: 0,
            payload: b"/p\0t\0".to_vec(),
        };
        assert!(matches!(
            classify(Dialect::Nephele, ev),
            Ok(Reply::Event(_))
        ));
    }
}
