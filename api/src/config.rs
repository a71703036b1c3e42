//! `order-api` settings, from the environment (DESIGN section 7).

use crate::auth::{AuthSettings, JwtKey};
use crate::live::LiveSettings;
use crate::upstream::UpstreamSettings;
use crate::upstream::breaker::BreakerSettings;
use order_shared::config::{
    CommonSettings, ConfigError, Env, Secret, flag, millis, optional, parse_in_range, parse_or,
    secs,
};
use std::time::Duration;

/// Everything `order-api serve` needs.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub common: CommonSettings,
    pub host: String,
    /// 0 picks a free port (tests).
    pub port: u16,
    pub auth: AuthSettings,
    pub cors_allowed_origins: Vec<String>,
    pub product_service_url: Option<String>,
    pub cart_service_url: Option<String>,
    /// Upper bound of a request, database waits included; then 503.
    pub request_timeout: Duration,
    /// `HTTP_HEADER_READ_TIMEOUT_MS`: a request head must arrive within it.
    pub header_read_timeout: Duration,
    /// `HTTP_IDLE_TIMEOUT_MS`: a keep-alive connection may idle this long.
    pub idle_timeout: Duration,
    /// `HTTP_BODY_READ_TIMEOUT_MS`: a request body must arrive within it (408).
    pub body_read_timeout: Duration,
    pub max_body_bytes: usize,
    pub idempotency_ttl: Duration,
    /// NOTIFY the relay in the same transaction as each outbox row.
    pub outbox_notify: bool,
    /// How the product and cart services are called.
    pub upstream: UpstreamSettings,
    /// `RATE_LIMIT_ORDERS_PER_MINUTE`: creations per user and minute (none: off).
    pub orders_per_minute: Option<std::num::NonZeroU32>,
    /// Live updates (SSE).
    pub live: LiveSettings,
}

impl ApiSettings {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let common = CommonSettings::from_env(env)?;
        let auth = auth_from_env(env)?;
        let cors_allowed_origins = optional(env, "CORS_ALLOWED_ORIGINS")
            .map(|list| {
                list.split(',')
                    .map(|o| o.trim().trim_end_matches('/').to_owned())
                    .filter(|o| !o.is_empty())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for origin in &cors_allowed_origins {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(ConfigError::new(
                    "CORS_ALLOWED_ORIGINS",
                    format!("{origin:?} is not an origin like https://shop.example.com"),
                ));
            }
        }
        Ok(ApiSettings {
            host: optional(env, "API_HOST").unwrap_or_else(|| "0.0.0.0".into()),
            port: parse_or(env, "API_PORT", 3003)?,
            auth,
            cors_allowed_origins,
            product_service_url: service_url(env, "PRODUCT_SERVICE_URL")?,
            cart_service_url: service_url(env, "CART_SERVICE_URL")?,
            request_timeout: millis(env, "REQUEST_TIMEOUT_MS", 10_000, 100..=300_000)?,
            header_read_timeout: millis(env, "HTTP_HEADER_READ_TIMEOUT_MS", 5_000, 100..=60_000)?,
            idle_timeout: millis(env, "HTTP_IDLE_TIMEOUT_MS", 60_000, 100..=3_600_000)?,
            body_read_timeout: millis(env, "HTTP_BODY_READ_TIMEOUT_MS", 10_000, 100..=300_000)?,
            max_body_bytes: parse_in_range(env, "MAX_BODY_BYTES", 256 * 1024, 1024..=16 << 20)?,
            idempotency_ttl: Duration::from_secs(
                3600 * parse_in_range(env, "IDEMPOTENCY_KEY_TTL_HOURS", 24_u64, 1..=24 * 30)?,
            ),
            outbox_notify: flag(env, "OUTBOX_NOTIFY", false)?,
            upstream: UpstreamSettings {
                timeout: millis(env, "UPSTREAM_TIMEOUT_MS", 3_000, 100..=60_000)?,
                max_concurrency: parse_in_range(env, "UPSTREAM_MAX_CONCURRENCY", 8, 1..=256)?,
                breaker: BreakerSettings {
                    failures: parse_in_range(env, "UPSTREAM_BREAKER_FAILURES", 5, 1..=1000)?,
                    open_for: secs(env, "UPSTREAM_BREAKER_OPEN_SECS", 30, 1..=3600)?,
                },
            },
            orders_per_minute: std::num::NonZeroU32::new(parse_in_range(
                env,
                "RATE_LIMIT_ORDERS_PER_MINUTE",
                0,
                0..=1_000_000,
            )?),
            live: live_from_env(env)?,
            common,
        })
    }
}

