//! Bearer JWT authentication: HS256 with a shared secret or RS256 with a PEM
//! public key, `exp` required, optional issuer and audience checks.

use crate::problem::ApiError;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use order_shared::config::Secret;
use order_shared::domain::UserId;
use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How tokens are verified.
#[derive(Debug, Clone)]
pub enum JwtKey {
    Hs256(Secret),
    /// PEM text of an RSA public key.
    Rs256(String),
}

/// Token settings from the environment.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub key: JwtKey,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// `JWT_LEEWAY_SECS`: clock skew allowed on `exp`, `nbf` and `iat`.
    pub leeway_secs: u64,
    /// `JWT_MAX_TTL_SECS`: the longest lifetime (`exp - iat`) accepted.
    pub max_ttl_secs: u64,
}

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The one 401 detail: which check failed goes to the log only.
pub const REJECTED: &str = "The bearer token is missing, malformed, expired or not trusted.";

/// The claims we read. `roles` is optional; `exp` is enforced by validation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    /// Issued at; when present it may not lie in the future.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not before; checked (with the leeway) by the validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// One audience or an array of them (RFC 7519 allows both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: UserId,
    pub is_admin: bool,
}

impl Caller {
    /// Whose orders the caller may see: their own, or (admin) anyone's.
    pub fn owner(&self) -> Option<&UserId> {
        (!self.is_admin).then_some(&self.user_id)
    }

    /// The actor recorded in the history: `user:alice` or `admin:bob`.
    pub fn actor(&self) -> String {
        let kind = if self.is_admin { "admin" } else { "user" };
        format!("{kind}:{}", self.user_id)
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin {
            Ok(())
        } else {
            Err(ApiError::forbidden("This route is for administrators."))
        }
    }
}

/// Verifies tokens; built once at start-up (a bad key fails the start).
#[derive(Clone)]
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    leeway_secs: u64,
    max_ttl_secs: u64,
    verified: Arc<Mutex<HashMap<Box<str>, Verified>>>,
}

/// How many verified tokens are remembered.
const VERIFIED_TOKENS: usize = 4096;

/// Longer tokens are verified in full each time, never remembered: the
/// memory of the remembered ones stays under 4,096 x 1 KiB.
const REMEMBERED_TOKEN_BYTES: usize = 1024;

/// A token that passed every check, remembered so that the same client's
/// next request skips the signature and the claims' JSON (about 7 % of the
/// CPU of a create; docs/benchmarks.md, seventh pass). Only the checks that
/// depend on the clock are made again.
#[derive(Clone)]
struct Verified {
    caller: Caller,
    exp: u64,
    /// The latest of `nbf` and `iat`: neither may be after now + leeway.
    not_before: u64,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .finish()
    }
}

impl JwtVerifier {
    pub fn new(settings: &AuthSettings) -> Result<Self, jsonwebtoken::errors::Error> {
        let (key, alg) = match &settings.key {
            JwtKey::Hs256(secret) => (
                DecodingKey::from_secret(secret.expose().as_bytes()),
                Algorithm::HS256,
            ),
            JwtKey::Rs256(pem) => (DecodingKey::from_rsa_pem(pem.as_bytes())?, Algorithm::RS256),
        };
        let mut validation = Validation::new(alg);
        let mut required = vec!["exp", "sub"];
        validation.leeway = settings.leeway_secs;
        validation.validate_nbf = true;
        if let Some(iss) = &settings.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        match &settings.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Ok(JwtVerifier {
            key,
            validation,
            leeway_secs: settings.leeway_secs,
            max_ttl_secs: settings.max_ttl_secs,
            verified: Arc::default(),
        })
    }

