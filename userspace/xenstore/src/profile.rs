//! What a deep copy takes from a parent's own trees when xenstored has no
//! `XS_CLONE`: the keys a clone needs, as Nephele's `xencloned -d` writes
//! them (reference §3.2), not every node.
//!
//! Reading a whole subtree from a C xenstored costs three requests a node
//! (`XS_READ`, `XS_GET_PERMS`, `XS_DIRECTORY`); a domain home made by libxl
//! has ~45 nodes, most of which no clone uses (the parent's `tty`,
//! `control/feature-*` the guest wrote before forking, `attr`, `error`...).
//! A [`Profile`] names what is copied instead:
//! - the keys whose value comes from the parent: one `XS_READ` each, the
//!   first time a parent clones (the tree is then kept, see
//!   `xencloned::trees`); a key the parent lacks is left out;
//! - subtrees read whole, permissions and all, and copied only if the
//!   parent has them: `data` (what the guest keeps there is its own, and
//!   its clone's), `control/shutdown` (the domain's own), device subtrees
//!   (`device/vif`: a backend needs every key its frontend wrote).
//!
//! Permissions follow the toolstack's layout rather than being read: a
//! home and what is in it are the toolstack's and readable by the domain
//! (`n0 r<d>`), the domain's writable keys are its own (`n<d>`), `/libxl`
//! is the toolstack's alone (`n0`), a backend dir is the backend's and
//! readable by the frontend (`n<b> r<d>`). These are the permissions libxl
//! gives a domain it creates and the ones Nephele's `-d` writes.
//!
//! Anything else of the parent's trees is not copied in this mode; with
//! `XS_CLONE` (oxenstored) everything is.

use crate::client::{Client, TxId};
use crate::error::Result;
use crate::paths;
use crate::perms::Perms;
use crate::snapshot::{self, Node};

/// Who owns a key of a profile (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The toolstack's, readable by the domain: `n0 r<d>`.
    Home,
    /// The domain's own: `n<d>`.
    Domain,
    /// The toolstack's alone: `n0`.
    Toolstack,
    /// The backend domain's, readable by the frontend: `n<b> r<d>`.
    Backend,
}

/// Where a key's value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Read from the parent; left out if the parent has no such key.
    Read,
    /// The parent's domid (a clone rule rewrites it to the child's).
    Domid,
    /// The parent's whole subtree, permissions read too.
    Subtree,
}

/// One key, relative to the profile's root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    pub rel: &'static str,
    pub source: Source,
    pub owner: Owner,
}

const fn key(rel: &'static str, source: Source, owner: Owner) -> Key {
    Key { rel, source, owner }
}

use Owner::*;
use Source::*;

/// A domain's home, `/local/domain/<d>`: what `-d` writes (`data`,
/// `control/shutdown`, `name`, `domid`, `store/*`, the console's keys),
/// plus `vm` (xl finds the domain's `/vm` entry through it) and the memory
/// targets a balloon driver reads; `data` and vif frontends whole.
pub const HOME: &[Key] = &[
    key("vm", Read, Home),
    key("name", Read, Home),
    key("domid", Domid, Home),
    key("memory/static-max", Read, Home),
    key("memory/target", Read, Home),
    key("control/shutdown", Subtree, Domain),
    key("data", Subtree, Domain),
    key("store/port", Read, Home),
    key("store/ring-ref", Read, Home),
    key("console/backend", Read, Home),
    key("console/backend-id", Read, Home),
    key("console/limit", Read, Home),
    key("console/type", Read, Home),
    key("console/output", Read, Home),
    key("console/port", Read, Home),
    key("console/ring-ref", Read, Home),
    key("device/vif", Subtree, Home),
];

/// libxl's record of a domain, `/libxl/<d>`: its type and device model
/// version (read by `xl destroy`), its console and vifs.
pub const LIBXL: &[Key] = &[
    key("type", Read, Toolstack),
    key("dm-version", Read, Toolstack),
    key("device/console/0/frontend", Read, Toolstack),
    key("device/console/0/backend", Read, Toolstack),
    key("device/console/0/frontend-id", Read, Toolstack),
    key("device/console/0/online", Read, Toolstack),
    key("device/console/0/state", Read, Toolstack),
    key("device/console/0/protocol", Read, Toolstack),
    key("device/vif", Subtree, Toolstack),
];

