//! Optimistic concurrency: `ETag: "<version>"` on every order answer, and
//! `If-Match` on cancel / ship / deliver (412 with `currentVersion` when
//! stale, nothing written).

use crate::helpers::*;
use order_shared::domain::precondition::MAX_LEN;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

fn etag(resp: &Response) -> String {
    resp.headers()
        .get("etag")
        .expect("an ETag header")
        .to_str()
        .unwrap()
        .to_owned()
}

async fn patch_if(
    app: &TestApp,
    path: &str,
    bearer: &str,
    if_match: &str,
    body: Option<Value>,
) -> Response {
    let mut req = app
        .http
        .patch(app.url(path))
        .bearer_auth(bearer)
        .header("If-Match", if_match);
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.expect("request")
}

#[tokio::test]
async fn every_order_answer_carries_its_version_as_etag() {
    let app = spawn_app().await;
    let created = app.post_order("alice", &order_body()).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(etag(&created), "\"1\"");
    let id = id_of(&created.json().await.unwrap());

    let read = app
        .get(&format!("/api/orders/{id}"), &token("alice", false))
        .await;
    assert_eq!(etag(&read), "\"1\"");

    app.confirm(id).await;
    let read = app
        .get(&format!("/api/orders/{id}"), &token("alice", false))
        .await;
    assert_eq!(etag(&read), "\"2\"");
    let shipped = app
        .patch(
            &format!("/api/orders/{id}/ship"),
            &token("admin", true),
            Some(json!({"carrier": "DHL", "trackingNumber": "1Z"})),
        )
        .await;
    assert_eq!(shipped.status(), StatusCode::OK);
    assert_eq!(etag(&shipped), "\"3\"");
}

