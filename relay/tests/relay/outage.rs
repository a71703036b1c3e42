//! The broker goes away while orders are placed: the API keeps answering
//! 201, the relay backs off and reports not ready, and when the broker
//! returns (memory engine: empty, and without our producer id) every event
//! of the outage and after it arrives. This test runs its own Tansu.

use crate::helpers::*;
use crate::inbound::free_port;
use order_shared::testing::fresh_database;
use std::collections::HashSet;
use std::time::Duration;

#[tokio::test]
async fn broker_outage_loses_no_event_and_the_api_keeps_taking_orders() {
    let port = free_port();
    let brokers = format!("127.0.0.1:{port}");
    let mut tansu = start_tansu(port, port).await;
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let relay = spawn_relay(relay_env(
        &db,
        &prefix,
        &brokers,
        &[("KAFKA_MESSAGE_TIMEOUT_MS", "3000")],
    ))
    .await;
    let api = order_api::Application::build(
        order_api::ApiSettings::from_env(&|n: &str| match n {
            "DATABASE_URL" => Some(db.url.clone()),
            "JWT_SECRET" => Some("outage-secret-0123456789-0123456789-0123".into()),
            "API_HOST" => Some("127.0.0.1".into()),
            "API_PORT" => Some("0".into()),
            "OUTBOX_SHARDS" => Some("8".into()),
            _ => None,
        })
        .unwrap(),
        relay.shutdown.child_token(),
    )
    .await
    .unwrap();
    let api_url = format!("http://127.0.0.1:{}/api/orders", api.port());
    tokio::spawn(api.run());
    let token = order_api::auth::mint_hs256(
        "outage-secret-0123456789-0123456789-0123",
        "alice",
        false,
        3600,
        None,
        None,
    )
    .unwrap();
    let http = reqwest::Client::new();
    let body = serde_json::json!({
        "currency": "USD",
        "items": [{"productId": "sku-1", "quantity": 1, "unitPrice": 100}],
        "shippingAddress": {"name": "A", "line1": "B", "city": "C", "postalCode": "D", "country": "US"}
    });
    let place = || async {
        let resp = http
            .post(&api_url)
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            201,
            "the API takes orders whatever the broker does"
        );
        resp.json::<serde_json::Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    place().await;
    eventually("first event published", Duration::from_secs(30), || async {
        outbox_count(&db).await == 0
    })
    .await;

    tansu.start_kill().unwrap();
    tansu.wait().await.unwrap();
    let mut expected = HashSet::new();
    for _ in 0..20 {
        expected.insert(place().await);
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        outbox_count(&db).await,
        20,
        "nothing deleted without an ack"
    );
    let ready = reqwest::get(format!("http://127.0.0.1:{}/health/ready", relay.port))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "not ready while the broker is down");

    let _tansu = start_tansu(port, port).await;
    for _ in 0..10 {
        expected.insert(place().await);
    }
    eventually(
        "backlog drained after the broker returned",
        Duration::from_secs(90),
        || async { outbox_count(&db).await == 0 },
    )
    .await;
    let consumer = consumer(&brokers, &topics(&prefix, &["order.placed"]));
    let records = read_records(
        &consumer,
        30,
        Duration::from_secs(2),
        Duration::from_secs(60),
    )
    .await;
    let got: HashSet<String> = records.iter().map(|r| r.key.clone()).collect();
    assert!(
        expected.is_subset(&got),
        "missing {:?}",
        expected.difference(&got).collect::<Vec<_>>()
    );
    relay.stop().await;
}

/// A broker that comes back empty hands out producer ids from 1 again, so
/// another producer can get the id this relay still holds and write ahead
/// of its sequence numbers. Tansu then answers the relay's next batch with
/// DuplicateSequenceNumber, which librdkafka reports as delivered (offset
/// -1 for the first record, then 0, 1, ...; `rdkafka_request.c`) although
/// nothing was written. The relay must keep those rows and send them again.
#[tokio::test]
async fn a_reused_producer_id_after_an_empty_broker_restart_loses_no_event() {
    reused_producer_id(&[]).await;
}

/// The same through the backlog producer: with batches of one row every
/// batch is full, so every record goes through it, and replacing the
/// relay's producers must replace that one too.
#[tokio::test]
async fn a_reused_producer_id_of_the_backlog_producer_loses_no_event() {
    let metrics = reused_producer_id(&[("OUTBOX_BATCH_SIZE", "1")]).await;
    assert!(
        total(&metrics, "outbox_backlog_batches_total") >= 6.0,
        "the backlog producer sent the batches:\n{metrics}"
    );
}

