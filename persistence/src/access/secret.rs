//! Secrets in memory: a token or a URL with a password never reaches a log line, a panic message
//! or a `Debug` of the configuration by accident. Reading one takes [`Secret::expose`].

use std::fmt;

/// What a secret shows instead of itself.
pub const REDACTED: &str = "[redacted]";

/// A secret value (a token): `Debug` and `Display` print `[redacted]`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself, for the one place that needs it (a comparison, a connection).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl From<String> for Secret<String> {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for Secret<String> {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl std::str::FromStr for Secret<String> {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// A server URL that may carry a password (`mysql://app:pw@db/stock_flow`): `Debug` and
/// `Display` show it with the password as `[redacted]`, and everything else as it is.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// The URL with its password, for the connection only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password replaced by `[redacted]` (a string that is no URL is shown as
    /// it is: it has no password to hide).
    pub fn redacted(&self) -> String {
        // A URL crate is not a dependency here: the password sits between the `:` after the
        // user and the last `@` of the authority.
        let Some(scheme_end) = self.0.find("://") else {
            return self.0.clone();
        };
        let rest = &self.0[scheme_end + 3..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let Some(at) = authority.rfind('@') else {
            return self.0.clone();
        };
        let Some(colon) = authority[..at].find(':') else {
            return self.0.clone();
        };
        format!(
            "{}{}:{REDACTED}{}",
            &self.0[..scheme_end + 3],
            &authority[..colon],
            &rest[at..]
        )
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl From<String> for SecretUrl {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for SecretUrl {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl std::str::FromStr for SecretUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_itself() {
        let s = Secret::from("hunter2");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn a_url_hides_its_password_only() {
        let u = SecretUrl::from("mysql://app:s3cr@t@db.internal:3306/stock_flow?ssl-mode=required");
        assert_eq!(
            u.to_string(),
            "mysql://app:[redacted]@db.internal:3306/stock_flow?ssl-mode=required"
        );
        assert!(!format!("{u:?}").contains("s3cr"));
        assert_eq!(
            SecretUrl::from("redis://:pw@127.0.0.1:6379/0").to_string(),
            "redis://:[redacted]@127.0.0.1:6379/0"
        );
        for plain in ["redis://127.0.0.1:6379/0", "mysql://root@h/db", "not a url"] {
            assert_eq!(SecretUrl::from(plain).to_string(), plain);
        }
        assert!(u.expose().contains(":s3cr@t@"));
    }
}
