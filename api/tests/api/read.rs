//! GET one order, list with filters and cursor pagination, history; and
//! ownership (someone else's order is 404).

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn owners_and_admins_read_an_order_others_get_404() {
    let app = spawn_app().await;
    let order = app.create_order("alice").await;
    let path = format!("/api/orders/{}", order["id"].as_str().unwrap());

    let own = app.get(&path, &token("alice", false)).await;
    assert_eq!(own.status(), StatusCode::OK);
    assert_eq!(own.json::<Value>().await.unwrap(), order);

    assert_eq!(
        app.get(&path, &token("root", true)).await.status(),
        StatusCode::OK
    );
    assert_problem(
        app.get(&path, &token("mallory", false)).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let missing = format!("/api/orders/{}", uuid::Uuid::now_v7());
    assert_problem(
        app.get(&missing, &token("alice", false)).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(
        app.get("/api/orders/not-a-uuid", &token("alice", false))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

async fn page(app: &TestApp, query: &str, bearer: &str) -> Value {
    let resp = app.get(&format!("/api/orders{query}"), bearer).await;
    assert_eq!(resp.status(), StatusCode::OK, "{query}");
    resp.json().await.unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn list_pages_newest_first_with_an_opaque_cursor() {
    let app = spawn_app().await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(
            app.create_order("alice").await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    app.create_order("bob").await;
    created.reverse();
    let alice = token("alice", false);

    let first = page(&app, "?limit=2", &alice).await;
    let cursor = first["nextCursor"].as_str().unwrap().to_owned();
    let second = page(&app, &format!("?limit=2&cursor={cursor}"), &alice).await;
    let cursor = second["nextCursor"].as_str().unwrap().to_owned();
    let third = page(&app, &format!("?limit=2&cursor={cursor}"), &alice).await;

    let all: Vec<String> = [ids(&first), ids(&second), ids(&third)].concat();
    assert_eq!(
        all, created,
        "own orders only, newest first, no gaps or repeats"
    );
    assert!(third.get("nextCursor").is_none());
    assert_eq!(first["items"][0]["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn list_filters_by_status_and_admins_by_user() {
    let app = spawn_app().await;
    let a1 = app.create_order("alice").await;
    app.create_order("alice").await;
    app.create_order("bob").await;
    let cancel = format!("/api/orders/{}/cancel", a1["id"].as_str().unwrap());
    app.patch(&cancel, &token("alice", false), None).await;
    let admin = token("root", true);

    let cancelled = page(&app, "?status=CANCELLED", &token("alice", false)).await;
    assert_eq!(ids(&cancelled), vec![a1["id"].as_str().unwrap().to_owned()]);
    assert_eq!(ids(&page(&app, "", &admin).await).len(), 3);
    assert_eq!(ids(&page(&app, "?userId=bob", &admin).await).len(), 1);
    assert_eq!(
        ids(&page(&app, "?userId=alice", &token("alice", false)).await).len(),
        2
    );

    let resp = app
        .get("/api/orders?userId=bob", &token("alice", false))
        .await;
    assert_problem(resp, StatusCode::FORBIDDEN).await;
    for bad in [
        "?limit=0",
        "?limit=101",
        "?status=LOST",
        "?cursor=%%%",
        "?cursor=abcd",
    ] {
        let resp = app.get(&format!("/api/orders{bad}"), &admin).await;
        assert_problem(resp, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn history_lists_status_changes_oldest_first() {
    let app = spawn_app().await;
    let order = app.create_order("alice").await;
    let id = order["id"].as_str().unwrap();
    let resp = app
        .patch(
            &format!("/api/orders/{id}/cancel"),
            &token("alice", false),
            Some(serde_json::json!({"reason": "changed my mind"})),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);

    let history: Value = app
        .get(&format!("/api/orders/{id}/history"), &token("alice", false))
        .await
        .json()
        .await
        .unwrap();

    let h = history.as_array().unwrap();
    assert_eq!(h.len(), 2);
    assert!(h[0].get("fromStatus").is_none());
    assert_eq!(h[0]["toStatus"], "PENDING");
    assert_eq!(h[1]["fromStatus"], "PENDING");
    assert_eq!(h[1]["toStatus"], "CANCELLED");
    assert_eq!(h[1]["reason"], "changed my mind");
    assert_eq!(h[1]["actor"], "user:alice");
    let other = app
        .get(
            &format!("/api/orders/{id}/history"),
            &token("mallory", false),
        )
        .await;
    assert_problem(other, StatusCode::NOT_FOUND).await;
}
