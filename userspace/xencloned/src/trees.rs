//! The parents' source trees for deep copy, kept between clones and never
//! stale.
//!
//! Reading a subtree from a C xenstored takes 3 requests a node, which was
//! most of a deep copy's cost. So the trees a clone copies from (a parent's
//! `/local/domain/<p>`, `/libxl/<p>` and device backend dirs, the first
//! three as far as [`xenstore::profile`] names them) are kept, each
//! under a Xenstore watch registered on the daemon's main connection
//! *before* the tree is read. Any change below it fires the watch and the
//! tree is read again when next needed.
//!
//! Why a kept tree is never stale: xenstored queues a watch event on the
//! watcher's connection when it applies the change, and answers that
//! connection's requests in order. So once the reply to the copy's
//! `XS_TRANSACTION_START` has arrived, the event of every change made
//! before it is in the client's queue; [`TreeCache::sync`], called right
//! then, drops the trees they touch, which are then read inside the
//! transaction. The copy is the parent's state at the transaction's start,
//! as an `XS_CLONE` at that moment would give. This holds with or without
//! `--cache` (which is about the parent *description*).
//!
//! Without `--cache`, the parent *description* is kept here too, once it
//! was read while watches covered every tree it reads (home, `/libxl` dir,
//! vif backends): any change drops it. Before it is used, one request (its
//! reply orders the events) and [`TreeCache::sync`] account for every
//! change made until then.
//!
//! Bounded: at most [`TreeCache::capacity`] parents (LRU, their watches
//! removed), and a tree above [`MAX_NODES`] nodes or [`MAX_BYTES`] bytes is
//! used once and not kept.

use crate::parent::ParentInfo;
use std::collections::HashMap;
use xenstore::profile;
use xenstore::snapshot::Node;
use xenstore::{Client, TxId, WatchEvent, paths};

/// Largest tree kept (nodes).
pub const MAX_NODES: usize = 4096;
/// Largest tree kept (bytes of names and values).
pub const MAX_BYTES: usize = 1 << 20;

/// Prefix of the watch tokens of kept trees.
pub const TOKEN_PREFIX: &str = "tree:";

/// The kept root that `src` (a copy source of parent `parent`) lies in:
/// the parent's home or `/libxl` dir, else `src` itself (a backend dir).
pub fn root_for(parent: u16, src: &str) -> String {
    for root in [paths::domain_path(parent), paths::libxl_path(parent)] {
        if paths::rebase(src, &root, &root).is_some() {
            return root;
        }
    }
    src.to_string()
}

struct Root {
    path: String,
    token: String,
    /// `None`: must be read; `Some(None)`: the root does not exist.
    tree: Option<Option<Node>>,
}

struct Entry {
    roots: Vec<Root>,
    used: u64,
    /// The parent description (and the start_info MFN it was read with),
    /// kept only while watches cover every tree it was read from.
    description: Option<(u64, ParentInfo)>,
}

/// Counters, for the stats file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Sources found in a kept tree.
    pub hits: u64,
    /// Trees read from xenstored.
    pub reads: u64,
    /// Kept trees dropped because a watch showed a change.
    pub invalidations: u64,
    /// Parent descriptions taken from under the trees' watches (no
    /// `--cache`) instead of read again.
    pub descriptions: u64,
}

pub struct TreeCache {
    entries: HashMap<u16, Entry>,
    /// Watch token → (parent, root path).
    tokens: HashMap<String, (u16, String)>,
    tick: u64,
    next_token: u64,
    pub capacity: usize,
    pub stats: TreeStats,
}

impl TreeCache {
    pub fn new(capacity: usize) -> TreeCache {
        TreeCache {
            entries: HashMap::new(),
            tokens: HashMap::new(),
            tick: 0,
            next_token: 0,
            capacity,
            stats: TreeStats::default(),
        }
    }

