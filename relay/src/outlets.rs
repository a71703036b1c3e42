//! The publishing side's metric handles and topic names, made once: a
//! `metrics::histogram!` or `counter!` call looks its series up in the
//! registry by name (and labels) every time, and a topic's prefixed name
//! was formatted for every record.

use metrics::{Counter, Histogram};
use std::sync::{Arc, Mutex};

/// Outbox topics remembered at most; a row with yet another topic still
/// publishes, with its name and counter made for its batch.
const MAX_OUTLETS: usize = 64;

/// Where the rows of one outbox topic go, and their counter.
#[derive(Debug, Clone)]
pub struct Outlet {
    /// The broker's topic: `KAFKA_TOPIC_PREFIX` and the row's topic.
    pub name: Arc<str>,
    /// `outbox_published_total{topic}`.
    pub published: Counter,
}

/// The publishing histograms and counters, registered once, and the
/// [`Outlet`] of each outbox topic seen.
#[derive(Debug)]
pub struct PublishMeters {
    /// `outbox_send_delay_seconds`: commit -> send call.
    pub send_delay: Histogram,
    /// `outbox_publish_latency_seconds`: commit -> broker ack.
    pub publish_latency: Histogram,
    /// `outbox_sent_total`: records handed to the producer.
    pub sent: Counter,
    /// `outbox_backlog_batches_total`: full batches handed to the backlog
    /// producer.
    pub backlog_batches: Counter,
    prefix: String,
    outlets: Mutex<Vec<(Box<str>, Outlet)>>,
}

impl PublishMeters {
    /// Registers the handles with the installed recorder (install it first:
    /// handles made before belong to no recorder).
    pub fn new(prefix: &str) -> Self {
        PublishMeters {
            send_delay: metrics::histogram!("outbox_send_delay_seconds"),
            publish_latency: metrics::histogram!("outbox_publish_latency_seconds"),
            sent: metrics::counter!("outbox_sent_total"),
            backlog_batches: metrics::counter!("outbox_backlog_batches_total"),
            prefix: prefix.to_owned(),
            outlets: Mutex::new(Vec::new()),
        }
    }

    /// The outlet of each of `topics` (outbox topics), in order.
    pub fn outlets<'a>(&self, topics: impl Iterator<Item = &'a str>) -> Vec<Outlet> {
        let mut known = self.outlets.lock().unwrap_or_else(|e| e.into_inner());
        topics
            .map(|topic| {
                if let Some((_, outlet)) = known.iter().find(|(t, _)| **t == *topic) {
                    return outlet.clone();
                }
                let name: Arc<str> = format!("{}{topic}", self.prefix).into();
                let outlet = Outlet {
                    published: metrics::counter!("outbox_published_total", "topic" => name.to_string()),
                    name,
                };
                if known.len() < MAX_OUTLETS {
                    known.push((topic.into(), outlet.clone()));
                }
                outlet
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_topic_is_named_once_with_the_prefix() {
        let meters = PublishMeters::new("shop.");
        let outlets =
            meters.outlets(["order.placed", "order.confirmed", "order.placed"].into_iter());
        let names: Vec<&str> = outlets.iter().map(|o| &*o.name).collect();
        assert_eq!(
            names,
            [
                "shop.order.placed",
                "shop.order.confirmed",
                "shop.order.placed"
            ]
        );
        assert!(Arc::ptr_eq(&outlets[0].name, &outlets[2].name));
        let again = meters.outlets(std::iter::once("order.confirmed"));
        assert!(Arc::ptr_eq(&outlets[1].name, &again[0].name));
    }

    #[test]
    fn topics_beyond_the_cap_still_get_their_outlet() {
        let meters = PublishMeters::new("");
        let topics: Vec<String> = (0..MAX_OUTLETS + 3).map(|i| format!("t{i}")).collect();
        let outlets = meters.outlets(topics.iter().map(String::as_str));
        assert_eq!(outlets.len(), topics.len());
        assert_eq!(&*outlets[MAX_OUTLETS + 2].name, "t66");
        assert_eq!(meters.outlets.lock().unwrap().len(), MAX_OUTLETS);
    }
}
