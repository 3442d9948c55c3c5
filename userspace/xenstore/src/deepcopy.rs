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
//!
//! How, in few requests: the source is read into a [`Node`] tree (or comes
//! from a cache of it), the wanted destination tree is computed ([`desired`]),
//! and [`plan`] turns it into `XS_WRITE`/`XS_SET_PERMS` requests using what
//! xenstored does by itself: a node created by a write gets its parent's
//! permissions (Dom0's connection is privileged, so the owner is kept too),
//! and a write creates missing parents, empty, with their parent's
//! permissions. So a node costs one write, or none (an empty directory
//! created by its first descendant), plus a `SET_PERMS` only where its
//! permissions differ from what it inherits. A [`Batch`] (one transaction)
//! also knows the permissions of what it made, so a destination under an
//! earlier one needs neither an existence check nor a `SET_PERMS` of its
//! root when it inherits the right ones.

use crate::client::{Client, PIPELINE_MAX, Request, TxId};
use crate::error::{Error, Result};
use crate::paths::{self, NodeRule};
use crate::perms::Perms;
use crate::snapshot::{self, Node};
use crate::wire::{CloneOp, Op, errno};
use std::collections::HashMap;

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

/// One request of a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Write { path: String, value: Vec<u8> },
    SetPerms { path: String, perms: Perms },
}

/// The destination tree `spec` makes of the source tree `src` (pure):
/// permissions rewritten, level-1 rules, overrides, `cloned`.
pub fn desired(spec: &CopySpec<'_>, src: &Node) -> Node {
    let (p, c) = (spec.parent, spec.child);
    fn rewrite(n: &Node, p: u16, c: u16) -> Node {
        Node {
            value: n.value.clone(),
            perms: n.perms.rewrite_domid(p, c),
            children: n
                .children
                .iter()
                .map(|(name, ch)| (name.clone(), rewrite(ch, p, c)))
                .collect(),
        }
    }
    let mut root = Node::new(src.value.clone(), src.perms.rewrite_domid(p, c));
    for (name, ch) in &src.children {
        let text = String::from_utf8_lossy(&ch.value).into_owned();
        let mut n = rewrite(ch, p, c);
        match paths::level1_rule(spec.op, name, &text, p, c) {
            NodeRule::Skip => continue,
            NodeRule::Replace(v) => n.value = v.into_bytes(),
            NodeRule::Copy => {}
        }
        root.children.push((name.clone(), n));
    }
    // Written after the copy: an existing node keeps its permissions; a new
    // one (and any missing parent) gets those of its nearest ancestor.
    for (rel, value) in spec.overrides {
        set_value(&mut root, rel, value.as_bytes());
    }
    if spec.mark_cloned {
        let perms = root.perms.clone();
        match root.child_mut("cloned") {
            Some(n) => {
                n.value = b"true".to_vec();
                n.perms = perms;
            }
            None => root
                .children
                .push(("cloned".into(), Node::new("true", perms))),
        }
    }
    root
}

/// Sets the value at `rel`, creating it and missing parents (empty) with
/// the permissions of the nearest existing ancestor, as a write does.
fn set_value(root: &mut Node, rel: &str, value: &[u8]) {
    let mut n = root;
    for name in rel.split('/').filter(|s| !s.is_empty()) {
        if n.child(name).is_none() {
            let perms = n.perms.clone();
            n.children.push((name.to_string(), Node::new("", perms)));
        }
        let Some(next) = n.child_mut(name) else {
            return;
        };
        n = next;
    }
    n.value = value.to_vec();
}

/// The requests that create `d` at `dst` where nothing exists (pure).
/// `inherited`: the permissions `dst` gets when created (those of its
/// nearest existing ancestor), `None` if unknown (then its permissions are
/// always set).
///
/// A leaf is written (it inherits), then set if it must differ. A
/// directory's children inherit whatever permissions it has while they are
/// created, so its children are made in groups of equal permissions: first
/// those that want what the directory has when it is created (the inherited
/// permissions, left to its first descendant's write), then each other
/// group, with the directory switched to the group's permissions first when
/// that takes fewer requests than setting each member, its own group last;
/// and the directory is set to its own permissions at the end if it does
/// not have them by then. A domain's home (`n0 r<d>`) with `data`,
/// `control/shutdown`... owned by the domain costs two switches instead of
/// a `SET_PERMS` per domain-owned node.
pub fn plan(dst: &str, d: &Node, inherited: Option<&Perms>) -> Vec<Step> {
    let mut out = Vec::new();
    plan_node(dst, d, inherited, &mut out);
    out
}

