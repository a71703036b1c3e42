//! `order-api` settings, from the environment (DESIGN section 7).

use crate::auth::{AuthSettings, JwtKey};
use order_shared::config::{
    CommonSettings, ConfigError, Env, Secret, flag, millis, optional, parse_in_range, parse_or,
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
    pub max_body_bytes: usize,
    pub idempotency_ttl: Duration,
    /// NOTIFY the relay in the same transaction as each outbox row.
    pub outbox_notify: bool,
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
            max_body_bytes: parse_in_range(env, "MAX_BODY_BYTES", 256 * 1024, 1024..=16 << 20)?,
            idempotency_ttl: Duration::from_secs(
                3600 * parse_in_range(env, "IDEMPOTENCY_KEY_TTL_HOURS", 24_u64, 1..=24 * 30)?,
            ),
            outbox_notify: flag(env, "OUTBOX_NOTIFY", false)?,
            common,
        })
    }
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

/// `JWT_SECRET` (HS256) or `JWT_PUBLIC_KEY` (RS256, PEM text or a file path).
pub fn auth_from_env(env: &impl Env) -> Result<AuthSettings, ConfigError> {
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

    #[test]
    fn defaults_with_a_secret() {
        let s = ApiSettings::from_env(&env(&[("JWT_SECRET", "dev-secret-change-me")])).unwrap();
        assert_eq!(s.port, 3003);
        assert!(s.cors_allowed_origins.is_empty());
        assert!(s.product_service_url.is_none());
    }

    #[test]
    fn bad_values_name_their_variable() {
        let base = ("JWT_SECRET", "dev-secret-change-me");
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
