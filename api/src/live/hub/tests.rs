use super::*;
use order_shared::domain::{OrderLine, OrderStatus, Quantity};

fn order(id: u128, user: &str, version: i64) -> Order {
    let at = chrono::Utc::now();
    Order {
        id: OrderId::from(uuid::Uuid::from_u128(id)),
        user_id: UserId::new(user),
        status: OrderStatus::Pending,
        items: vec![OrderLine {
            product_id: "sku-1".into(),
            quantity: Quantity::new(1).unwrap(),
            unit_price: 100,
            line_total: 100,
        }],
        total_amount: 100,
        currency: order_shared::domain::Currency::parse("USD").unwrap(),
        version,
        shipping_address: None,
        carrier: None,
        tracking_number: None,
        cancellation_reason: None,
        payment_id: None,
        inventory_reserved_at: None,
        reservation_id: None,
        created_at: at,
        updated_at: at,
    }
}

fn hub(max: usize) -> (Arc<Hub>, mpsc::UnboundedReceiver<OrderId>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Hub::new(max, tx), rx)
}

fn id(n: u128) -> OrderId {
    OrderId::from(uuid::Uuid::from_u128(n))
}

#[test]
fn each_stream_gets_what_it_watches_once_per_version() {
    let (hub, _) = hub(5);
    let alice = UserId::new("alice");
    let mut one = hub.subscribe(&alice, Watch::Order(id(1))).unwrap();
    let mut mine = hub.subscribe(&alice, Watch::User(alice.clone())).unwrap();
    let mut all = hub.subscribe(&UserId::new("admin"), Watch::All).unwrap();
    let mut other = hub
        .subscribe(&UserId::new("bob"), Watch::Order(id(2)))
        .unwrap();

    hub.publish(&order(1, "alice", 2));
    hub.publish(&order(1, "alice", 2)); // the same version again: nothing
    hub.publish(&order(1, "alice", 1)); // an older one: nothing
    hub.publish(&order(3, "alice", 1)); // another order of alice

    assert_eq!(one.updates.try_recv().unwrap().version, 2);
    assert!(one.updates.try_recv().is_err());
    assert_eq!(mine.updates.try_recv().unwrap().id, id(1));
    assert_eq!(mine.updates.try_recv().unwrap().id, id(3));
    assert!(mine.updates.try_recv().is_err());
    assert_eq!(all.updates.try_recv().unwrap().id, id(1));
    assert_eq!(all.updates.try_recv().unwrap().id, id(3));
    assert!(other.updates.try_recv().is_err());
}

#[test]
fn the_cap_counts_open_streams_per_caller_and_frees_on_drop() {
    let (hub, _) = hub(2);
    let alice = UserId::new("alice");
    let a = hub.subscribe(&alice, Watch::Order(id(1))).unwrap();
    let _b = hub.subscribe(&alice, Watch::Order(id(1))).unwrap();
    assert_eq!(
        hub.subscribe(&alice, Watch::All).err(),
        Some(TooManyStreams)
    );
    assert!(
        hub.subscribe(&UserId::new("bob"), Watch::Order(id(1)))
            .is_ok()
    );
    assert_eq!(hub.open_streams(), 2, "bob's was dropped at once");
    drop(a);
    assert_eq!(hub.open_streams(), 1);
    assert!(hub.subscribe(&alice, Watch::Order(id(1))).is_ok());
}

#[test]
fn hints_queue_one_read_of_watched_newer_orders() {
    let (hub, mut reads) = hub(5);
    let hint = |n: u128, user: &str, version: i64| Hint {
        order_id: id(n),
        version,
        user_id: UserId::new(user),
    };
    hub.hint(&hint(1, "alice", 2)); // nobody watches yet
    assert!(reads.try_recv().is_err());
    let _s = hub
        .subscribe(&UserId::new("alice"), Watch::Order(id(1)))
        .unwrap();
    hub.hint(&hint(1, "alice", 2));
    hub.hint(&hint(1, "alice", 3)); // already queued
    hub.hint(&hint(2, "bob", 1)); // not watched
    assert_eq!(reads.try_recv().unwrap(), id(1));
    assert!(reads.try_recv().is_err());
    hub.read_done(&[id(1)]);
    hub.publish(&order(1, "alice", 3));
    hub.hint(&hint(1, "alice", 3)); // sent already
    assert!(reads.try_recv().is_err());
    hub.hint(&hint(1, "alice", 4));
    assert_eq!(reads.try_recv().unwrap(), id(1));
}

#[test]
fn a_stream_that_does_not_read_is_closed_not_waited_for() {
    let (hub, _) = hub(5);
    let mut slow = hub.subscribe(&UserId::new("alice"), Watch::All).unwrap();
    for v in 1..=(STREAM_QUEUE as u128 + 1) {
        hub.publish(&order(v, "alice", 1));
    }
    assert_eq!(hub.open_streams(), 0);
    let mut got = 0;
    while slow.updates.try_recv().is_ok() {
        got += 1;
    }
    assert_eq!(got, STREAM_QUEUE);
    assert!(matches!(
        slow.updates.try_recv(),
        Err(mpsc::error::TryRecvError::Disconnected)
    ));
}

#[test]
fn watched_lists_what_open_streams_watch() {
    let (hub, _) = hub(5);
    assert!(hub.watched().is_empty());
    let _a = hub
        .subscribe(&UserId::new("alice"), Watch::Order(id(1)))
        .unwrap();
    let _b = hub
        .subscribe(&UserId::new("alice"), Watch::User(UserId::new("alice")))
        .unwrap();
    let w = hub.watched();
    assert_eq!(w.orders, vec![id(1)]);
    assert_eq!(w.users, vec![UserId::new("alice")]);
    assert!(!w.all);
}
