//! Xenstore node permissions: `[owner+default, acl...]`, each `<n|r|w|b><domid>`.

use crate::wire::WireError;
use std::fmt;

/// Access granted by one permission entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    None,
    Read,
    Write,
    Both,
}

impl Access {
    fn letter(self) -> char {
        match self {
            Access::None => 'n',
            Access::Read => 'r',
            Access::Write => 'w',
            Access::Both => 'b',
        }
    }
}

/// One permission entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perm {
    pub domid: u16,
    pub access: Access,
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.access.letter(), self.domid)
    }
}

impl std::str::FromStr for Perm {
    type Err = WireError;
    fn from_str(s: &str) -> Result<Self, WireError> {
        let bad = WireError::Malformed { what: "permission" };
        let mut chars = s.chars();
        let access = match chars.next() {
            Some('n') => Access::None,
            Some('r') => Access::Read,
            Some('w') => Access::Write,
            Some('b') => Access::Both,
            _ => return Err(bad),
        };
        let domid = chars.as_str().parse().map_err(|_| bad)?;
        Ok(Perm { domid, access })
    }
}

/// Permissions of one node: the first entry names the owner and the access
/// of every domain not listed; the following entries are the ACL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Perms(pub Vec<Perm>);

impl Perms {
    /// Parses the strings of an `XS_GET_PERMS` reply.
    pub fn parse(strings: &[String]) -> Result<Perms, WireError> {
        if strings.is_empty() {
            return Err(WireError::Malformed {
                what: "permission list",
            });
        }
        strings
            .iter()
            .map(|s| s.parse())
            .collect::<Result<Vec<_>, _>>()
            .map(Perms)
    }

    /// The owner (first entry's domid).
    pub fn owner(&self) -> Option<u16> {
        self.0.first().map(|p| p.domid)
    }

    /// Entries as strings, for `XS_SET_PERMS`.
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|p| p.to_string()).collect()
    }

    /// Clone rule: owner == `from` becomes `to`, and ACL entries naming
    /// `from` name `to` instead. Other domids are kept.
    pub fn rewrite_domid(&self, from: u16, to: u16) -> Perms {
        Perms(
            self.0
                .iter()
                .map(|p| Perm {
                    domid: if p.domid == from { to } else { p.domid },
                    access: p.access,
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parse_and_format() {
        let p = Perms::parse(&s(&["n5", "r0", "b7"])).expect("valid");
        assert_eq!(p.owner(), Some(5));
        assert_eq!(
            p.0[1],
            Perm {
                domid: 0,
                access: Access::Read
            }
        );
        assert_eq!(p.to_strings(), s(&["n5", "r0", "b7"]));
        assert!(Perms::parse(&s(&[])).is_err());
        assert!(Perms::parse(&s(&["x5"])).is_err());
        assert!(Perms::parse(&s(&["r"])).is_err());
        assert!(Perms::parse(&s(&["r70000"])).is_err());
    }

    #[test]
    fn rewrite_parent_to_child() {
        let p = Perms::parse(&s(&["n3", "r0", "b3", "w9"])).expect("valid");
        let c = p.rewrite_domid(3, 12);
        assert_eq!(c.to_strings(), s(&["n12", "r0", "b12", "w9"]));
        // Backend dir owned by dom0 with a frontend ACL.
        let b = Perms::parse(&s(&["n0", "r3"])).expect("valid");
        assert_eq!(b.rewrite_domid(3, 12).to_strings(), s(&["n0", "r12"]));
    }
}