/// The children of `n` grouped by permissions, groups in order of first
/// appearance, children in listing order.
fn groups(n: &Node) -> Vec<(&Perms, Vec<(&str, &Node)>)> {
    let mut g: Vec<(&Perms, Vec<(&str, &Node)>)> = Vec::new();
    for (name, c) in &n.children {
        match g.iter_mut().find(|(p, _)| **p == c.perms) {
            Some((_, v)) => v.push((name, c)),
            None => g.push((&c.perms, vec![(name, c)])),
        }
    }
    g
}

fn plan_node(path: &str, n: &Node, inh: Option<&Perms>, out: &mut Vec<Step>) {
    let write = |out: &mut Vec<Step>| {
        out.push(Step::Write {
            path: path.to_string(),
            value: n.value.clone(),
        })
    };
    let set = |out: &mut Vec<Step>, perms: &Perms| {
        out.push(Step::SetPerms {
            path: path.to_string(),
            perms: perms.clone(),
        })
    };
    if n.children.is_empty() {
        write(out);
        if inh != Some(&n.perms) {
            set(out, &n.perms);
        }
        return;
    }
    // The permissions the directory has while its next children are
    // created, and whether it exists yet (else its first descendant's
    // write creates it with `inh`).
    let (mut cur, mut exists) = match inh {
        Some(i) => {
            if !n.value.is_empty() {
                write(out);
            }
            (i, !n.value.is_empty())
        }
        None => {
            write(out);
            set(out, &n.perms);
            (&n.perms, true)
        }
    };
    let mut g = groups(n);
    // The group already matching first, the own group last.
    g.sort_by_key(|(p, _)| match () {
        _ if *p == cur => 0,
        _ if **p == n.perms => 2,
        _ => 1,
    });
    for (perms, members) in g {
        if perms != cur {
            let own = *perms == n.perms;
            // Switching: a SET_PERMS of the directory now (and its write
            // first if it does not exist yet), and one more at the end
            // unless it ends with its own permissions anyway.
            let end_set = usize::from(!own && *cur == n.perms);
            let cost = 1 + usize::from(!exists) + end_set;
            // Into its own group: that is the SET_PERMS it needs at the end.
            if own || cost < members.len() {
                if !exists {
                    write(out);
                }
                set(out, perms);
                cur = perms;
            }
        }
        for (name, c) in members {
            plan_node(&paths::join(path, name), c, Some(cur), out);
        }
        exists = true;
    }
    if *cur != n.perms {
        set(out, &n.perms);
    }
}

/// What to do when a destination exists already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// `EEXIST`, as `XS_CLONE`.
    Fail,
    /// Leave it (a re-delivered clone whose trees were made before).
    Skip,
}

/// Copies made in one transaction: remembers the final permissions of
/// every node it made, so a later destination below one of them is known
/// to be absent and to inherit known permissions.
///
/// Only the batch's first destination is checked for existence when it
/// is new: a clone's other trees (`/libxl/<c>`, its backend dirs) belong
/// to the same new domain, and a home found absent means the domid is
/// fresh. (Leftovers of a dead domain of that domid under a backend dir
/// are then overwritten key by key rather than refused with `EEXIST`.)
#[derive(Debug, Default)]
pub struct Batch {
    made: HashMap<String, Perms>,
    /// The first destination was absent and made: the others are new.
    fresh: bool,
}

