//! The load: orders placed at a steady rate, then paid (some twice) or
//! cancelled.

use order_shared::testing::TestDb;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::stack::SECRET;

/// Orders placed, and the API's answers.
#[derive(Default)]
pub struct Load {
    pub orders: Vec<Uuid>,
    pub statuses: HashMap<u16, usize>,
    /// When the API answered 503 or not at all.
    pub unavailable_at: Vec<Instant>,
    /// From the PostgreSQL restart until the API was ready again.
    pub database_down: Option<(Instant, Instant)>,
    /// Orders to pay (with how many copies) or cancel, once placed.
    pub payments: Vec<(Uuid, Uuid, usize)>,
    pub cancels: Vec<Uuid>,
}

/// An HTTP client with a timeout and a token of the load's user.
pub fn api_client() -> (reqwest::Client, String) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let token =
        order_api::auth::mint_hs256(SECRET, "chaos", false, 24 * 3600, None, None).expect("token");
    (http, token)
}

pub async fn place_orders(api: String, rate: u32, load: Arc<Mutex<Load>>, stop: CancellationToken) {
    let (http, token) = api_client();
    let body = serde_json::json!({
        "currency": "USD",
        "items": [{"productId": "sku-1", "quantity": 1, "unitPrice": 100}],
        "shippingAddress": {"name": "Ada", "line1": "1 Main St", "city": "London",
                            "postalCode": "N1", "country": "GB"}
    });
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    let mut n = 0_usize;
    while !stop.is_cancelled() {
        tick.tick().await;
        let answer = http
            .post(format!("{api}/api/orders"))
            .bearer_auth(&token)
            .header("Idempotency-Key", Uuid::new_v4().to_string())
            .json(&body)
            .send()
            .await;
        let Ok(answer) = answer else {
            let mut load = load.lock().unwrap_or_else(|e| e.into_inner());
            *load.statuses.entry(0).or_default() += 1;
            load.unavailable_at.push(Instant::now());
            continue;
        };
        let status = answer.status().as_u16();
        let created = answer.json::<serde_json::Value>().await.ok();
        let mut load = load.lock().unwrap_or_else(|e| e.into_inner());
        *load.statuses.entry(status).or_default() += 1;
        if status == 503 {
            load.unavailable_at.push(Instant::now());
        }
        let Some(id) = created
            .filter(|_| status == 201)
            .and_then(|v| v["id"].as_str().and_then(|s| s.parse().ok()))
        else {
            continue;
        };
        n += 1;
        load.orders.push(id);
        if n.is_multiple_of(10) {
            load.cancels.push(id);
        } else {
            load.payments
                .push((id, Uuid::new_v4(), if n.is_multiple_of(7) { 2 } else { 1 }));
        }
    }
}

/// Sends the payments and cancellations of placed orders, retrying each
/// until the broker or the API takes it (as the other services would).
pub async fn follow_up(
    api: String,
    brokers: String,
    load: Arc<Mutex<Load>>,
    stop: CancellationToken,
) {
    let (http, token) = api_client();
    let mut producer = None;
    let (mut paid, mut cancelled) = (0, 0);
    loop {
        let (payments, cancels) = {
            let load = load.lock().unwrap_or_else(|e| e.into_inner());
            (
                load.payments[paid..].to_vec(),
                load.cancels[cancelled..].to_vec(),
            )
        };
        for (order, event, copies) in payments {
            for _ in 0..copies {
                send_payment(&brokers, &mut producer, order, event).await;
            }
            paid += 1;
        }
        for order in cancels {
            loop {
                let answer = http
                    .patch(format!("{api}/api/orders/{order}/cancel"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"reason": "chaos"}))
                    .send()
                    .await;
                if answer.is_ok_and(|a| a.status().is_success() || a.status() == 409) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            cancelled += 1;
        }
        if stop.is_cancelled() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends one payment event until the broker takes it; after a failure the
/// producer is replaced (a restarted Tansu forgets producers, DESIGN
/// section 8).
pub async fn send_payment(
    brokers: &str,
    cached: &mut Option<FutureProducer>,
    order: Uuid,
    event: Uuid,
) {
    let value = format!(r#"{{"eventId":"{event}","orderId":"{order}","paymentId":"p-{event}"}}"#);
    let key = order.to_string();
    let id = event.to_string();
    loop {
        if cached.is_none() {
            *cached = ClientConfig::new()
                .set("bootstrap.servers", brokers)
                .set("message.timeout.ms", "5000")
                .set("log_level", "0")
                .create()
                .ok();
        }
        let Some(producer) = cached.as_ref() else {
            return;
        };
        let headers = OwnedHeaders::new().insert(Header {
            key: "ce_id",
            value: Some(id.as_str()),
        });
        let record = FutureRecord::to("payment.authorized")
            .key(&key)
            .payload(&value)
            .headers(headers);
        if producer.send(record, Duration::from_secs(5)).await.is_ok() {
            return;
        }
        *cached = None;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Orders paid by the load but not (yet) confirmed, with their event id.
pub async fn unpaid_orders(db: &TestDb, load: &Arc<Mutex<Load>>) -> Vec<(Uuid, Uuid)> {
    let payments = load
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .payments
        .clone();
    let Ok((client, conn)) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await else {
        return payments.iter().map(|(o, e, _)| (*o, *e)).collect();
    };
    tokio::spawn(conn);
    let ids: Vec<Uuid> = payments.iter().map(|(o, _, _)| *o).collect();
    let Ok(rows) = client
        .query(
            "SELECT id FROM orders WHERE id = ANY($1) AND status = 'PENDING'",
            &[&ids],
        )
        .await
    else {
        return payments.iter().map(|(o, e, _)| (*o, *e)).collect();
    };
    let pending: HashSet<Uuid> = rows.iter().filter_map(|r| r.try_get(0).ok()).collect();
    payments
        .iter()
        .filter(|(o, _, _)| pending.contains(o))
        .map(|(o, e, _)| (*o, *e))
        .collect()
}