fn live_from_env(env: &impl Env) -> Result<LiveSettings, ConfigError> {
    let idle = millis(env, "HTTP_IDLE_TIMEOUT_MS", 60_000, 100..=3_600_000)?;
    let heartbeat = millis(env, "SSE_HEARTBEAT_MS", 15_000, 100..=300_000)?;
    if optional(env, "SSE_HEARTBEAT_MS").is_some() && heartbeat >= idle {
        return Err(ConfigError::new(
            "SSE_HEARTBEAT_MS",
            format!(
                "must be below HTTP_IDLE_TIMEOUT_MS ({} ms), or quiet streams are cut",
                idle.as_millis()
            ),
        ));
    }
    // The default gives way to a short idle timeout.
    let heartbeat = heartbeat.min(idle / 2);
    Ok(LiveSettings {
        max_streams_per_user: parse_in_range(env, "SSE_MAX_STREAMS_PER_USER", 5, 1..=1000)?,
        heartbeat,
        check_every: millis(env, "SSE_CHECK_INTERVAL_MS", 1_000, 50..=60_000)?,
    })
}

fn service_url(env: &impl Env, name: &str) -> Result<Option<String>, ConfigError> {
    match optional(env, name) {
        None => Ok(None),
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
            Ok(Some(url.trim_end_matches('/').to_owned()))
        }
        Some(url) => Err(ConfigError::new(
            name,
            format!("{url:?} is not an http(s) URL"),
        )),
    }
}

/// Shortest HS256 secret accepted outside development (RFC 7518: at
/// least the hash size, 256 bits).
pub const MIN_SECRET_BYTES: usize = 32;

/// Secrets that appear in this repository, its examples and common
/// tutorials: anyone can mint tokens with them.
const KNOWN_DEV_SECRETS: &[&str] = &[
    "dev-secret-change-me",
    "secret",
    "changeme",
    "change-me",
    "your-256-bit-secret",
];

/// `APP_ENV`: where the process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    /// The default: development secrets and `order-api token` are refused.
    Production,
    /// A developer's machine (`./scripts/run.sh`, `docker compose`).
    Development,
}

/// Reads `APP_ENV` (`production`, the default, or `development`).
pub fn app_env(env: &impl Env) -> Result<AppEnv, ConfigError> {
    match optional(env, "APP_ENV").as_deref() {
        None | Some("production") => Ok(AppEnv::Production),
        Some("development") => Ok(AppEnv::Development),
        Some(other) => Err(ConfigError::new(
            "APP_ENV",
            format!("expected production or development, got {other:?}"),
        )),
    }
}