    /// Parents with kept trees.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops the trees changed by these watch events (other tokens are
    /// ignored).
    pub fn on_events(&mut self, events: impl IntoIterator<Item = WatchEvent>) {
        for ev in events {
            self.invalidate(&ev.token);
        }
    }

    fn invalidate(&mut self, token: &str) {
        let Some((p, path)) = self.tokens.get(token) else {
            return;
        };
        let Some(e) = self.entries.get_mut(p) else {
            return;
        };
        e.description = None;
        if let Some(r) = e.roots.iter_mut().find(|r| r.path == *path)
            && r.tree.take().is_some()
        {
            self.stats.invalidations += 1;
            tracing::debug!(parent = p, root = %path, "kept tree changed: read again when needed");
        }
    }

    /// Applies the watch events queued on `xs` (the connection the trees'
    /// watches are on). Right after a reply, every change xenstored made
    /// before answering is accounted for.
    pub fn sync(&mut self, xs: &mut Client) {
        let evs = xs.take_events();
        self.on_events(evs);
    }

    /// The subtree at `src` of parent `parent`'s trees, `None` if it does
    /// not exist: from a kept tree, else read in `tx` (and kept, under a
    /// watch registered first). Call [`TreeCache::sync`] after the
    /// transaction's start first.
    pub fn source(
        &mut self,
        xs: &mut Client,
        tx: TxId,
        parent: u16,
        src: &str,
    ) -> xenstore::Result<Option<Node>> {
        self.tick += 1;
        let root = root_for(parent, src);
        let rel = paths::rebase(src, &root, "").unwrap_or_default();
        if let Some(e) = self.entries.get_mut(&parent) {
            e.used = self.tick;
            if let Some(Some(tree)) = e.roots.iter().find(|r| r.path == root).map(|r| &r.tree) {
                self.stats.hits += 1;
                return Ok(tree.as_ref().and_then(|t| t.get(&rel)).cloned());
            }
        }
        let token = match self.ensure_watch(xs, parent, &root) {
            Ok(t) => t,
            Err(e) => {
                // Not kept without its watch: read for this copy only.
                tracing::warn!(parent, root = %root, "cannot watch the tree ({e}): not kept");
                self.stats.reads += 1;
                let tree = profile::read_root(xs, tx, &root)?;
                return Ok(tree.and_then(|t| t.get(&rel).cloned()));
            }
        };
        let tree = profile::read_root(xs, tx, &root)?;
        self.stats.reads += 1;
        // The watch's first event (xenstored fires it once on registration,
        // queued before any later reply) or a change meanwhile: both are in
        // the queue now. Only the first event of a new watch for its own
        // path is the registration's.
        let mut evs = xs.take_events();
        if let Some(t) = &token
            && let Some(i) = evs.iter().position(|ev| ev.token == *t && ev.path == root)
        {
            evs.remove(i);
        }
        let keep = tree
            .as_ref()
            .is_none_or(|t| t.count() <= MAX_NODES && t.bytes() <= MAX_BYTES);
        if let Some(r) = self
            .entries
            .get_mut(&parent)
            .and_then(|e| e.roots.iter_mut().find(|r| r.path == root))
        {
            r.tree = Some(tree.clone());
        }
        self.on_events(evs);
        if !keep {
            tracing::info!(parent, root = %root, "tree too big to keep: read for every clone");
            self.forget_root(xs, parent, &root);
        }
        Ok(tree.and_then(|t| t.get(&rel).cloned()))
    }

    /// Whether a description of `parent` is kept (see
    /// [`TreeCache::description`]).
    pub fn has_description(&self, parent: u16) -> bool {
        self.entries
            .get(&parent)
            .is_some_and(|e| e.description.is_some())
    }

    /// The kept description of `parent`, if read with this start_info MFN
    /// and no watch fired since. Call [`TreeCache::sync`] after a reply
    /// first, so every change made before it is accounted for.
    pub fn description(&mut self, parent: u16, start_info_mfn: u64) -> Option<ParentInfo> {
        let d = self
            .entries
            .get(&parent)
            .and_then(|e| e.description.as_ref())
            .filter(|(mfn, _)| *mfn == start_info_mfn)
            .map(|(_, d)| d.clone());
        if d.is_some() {
            self.stats.descriptions += 1;
        }
        d
    }