fn parent_of(path: &str) -> Option<&str> {
    match path.rfind('/') {
        Some(0) if path.len() > 1 => Some("/"),
        Some(0) | None => None,
        Some(i) => Some(&path[..i]),
    }
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// The nearest strict ancestor of `path` this batch made.
    fn made_ancestor(&self, path: &str) -> Option<(&str, &Perms)> {
        let mut p = parent_of(path);
        while let Some(a) = p {
            if let Some((k, v)) = self.made.get_key_value(a) {
                return Some((k.as_str(), v));
            }
            p = parent_of(a);
        }
        None
    }

    /// Whether `dst` exists, and the permissions it would inherit if not
    /// (known only below a node this batch made).
    fn probe_dst(&mut self, c: &mut Client, tx: TxId, dst: &str) -> Result<(bool, Option<Perms>)> {
        if self.made.contains_key(dst) {
            return Ok((true, None));
        }
        if let Some((_, perms)) = self.made_ancestor(dst) {
            return Ok((false, Some(perms.clone())));
        }
        if self.fresh {
            return Ok((false, None));
        }
        Ok((c.exists(tx, dst)?, None))
    }

    /// Copies the source tree `src` per `spec` (the source is not read
    /// again). `Ok(None)`: the destination existed and `existing` is
    /// [`Existing::Skip`]. Else the number of nodes the copy made.
    pub fn copy(
        &mut self,
        c: &mut Client,
        tx: TxId,
        spec: &CopySpec<'_>,
        src: &Node,
        existing: Existing,
    ) -> Result<Option<usize>> {
        let (exists, inherited) = self.probe_dst(c, tx, spec.dst)?;
        if exists {
            return match existing {
                Existing::Skip => Ok(None),
                Existing::Fail => Err(eexist(spec.dst)),
            };
        }
        self.write(c, tx, spec, src, inherited).map(Some)
    }

    fn write(
        &mut self,
        c: &mut Client,
        tx: TxId,
        spec: &CopySpec<'_>,
        src: &Node,
        inherited: Option<Perms>,
    ) -> Result<usize> {
        let d = desired(spec, src);
        let steps = plan(spec.dst, &d, inherited.as_ref());
        self.fresh = true;
        // Pipelined: no step depends on an earlier one's answer (xenstored
        // serves them in order, so a node's SET_PERMS follows the write
        // that made it), and a failure fails the whole copy. One round trip
        // per PIPELINE_MAX steps instead of one per step.
        let reqs = steps
            .iter()
            .map(|s| match s {
                Step::Write { path, value } => Request::write(tx, path, value),
                Step::SetPerms { path, perms } => Request::set_perms(tx, path, perms),
            })
            .collect::<Result<Vec<_>>>()?;
        for chunk in reqs.chunks(PIPELINE_MAX) {
            for answer in c.pipeline(chunk)? {
                answer?;
            }
        }
        // Parents the first write created below a node of this batch.
        if let Some(perms) = &inherited {
            let mut p = parent_of(spec.dst);
            while let Some(a) = p.filter(|a| !self.made.contains_key(*a)) {
                self.made.insert(a.to_string(), perms.clone());
                p = parent_of(a);
            }
        }
        let mut all = Vec::new();
        d.walk(spec.dst, &mut all);
        for (path, n) in &all {
            self.made.insert(path.clone(), n.perms.clone());
        }
        Ok(all.len())
    }
}

fn eexist(dst: &str) -> Error {
    Error::Xs {
        op: Op::Clone,
        path: dst.to_string(),
        errno: errno::EEXIST,
    }
}

