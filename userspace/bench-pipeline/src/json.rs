//! A minimal JSON value and pretty printer (the workspace has no serde).

use std::fmt::Write as _;

#[derive(Clone, Debug)]
pub enum J {
    Null,
    Bool(bool),
    Int(i64),
    Num(f64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl From<&str> for J {
    fn from(s: &str) -> J {
        J::Str(s.to_string())
    }
}
impl From<String> for J {
    fn from(s: String) -> J {
        J::Str(s)
    }
}
impl From<u64> for J {
    fn from(v: u64) -> J {
        J::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<u32> for J {
    fn from(v: u32) -> J {
        J::Int(i64::from(v))
    }
}
impl From<f64> for J {
    fn from(v: f64) -> J {
        J::Num(v)
    }
}
impl From<bool> for J {
    fn from(v: bool) -> J {
        J::Bool(v)
    }
}
impl<T: Into<J>> From<Option<T>> for J {
    fn from(v: Option<T>) -> J {
        v.map_or(J::Null, Into::into)
    }
}

/// `J::Obj` from `(key, value)` pairs.
pub fn obj<const N: usize>(pairs: [(&str, J); N]) -> J {
    J::Obj(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn escape(s: &str, o: &mut String) {
    o.push_str(&xencloned::stats::json_str(s));
}

impl J {
    pub fn pretty(&self) -> String {
        let mut o = String::new();
        self.write(&mut o, 0);
        o.push('\n');
        o
    }

    fn write(&self, o: &mut String, ind: usize) {
        let pad = |o: &mut String, n: usize| o.push_str(&"  ".repeat(n));
        match self {
            J::Null => o.push_str("null"),
            J::Bool(b) => o.push_str(if *b { "true" } else { "false" }),
            J::Int(i) => {
                let _ = write!(o, "{i}");
            }
            J::Num(f) if f.is_finite() => {
                // Three decimals are plenty for ms, KiB and rates.
                let r = (f * 1000.0).round() / 1000.0;
                let _ = write!(o, "{r}");
            }
            J::Num(_) => o.push_str("null"),
            J::Str(s) => escape(s, o),
            J::Arr(a) if a.is_empty() => o.push_str("[]"),
            J::Arr(a) if a.iter().all(|v| matches!(v, J::Int(_) | J::Num(_))) => {
                o.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        o.push_str(", ");
                    }
                    v.write(o, ind);
                }
                o.push(']');
            }
            J::Arr(a) => {
                o.push_str("[\n");
                for (i, v) in a.iter().enumerate() {
                    pad(o, ind + 1);
                    v.write(o, ind + 1);
                    o.push_str(if i + 1 < a.len() { ",\n" } else { "\n" });
                }
                pad(o, ind);
                o.push(']');
            }
            J::Obj(m) if m.is_empty() => o.push_str("{}"),
            J::Obj(m) => {
                o.push_str("{\n");
                for (i, (k, v)) in m.iter().enumerate() {
                    pad(o, ind + 1);
                    escape(k, o);
                    o.push_str(": ");
                    v.write(o, ind + 1);
                    o.push_str(if i + 1 < m.len() { ",\n" } else { "\n" });
                }
                pad(o, ind);
                o.push('}');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints() {
        let v = obj([
            ("a", J::Arr(vec![J::Int(1), J::Num(2.5)])),
            ("b", "x\"y".into()),
            ("c", J::Null),
            ("d", obj([])),
        ]);
        assert_eq!(
            v.pretty(),
            "{\n  \"a\": [1, 2.5],\n  \"b\": \"x\\\"y\",\n  \"c\": null,\n  \"d\": {}\n}\n"
        );
    }
}
