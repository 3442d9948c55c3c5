//! In-memory copies of Xenstore subtrees: what a deep copy reads from the
//! parent (value, permissions and children of every node), so that the copy
//! itself is planned without further requests and the tree can be kept
//! between clones (see `xencloned::trees`).

use crate::client::{Client, TxId};
use crate::error::Result;
use crate::paths;
use crate::perms::Perms;

/// One node and its subtree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub value: Vec<u8>,
    pub perms: Perms,
    /// Children in the daemon's listing order.
    pub children: Vec<(String, Node)>,
}

impl Node {
    pub fn new(value: impl Into<Vec<u8>>, perms: Perms) -> Node {
        Node {
            value: value.into(),
            perms,
            children: Vec::new(),
        }
    }

    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c)
    }

    pub fn child_mut(&mut self, name: &str) -> Option<&mut Node> {
        self.children
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c)
    }

    /// The node at `rel` (`"a/b"`; `""` is this node).
    pub fn get(&self, rel: &str) -> Option<&Node> {
        rel.split('/')
            .filter(|s| !s.is_empty())
            .try_fold(self, |n, name| n.child(name))
    }

    /// Nodes in this subtree, this one included.
    pub fn count(&self) -> usize {
        1 + self.children.iter().map(|(_, c)| c.count()).sum::<usize>()
    }

    /// Bytes of names and values in this subtree (a size bound for caches).
    pub fn bytes(&self) -> usize {
        self.value.len()
            + self
                .children
                .iter()
                .map(|(n, c)| n.len() + c.bytes())
                .sum::<usize>()
    }

    /// Every node as (path under `base`, node), parents before children.
    pub fn walk<'a>(&'a self, base: &str, out: &mut Vec<(String, &'a Node)>) {
        out.push((base.to_string(), self));
        for (name, c) in &self.children {
            c.walk(&paths::join(base, name), out);
        }
    }
}

/// The subtree at `path` with `XS_READ`, `XS_GET_PERMS` and `XS_DIRECTORY`
/// per node (3 requests a node), `None` if `path` does not exist. A child
/// that disappears while it is read is left out (inside a transaction the
/// view is consistent and this does not happen).
pub fn read_tree(c: &mut Client, tx: TxId, path: &str) -> Result<Option<Node>> {
    let gone = |r: Result<()>| match r {
        Err(e) if e.is_enoent() => Ok(true),
        Err(e) => Err(e),
        Ok(()) => Ok(false),
    };
    let mut value = Vec::new();
    if gone(c.read(tx, path).map(|v| value = v))? {
        return Ok(None);
    }
    let mut perms = Perms(Vec::new());
    if gone(c.get_perms(tx, path).map(|p| perms = p))? {
        return Ok(None);
    }
    let mut names = Vec::new();
    if gone(c.directory(tx, path).map(|d| names = d))? {
        return Ok(None);
    }
    let mut node = Node::new(value, perms);
    for name in names {
        if let Some(child) = read_tree(c, tx, &paths::join(path, &name))? {
            node.children.push((name, child));
        }
    }
    Ok(Some(node))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Perms {
        Perms::parse(&[s.to_string()]).expect("perms")
    }

    #[test]
    fn lookup_count_and_walk() {
        let mut root = Node::new("", p("n0"));
        let mut a = Node::new("1", p("r3"));
        a.children.push(("b".into(), Node::new("22", p("r3"))));
        root.children.push(("a".into(), a));
        root.children.push(("c".into(), Node::new("", p("b3"))));
        assert_eq!(root.get("").map(|n| n.value.clone()), Some(b"".to_vec()));
        assert_eq!(
            root.get("a/b").map(|n| n.value.clone()),
            Some(b"22".to_vec())
        );
        assert!(root.get("a/x").is_none());
        assert_eq!(root.count(), 4);
        assert_eq!(root.bytes(), 1 + 1 + 2 + 1 + 1);
        let mut all = Vec::new();
        root.walk("/r", &mut all);
        let paths: Vec<&str> = all.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, vec!["/r", "/r/a", "/r/a/b", "/r/c"]);
    }
}