/// Refuses a secret anyone could know or guess, unless in development.
fn check_secret(secret: &str, app: AppEnv) -> Result<(), ConfigError> {
    let weak = secret.len() < MIN_SECRET_BYTES || KNOWN_DEV_SECRETS.contains(&secret);
    match app {
        AppEnv::Production if weak => Err(ConfigError::new(
            "JWT_SECRET",
            format!(
                "is a known development secret or shorter than {MIN_SECRET_BYTES} bytes; \
                 use {MIN_SECRET_BYTES}+ random bytes (e.g. `openssl rand -base64 48`), \
                 or set APP_ENV=development on a developer's machine"
            ),
        )),
        AppEnv::Development if weak => {
            tracing::warn!("JWT_SECRET is weak: accepted only because APP_ENV=development.");
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `JWT_SECRET` (HS256) or `JWT_PUBLIC_KEY` (RS256, PEM text or a file path).
pub fn auth_from_env(env: &impl Env) -> Result<AuthSettings, ConfigError> {
    let app = app_env(env)?;
    let key = match (optional(env, "JWT_SECRET"), optional(env, "JWT_PUBLIC_KEY")) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "JWT_SECRET",
                "set either JWT_SECRET (HS256) or JWT_PUBLIC_KEY (RS256), not both",
            ));
        }
        (None, None) => {
            return Err(ConfigError::new(
                "JWT_SECRET",
                "one of JWT_SECRET (HS256) or JWT_PUBLIC_KEY (RS256) is required",
            ));
        }
        (Some(secret), None) => {
            if secret.len() < 8 {
                return Err(ConfigError::new(
                    "JWT_SECRET",
                    "must be at least 8 characters (use 32 random bytes in production)",
                ));
            }
            check_secret(&secret, app)?;
            JwtKey::Hs256(Secret::new(secret))
        }
        (None, Some(key)) => {
            let pem = if key.starts_with("-----BEGIN") {
                key.replace("\\n", "\n")
            } else {
                std::fs::read_to_string(&key).map_err(|e| {
                    ConfigError::new(
                        "JWT_PUBLIC_KEY",
                        format!("is neither PEM text nor a readable file ({key}): {e}"),
                    )
                })?
            };
            jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| {
                ConfigError::new("JWT_PUBLIC_KEY", format!("not an RSA public key: {e}"))
            })?;
            JwtKey::Rs256(pem)
        }
    };
    Ok(AuthSettings {
        key,
        issuer: optional(env, "JWT_ISSUER"),
        audience: optional(env, "JWT_AUDIENCE"),
        leeway_secs: parse_in_range(env, "JWT_LEEWAY_SECS", 30, 0..=300)?,
        max_ttl_secs: parse_in_range(env, "JWT_MAX_TTL_SECS", 86_400, 60..=30 * 86_400)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use order_shared::config::from_pairs as env;

    #[test]
    fn a_jwt_key_is_required() {
        let err = ApiSettings::from_env(&env(&[])).unwrap_err();
        assert_eq!(err.var, "JWT_SECRET");
    }

    const STRONG: &str = "0123456789abcdef0123456789abcdef-strong";

    #[test]
    fn production_refuses_known_and_short_secrets() {
        for weak in ["dev-secret-change-me", "short-but-8", &"x".repeat(31)] {
            let err = ApiSettings::from_env(&env(&[("JWT_SECRET", weak)])).unwrap_err();
            assert_eq!(err.var, "JWT_SECRET", "{weak:?}");
            let dev = [("JWT_SECRET", weak), ("APP_ENV", "development")];
            assert!(
                ApiSettings::from_env(&env(&dev)).is_ok(),
                "{weak:?} in development"
            );
        }
        assert!(ApiSettings::from_env(&env(&[("JWT_SECRET", STRONG)])).is_ok());
        let bad = [("JWT_SECRET", STRONG), ("APP_ENV", "staging")];
        assert_eq!(
            ApiSettings::from_env(&env(&bad)).unwrap_err().var,
            "APP_ENV"
        );
    }

    #[test]
    fn defaults_with_a_secret() {
        let s = ApiSettings::from_env(&env(&[("JWT_SECRET", STRONG)])).unwrap();
        assert_eq!(s.port, 3003);
        assert!(s.cors_allowed_origins.is_empty());
        assert!(s.product_service_url.is_none());
    }

    #[test]
    fn bad_values_name_their_variable() {
        let base = ("JWT_SECRET", STRONG);
        for (var, value) in [
            ("API_PORT", "http"),
            ("CORS_ALLOWED_ORIGINS", "shop.example.com"),
            ("PRODUCT_SERVICE_URL", "products:8080"),
            ("REQUEST_TIMEOUT_MS", "1"),
            ("JWT_PUBLIC_KEY", "/nonexistent/key.pem"),
        ] {
            let pairs = if var == "JWT_PUBLIC_KEY" {
                vec![(var, value)]
            } else {
                vec![base, (var, value)]
            };
            let err = ApiSettings::from_env(&env(&pairs)).unwrap_err();
            assert_eq!(err.var, var, "{value:?}");
        }
    }
}
