//! Validation errors that name the object, the field and the rule.

use std::fmt;

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The object, e.g. `port "web1"`.
    pub object: String,
    /// The field, e.g. `mac`.
    pub field: String,
    /// What rule is broken, in words.
    pub rule: String,
}

impl ConfigError {
    /// A new error.
    pub fn new(
        object: impl Into<String>,
        field: impl Into<String>,
        rule: impl Into<String>,
    ) -> Self {
        ConfigError {
            object: object.into(),
            field: field.into(),
            rule: rule.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: field `{}`: {}", self.object, self.field, self.rule)
    }
}

/// Every broken rule of one configuration (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "configuration refused: {} error(s)", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    /// True when some error is about `object` and `field`.
    pub fn mentions(&self, object: &str, field: &str) -> bool {
        self.0
            .iter()
            .any(|e| e.object.contains(object) && e.field == field)
    }
}
