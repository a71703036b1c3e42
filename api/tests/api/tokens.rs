//! What a token must be beyond a valid signature: not before its `nbf`,
//! not issued in the future, not living longer than `JWT_MAX_TTL_SECS`, at
//! most 8 KiB; an `aud` array is fine; every refusal says the same.
//! And the secret itself: no known or short secret outside development.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn signed(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn nbf_iat_lifetime_and_size_are_checked_with_the_leeway() {
    let app = spawn_app().await;
    let t = now();
    let accepted = [
        (
            "nbf within the 30 s leeway",
            json!({"sub": "a", "exp": t + 600, "nbf": t + 10}),
        ),
        (
            "iat within the leeway",
            json!({"sub": "a", "exp": t + 600, "iat": t + 10}),
        ),
        (
            "a day exactly",
            json!({"sub": "a", "exp": t + 86_400, "iat": t}),
        ),
    ];
    for (what, claims) in accepted {
        let resp = app.get("/api/orders", &signed(claims)).await;
        assert_eq!(resp.status(), StatusCode::OK, "{what}");
    }
    let refused = [
        (
            "nbf an hour ahead",
            json!({"sub": "a", "exp": t + 7200, "nbf": t + 3600}),
        ),
        (
            "iat an hour ahead",
            json!({"sub": "a", "exp": t + 7200, "iat": t + 3600}),
        ),
        (
            "lives two days",
            json!({"sub": "a", "exp": t + 2 * 86_400, "iat": t}),
        ),
        (
            "no iat, expires in two days",
            json!({"sub": "a", "exp": t + 2 * 86_400}),
        ),
        (
            "control characters in sub",
            json!({"sub": "a\u{0}b", "exp": t + 600}),
        ),
        (
            "over 8 KiB",
            json!({"sub": "a", "exp": t + 600, "pad": "x".repeat(8 * 1024)}),
        ),
    ];
    let mut details = Vec::new();
    for (what, claims) in refused {
        let resp = app.get("/api/orders", &signed(claims)).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{what}");
        let problem = assert_problem(resp, StatusCode::UNAUTHORIZED).await;
        details.push(problem["detail"].as_str().unwrap().to_owned());
    }
    // Expired and forged answer the same: the reason is in the log only.
    let expired = signed(json!({"sub": "a", "exp": t - 120}));
    let forged = order_api::auth::mint_hs256(&"f".repeat(40), "a", true, 60, None, None).unwrap();
    for token in [expired, forged] {
        let problem = assert_problem(
            app.get("/api/orders", &token).await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
        details.push(problem["detail"].as_str().unwrap().to_owned());
    }
    details.dedup();
    assert_eq!(details.len(), 1, "one generic detail: {details:?}");
    for word in ["nbf", "iat", "Expired", "Signature", "8192"] {
        assert!(!details[0].contains(word), "{word} in {:?}", details[0]);
    }
}

#[tokio::test]
async fn an_audience_array_that_names_us_is_accepted() {
    let app = spawn_app_with(&[("JWT_AUDIENCE", "orders"), ("JWT_MAX_TTL_SECS", "600")]).await;
    let t = now();
    let ours = signed(json!({"sub": "a", "exp": t + 600, "aud": ["billing", "orders"]}));
    assert_eq!(app.get("/api/orders", &ours).await.status(), StatusCode::OK);
    let theirs = signed(json!({"sub": "a", "exp": t + 600, "aud": ["billing"]}));
    assert_problem(
        app.get("/api/orders", &theirs).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // JWT_MAX_TTL_SECS applies: 601 s is one too many.
    let long = signed(json!({"sub": "a", "exp": t + 601, "iat": t, "aud": "orders"}));
    assert_problem(
        app.get("/api/orders", &long).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

/// Runs `order-api ARGS` with `env` (and nothing else from ours).
async fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_order-api"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .await
        .expect("run order-api")
}

#[tokio::test]
async fn no_known_secret_and_no_token_command_outside_development() {
    let db = order_shared::testing::fresh_database().await;
    let dev_secret = [
        ("JWT_SECRET", "dev-secret-change-me"),
        ("DATABASE_URL", &db.url),
    ];
    let serve = run(&["serve"], &dev_secret).await;
    assert!(!serve.status.success());
    let err = String::from_utf8_lossy(&serve.stderr);
    assert!(
        err.contains("JWT_SECRET") && err.contains("32 bytes"),
        "{err}"
    );

    let token = run(&["token", "--sub", "mallory", "--admin"], &dev_secret).await;
    assert!(!token.status.success(), "token outside development");
    let err = String::from_utf8_lossy(&token.stderr);
    assert!(err.contains("APP_ENV=development"), "{err}");
    assert!(token.stdout.is_empty(), "no token printed");

    let dev = [
        ("JWT_SECRET", "dev-secret-change-me"),
        ("APP_ENV", "development"),
    ];
    let token = run(&["token", "--sub", "dev"], &dev).await;
    assert!(token.status.success(), "{:?}", token);
    assert_eq!(
        String::from_utf8_lossy(&token.stdout).matches('.').count(),
        2,
        "a JWT"
    );
}