/// A console backend dir, `/local/domain/<b>/backend/console/<d>/<n>`.
pub const CONSOLE_BACKEND: &[Key] = &[
    key("frontend", Read, Backend),
    key("frontend-id", Read, Backend),
    key("online", Read, Backend),
    key("state", Read, Backend),
    key("protocol", Read, Backend),
];

/// The profile of a root, with the domain it belongs to and the backend
/// domain (0 where none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Profile {
    pub keys: &'static [Key],
    pub domid: u16,
    pub backend: u16,
    /// Permissions of the root and of the dirs the keys lie in.
    pub owner: Owner,
}

/// The profile for `root` (pure): a domain's home, its `/libxl` dir or a
/// console backend dir. `None`: not one of those, copied whole.
pub fn for_root(root: &str) -> Option<Profile> {
    let p = |keys, domid, backend, owner| {
        Some(Profile {
            keys,
            domid,
            backend,
            owner,
        })
    };
    if let Some(d) = root.strip_prefix("/libxl/") {
        return p(LIBXL, d.parse().ok()?, 0, Toolstack);
    }
    let (dom, rest) = paths::split_domain_path(root)?;
    if rest.is_empty() {
        return p(HOME, dom, 0, Home);
    }
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        ["backend", "console", fe, dev] if dev.parse::<u32>().is_ok() => {
            p(CONSOLE_BACKEND, fe.parse().ok()?, dom, Backend)
        }
        _ => None,
    }
}

impl Profile {
    /// The permissions `owner` means in this profile.
    pub fn perms(&self, owner: Owner) -> Perms {
        let s = match owner {
            Home => vec![String::from("n0"), format!("r{}", self.domid)],
            Domain => vec![format!("n{}", self.domid)],
            Toolstack => vec![String::from("n0")],
            Backend => vec![format!("n{}", self.backend), format!("r{}", self.domid)],
        };
        // Well-formed by construction.
        Perms::parse(&s).unwrap_or(Perms(Vec::new()))
    }

    /// The tree made of `read` (the value of each `Read` key, `None` where
    /// the parent has none) and `subtrees` (each `Subtree` key's), with the
    /// profile's permissions (pure).
    pub fn tree(
        &self,
        read: &dyn Fn(&str) -> Option<Vec<u8>>,
        subtree: &dyn Fn(&str) -> Option<Node>,
    ) -> Node {
        let dir = self.perms(self.owner);
        let mut root = Node::new("", dir.clone());
        for k in self.keys {
            let node = match k.source {
                Read => read(k.rel).map(|v| Node::new(v, self.perms(k.owner))),
                Domid => Some(Node::new(self.domid.to_string(), self.perms(k.owner))),
                Subtree => subtree(k.rel),
            };
            if let Some(node) = node {
                insert(&mut root, k.rel, node, &dir);
            }
        }
        root
    }

    /// Reads the profile's keys below `root` in `tx` (one `XS_READ` a key,
    /// three a node of a subtree). `None` if `root` does not exist.
    pub fn read(&self, c: &mut Client, tx: TxId, root: &str) -> Result<Option<Node>> {
        let absent = |r: Result<Vec<u8>>| match r {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_enoent() => Ok(None),
            Err(e) => Err(e),
        };
        if absent(c.read(tx, root))?.is_none() {
            return Ok(None);
        }
        let mut values = Vec::new();
        let mut subtrees = Vec::new();
        for k in self.keys {
            let path = paths::join(root, k.rel);
            match k.source {
                Read => values.push((k.rel, absent(c.read(tx, &path))?)),
                Subtree => subtrees.push((k.rel, snapshot::read_tree(c, tx, &path)?)),
                Domid => {}
            }
        }
        let find = |rel: &str| {
            values
                .iter()
                .find(|(r, _)| *r == rel)
                .and_then(|(_, v)| v.clone())
        };
        let sub = |rel: &str| {
            subtrees
                .iter()
                .find(|(r, _)| *r == rel)
                .and_then(|(_, t)| t.clone())
        };
        Ok(Some(self.tree(&find, &sub)))
    }
}

