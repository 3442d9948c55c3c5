//! Xenstore for xen-clone: wire protocol ([`wire`]), a synchronous client
//! ([`client`]) with transactions, watches and permissions, the two
//! numbering dialects (upstream and Nephele's `XS_CLONE`), pure path
//! functions ([`paths`]), in-memory subtrees ([`snapshot`]) and a deep copy
//! with clone semantics ([`deepcopy`]).
//!
//! # Why not a crate from crates.io
//!
//! The Xenstore clients there speak upstream Xen's message set only:
//! `xenstore-rs` (a blocking client behind its `Xs` trait; earlier
//! versions bound the C `libxenstore.so`, whose numbering is upstream's
//! too), `krata-xenstore` (an async client on tokio), and `xs`/`xenstore`
//! (placeholders). None speaks Nephele's dialect: `XS_CLONE` is message
//! type 22, which upstream uses for `XS_DIRECTORY_PART` (and Nephele's C
//! xenstored moves `XS_DIRECTORY_PART` to 23), and none lets a caller send
//! a raw message type to add it. The daemon also needs what their APIs do
//! not give together: a dialect probe that reads the daemon's error to
//! choose the numbering, watch events interleaved with replies on one
//! synchronous connection (ordered against a transaction's start, see
//! `trees` in xencloned), `XS_INTRODUCE` and `XS_SET_PERMS`, and control
//! over every request sent (the benchmarks count requests per clone). So
//! the wire protocol ([`wire`]) and the client ([`client`]) are written
//! here, on `libc` only, no async runtime.

pub mod client;
pub mod deepcopy;
pub mod error;
pub mod paths;
pub mod perms;
pub mod profile;
pub mod snapshot;
pub mod testing;
pub mod wire;

pub use client::{Client, Endpoint, Request, TxId};
pub use error::{Error, Result};
pub use perms::{Access, Perm, Perms};
pub use wire::{CloneOp, Dialect, Op, WatchEvent};