    /// Verifies size, signature, algorithm, `exp`, `nbf`, `iat`, the
    /// lifetime and the optional iss/aud. Every refusal answers the same
    /// generic 401; the reason is logged.
    pub fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        self.verify_at(token, now).map_err(|reason| {
            tracing::info!(reason = %reason, "Rejected bearer token.");
            ApiError::unauthorized(REJECTED)
        })
    }

    /// [`Self::verify`] at the time `now`: from the remembered tokens when
    /// this one passed before and its times still hold, else in full.
    fn verify_at(&self, token: &str, now: u64) -> Result<Caller, String> {
        let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = verified.get(token)
            && v.exp.saturating_add(self.leeway_secs) >= now
            && v.not_before <= now.saturating_add(self.leeway_secs)
        {
            return Ok(v.caller.clone());
        }
        drop(verified);
        let v = self.check(token, now)?;
        if token.len() > REMEMBERED_TOKEN_BYTES {
            return Ok(v.caller);
        }
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= VERIFIED_TOKENS {
            let leeway = self.leeway_secs;
            verified.retain(|_, v| v.exp.saturating_add(leeway) >= now);
            if verified.len() >= VERIFIED_TOKENS {
                verified.clear();
            }
        }
        verified.insert(token.into(), v.clone());
        Ok(v.caller)
    }

    fn check(&self, token: &str, now: u64) -> Result<Verified, String> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(format!("longer than {MAX_TOKEN_BYTES} bytes"));
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| e.to_string())?
            .claims;
        // The validation checked `exp` and `nbf` on its own clock; again on
        // `now`, the clock the remembered tokens are checked against.
        let leeway = self.leeway_secs;
        if claims.exp.saturating_add(leeway) < now {
            return Err(format!("expired (exp {}, now {now})", claims.exp));
        }
        if let Some(nbf) = claims.nbf
            && nbf > now.saturating_add(leeway)
        {
            return Err(format!("not valid yet (nbf {nbf}, now {now})"));
        }
        if let Some(iat) = claims.iat
            && iat > now.saturating_add(leeway)
        {
            return Err(format!("issued in the future (iat {iat}, now {now})"));
        }
        let born = claims.iat.unwrap_or(now);
        if claims.exp.saturating_sub(born) > self.max_ttl_secs {
            return Err(format!(
                "lives {} s, longer than JWT_MAX_TTL_SECS ({} s)",
                claims.exp.saturating_sub(born),
                self.max_ttl_secs
            ));
        }
        if claims.sub.trim().is_empty() || claims.sub.chars().any(char::is_control) {
            return Err("empty subject, or control characters in it".into());
        }
        Ok(Verified {
            not_before: claims.nbf.max(claims.iat).unwrap_or(0),
            exp: claims.exp,
            caller: Caller {
                is_admin: claims.roles.iter().any(|r| r == "admin"),
                user_id: UserId::new(claims.sub),
            },
        })
    }
}

/// Mints an HS256 token (the `token` subcommand and tests).
pub fn mint_hs256(
    secret: &str,
    sub: &str,
    admin: bool,
    ttl_secs: u64,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let claims = Claims {
        sub: sub.to_owned(),
        exp: now + ttl_secs,
        iat: Some(now),
        nbf: None,
        roles: if admin {
            vec!["admin".to_owned()]
        } else {
            Vec::new()
        },
        iss: issuer.map(str::to_owned),
        aud: audience.map(|a| serde_json::Value::String(a.to_owned())),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

/// The caller of a raw request (`Authorization: Bearer <JWT>`), for the
/// middleware that authenticates before it reads a body.
pub fn authenticate(verifier: &JwtVerifier, req: &Request) -> Result<Caller, ApiError> {
    let token = req
        .headers()
        .get(poem::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match token {
        Some(token) => verifier.verify(token),
        None => {
            tracing::info!(reason = "no bearer token", "Rejected bearer token.");
            Err(ApiError::unauthorized(REJECTED))
        }
    }
}

/// `Authorization: Bearer <JWT>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_bearer")]
pub struct BearerAuth(pub Caller);

/// The caller the middleware already authenticated (from this request's
/// own `Authorization` header), so the token is verified once.
#[derive(Debug, Clone)]
pub struct Authenticated(pub(crate) Caller);

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<Caller> {
    if let Some(Authenticated(caller)) = req.extensions().get::<Authenticated>() {
        return Ok(caller.clone());
    }
    let verifier = req
        .data::<Arc<JwtVerifier>>()
        .ok_or_else(|| poem::Error::from(ApiError::internal()))?;
    verifier.verify(&bearer.token).map_err(poem::Error::from)
}

#[cfg(test)]
mod tests;
