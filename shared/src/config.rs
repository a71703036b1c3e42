//! Reading configuration from environment variables (12-factor). Every error
//! names the variable, so a bad deployment fails at start with a clear line.

use crate::db::DbSettings;
pub use crate::secret::Secret;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A configuration variable is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {var}: {message}")]
pub struct ConfigError {
    /// The variable, e.g. `OUTBOX_SHARDS`.
    pub var: String,
    /// What is wrong with its value.
    pub message: String,
}

impl ConfigError {
    /// An error about `var`.
    pub fn new(var: &str, message: impl Into<String>) -> Self {
        ConfigError {
            var: var.to_owned(),
            message: message.into(),
        }
    }
}

/// A source of variables: the process environment, or a map in tests.
pub trait Env {
    /// The value of `name`, if set.
    fn get(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// A fixed set of variables (tests, tools): `from_pairs(&[("API_PORT", "0")])`.
pub fn from_pairs(pairs: &[(&str, &str)]) -> impl Env + use<> {
    let map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

/// The value, trimmed; empty counts as unset.
pub fn optional(env: &impl Env, name: &str) -> Option<String> {
    env.get(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The value, parsed, or `default` when unset.
pub fn parse_or<T>(env: &impl Env, name: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    match optional(env, name) {
        None => Ok(default),
        Some(raw) => raw
            .parse()
            .map_err(|e| ConfigError::new(name, format!("cannot parse {raw:?}: {e}"))),
    }
}

/// Like [`parse_or`], and the value must lie in `range`.
pub fn parse_in_range<T>(
    env: &impl Env,
    name: &str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + fmt::Display + Copy,
    T::Err: fmt::Display,
{
    let value = parse_or(env, name, default)?;
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::new(
            name,
            format!(
                "{value} is out of range {}..={}",
                range.start(),
                range.end()
            ),
        ))
    }
}

/// `true/false/1/0/yes/no`, or `default` when unset.
pub fn flag(env: &impl Env, name: &str, default: bool) -> Result<bool, ConfigError> {
    match optional(env, name).map(|v| v.to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if ["true", "1", "yes", "on"].contains(&v.as_str()) => Ok(true),
        Some(v) if ["false", "0", "no", "off"].contains(&v.as_str()) => Ok(false),
        Some(v) => Err(ConfigError::new(
            name,
            format!("expected true or false, got {v:?}"),
        )),
    }
}

/// A millisecond duration variable.
pub fn millis(
    env: &impl Env,
    name: &str,
    default_ms: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    parse_in_range(env, name, default_ms, range).map(Duration::from_millis)
}

/// A duration variable in whole seconds.
pub fn secs(
    env: &impl Env,
    name: &str,
    default_secs: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    parse_in_range(env, name, default_secs, range).map(Duration::from_secs)
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (production).
    Json,
    /// Human-readable lines (development).
    Text,
}

/// Settings both binaries share.
#[derive(Debug, Clone)]
pub struct CommonSettings {
    /// The database and its pool.
    pub db: DbSettings,
    /// `OUTBOX_SHARDS`: shards of the outbox; the same in every replica.
    pub outbox_shards: u32,
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
    /// How long a SIGTERM'd process may take to drain before it gives up.
    pub shutdown_timeout: Duration,
}

/// `DATABASE_URL` when unset: the local development database.
pub const DEFAULT_DATABASE_URL: &str = "postgres://orders:orders@127.0.0.1:5432/orders";

impl CommonSettings {
    /// Reads and checks every shared variable.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let url = Secret::new(
            optional(env, "DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
        );
        let db = DbSettings {
            url,
            pool_size: parse_in_range(env, "DATABASE_POOL_SIZE", 16, 1..=512)?,
            connect_timeout: millis(env, "DATABASE_CONNECT_TIMEOUT_MS", 2_000, 100..=60_000)?,
            statement_timeout: millis(env, "DATABASE_STATEMENT_TIMEOUT_MS", 5_000, 100..=600_000)?,
        };
        crate::db::pg_config(&db).map_err(|e| ConfigError::new("DATABASE_URL", e.to_string()))?;
        let log_format = match optional(env, "LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::new(
                    "LOG_FORMAT",
                    format!("expected json or text, got {other:?}"),
                ));
            }
        };
        Ok(CommonSettings {
            db,
            outbox_shards: parse_in_range(env, "OUTBOX_SHARDS", 32, 1..=4096)?,
            log_format,
            shutdown_timeout: secs(env, "SHUTDOWN_TIMEOUT_SECS", 20, 1..=600)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Env {
        from_pairs(pairs)
    }

    #[test]
    fn defaults_apply_when_unset() {
        let s = CommonSettings::from_env(&env(&[])).unwrap();
        assert_eq!(s.outbox_shards, 32);
        assert_eq!(s.db.url.expose(), DEFAULT_DATABASE_URL);
        assert!(
            !format!("{s:?}").contains("orders:orders"),
            "the URL must not print"
        );
        assert_eq!(s.log_format, LogFormat::Text);
    }

    #[test]
    fn errors_name_the_variable() {
        let cases = [
            ("OUTBOX_SHARDS", "zero"),
            ("OUTBOX_SHARDS", "0"),
            ("LOG_FORMAT", "xml"),
            ("DATABASE_POOL_SIZE", "-1"),
            ("DATABASE_URL", "postgres://a:b@host:notaport/db"),
        ];
        for (var, value) in cases {
            let err = CommonSettings::from_env(&env(&[(var, value)])).unwrap_err();
            assert_eq!(err.var, var, "{value:?}");
            assert!(err.to_string().contains(var));
        }
    }

    #[test]
    fn flags_accept_common_spellings() {
        assert!(flag(&env(&[("X", "YES")]), "X", false).unwrap());
        assert!(!flag(&env(&[("X", "0")]), "X", true).unwrap());
        assert!(flag(&env(&[]), "X", true).unwrap());
        assert_eq!(
            flag(&env(&[("X", "maybe")]), "X", true).unwrap_err().var,
            "X"
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }
}
