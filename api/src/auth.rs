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
use std::sync::Arc;

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
}

/// The claims we read. `roles` is optional; `exp` is enforced by validation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
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
        validation.leeway = 30;
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
        Ok(JwtVerifier { key, validation })
    }

    /// Verifies signature, algorithm, expiry and the optional iss/aud.
    pub fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
                tracing::debug!(error = %e, "Rejected bearer token.");
                ApiError::unauthorized(format!("The bearer token is not valid: {e}."))
            })?;
        let claims = data.claims;
        if claims.sub.trim().is_empty() {
            return Err(ApiError::unauthorized("The token has an empty subject."));
        }
        Ok(Caller {
            is_admin: claims.roles.iter().any(|r| r == "admin"),
            user_id: UserId::new(claims.sub),
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
        roles: if admin {
            vec!["admin".to_owned()]
        } else {
            Vec::new()
        },
        iss: issuer.map(str::to_owned),
        aud: audience.map(str::to_owned),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

/// `Authorization: Bearer <JWT>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_bearer")]
pub struct BearerAuth(pub Caller);

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<Caller> {
    let verifier = req
        .data::<Arc<JwtVerifier>>()
        .ok_or_else(|| poem::Error::from(ApiError::internal()))?;
    verifier.verify(&bearer.token).map_err(poem::Error::from)
}
