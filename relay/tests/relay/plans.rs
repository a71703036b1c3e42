//! The plans of the relay's session when they were made on a near-empty
//! outbox: autovacuum's ANALYZE often sees a few rows, so a backlog that
//! builds later is planned as if each shard held one row (the claim), and
//! a statement first planned on a small table keeps that plan as the table
//! grows (the delete). And no statement of the service is compiled by JIT.

use crate::helpers::lease_session;
use order_shared::testing::fresh_database;

/// Inserts `rows` rows of about the size of an `order.placed` in shard
/// `shard` (an SQL expression of `g`, the row's number).
fn insert(rows: i32, shard: &str) -> String {
    insert_padded(rows, shard, 560)
}

/// [`insert`] with payloads of `pad` characters.
fn insert_padded(rows: i32, shard: &str, pad: i32) -> String {
    format!(
        "INSERT INTO outbox (event_id, aggregate_id, aggregate_version, event_type, topic, payload, shard) \
         SELECT gen_random_uuid(), gen_random_uuid(), 1, 'order.placed', 'order.placed', \
         jsonb_build_object('pad', repeat('x', {pad})), {shard} FROM generate_series(1, {rows}) g"
    )
}

const SHARDS: i32 = 32;
const LIMIT: i64 = 128;

/// A backlog of 1,500 rows per shard after an ANALYZE that saw 24 rows:
/// the claim reads each shard in id order through `(shard, id)` and stops
/// at its limit. With bitmap scans allowed, the planner reads all of every
/// shard's rows and sorts them (about 12 times the work; claims of 60-500
/// ms in `scripts/bench.sh`).
#[tokio::test]
async fn a_backlog_after_an_analyze_of_a_near_empty_outbox_is_claimed_in_index_order() {
    let db = fresh_database().await;
    let spread = format!("g % {SHARDS}");
    // An outbox's life: a backlog is published and deleted, and vacuumed
    // while a newer row keeps the table's pages (one in a shard nobody
    // claims here). ANALYZE runs while 24 rows wait, so the planner
    // expects 24 rows in all those pages. Then a new backlog fills them.
    // Autovacuum is off for the table, so that no ANALYZE mends the
    // statistics while the test runs.
    let client = db.connect().await;
    for sql in [
        "ALTER TABLE outbox SET (autovacuum_enabled = false)".to_owned(),
        insert(48_000, &spread),
        insert(1, "1000"),
        "DELETE FROM outbox WHERE shard < 1000".to_owned(),
        "VACUUM outbox".to_owned(),
        insert(24, &spread),
        "ANALYZE outbox".to_owned(),
        insert(48_000, &spread),
    ] {
        client.batch_execute(&sql).await.unwrap();
    }
    let (session, _events) = lease_session(&db).await;
    let shards: Vec<i32> = (0..SHARDS).collect();
    let limits = vec![LIMIT; SHARDS as usize];
    // Past the first five executions, which PostgreSQL plans each time:
    // the plan after them is the one a running relay keeps.
    for _ in 0..6 {
        let claimed = session
            .claim_many(&shards, &limits, false, &[])
            .await
            .unwrap();
        assert_eq!(claimed.len(), SHARDS as usize);
        assert!(claimed.iter().all(|(_, rows)| rows.len() == LIMIT as usize));
    }
    let plan = session.explain_claim(SHARDS, LIMIT, false).await.unwrap();
    assert!(
        !plan.contains("Bitmap"),
        "the claim reads by bitmap:\n{plan}"
    );
    assert!(
        plan.contains("Index Scan using outbox_shard_id_idx"),
        "the claim does not read (shard, id) in order:\n{plan}"
    );
    assert!(
        plan.contains("InitPlan"),
        "the claim checks every row for a parked row of its order, not once whether any is parked:\n{plan}"
    );
}

/// A backlog written as orders come, each shard's rows spread over the
/// whole table, and analyzed as it is: one shard's claim reads that
/// shard's rows through `(shard, id)`, under either parked-row policy.
/// With `random_page_cost` at its default the planner read the whole
/// outbox through the primary key instead, keeping 1 row in 32 (claims
/// 3-4 times slower in a drain of 200,000 rows).
#[tokio::test]
async fn a_backlog_analyzed_as_written_is_claimed_through_its_shards_index() {
    let db = fresh_database().await;
    let client = db.connect().await;
    // Envelopes of 400 bytes: with wider rows the whole outbox has more
    // pages to read in id order, and the default prices happened to favour
    // the shard's index.
    let spread = format!("abs(hashtext(g::text)) % {SHARDS}");
    for sql in [
        insert_padded(20_000, &spread, 400),
        "VACUUM ANALYZE outbox".to_owned(),
    ] {
        client.batch_execute(&sql).await.unwrap();
    }
    let (session, _events) = lease_session(&db).await;
    for include_parked in [true, false] {
        // Past the first five executions, which PostgreSQL plans each time.
        for _ in 0..6 {
            let claimed = session
                .claim_many(&[3], &[LIMIT], include_parked, &[])
                .await
                .unwrap();
            assert_eq!(claimed[0].1.len(), LIMIT as usize);
        }
        let plan = session
            .explain_claim(1, LIMIT, include_parked)
            .await
            .unwrap();
        assert!(
            plan.contains("Index Scan using outbox_shard_id_idx") && !plan.contains("outbox_pkey"),
            "parked rows included: {include_parked}; the claim does not read (shard, id):\n{plan}"
        );
    }
}

