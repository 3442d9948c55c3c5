//! Deep copy of a subtree with `XS_CLONE` semantics, for xenstoreds that lack
//! `XS_CLONE` (upstream C xenstored, `-d` mode). Runs inside the caller's
//! transaction: nothing becomes visible until the caller commits.
//!
//! Semantics (reference §3.1, §3.2):
//! - `ENOENT` if the source is missing, `EEXIST` if the destination exists;
//! - every node's permissions are rewritten parent → child (owner and ACL);
//! - level-1 values are rewritten per [`paths::level1_rule`];
//! - `overrides` force values below the destination (e.g. `store/ring-ref`
//!   = the child's MFN instead of the parent's stale one);
//! - with `mark_cloned`, a leaf `cloned = "true"` is added under the root
//!   with the root's permissions (what marks a backend as a clone).

use crate::client::{Client, TxId};
use crate::error::{Error, Result};
use crate::paths::{self, NodeRule};
use crate::wire::{CloneOp, Op, errno};

/// What to copy and how.
#[derive(Clone, Debug)]
pub struct CopySpec<'a> {
    pub op: CloneOp,
    pub parent: u16,
    pub child: u16,
    pub src: &'a str,
    pub dst: &'a str,
    /// `(relative key, value)` pairs written after the copy.
    pub overrides: &'a [(&'a str, String)],
    pub mark_cloned: bool,
}

/// Copies `spec.src` to `spec.dst` in `tx`; returns the number of nodes written.
pub fn deep_copy(c: &mut Client, tx: TxId, spec: &CopySpec<'_>) -> Result<usize> {
    if c.exists(tx, spec.dst)? {
        return Err(Error::Xs {
            op: Op::Clone,
            path: spec.dst.to_string(),
            errno: errno::EEXIST,
        });
    }
    let root_value = c.read(tx, spec.src)?;
    let mut count = 0;
    copy_node(c, tx, spec, spec.src, spec.dst, &root_value, 0, &mut count)?;
    for (rel, value) in spec.overrides {
        c.write_str(tx, &paths::join(spec.dst, rel), value)?;
        count += 1;
    }
    if spec.mark_cloned {
        let flag = paths::join(spec.dst, "cloned");
        c.write_str(tx, &flag, "true")?;
        let perms = c.get_perms(tx, spec.dst)?;
        c.set_perms(tx, &flag, &perms)?;
        count += 1;
    }
    Ok(count)
}

#[allow(clippy::too_many_arguments)]
fn copy_node(
    c: &mut Client,
    tx: TxId,
    spec: &CopySpec<'_>,
    src: &str,
    dst: &str,
    value: &[u8],
    depth: usize,
    count: &mut usize,
) -> Result<()> {
    c.write(tx, dst, value)?;
    let perms = c.get_perms(tx, src)?.rewrite_domid(spec.parent, spec.child);
    c.set_perms(tx, dst, &perms)?;
    *count += 1;
    for name in c.directory(tx, src)? {
        let s = paths::join(src, &name);
        let d = paths::join(dst, &name);
        let mut v = match c.read(tx, &s) {
            Ok(v) => v,
            Err(e) if e.is_enoent() => continue,
            Err(e) => return Err(e),
        };
        if depth == 0 {
            let text = String::from_utf8_lossy(&v).into_owned();
            match paths::level1_rule(spec.op, &name, &text, spec.parent, spec.child) {
                NodeRule::Skip => continue,
                NodeRule::Replace(nv) => v = nv.into_bytes(),
                NodeRule::Copy => {}
            }
        }
        copy_node(c, tx, spec, &s, &d, &v, depth + 1, count)?;
    }
    Ok(())
}
