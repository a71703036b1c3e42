//! Order per order inside one batch: which of an order's rows go to the
//! producer now ([`Lanes`]), and which acknowledged rows may be deleted
//! ([`deletable`]).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// Where an order's rows of the batch go so far.
enum Lane<'a> {
    /// Every row of the order handed to the producer so far went to this
    /// topic.
    Open(&'a str),
    /// A row of the order was not handed to the producer: none of its later
    /// rows is, in this batch.
    Held,
}

/// Decides, row by row in id order, whether a row of a batch is handed to
/// the producer now. The producer keeps the order of the records of one
/// partition only; two topics are two partitions, which the broker answers
/// independently. So an order's rows go out together only while they go to
/// one topic: the first row for another topic, and every later row of the
/// order, wait for the next claim (after this batch's acks). And an order
/// whose row could not be handed over sends nothing more in the batch.
#[derive(Default)]
pub struct Lanes<'a> {
    orders: HashMap<Uuid, Lane<'a>>,
}

impl<'a> Lanes<'a> {
    /// Whether `order`'s next row, for `topic`, is handed to the producer
    /// now. A row refused here holds back the order's later rows too.
    pub fn admit(&mut self, order: Uuid, topic: &'a str) -> bool {
        match self.orders.entry(order) {
            Entry::Vacant(v) => {
                v.insert(Lane::Open(topic));
                true
            }
            Entry::Occupied(mut o) => match o.get() {
                Lane::Open(t) if *t == topic => true,
                Lane::Open(_) => {
                    o.insert(Lane::Held);
                    false
                }
                Lane::Held => false,
            },
        }
    }

    /// `order`'s row could not be handed to the producer: hold its later rows.
    pub fn hold(&mut self, order: Uuid) {
        self.orders.insert(order, Lane::Held);
    }
}

/// Which rows of a batch may be deleted, given each row's order and whether
/// the broker acknowledged it (rows in id order; a row not sent counts as
/// not acknowledged): every acknowledged row that no unacknowledged row of
/// the same order precedes. The rest stay, so an order's events are re-sent
/// in order and other orders' events are not re-sent at all.
pub fn deletable(rows: &[(Uuid, bool)]) -> Vec<usize> {
    let mut held: HashSet<Uuid> = HashSet::new();
    let mut out = Vec::with_capacity(rows.len());
    for (i, (order, acked)) in rows.iter().enumerate() {
        if *acked && !held.contains(order) {
            out.push(i);
        } else if !*acked {
            held.insert(*order);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Lanes, deletable};
    use uuid::Uuid;

    #[test]
    fn a_failed_row_holds_back_only_the_later_rows_of_its_order() {
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let batch = [
            (a, true),  // 0: deleted
            (b, false), // 1: failed
            (a, true),  // 2: deleted (order a has no failure before it)
            (b, true),  // 3: kept: order b failed at 1
            (c, true),  // 4: deleted
            (b, true),  // 5: kept
        ];
        assert_eq!(deletable(&batch), vec![0, 2, 4]);
        assert_eq!(deletable(&[(a, true), (a, true)]), vec![0, 1]);
        assert_eq!(
            deletable(&[(a, false), (a, true), (c, false)]),
            Vec::<usize>::new()
        );
        assert!(deletable(&[]).is_empty());
    }

    #[test]
    fn an_order_sends_on_one_topic_per_batch_and_nothing_after_its_first_held_row() {
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut lanes = Lanes::default();
        let batch = [
            (a, "order.placed"),
            (b, "order.placed"),
            (a, "order.confirmed"), // another topic: waits
            (b, "order.placed"),    // same topic: goes
            (c, "order.cancelled"),
            (a, "order.placed"), // after a held row: waits, on any topic
            (b, "order.shipped"),
            (b, "order.placed"),
            (c, "order.cancelled"),
        ];
        let admitted: Vec<bool> = batch.iter().map(|&(o, t)| lanes.admit(o, t)).collect();
        assert_eq!(
            admitted,
            [true, true, false, true, true, false, false, false, true]
        );

        // A row the producer refused holds its order's later rows.
        let mut lanes = Lanes::default();
        assert!(lanes.admit(a, "order.placed"));
        lanes.hold(a);
        assert!(!lanes.admit(a, "order.placed"));
        assert!(lanes.admit(b, "order.placed"));
    }
}
