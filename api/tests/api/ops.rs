//! Health, metrics, OpenAPI, Swagger UI, CORS and unknown routes.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn health_endpoints_answer() {
    let app = spawn_app().await;
    let live = app.http.get(app.url("/health/live")).send().await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let ready = app.http.get(app.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok");
}

#[tokio::test]
async fn metrics_count_requests_orders_and_transitions() {
    let app = spawn_app().await;
    let id = id_of(&app.create_order("alice").await);
    app.patch(
        &format!("/api/orders/{id}/cancel"),
        &token("alice", false),
        None,
    )
    .await;
    app.get("/api/orders/not-a-uuid", &token("alice", false))
        .await;

    let text = app.public_text("/metrics").await;

    for needle in [
        "http_requests_total{method=\"POST\",route=\"/api/orders\",status=\"201\"}",
        "http_requests_total{method=\"GET\",route=\"/api/orders/{id}\",status=\"400\"}",
        "http_request_duration_seconds_bucket{",
        "orders_created_total",
        "order_transitions_total{from=\"PENDING\",to=\"CANCELLED\"}",
        "db_pool_connections_max{service=\"api\"}",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    assert!(!text.contains(&id.to_string()), "no ids in labels");
}

#[tokio::test]
async fn openapi_document_and_swagger_ui_are_served() {
    let app = spawn_app().await;
    let spec: Value = serde_json::from_str(&app.public_text("/api/openapi.json").await).unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/orders",
        "/orders/{id}",
        "/orders/{id}/history",
        "/orders/{id}/cancel",
    ] {
        assert!(spec["paths"].get(path).is_some(), "{path} documented");
    }
    assert_eq!(spec["servers"][0]["url"], "/api");
    let docs = app.http.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.unwrap().contains("swagger"));
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = spawn_app().await;
    let resp = app.http.get(app.url("/nope")).send().await.unwrap();
    assert_problem(resp, StatusCode::NOT_FOUND).await;
    let resp = app
        .http
        .delete(app.url("/api/orders"))
        .bearer_auth(token("alice", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["allow"], "GET, POST");
    assert_problem(resp, StatusCode::METHOD_NOT_ALLOWED).await;
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let app = spawn_app_with(&[("CORS_ALLOWED_ORIGINS", "https://shop.example.com")]).await;
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/api/orders"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,idempotency-key",
            )
            .send()
    };

    let allowed = preflight("https://shop.example.com").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
    let denied = preflight("https://evil.example.com").await.unwrap();
    assert!(
        denied
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn the_healthcheck_subcommand_reports_readiness() {
    let app = spawn_app().await;
    let port = app.address.rsplit(':').next().unwrap().to_owned();
    let run = |port: String| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_order-api"))
            .arg("healthcheck")
            .env("API_PORT", port)
            .output()
    };

    assert!(run(port).await.unwrap().status.success());
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = run(free.to_string()).await.unwrap();
    assert!(!down.status.success());
    assert!(String::from_utf8_lossy(&down.stderr).contains("not ready"));
}

/// `order-api serve` as a process on `app`'s database, at `info` with JSON
/// logs on a pipe, once ready; and its base URL.
async fn spawn_logged_api(app: &TestApp) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-api"))
        .arg("serve")
        .env("DATABASE_URL", &app.db.url)
        .env("JWT_SECRET", SECRET)
        .env("API_HOST", "127.0.0.1")
        .env("API_PORT", port.to_string())
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "json")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start order-api");
    let base = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..100 {
        if reqwest::get(format!("{base}/health/ready"))
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
        {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(up, "order-api became ready");
    (child, base)
}

/// Sends SIGTERM; the process's exit and output, within its grace period.
async fn terminate(child: tokio::process::Child) -> std::process::Output {
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::timeout(std::time::Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("exits within the grace period")
        .unwrap()
}

#[tokio::test]
async fn sigterm_drains_and_exits_cleanly() {
    let app = spawn_app().await;
    let (child, base) = spawn_logged_api(&app).await;

    let exited = terminate(child).await;

    assert!(exited.status.success(), "{:?}", exited.status);
    assert!(
        reqwest::get(format!("{base}/health/ready")).await.is_err(),
        "no longer listening"
    );
    // Its last line, logged just before it exits, is written and not left
    // with the log's writer thread.
    let log = String::from_utf8_lossy(&exited.stderr);
    let last = log.lines().last().unwrap_or_default();
    assert!(last.contains("\"order-api stopped.\""), "{log}");
}

/// DESIGN section 7: every request's lines carry its trace id and, once
/// known, its order id, as the JSON log's `request` span.
#[tokio::test]
async fn a_request_s_log_lines_carry_its_trace_and_order_ids() {
    let app = spawn_app().await;
    let (child, base) = spawn_logged_api(&app).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let created: Value = reqwest::Client::new()
        .post(format!("{base}/api/orders"))
        .bearer_auth(token("alice", false))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&order_body())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = id_of(&created);

    let exited = terminate(child).await;

    let log = String::from_utf8_lossy(&exited.stderr);
    let placed: Value = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["message"] == "Order placed.")
        .unwrap_or_else(|| panic!("no line for the order: {log}"));
    let request = serde_json::json!({"method": "POST", "route": "/api/orders",
        "trace_id": trace, "order_id": id.to_string(), "name": "request"});
    assert_eq!(placed["span"], request, "{placed}");
    assert_eq!(placed["spans"], serde_json::json!([request]), "{placed}");
}

#[tokio::test]
async fn a_different_outbox_shards_than_the_pinned_one_refuses_to_start() {
    // The first binary on a database migrated without a pin pins its value.
    let app = spawn_app_with(&[("OUTBOX_SHARDS", "8")]).await;
    let url = app.db.url.clone();
    let settings = order_api::ApiSettings::from_env(&move |name: &str| match name {
        "DATABASE_URL" => Some(url.clone()),
        "JWT_SECRET" => Some("pinned-shards-secret-0123456789-0123456789".into()),
        "API_HOST" => Some("127.0.0.1".into()),
        "API_PORT" => Some("0".into()),
        "OUTBOX_SHARDS" => Some("16".into()),
        _ => None,
    })
    .unwrap();

    let refused =
        order_api::Application::build(settings, tokio_util::sync::CancellationToken::new())
            .await
            .err()
            .expect("refuses to start");

    let message = format!("{refused:#}");
    assert!(
        message.contains("OUTBOX_SHARDS is 16 but this database was installed with 8"),
        "{message}"
    );
}

#[tokio::test]
async fn the_asyncapi_document_is_served_and_equals_the_one_in_docs() {
    let app = spawn_app().await;
    let resp = app
        .http
        .get(app.url("/api/asyncapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let served: serde_json::Value = resp.json().await.unwrap();
    let kept: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/asyncapi.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(served["asyncapi"], "3.0.0");
    assert_eq!(served, kept, "run ./scripts/check-asyncapi.sh --write");
}
