//! `spawn_app`: the real Application on port 0 over a fresh database.

use order_api::{ApiSettings, Application};
use order_shared::db::Emit;
use order_shared::db::orders::transition_order;
use order_shared::domain::{Change, Transition};
use order_shared::testing::{TestDb, fresh_database};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const SECRET: &str = "test-secret-0123456789-0123456789-0123456789";

pub struct TestApp {
    pub address: String,
    pub db: TestDb,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts the API over a fresh database with the default test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts the API with extra environment variables (they win over the defaults).
pub async fn spawn_app_with(vars: &[(&str, &str)]) -> TestApp {
    let db = fresh_database().await;
    spawn_app_on(db, vars).await
}

/// Starts the API on an existing database (or a proxy of it, via DATABASE_URL).
pub async fn spawn_app_on(db: TestDb, vars: &[(&str, &str)]) -> TestApp {
    let mut env: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".into(), db.url.clone()),
        ("JWT_SECRET".into(), SECRET.into()),
        ("API_HOST".into(), "127.0.0.1".into()),
        ("API_PORT".into(), "0".into()),
        ("DATABASE_CONNECT_TIMEOUT_MS".into(), "1000".into()),
        ("REQUEST_TIMEOUT_MS".into(), "5000".into()),
        ("MAX_BODY_BYTES".into(), "16384".into()),
    ]);
    for (k, v) in vars {
        env.insert((*k).into(), (*v).into());
    }
    if env.contains_key("JWT_PUBLIC_KEY") {
        env.remove("JWT_SECRET");
    }
    let settings = ApiSettings::from_env(&move |name: &str| env.get(name).cloned())
        .expect("valid test settings");
    order_shared::telemetry::init_tracing(order_shared::config::LogFormat::Text);
    let shutdown = CancellationToken::new();
    let app = Application::build(settings, shutdown.clone())
        .await
        .expect("build the app");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run());
    TestApp {
        address,
        db,
        http: reqwest::Client::new(),
        shutdown,
    }
}

pub fn token(sub: &str, admin: bool) -> String {
    order_api::auth::mint_hs256(SECRET, sub, admin, 3600, None, None).expect("mint token")
}

pub fn order_body() -> Value {
    json!({
        "currency": "USD",
        "items": [
            {"productId": "sku-1", "quantity": 2, "unitPrice": 1999},
            {"productId": "sku-2", "quantity": 1, "unitPrice": 500}
        ],
        "shippingAddress": {
            "name": "Ada Lovelace", "line1": "1 Main St", "city": "London",
            "postalCode": "N1 9GU", "country": "GB"
        }
    })
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post_order(&self, user: &str, body: &Value) -> Response {
        self.http
            .post(self.url("/api/orders"))
            .bearer_auth(token(user, false))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Creates an order for `user` and returns its JSON.
    pub async fn create_order(&self, user: &str) -> Value {
        let resp = self.post_order(user, &order_body()).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        resp.json().await.expect("order JSON")
    }

    pub async fn get(&self, path: &str, bearer: &str) -> Response {
        self.http
            .get(self.url(path))
            .bearer_auth(bearer)
            .send()
            .await
            .expect("request")
    }

    pub async fn patch(&self, path: &str, bearer: &str, body: Option<Value>) -> Response {
        let req = self.http.patch(self.url(path)).bearer_auth(bearer);
        let req = match body {
            Some(body) => req.json(&body),
            None => req,
        };
        req.send().await.expect("request")
    }

    /// Confirms an order the way a `payment.authorized` event does.
    pub async fn confirm(&self, id: Uuid) {
        let pool = order_shared::db::build_pool(&self.db.settings()).unwrap();
        let mut client = pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let t = Transition {
            order_id: id.into(),
            change: Change::Confirm {
                payment_id: Some("pay-1".into()),
            },
            owner: None,
            actor: "test",
            if_match: None,
        };
        let emit = Emit {
            traceparent: None,
            shards: 32,
            notify: false,
        };
        transition_order(&tx, &t, &emit).await.expect("confirm");
        tx.commit().await.unwrap();
    }

    /// The body of an unauthenticated GET (`/metrics`, `/api/openapi.json`).
    pub async fn public_text(&self, path: &str) -> String {
        let resp = self.http.get(self.url(path)).send().await.unwrap();
        resp.text().await.unwrap()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        let client = self.db.connect().await;
        client.query_one(sql, &[]).await.unwrap().get(0)
    }

    /// (event_type, version) of the outbox rows of one order, in id order.
    pub async fn outbox_of(&self, id: Uuid) -> Vec<(String, i64)> {
        let client = self.db.connect().await;
        client
            .query(
                "SELECT event_type, aggregate_version FROM outbox WHERE aggregate_id = $1 ORDER BY id",
                &[&id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }
}

pub fn id_of(order: &Value) -> Uuid {
    order["id"].as_str().unwrap().parse().unwrap()
}

/// Asserts a problem+json response with `status` and returns its body.
pub async fn assert_problem(resp: Response, status: StatusCode) -> Value {
    assert_eq!(resp.status(), status);
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        ct.starts_with("application/problem+json"),
        "content-type {ct:?}"
    );
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    if [503, 429].contains(&status.as_u16()) {
        assert!(
            resp.headers().contains_key("retry-after"),
            "{status}: Retry-After"
        );
    }
    let body: Value = resp.json().await.expect("problem JSON");
    assert_eq!(body["status"], status.as_u16());
    assert!(body["title"].is_string() && body["type"].is_string());
    let instance = body["instance"].as_str().unwrap_or_default();
    assert!(
        instance.len() == 32 && instance.bytes().all(|b| b.is_ascii_hexdigit()),
        "instance is the trace id: {body}"
    );
    body
}

/// The `field` of every entry of a problem's `errors`, in order.
pub fn error_fields(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .expect("errors[]")
        .iter()
        .map(|e| e["field"].as_str().expect("field"))
        .collect()
}
