//! Parameters that must match a regular expression, checked with the expression compiled once.
//!
//! poem-openapi's own `pattern` validator compiles its expression on every check: on a product
//! detail with `near` that was about a fifth of the request's CPU, and every order, hold and till
//! sale with an `Idempotency-Key` paid it too. A parameter whose rule is the same wherever it
//! appears is declared here once, checked with [`Matches`], and [`add_parameter_patterns`] writes
//! its `pattern` into the spec, so the document shows what poem-openapi's validator would have.
//! Rules of one field or one operation (a body's names, a pickup code, the event feed's cursor,
//! the admin filters) keep poem-openapi's validator: they are read rarely.

use poem_openapi::validation::Validator;
use regex::Regex;
use std::sync::OnceLock;

/// A regular expression, compiled on first use.
pub struct Pattern {
    source: &'static str,
    regex: OnceLock<Regex>,
}

impl Pattern {
    const fn new(source: &'static str) -> Self {
        Self {
            source,
            regex: OnceLock::new(),
        }
    }

    fn is_match(&self, value: &str) -> bool {
        self.regex
            .get_or_init(|| Regex::new(self.source).expect("the expression compiles"))
            .is_match(value)
    }
}

/// An `Idempotency-Key`: visible ASCII (its length is bounded by the parameter's own validators).
pub static IDEMPOTENCY_KEY: Pattern = Pattern::new(r"^[!-~]+$");

/// `near`: `latitude,longitude` in degrees (the ranges are checked where it is read).
pub static NEAR: Pattern =
    Pattern::new(r"^-?[0-9]{1,3}(\.[0-9]{1,12})?,-?[0-9]{1,3}(\.[0-9]{1,12})?$");

/// The parameters, by name, whose value must match a pattern wherever they appear.
pub const PARAMETER_PATTERNS: &[(&str, &Pattern)] =
    &[("Idempotency-Key", &IDEMPOTENCY_KEY), ("near", &NEAR)];

/// A poem-openapi validator (`#[oai(validator(custom = "Matches(&NEAR)"))]`) checking a value
/// against a [`Pattern`]. Its text is the one poem-openapi's `pattern` validator gives.
pub struct Matches(pub &'static Pattern);

impl std::fmt::Display for Matches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pattern(\"{}\")", self.0.source)
    }
}

impl<T: AsRef<str>> Validator<T> for Matches {
    fn check(&self, value: &T) -> bool {
        self.0.is_match(value.as_ref())
    }
}

/// Writes the `pattern` of every parameter named in [`PARAMETER_PATTERNS`] into the spec's
/// operations (poem-openapi writes none for a custom validator).
pub fn add_parameter_patterns(doc: &mut serde_json::Value) {
    for op in doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|p| p.values_mut())
        .flat_map(|ops| ops.as_object_mut().into_iter().flat_map(|o| o.values_mut()))
    {
        let params = op.get_mut("parameters").and_then(|p| p.as_array_mut());
        for param in params.into_iter().flatten() {
            let name = param["name"].as_str().unwrap_or_default();
            if let Some((_, p)) = PARAMETER_PATTERNS.iter().find(|(n, _)| *n == name) {
                param["schema"]["pattern"] = serde_json::Value::from(p.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_checked_against_its_pattern() {
        assert!(Matches(&IDEMPOTENCY_KEY).check(&"order-1!~"));
        assert!(!Matches(&IDEMPOTENCY_KEY).check(&"with space"));
        assert!(!Matches(&IDEMPOTENCY_KEY).check(&""));
        assert!(Matches(&NEAR).check(&"37.5665,126.9780"));
        assert!(Matches(&NEAR).check(&"-33.9,-151"));
        assert!(!Matches(&NEAR).check(&"37.5665"));
        assert!(!Matches(&NEAR).check(&"37.5665,126.9780,1"));
        assert_eq!(
            Matches(&IDEMPOTENCY_KEY).to_string(),
            r#"pattern("^[!-~]+$")"#
        );
    }
}