/// Puts `node` at `rel` below `root`, making missing dirs (empty, `dir`).
fn insert(root: &mut Node, rel: &str, node: Node, dir: &Perms) {
    let mut names: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
    let Some(last) = names.pop() else {
        return;
    };
    let mut n = root;
    for name in names {
        if n.child(name).is_none() {
            n.children
                .push((name.to_string(), Node::new("", dir.clone())));
        }
        let Some(next) = n.child_mut(name) else {
            return;
        };
        n = next;
    }
    match n.child_mut(last) {
        Some(existing) => *existing = node,
        None => n.children.push((last.to_string(), node)),
    }
}

/// The tree of `root` a deep copy uses: its profile's keys if it has one,
/// else the whole subtree.
pub fn read_root(c: &mut Client, tx: TxId, root: &str) -> Result<Option<Node>> {
    match for_root(root) {
        Some(p) => p.read(c, tx, root),
        None => snapshot::read_tree(c, tx, root),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(v: &[&str]) -> Perms {
        Perms::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("perms")
    }

    #[test]
    fn roots_and_their_profiles() {
        let home = for_root("/local/domain/3").expect("home");
        assert_eq!((home.keys, home.domid, home.owner), (HOME, 3, Home));
        let lx = for_root("/libxl/3").expect("libxl");
        assert_eq!((lx.keys, lx.domid), (LIBXL, 3));
        let be = for_root("/local/domain/0/backend/console/3/0").expect("console backend");
        assert_eq!((be.keys, be.domid, be.backend), (CONSOLE_BACKEND, 3, 0));
        let be7 = for_root("/local/domain/7/backend/console/12/0").expect("driver domain");
        assert_eq!((be7.domid, be7.backend), (12, 7));
        assert_eq!(be7.perms(Backend), perms(&["n7", "r12"]));
        // Copied whole: vif backends, anything else.
        assert!(for_root("/local/domain/0/backend/vif/3/0").is_none());
        assert!(for_root("/local/domain/3/device/vif/0").is_none());
        assert!(for_root("/libxl/x").is_none());
        assert!(for_root("/vm/abc").is_none());
    }

    #[test]
    fn tree_has_the_profile_keys_the_parent_has_with_the_layout_permissions() {
        let home = for_root("/local/domain/3").expect("home");
        let vif = Node::new("", perms(&["n3", "r0"]));
        let data = Node::new("", perms(&["n3"]));
        let t = home.tree(
            &|rel| match rel {
                "name" => Some(b"web".to_vec()),
                "console/port" => Some(b"2".to_vec()),
                _ => None,
            },
            &|rel| match rel {
                "device/vif" => Some(vif.clone()),
                "data" | "control/shutdown" => Some(data.clone()),
                _ => None,
            },
        );
        let val = |rel: &str| {
            t.get(rel)
                .map(|n| String::from_utf8_lossy(&n.value).into_owned())
        };
        assert_eq!(val("name").as_deref(), Some("web"));
        assert_eq!(val("domid").as_deref(), Some("3"));
        assert_eq!(val("console/port").as_deref(), Some("2"));
        assert_eq!(val("data").as_deref(), Some(""));
        assert_eq!(val("control/shutdown").as_deref(), Some(""));
        // The parent lacks them: not made.
        assert!(t.get("vm").is_none());
        assert!(t.get("memory").is_none());
        assert!(t.get("console/limit").is_none());
        // Layout permissions; a subtree keeps its own.
        assert_eq!(t.perms, perms(&["n0", "r3"]));
        assert_eq!(t.get("name").map(|n| &n.perms), Some(&perms(&["n0", "r3"])));
        assert_eq!(t.get("data").map(|n| &n.perms), Some(&perms(&["n3"])));
        assert_eq!(
            t.get("control").map(|n| &n.perms),
            Some(&perms(&["n0", "r3"]))
        );
        assert_eq!(
            t.get("control/shutdown").map(|n| &n.perms),
            Some(&perms(&["n3"]))
        );
        assert_eq!(t.get("device/vif"), Some(&vif));
        assert_eq!(
            t.get("device").map(|n| &n.perms),
            Some(&perms(&["n0", "r3"]))
        );
    }
}
