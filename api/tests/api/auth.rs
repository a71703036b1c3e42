//! Bearer JWT: 401 for missing/bad/expired/forged tokens, 403 for admin
//! routes, RS256 keys and issuer/audience checks.

use crate::helpers::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::json;

fn unsigned_token(claims: serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string());
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.")
}

#[tokio::test]
async fn missing_bad_expired_forged_and_unsigned_tokens_are_401() {
    let app = spawn_app().await;
    let exp = chrono::Utc::now().timestamp() as u64 + 3600;
    // Older than the 30 s leeway.
    let long_expired = {
        let claims = json!({"sub": "alice", "exp": chrono::Utc::now().timestamp() - 120});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let wrong_key =
        order_api::auth::mint_hs256("another-secret-entirely", "alice", true, 3600, None, None)
            .unwrap();
    let no_exp = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "alice"}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let none_alg = unsigned_token(json!({"sub": "alice", "exp": exp, "roles": ["admin"]}));

    let no_header = app.http.get(app.url("/api/orders")).send().await.unwrap();
    let problem = assert_problem(no_header, StatusCode::UNAUTHORIZED).await;
    assert!(problem["detail"].is_string());

    for bad in ["garbage", &long_expired, &wrong_key, &no_exp, &none_alg] {
        let resp = app.get("/api/orders", bad).await;
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        assert_problem(resp, StatusCode::UNAUTHORIZED).await;
    }
}

#[tokio::test]
async fn users_on_admin_routes_get_403_and_admins_pass() {
    let app = spawn_app().await;
    let order = app.create_order("alice").await;
    let id = id_of(&order);
    app.confirm(id).await;
    let ship = json!({"carrier": "UPS", "trackingNumber": "1Z999"});

    let resp = app
        .patch(
            &format!("/api/orders/{id}/ship"),
            &token("alice", false),
            Some(ship.clone()),
        )
        .await;
    assert_problem(resp, StatusCode::FORBIDDEN).await;
    let resp = app
        .patch(
            &format!("/api/orders/{id}/deliver"),
            &token("alice", false),
            None,
        )
        .await;
    assert_problem(resp, StatusCode::FORBIDDEN).await;

    let resp = app
        .patch(
            &format!("/api/orders/{id}/ship"),
            &token("root", true),
            Some(ship),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn rs256_public_keys_verify_tokens() {
    let dir = std::env::temp_dir().join(format!("jwt-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let private = dir.join("private.pem");
    let public = dir.join("public.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&private)
        .status()
        .expect("openssl is installed")
        .success()
        && std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(&public)
            .status()
            .unwrap()
            .success();
    assert!(ok, "openssl made a key pair");
    let app = spawn_app_with(&[("JWT_PUBLIC_KEY", public.to_str().unwrap())]).await;
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(&private).unwrap()).unwrap();
    let exp = chrono::Utc::now().timestamp() + 3600;
    let rs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &json!({"sub": "alice", "exp": exp}),
        &key,
    )
    .unwrap();

    assert_eq!(app.get("/api/orders", &rs).await.status(), StatusCode::OK);
    // An HS256 token signed with the public key text must not pass (key confusion).
    let confused = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "alice", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(&std::fs::read(&public).unwrap()),
    )
    .unwrap();
    assert_problem(
        app.get("/api/orders", &confused).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let app = spawn_app_with(&[
        ("JWT_ISSUER", "https://id.example"),
        ("JWT_AUDIENCE", "orders"),
    ])
    .await;
    let good = order_api::auth::mint_hs256(
        SECRET,
        "alice",
        false,
        3600,
        Some("https://id.example"),
        Some("orders"),
    )
    .unwrap();
    let wrong_iss = order_api::auth::mint_hs256(
        SECRET,
        "alice",
        false,
        3600,
        Some("https://evil"),
        Some("orders"),
    )
    .unwrap();
    let no_aud = order_api::auth::mint_hs256(
        SECRET,
        "alice",
        false,
        3600,
        Some("https://id.example"),
        None,
    )
    .unwrap();

    assert_eq!(app.get("/api/orders", &good).await.status(), StatusCode::OK);
    assert_problem(
        app.get("/api/orders", &wrong_iss).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_problem(
        app.get("/api/orders", &no_aud).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}