/// Copies `spec.src` to `spec.dst` in `tx` on its own (the source read
/// with 3 requests a node); returns the number of nodes made.
pub fn deep_copy(c: &mut Client, tx: TxId, spec: &CopySpec<'_>) -> Result<usize> {
    if c.exists(tx, spec.dst)? {
        return Err(eexist(spec.dst));
    }
    let src = snapshot::read_tree(c, tx, spec.src)?.ok_or_else(|| Error::Xs {
        op: Op::Read,
        path: spec.src.to_string(),
        errno: errno::ENOENT,
    })?;
    Batch::new().write(c, tx, spec, &src, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn p(v: &[&str]) -> Perms {
        Perms::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("perms")
    }

    /// C xenstored as far as a privileged connection's writes go: a write
    /// creates missing parents (empty, with their parent's permissions) and
    /// the node (with its parent's permissions); an existing node keeps
    /// its permissions. `SET_PERMS` needs the node.
    #[derive(Clone, Debug, Default, PartialEq)]
    struct Store(BTreeMap<String, (Vec<u8>, Perms)>);

    impl Store {
        fn apply(&mut self, steps: &[Step]) {
            for s in steps {
                match s {
                    Step::Write { path, value } => {
                        self.create(path);
                        if let Some(n) = self.0.get_mut(path) {
                            n.0 = value.clone();
                        }
                    }
                    Step::SetPerms { path, perms } => {
                        let n = self.0.get_mut(path).expect("SET_PERMS of a missing node");
                        n.1 = perms.clone();
                    }
                }
            }
        }
        fn create(&mut self, path: &str) {
            if self.0.contains_key(path) {
                return;
            }
            let parent = parent_of(path).expect("not the root");
            self.create(parent);
            let perms = self.0[parent].1.clone();
            self.0.insert(path.to_string(), (Vec::new(), perms));
        }
        fn subtree(&self, root: &str) -> Vec<(String, Vec<u8>, Perms)> {
            self.0
                .iter()
                .filter(|(k, _)| *k == root || k.starts_with(&format!("{root}/")))
                .map(|(k, (v, pr))| (k.clone(), v.clone(), pr.clone()))
                .collect()
        }
    }

    fn flatten(root: &str, d: &Node) -> Vec<(String, Vec<u8>, Perms)> {
        let mut all = Vec::new();
        d.walk(root, &mut all);
        let mut v: Vec<_> = all
            .into_iter()
            .map(|(k, n)| (k, n.value.clone(), n.perms.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn base_store() -> Store {
        let mut s = Store::default();
        s.0.insert("/".into(), (Vec::new(), p(&["n0"])));
        s.0.insert("/local".into(), (Vec::new(), p(&["n0"])));
        s.0.insert("/local/domain".into(), (Vec::new(), p(&["n0"])));
        s
    }

    fn leaf(v: &str, perms: &[&str]) -> Node {
        Node::new(v, p(perms))
    }

    fn dir(v: &str, perms: &[&str], children: Vec<(&str, Node)>) -> Node {
        let mut n = Node::new(v, p(perms));
        n.children = children
            .into_iter()
            .map(|(k, c)| (k.to_string(), c))
            .collect();
        n
    }

    /// The parent of tests/pipeline.rs, as read: home n0,r3; data b3 with
    /// data/app written before data's permissions were set.
    fn parent_home() -> Node {
        dir(
            "",
            &["n0", "r3"],
            vec![
                ("name", leaf("web", &["n0", "r3"])),
                ("domid", leaf("3", &["n0", "r3"])),
                ("vm", leaf("/vm/0000-1111", &["n0", "r3"])),
                (
                    "store",
                    dir(
                        "",
                        &["n0", "r3"],
                        vec![
                            ("port", leaf("1", &["n0", "r3"])),
                            ("ring-ref", leaf("12288", &["n0", "r3"])),
                        ],
                    ),
                ),
                (
                    "control",
                    dir(
                        "",
                        &["n0", "r3"],
                        vec![("shutdown", leaf("", &["n0", "r3"]))],
                    ),
                ),
                (
                    "data",
                    dir("", &["b3"], vec![("app", leaf("nginx", &["n0", "r3"]))]),
                ),
                (
                    "device",
                    dir("", &["n0", "r3"], vec![("vif", leaf("", &["n3", "r0"]))]),
                ),
                ("console", dir("", &["n0", "r3"], vec![])),
            ],
        )
    }

    fn basic<'a>(overrides: &'a [(&'a str, String)]) -> CopySpec<'a> {
        CopySpec {
            op: CloneOp::Basic,
            parent: 3,
            child: 9,
            src: "/local/domain/3",
            dst: "/local/domain/9",
            overrides,
            mark_cloned: false,
        }
    }

    #[test]
    fn desired_tree_follows_the_clone_rules() {
        let ov = [
            ("store/ring-ref", "5000".to_string()),
            ("new/key", "x".to_string()),
        ];
        let d = desired(&basic(&ov), &parent_home());
        assert_eq!(d.perms, p(&["n0", "r9"]));
        assert_eq!(
            d.get("name").map(|n| n.value.clone()),
            Some(b"web-child-9".to_vec())
        );
        assert_eq!(d.get("domid").map(|n| n.value.clone()), Some(b"9".to_vec()));
        assert_eq!(
            d.get("store/ring-ref").map(|n| n.value.clone()),
            Some(b"5000".to_vec())
        );
        assert!(d.get("device").is_none() && d.get("console").is_none());
        assert_eq!(d.get("data").map(|n| n.perms.clone()), Some(p(&["b9"])));
        assert_eq!(
            d.get("data/app").map(|n| n.perms.clone()),
            Some(p(&["n0", "r9"]))
        );
        // A new override key: created with its nearest ancestor's permissions.
        assert_eq!(
            d.get("new").map(|n| n.perms.clone()),
            Some(p(&["n0", "r9"]))
        );
        assert_eq!(
            d.get("new/key").map(|n| n.value.clone()),
            Some(b"x".to_vec())
        );
        let mut spec = basic(&[]);
        spec.op = CloneOp::DevVif;
        spec.mark_cloned = true;
        let mut be = dir(
            "",
            &["n0", "r3"],
            vec![("frontend-id", leaf("3", &["n0", "r3"]))],
        );
        be.children.push(("cloned".into(), leaf("false", &["b3"])));
        let d = desired(&spec, &be);
        assert_eq!(
            d.get("frontend-id").map(|n| n.value.clone()),
            Some(b"9".to_vec())
        );
        let cl = d.get("cloned").expect("cloned");
        assert_eq!(
            (cl.value.as_slice(), &cl.perms),
            (&b"true"[..], &p(&["n0", "r9"]))
        );
        assert_eq!(d.children.iter().filter(|(n, _)| n == "cloned").count(), 1);
    }

    #[test]
    fn plan_makes_exactly_the_desired_tree_with_few_requests() {
        let ov = [("store/ring-ref", "5000".to_string())];
        let d = desired(&basic(&ov), &parent_home());
        let steps = plan("/local/domain/9", &d, None);
        let mut s = base_store();
        s.apply(&steps);
        assert_eq!(s.subtree("/local/domain/9"), flatten("/local/domain/9", &d));
        // root: write + perms; name, domid, vm, store/port, store/ring-ref,
        // control/shutdown: 6 writes (store, control created by them);
        // data: created by data/app (n0,r9 inherited), then set to b9.
        assert_eq!(steps.len(), 2 + 6 + 2, "{steps:#?}");
        assert!(!steps.iter().any(|s| matches!(s, Step::Write { path, .. } if path.ends_with("/store") || path.ends_with("/control"))));
    }

    /// Pseudo-random trees (no dependency): the planned requests, applied
    /// with xenstored's rules, give exactly the desired tree, whatever the
    /// permissions, values and inherited permissions.
    #[test]
    fn plan_is_exact_on_random_trees() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let choices = [
            p(&["n0"]),
            p(&["n0", "r3"]),
            p(&["b3"]),
            p(&["n3", "r0"]),
            p(&["r0", "w3", "b7"]),
        ];
        fn random_tree(
            rnd: &mut impl FnMut(u64) -> u64,
            choices: &[Perms],
            depth: u32,
            parent: &Perms,
        ) -> Node {
            // Mostly inherited, like real trees.
            let perms = if rnd(3) == 0 {
                choices[rnd(choices.len() as u64) as usize].clone()
            } else {
                parent.clone()
            };
            let value = if rnd(2) == 0 {
                String::new()
            } else {
                format!("v{}", rnd(100))
            };
            let mut n = Node::new(value, perms.clone());
            if depth < 4 {
                for i in 0..rnd(4) {
                    n.children.push((
                        format!("k{i}"),
                        random_tree(rnd, choices, depth + 1, &perms),
                    ));
                }
            }
            n
        }
        for round in 0..500 {
            let src = random_tree(&mut rnd, &choices, 0, &choices[1]);
            let spec = CopySpec {
                op: if round % 2 == 0 {
                    CloneOp::Basic
                } else {
                    CloneOp::DevVif
                },
                parent: 3,
                child: 9,
                src: "/local/domain/3",
                dst: "/local/domain/9/x",
                overrides: &[],
                mark_cloned: round % 3 == 0,
            };
            let d = desired(&spec, &src);
            for inherited in [None, Some(p(&["n0"])), Some(d.perms.clone())] {
                let mut s = base_store();
                s.0.insert(
                    "/local/domain/9".into(),
                    (Vec::new(), inherited.clone().unwrap_or(p(&["n0"]))),
                );
                let steps = plan(spec.dst, &d, inherited.as_ref());
                s.apply(&steps);
                assert_eq!(
                    s.subtree(spec.dst),
                    flatten(spec.dst, &d),
                    "round {round}, inherited {inherited:?}: {steps:#?}"
                );
                let nodes = d.count();
                assert!(
                    steps.len() <= 2 * nodes,
                    "{} steps for {nodes} nodes",
                    steps.len()
                );
            }
        }
    }

    /// What libxl (Nephele's tree: `libxl_create.c` `libxl__domain_make`,
    /// `libxl_dom.c` `libxl__build_post`, `libxl_console.c`,
    /// `libxl_device.c` `libxl__device_generic_add`) writes for a PV guest
    /// with one vCPU and its primary console: the trees of a real clone.
    /// Returns (home, libxl, console frontend, console backend, libxl
    /// console) of domain 3.
    fn libxl_pv_guest() -> [Node; 5] {
        let ro = ["n0", "r3"];
        let rw = ["n3"];
        let fe = ["n3", "r0"];
        let home = dir(
            "",
            &ro,
            vec![
                ("vm", leaf("/vm/8ee2a7d0-1111", &ro)),
                ("name", leaf("forker", &ro)),
                (
                    "cpu",
                    dir(
                        "",
                        &ro,
                        vec![(
                            "0",
                            dir("", &ro, vec![("availability", leaf("online", &ro))]),
                        )],
                    ),
                ),
                (
                    "memory",
                    dir(
                        "",
                        &ro,
                        vec![
                            ("static-max", leaf("32768", &ro)),
                            ("target", leaf("32768", &ro)),
                            ("videoram", leaf("-1", &ro)),
                        ],
                    ),
                ),
                (
                    "device",
                    dir(
                        "",
                        &ro,
                        vec![(
                            "suspend",
                            dir("", &ro, vec![("event-channel", leaf("", &rw))]),
                        )],
                    ),
                ),
                (
                    "control",
                    dir(
                        "",
                        &ro,
                        vec![
                            ("shutdown", leaf("", &rw)),
                            ("feature-poweroff", leaf("", &rw)),
                            ("feature-reboot", leaf("", &rw)),
                            ("feature-suspend", leaf("", &rw)),
                            ("sysrq", leaf("", &rw)),
                            ("platform-feature-multiprocessor-suspend", leaf("1", &ro)),
                            ("platform-feature-xs_reset_watches", leaf("1", &ro)),
                        ],
                    ),
                ),
                ("data", leaf("", &rw)),
                ("drivers", leaf("", &rw)),
                ("feature", leaf("", &rw)),
                ("attr", leaf("", &rw)),
                ("error", leaf("", &rw)),
                ("domid", leaf("3", &ro)),
                (
                    "store",
                    dir(
                        "",
                        &ro,
                        vec![("port", leaf("1", &ro)), ("ring-ref", leaf("1234", &ro))],
                    ),
                ),
                ("console", leaf("", &ro)),
            ],
        );
        let console = dir(
            "",
            &ro,
            vec![
                ("backend", leaf("/local/domain/0/backend/console/3/0", &ro)),
                ("backend-id", leaf("0", &fe)),
                ("enabled", leaf("enabled", &fe)),
                ("limit", leaf("1048576", &ro)),
                ("type", leaf("xenconsoled", &ro)),
                ("output", leaf("pty", &ro)),
                ("tty", leaf("/dev/pts/1", &ro)),
                ("port", leaf("2", &ro)),
                ("ring-ref", leaf("1235", &ro)),
            ],
        );
        fn keys(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, Node)> {
            let ro = ["n0", "r3"];
            let mut v = vec![
                ("frontend-id", leaf("3", &ro)),
                ("online", leaf("1", &ro)),
                ("state", leaf("1", &ro)),
                ("protocol", leaf("vt100", &ro)),
            ];
            for (k, val) in extra {
                v.push((*k, leaf(val, &ro)));
            }
            v
        }
        let backend = dir("", &ro, keys(&[("frontend", "/local/domain/3/console")]));
        let n0 = ["n0"];
        let libxl = dir(
            "",
            &n0,
            vec![
                ("device", leaf("", &n0)),
                ("type", leaf("pv", &n0)),
                ("dm-version", leaf("qemu_xen", &n0)),
            ],
        );
        let mut lc = dir(
            "",
            &n0,
            keys(&[
                ("frontend", "/local/domain/3/console"),
                ("backend", "/local/domain/0/backend/console/3/0"),
            ]),
        );
        for (_, c) in &mut lc.children {
            c.perms = p(&n0);
        }
        [home, libxl, console, backend, lc]
    }

    /// A real clone's trees (no vif): how many requests the copy itself
    /// takes, node by node (`cargo test -- --nocapture` prints it).
    #[test]
    fn plan_cost_on_a_libxl_pv_guest() {
        let [home, libxl, console, backend, lc] = libxl_pv_guest();
        let spec = |op, src, dst, ov: &'static [(&'static str, String)]| CopySpec {
            op,
            parent: 3,
            child: 9,
            src,
            dst,
            overrides: ov,
            mark_cloned: false,
        };
        let d_home = desired(
            &spec(CloneOp::Basic, "/local/domain/3", "/local/domain/9", &[]),
            &home,
        );
        let d_libxl = desired(&spec(CloneOp::Basic, "/libxl/3", "/libxl/9", &[]), &libxl);
        let d_con = desired(
            &spec(
                CloneOp::DevConsole,
                "/local/domain/3/console",
                "/local/domain/9/console",
                &[],
            ),
            &console,
        );
        let d_be = desired(
            &spec(
                CloneOp::DevConsole,
                "/local/domain/0/backend/console/3/0",
                "/local/domain/0/backend/console/9/0",
                &[],
            ),
            &backend,
        );
        let d_lc = desired(
            &spec(
                CloneOp::DevConsole,
                "/libxl/3/device/console/0",
                "/libxl/9/device/console/0",
                &[],
            ),
            &lc,
        );
        // Inherited permissions as a Batch knows them: unknown for the
        // first destination under a tree it did not make.
        let plans = [
            plan("/local/domain/9", &d_home, None),
            plan("/libxl/9", &d_libxl, None),
            plan("/local/domain/9/console", &d_con, Some(&d_home.perms)),
            plan("/local/domain/0/backend/console/9/0", &d_be, None),
            plan("/libxl/9/device/console/0", &d_lc, Some(&d_libxl.perms)),
        ];
        let nodes: usize = [&d_home, &d_libxl, &d_con, &d_be, &d_lc]
            .iter()
            .map(|d| d.count())
            .sum();
        let steps: usize = plans.iter().map(Vec::len).sum();
        eprintln!(
            "libxl PV guest, no vif: {nodes} nodes, {steps} writes/permissions ({:?})",
            plans.iter().map(Vec::len).collect::<Vec<_>>()
        );
        // One write a node at most, plus a few permissions.
        assert!(steps <= nodes + 16, "{steps} requests for {nodes} nodes");
        // The old copy: write, get/set permissions, directory and a read
        // of every node.
        assert!(steps * 4 < nodes * 5);
    }

    #[test]
    fn parents() {
        assert_eq!(parent_of("/a/b"), Some("/a"));
        assert_eq!(parent_of("/a"), Some("/"));
        assert_eq!(parent_of("/"), None);
    }
}