    /// Keeps a description just read, if every tree it was read from
    /// (the parent's home, its `/libxl` dir, each vif's backend dir) was
    /// under a watch already while it was read: then any later change to
    /// them drops it. Returns whether it was kept.
    pub fn keep_description(&mut self, d: &ParentInfo, start_info_mfn: u64) -> bool {
        let mut needed = vec![paths::domain_path(d.domid), paths::libxl_path(d.domid)];
        needed.extend(d.vifs.iter().map(|v| root_for(d.domid, &v.backend)));
        let Some(e) = self.entries.get_mut(&d.domid) else {
            return false;
        };
        if !needed.iter().all(|n| e.roots.iter().any(|r| r.path == *n)) {
            return false;
        }
        e.description = Some((start_info_mfn, d.clone()));
        true
    }

    /// Registers the watch of `root` if it has none. Returns the new
    /// token, `None` if the watch existed.
    fn ensure_watch(
        &mut self,
        xs: &mut Client,
        parent: u16,
        root: &str,
    ) -> xenstore::Result<Option<String>> {
        if self
            .entries
            .get(&parent)
            .is_some_and(|e| e.roots.iter().any(|r| r.path == root))
        {
            return Ok(None);
        }
        if !self.entries.contains_key(&parent) {
            self.evict_for_one(xs);
            self.entries.insert(
                parent,
                Entry {
                    roots: Vec::new(),
                    used: self.tick,
                    description: None,
                },
            );
        }
        self.next_token += 1;
        let token = format!("{TOKEN_PREFIX}{parent}:{}", self.next_token);
        xs.watch(root, &token)?;
        self.tokens
            .insert(token.clone(), (parent, root.to_string()));
        if let Some(e) = self.entries.get_mut(&parent) {
            e.roots.push(Root {
                path: root.to_string(),
                token: token.clone(),
                tree: None,
            });
        }
        Ok(Some(token))
    }

    fn evict_for_one(&mut self, xs: &mut Client) {
        while self.entries.len() >= self.capacity.max(1) {
            let Some((&old, _)) = self.entries.iter().min_by_key(|(_, e)| e.used) else {
                return;
            };
            self.forget(xs, old);
        }
    }

    /// Drops parent `parent`'s trees and their watches.
    pub fn forget(&mut self, xs: &mut Client, parent: u16) {
        if let Some(e) = self.entries.remove(&parent) {
            for r in e.roots {
                self.tokens.remove(&r.token);
                if let Err(err) = xs.unwatch(&r.path, &r.token) {
                    tracing::debug!("unwatch {}: {err}", r.path);
                }
            }
        }
    }

    fn forget_root(&mut self, xs: &mut Client, parent: u16, root: &str) {
        let Some(e) = self.entries.get_mut(&parent) else {
            return;
        };
        if let Some(i) = e.roots.iter().position(|r| r.path == root) {
            let r = e.roots.remove(i);
            self.tokens.remove(&r.token);
            if let Err(err) = xs.unwatch(&r.path, &r.token) {
                tracing::debug!("unwatch {}: {err}", r.path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots() {
        assert_eq!(root_for(3, "/local/domain/3"), "/local/domain/3");
        assert_eq!(root_for(3, "/local/domain/3/console"), "/local/domain/3");
        assert_eq!(
            root_for(3, "/local/domain/3/device/vif/0"),
            "/local/domain/3"
        );
        assert_eq!(root_for(3, "/libxl/3/device/vif/0"), "/libxl/3");
        assert_eq!(root_for(3, "/local/domain/30"), "/local/domain/30");
        assert_eq!(
            root_for(3, "/local/domain/0/backend/vif/3/0"),
            "/local/domain/0/backend/vif/3/0"
        );
    }
}
