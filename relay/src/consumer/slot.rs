//! One assigned partition as the consumer thread holds it: its worker's
//! queue, the messages polled while that queue was full, and whether the
//! partition is paused. A partition is paused when its worker's queue is
//! full and resumed only once the worker is down to [`RESUME_AT_QUEUED`].

use super::worker::Delivery;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use std::collections::VecDeque;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

/// Messages queued per partition's worker; one more pauses the partition.
pub const QUEUE_PER_PARTITION: usize = 256;
/// A paused partition resumes only once its worker is down to this many
/// queued messages. Pausing makes librdkafka drop what it had fetched
/// beyond the last polled message, and resuming fetches it again: resumed
/// as soon as one slot was free, a busy partition was paused again within
/// a few messages, and the broker served the same records over and over.
pub const RESUME_AT_QUEUED: usize = QUEUE_PER_PARTITION / 4;

pub type TopicPartition = (String, i32);

/// One assigned partition's worker.
pub struct Slot {
    pub id: u64,
    pub sender: mpsc::Sender<Delivery>,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
    /// Messages polled while the worker's queue was full (partition paused).
    pub backlog: VecDeque<Delivery>,
    pub paused: bool,
    /// Where to resume if the worker dies: after the last finished message,
    /// else at the first message it was given.
    pub last_done: Option<i64>,
    pub first_given: Option<i64>,
}

impl Slot {
    /// Messages in the worker's queue.
    fn queued(&self) -> usize {
        self.sender.max_capacity() - self.sender.capacity()
    }

    /// Tries to empty the backlog into the queue. True if the worker is gone.
    pub fn flush(&mut self) -> bool {
        while let Some(delivery) = self.backlog.pop_front() {
            match self.sender.try_send(delivery) {
                Ok(()) => {}
                Err(TrySendError::Full(d)) => {
                    self.backlog.push_front(d);
                    return false;
                }
                Err(TrySendError::Closed(_)) => return true,
            }
        }
        false
    }

    /// Pauses the partition if messages wait in the backlog; resumes it if
    /// none do and the worker is down to [`RESUME_AT_QUEUED`].
    pub fn pace<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, tp: &TopicPartition) {
        let pause = !self.backlog.is_empty();
        let to_pause = pause && !self.paused;
        let to_resume = self.paused && !pause && self.queued() <= RESUME_AT_QUEUED;
        if to_pause || to_resume {
            self.paused = pause;
            set_paused(consumer, tp, pause);
        }
    }
}

pub fn set_paused<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tp: &TopicPartition,
    pause: bool,
) {
    let mut tpl = TopicPartitionList::with_capacity(1);
    tpl.add_partition(&tp.0, tp.1);
    let result = if pause {
        consumer.pause(&tpl)
    } else {
        consumer.resume(&tpl)
    };
    match result {
        Ok(()) => {
            if pause {
                metrics::counter!("consumer_partition_pauses_total", "topic" => tp.0.clone())
                    .increment(1);
            }
            tracing::debug!(topic = %tp.0, partition = tp.1, pause, "Partition paused/resumed.")
        }
        Err(e) => tracing::warn!(error = %e, topic = %tp.0, partition = tp.1, pause,
            "Cannot pause or resume a partition."),
    }
}
