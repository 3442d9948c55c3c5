//! JSON output helpers over `serde_json`: numbers rounded to three decimals
//! (plenty for ms, KiB and rates), objects in insertion order.

pub use serde_json::Value as J;

/// `v` rounded to three decimals; NaN and infinities as `null`.
pub fn num(v: f64) -> J {
    J::from((v * 1000.0).round() / 1000.0)
}

/// An object from `(key, value)` pairs, in their order.
pub fn obj<const N: usize>(pairs: [(&str, J); N]) -> J {
    J::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// An object from `(key, value)` pairs, in their order.
pub fn obj_from(pairs: Vec<(String, J)>) -> J {
    J::Object(pairs.into_iter().collect())
}

/// Pretty JSON with a final newline.
pub fn pretty(v: &J) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("a Value always serializes");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints() {
        let v = obj([
            ("a", J::Array(vec![1.into(), num(2.5004)])),
            ("b", "x\"y".into()),
            ("c", J::Null),
            ("d", obj([])),
            ("e", num(f64::NAN)),
        ]);
        assert_eq!(
            serde_json::to_string(&v).expect("json"),
            r#"{"a":[1,2.5],"b":"x\"y","c":null,"d":{},"e":null}"#
        );
        assert!(pretty(&v).ends_with("}\n"));
    }
}