/// The session's delete, planned while the outbox was small (a relay
/// deletes from its first polls) and run after a backlog grew it: rows are
/// still found by id. With sequential scans allowed the cached plan read
/// every page (1,300-1,700 pages, 8-9 ms per delete, and every claim waits
/// behind its delete: claims of 10 ms at p50 in `scripts/bench.sh`).
#[tokio::test]
async fn published_rows_are_deleted_by_id_after_the_outbox_grew() {
    let db = fresh_database().await;
    let client = db.connect().await;
    let spread = format!("g % {SHARDS}");
    for sql in [
        "ALTER TABLE outbox SET (autovacuum_enabled = false)".to_owned(),
        insert(100, &spread),
        "ANALYZE outbox".to_owned(),
    ] {
        client.batch_execute(&sql).await.unwrap();
    }
    let (session, _events) = lease_session(&db).await;
    let first_ids = |n: i64| {
        let client = &client;
        async move {
            client
                .query("SELECT id FROM outbox ORDER BY id LIMIT $1", &[&n])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, i64>(0))
                .collect::<Vec<i64>>()
        }
    };
    // Past the first five executions, which PostgreSQL plans each time.
    for _ in 0..8 {
        let ids = first_ids(10).await;
        assert_eq!(session.delete(&ids).await.unwrap(), 10);
    }
    client
        .batch_execute(&insert(48_000, &spread))
        .await
        .unwrap();
    let ids = first_ids(40).await;
    assert_eq!(session.delete(&ids).await.unwrap(), 40);
    let plan = session.explain_delete(&first_ids(40).await).await.unwrap();
    assert!(
        !plan.contains("Seq Scan"),
        "the delete reads the whole outbox:\n{plan}"
    );
    assert!(
        plan.contains("outbox_pkey"),
        "the delete does not find rows by id:\n{plan}"
    );
}

/// The session writes only deletes of acknowledged rows and failure
/// counts: its commits do not wait for the WAL flush (a lost delete means a
/// row published again, which at-least-once delivery allows). One flush
/// per delete held a drain of 200,000 rows at 51-57k events/s (68-74k
/// without).
#[tokio::test]
async fn the_session_does_not_wait_for_the_disk_at_commit() {
    let db = fresh_database().await;
    let (session, _events) = lease_session(&db).await;
    assert_eq!(session.setting("synchronous_commit").await.unwrap(), "off");
}

/// The lines of `EXPLAIN sql` on `client`.
async fn explain(client: &tokio_postgres::Client, sql: &str) -> String {
    let messages = client
        .simple_query(&format!("EXPLAIN {sql}"))
        .await
        .unwrap();
    messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// In a database where PostgreSQL would compile every statement
/// (`jit_above_cost = 0`), the lease session's claim and the pool's
/// statements run without JIT compilation. By default, with 1.5 million
/// rows waiting, a claim for 32 shards passed the threshold (100,000) and
/// each claim spent 8-16 ms compiling (34 ms without): every execution
/// compiles again. A plain session of the same database does compile, so
/// the check can fail.
#[tokio::test]
async fn no_statement_of_the_service_is_compiled_by_jit() {
    let db = fresh_database().await;
    let client = db.connect().await;
    let jit: bool = client
        .query_one("SELECT pg_jit_available()", &[])
        .await
        .unwrap()
        .get(0);
    if !jit {
        eprintln!("this PostgreSQL has no JIT provider: nothing to check");
        return;
    }
    client
        .batch_execute(&format!(
            "ALTER DATABASE \"{0}\" SET jit = on; ALTER DATABASE \"{0}\" SET jit_above_cost = 0; {1}",
            db.name,
            insert(100, "g % 4")
        ))
        .await
        .unwrap();
    let count = "SELECT count(*) FROM outbox WHERE shard = 3";
    let plain = db.connect().await;
    let plan = explain(&plain, count).await;
    assert!(
        plan.contains("JIT:"),
        "a plain session does not compile:\n{plan}"
    );

    let (session, _events) = lease_session(&db).await;
    assert_eq!(session.claim(3, LIMIT, false).await.unwrap().len(), 25);
    let plan = session.explain_claim(SHARDS, LIMIT, false).await.unwrap();
    assert!(!plan.contains("JIT:"), "the claim is compiled:\n{plan}");

    let pool = order_shared::db::build_pool(&db.settings()).unwrap();
    let pooled = pool.get().await.unwrap();
    let plan = explain(&pooled, count).await;
    assert!(
        !plan.contains("JIT:"),
        "a pooled statement is compiled:\n{plan}"
    );
}