/// Runs the collision with the relay settings `extra`; returns the relay's
/// metrics at the end.
async fn reused_producer_id(extra: &[(&str, &str)]) -> String {
    use rdkafka::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let port = free_port();
    let brokers = format!("127.0.0.1:{port}");
    let mut tansu = start_tansu(port, port).await;
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let topic = format!("{prefix}order.placed");
    let mut env = relay_env(&db, &prefix, &brokers, &[("KAFKA_TOPIC_PARTITIONS", "1")]);
    env.extend(extra.iter().map(|(k, v)| ((*k).into(), (*v).into())));
    let relay = spawn_relay(env).await;
    // The relay's producers get their ids and write one record.
    fill_outbox(&db, 1, 1, 8).await;
    eventually(
        "the first event published",
        Duration::from_secs(30),
        || async { outbox_count(&db).await == 0 },
    )
    .await;

    tansu.start_kill().unwrap();
    tansu.wait().await.unwrap();
    let _tansu = start_tansu(port, port).await;
    create_topic(&brokers, &topic, 1).await;
    // The first producer ids of the new broker are the relay's old ones
    // (its producer's and, when made, its backlog producer's).
    for _ in 0..3 {
        let other: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("enable.idempotence", "true")
            .create()
            .unwrap();
        for _ in 0..20 {
            other
                .send(
                    FutureRecord::to(&topic).key("other").payload("{}"),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
                .expect("the other producer writes");
        }
    }

    fill_outbox(&db, 5, 1, 8).await;
    eventually(
        "the new events published",
        Duration::from_secs(60),
        || async { outbox_count(&db).await == 0 },
    )
    .await;
    // The collision did happen: the acks without an offset failed as a
    // producer fault (else this test would pass without testing anything).
    let metrics = metrics_text(relay.port).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("outbox_publish_errors_total")
                && l.contains("fault=\"producer\"")),
        "no producer fault counted:\n{metrics}"
    );
    let consumer = consumer(&brokers, std::slice::from_ref(&topic));
    let records = read_records(
        &consumer,
        65,
        Duration::from_secs(2),
        Duration::from_secs(60),
    )
    .await;
    let ours: HashSet<&str> = records
        .iter()
        .map(|r| r.key.as_str())
        .filter(|k| *k != "other")
        .collect();
    assert_eq!(
        ours.len(),
        5,
        "every event after the restart is on the topic ({} records read)",
        records.len()
    );
    relay.stop().await;
    metrics
}

/// While the broker is away, librdkafka reports every failed connection
/// attempt, and the consumer's poll returns the same errors: the relay
/// logs each kind once, then at most once per 30 s, instead of about 20
/// lines a second for as long as the outage lasts.
#[tokio::test]
async fn a_broker_outage_does_not_flood_the_log() {
    let port = free_port();
    let brokers = format!("127.0.0.1:{port}");
    let mut tansu = start_tansu(port, port).await;
    let db = fresh_database().await;
    let prefix = unique_prefix();
    // 32 shards whose sends time out after 1 s: each retries several times
    // in the 12 s watched.
    let extra = [
        ("OUTBOX_SHARDS", "32"),
        ("KAFKA_MESSAGE_TIMEOUT_MS", "1000"),
    ];
    let env = relay_env(&db, &prefix, &brokers, &extra);
    let (mut relay, path) = crate::logged::spawn_logged_relay(&env);
    fill_outbox(&db, 200, 1, 32).await;
    eventually("the events published", Duration::from_secs(30), || async {
        outbox_count(&db).await == 0
    })
    .await;

    tansu.start_kill().unwrap();
    tansu.wait().await.unwrap();
    fill_outbox(&db, 200, 1, 32).await;
    let start = std::fs::read_to_string(&path).unwrap().lines().count();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let outage: Vec<&str> = text.lines().skip(start).collect();
    let errors: Vec<&&str> = outage
        .iter()
        .filter(|l| l.contains("Kafka client error") || l.contains("Kafka consumer error"))
        .collect();
    assert!(
        !errors.is_empty(),
        "the outage is still reported: {outage:#?}"
    );
    // One line per kind (client and consumer, two or three error codes
    // each) in a window of 30 s.
    assert!(errors.len() <= 6, "{} lines: {errors:#?}", errors.len());
    // The shards' failures: one line per kind of failure for all of them
    // every 10 s, not one per shard and retry.
    let publishing: Vec<&&str> = outage
        .iter()
        .filter(|l| l.contains("Publishing failed"))
        .collect();
    assert!(
        !publishing.is_empty() && publishing.len() <= 4,
        "{} lines: {publishing:#?}",
        publishing.len()
    );
    // librdkafka's own lines at warning and above (a `FAIL` line per
    // failed connection of each broker thread of each client, and the
    // producers are replaced in an outage) are held back the same way.
    let raised = |l: &&&str| l.contains("\"level\":\"ERROR\"") || l.contains("\"level\":\"WARN\"");
    let loud: Vec<&&str> = outage.iter().filter(raised).collect();
    assert!(loud.len() <= 12, "{} lines: {loud:#?}", loud.len());
    assert!(
        outage.len() < 30,
        "{} lines in 12 s of outage: {outage:#?}",
        outage.len()
    );
    relay.start_kill().unwrap();
    let _ = std::fs::remove_file(&path);
}
