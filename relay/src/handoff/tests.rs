use super::*;

/// The next batch handed to the worker.
async fn batch(handoff: &Handoff, stop: &CancellationToken) -> Vec<OutboxRow> {
    match handoff.next(stop).await {
        Some(Next::Batch(rows)) => rows,
        _ => panic!("expected a batch"),
    }
}

fn row(id: i64, order: Uuid) -> OutboxRow {
    OutboxRow {
        id,
        event_id: Uuid::now_v7(),
        order_id: order,
        version: id,
        event_type: "order.created".into(),
        topic: "order.created".into(),
        payload: "{}".into(),
        headers: serde_json::Value::Null,
        created_at: chrono::Utc::now(),
        attempts: 0,
        parked: false,
    }
}

#[tokio::test]
async fn orders_stay_excluded_from_claims_until_their_batch_settled() {
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let handoff = Handoff::new(2, RowCap::new(500));
    let stop = CancellationToken::new();
    assert!(handoff.is_idle());

    let spec = handoff.begin_claim().unwrap();
    assert_eq!((spec.limit, spec.exclude.len()), (500, 0));
    assert_eq!(handoff.begin_claim(), None, "one claim at a time");
    handoff.hand(vec![row(1, a), row(2, a)]);
    assert_eq!(handoff.begin_claim(), None, "one batch queued at a time");
    let first = batch(&handoff, &stop).await;
    assert_eq!(first.len(), 2);

    let spec = handoff
        .begin_claim()
        .expect("a second batch while the first waits");
    assert_eq!((spec.limit, spec.exclude), (498, vec![a]));
    handoff.hand(vec![row(3, b)]);
    let second = batch(&handoff, &stop).await;
    assert_eq!(second[0].id, 3);
    assert_eq!(handoff.begin_claim(), None, "two in flight: the limit");

    handoff.settled(&[b], &[3]);
    let spec = handoff.begin_claim().unwrap();
    assert_eq!(spec.exclude, vec![a], "a's batch still waits");
    assert_eq!(spec.delete, vec![3], "b's acked row goes with the claim");
    handoff.end_claim();
    handoff.settled(&[a, a], &[1, 2]);
    assert!(handoff.is_idle());
    let spec = handoff.begin_claim().unwrap();
    assert_eq!((spec.limit, spec.delete), (500, vec![1, 2]));
}

#[tokio::test]
async fn acked_rows_of_a_failed_claim_go_with_the_next_one() {
    let handoff = Handoff::new(2, RowCap::new(500));
    let stop = CancellationToken::new();
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    handoff.begin_claim().unwrap();
    handoff.hand(vec![row(1, a), row(2, b)]);
    batch(&handoff, &stop).await;
    // Row 2 was not acked: only row 1 may go.
    handoff.settled(&[a, b], &[1]);

    let spec = handoff.begin_claim().unwrap();
    assert_eq!(spec.delete, vec![1]);
    handoff.claim_failed(spec);
    let spec = handoff.begin_claim().expect("the claim ended");
    assert_eq!(spec.delete, vec![1], "not lost with the failed claim");
    handoff.end_claim();
    assert_eq!(handoff.begin_claim().unwrap().delete, Vec::<i64>::new());
    handoff.end_claim();

    handoff.settled(&[], &[7]);
    assert_eq!(handoff.take_acked(), vec![7], "a stopping worker deletes");
    assert!(handoff.take_acked().is_empty());
}

#[tokio::test]
async fn rows_in_flight_never_exceed_one_batch() {
    let handoff = Handoff::new(4, RowCap::new(3));
    let stop = CancellationToken::new();
    handoff.begin_claim().unwrap();
    handoff.hand(vec![row(1, Uuid::now_v7()), row(2, Uuid::now_v7())]);
    batch(&handoff, &stop).await;
    assert_eq!(handoff.begin_claim().unwrap().limit, 1);
    handoff.hand(vec![row(3, Uuid::now_v7())]);
    batch(&handoff, &stop).await;
    assert_eq!(handoff.begin_claim(), None, "a full batch is in flight");
}

#[tokio::test]
async fn a_paused_worker_is_handed_nothing_and_a_stopped_one_takes_nothing() {
    let handoff = Handoff::new(4, RowCap::new(500));
    handoff.pause();
    assert_eq!(handoff.begin_claim(), None);
    handoff.resume();
    assert!(handoff.begin_claim().is_some());

    let stop = CancellationToken::new();
    stop.cancel();
    assert!(handoff.next(&stop).await.is_none());
}

#[tokio::test]
async fn a_smaller_cap_holds_back_claims_until_rows_settle() {
    let cap = RowCap::new(500);
    let handoff = Handoff::new(4, cap.clone());
    let stop = CancellationToken::new();
    let order = Uuid::now_v7();
    handoff.begin_claim().unwrap();
    handoff.hand((1..=300).map(|id| row(id, order)).collect());
    batch(&handoff, &stop).await;
    assert_eq!(
        cap.split(1_000, 5, 500),
        200,
        "more shards: a smaller share"
    );
    assert_eq!(handoff.max_rows(), 200);
    assert_eq!(handoff.begin_claim(), None, "300 in flight, over the cap");
    handoff.settled(&vec![order; 300], &[]);
    assert_eq!(handoff.begin_claim().unwrap().limit, 200);
}

#[tokio::test]
async fn a_polled_batch_settles_without_its_worker_and_a_failure_reaches_it_even_paused() {
    use crate::flights::Settling;
    use crate::publisher::{PublishError, Step};
    let handoff = Handoff::new(4, RowCap::new(500));
    let stop = CancellationToken::new();
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    for (id, order) in [(1, a), (2, b)] {
        handoff.begin_claim().unwrap();
        handoff.hand(vec![row(id, order)]);
        batch(&handoff, &stop).await;
    }
    handoff.fly((
        vec![a],
        Settling::new(|_| async { (vec![1], Ok(Step::Published(1))) }),
    ));
    let spec = handoff.begin_claim().unwrap();
    assert_eq!(spec.delete, vec![1], "settled by the poll when it flew");
    assert_eq!(spec.exclude, vec![b], "a's batch is done, b's in flight");
    handoff.end_claim();
    assert!(handoff.take_published());

    handoff.pause();
    handoff.fly((
        vec![b],
        Settling::new(|_| async { (vec![], Err(PublishError::LeaseLost)) }),
    ));
    let (orders, (_, step)) =
        tokio::time::timeout(std::time::Duration::from_secs(1), handoff.next_report())
            .await
            .expect("the failure reaches the paused worker");
    assert_eq!(orders, vec![b]);
    assert!(step.is_err());
    assert!(!handoff.take_published());
}