#[tokio::test]
async fn a_stale_if_match_answers_412_with_the_current_version_and_writes_nothing() {
    let app = spawn_app().await;
    let id = id_of(&app.create_order("alice").await);
    app.confirm(id).await; // version 2: the client still holds "1"

    let resp = patch_if(
        &app,
        &format!("/api/orders/{id}/cancel"),
        &token("alice", false),
        "\"1\"",
        None,
    )
    .await;

    assert_eq!(etag(&resp), "\"2\"");
    let problem = assert_problem(resp, StatusCode::PRECONDITION_FAILED).await;
    assert_eq!(problem["type"], "/problems/stale-version");
    assert_eq!(problem["currentVersion"], 2);
    let order: Value = app
        .get(&format!("/api/orders/{id}"), &token("alice", false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(order["status"], "CONFIRMED");
    assert_eq!(order["version"], 2);
    assert_eq!(
        app.outbox_of(id).await.len(),
        2,
        "no event for a refused change"
    );
    let history = app
        .count(&format!(
            "SELECT count(*) FROM order_status_history WHERE order_id = '{id}'"
        ))
        .await;
    assert_eq!(history, 2);
}

#[tokio::test]
async fn a_stale_if_match_wins_over_a_no_op_and_a_conflict() {
    let app = spawn_app().await;
    let id = id_of(&app.create_order("alice").await);
    let path = format!("/api/orders/{id}/cancel");
    app.patch(&path, &token("alice", false), None).await; // version 2, CANCELLED

    // Cancelling again would be a 200 no-op, shipping a 409: a stale tag is a 412 first.
    let again = patch_if(&app, &path, &token("alice", false), "\"1\"", None).await;
    assert_problem(again, StatusCode::PRECONDITION_FAILED).await;
    let ship = patch_if(
        &app,
        &format!("/api/orders/{id}/ship"),
        &token("admin", true),
        "\"1\"",
        Some(json!({"carrier": "DHL", "trackingNumber": "1Z"})),
    )
    .await;
    assert_problem(ship, StatusCode::PRECONDITION_FAILED).await;
}

#[tokio::test]
async fn a_current_if_match_applies_and_answers_the_new_etag() {
    let app = spawn_app().await;
    let id = id_of(&app.create_order("alice").await);
    app.confirm(id).await;
    let admin = token("admin", true);

    let shipped = patch_if(
        &app,
        &format!("/api/orders/{id}/ship"),
        &admin,
        "\"7\", \"2\"",
        Some(json!({"carrier": "DHL", "trackingNumber": "1Z"})),
    )
    .await;
    assert_eq!(shipped.status(), StatusCode::OK);
    assert_eq!(etag(&shipped), "\"3\"");

    let delivered = patch_if(
        &app,
        &format!("/api/orders/{id}/deliver"),
        &admin,
        "*",
        None,
    )
    .await;
    assert_eq!(delivered.status(), StatusCode::OK);
    assert_eq!(etag(&delivered), "\"4\"");
    assert_eq!(
        delivered.json::<Value>().await.unwrap()["status"],
        "DELIVERED"
    );
}

#[tokio::test]
async fn without_if_match_a_change_applies_unconditionally() {
    let app = spawn_app().await;
    let id = id_of(&app.create_order("alice").await);
    app.confirm(id).await;

    let resp = app
        .patch(
            &format!("/api/orders/{id}/cancel"),
            &token("alice", false),
            None,
        )
        .await;

    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(etag(&resp), "\"3\"");
}

#[tokio::test]
async fn weak_tags_and_malformed_values_match_no_version() {
    let app = spawn_app().await;
    let id = id_of(&app.create_order("alice").await);
    let path = format!("/api/orders/{id}/cancel");
    let alice = token("alice", false);

    let weak = patch_if(&app, &path, &alice, "W/\"1\"", None).await;
    assert_problem(weak, StatusCode::PRECONDITION_FAILED).await;

    for bad in ["1", "\"1", "\"1\" \"2\""] {
        let resp = patch_if(&app, &path, &alice, bad, None).await;
        let problem = assert_problem(resp, StatusCode::PRECONDITION_FAILED).await;
        assert_eq!(problem["currentVersion"], 1, "{bad}");
    }
    let too_long = format!("\"{}\"", "1".repeat(1100));
    let resp = patch_if(&app, &path, &alice, &too_long, None).await;
    let problem = assert_problem(resp, StatusCode::BAD_REQUEST).await;
    assert_eq!(error_fields(&problem), vec!["If-Match"]);
    assert_eq!(app.outbox_of(id).await.len(), 1);
}

#[tokio::test]
async fn another_users_order_is_404_whatever_the_if_match() {
    let app = spawn_app().await;
    let id = id_of(&app.create_order("alice").await);

    let resp = patch_if(
        &app,
        &format!("/api/orders/{id}/cancel"),
        &token("bob", false),
        "\"9\"",
        None,
    )
    .await;

    assert_problem(resp, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn the_document_states_if_match_etag_and_412_as_the_domain_has_them() {
    let app = spawn_app().await;
    let spec: Value = serde_json::from_str(&app.public_text("/api/openapi.json").await).unwrap();
    for op in ["cancel", "ship", "deliver"] {
        let patch = &spec["paths"][format!("/orders/{{id}}/{op}")]["patch"];
        let param = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "If-Match")
            .unwrap_or_else(|| panic!("{op}: no If-Match"));
        assert_eq!(param["in"], "header");
        assert_eq!(param["schema"]["maxLength"], MAX_LEN, "{op}");
        assert!(patch["responses"]["412"].is_object(), "{op}: 412");
        assert!(
            patch["responses"]["200"]["headers"]["ETAG"].is_object(),
            "{op}: ETag"
        );
    }
    let get = &spec["paths"]["/orders/{id}"]["get"];
    assert!(get["responses"]["200"]["headers"]["ETAG"].is_object());
    assert!(spec["paths"]["/orders"]["post"]["responses"]["201"]["headers"]["ETAG"].is_object());
    assert!(spec["components"]["schemas"]["Problem"]["properties"]["currentVersion"].is_object());
}
