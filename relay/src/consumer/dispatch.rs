//! The consumer's Kafka side, on one dedicated thread: it polls the group
//! consumer, hands each message to its partition's worker without ever
//! blocking (a partition whose worker is behind is paused, not waited for),
//! stores the offsets that workers report, and handles rebalances in the
//! consumer context's callbacks:
//!
//! - revoke: the partitions' workers stop taking messages and finish the one
//!   in hand within `CONSUMER_REVOKE_TIMEOUT_MS` (stragglers are aborted and
//!   can never store an offset); the offsets they finished are stored and
//!   committed synchronously; only then does librdkafka let them go;
//! - assign: a fresh worker starts for each partition.
//!
//! Only this thread touches the consumer, so an offset is stored only for a
//! worker that still owns its partition.

use super::offsets::NextOffset;
use super::slot::{QUEUE_PER_PARTITION, Slot, TopicPartition, set_paused};
use super::worker::{Delivery, Done, PartitionWorker};
use crate::context::RelayContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct Partitions {
    slots: HashMap<TopicPartition, Slot>,
    next_id: u64,
}

/// The consumer's context: the partitions' workers and the rebalance and
/// statistics callbacks.
pub struct GroupContext {
    runtime: tokio::runtime::Handle,
    worker: PartitionWorker,
    ctx: Arc<RelayContext>,
    partitions: Mutex<Partitions>,
    done_tx: Sender<Done>,
    done_rx: Mutex<Receiver<Done>>,
    inbound_topics: HashSet<String>,
}

impl GroupContext {
    pub fn new(
        runtime: tokio::runtime::Handle,
        ctx: Arc<RelayContext>,
        worker: PartitionWorker,
        inbound_topics: HashSet<String>,
    ) -> Self {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        GroupContext {
            runtime,
            worker,
            ctx,
            partitions: Mutex::new(Partitions {
                slots: HashMap::new(),
                next_id: 0,
            }),
            done_tx,
            done_rx: Mutex::new(done_rx),
            inbound_topics,
        }
    }

    fn partitions(&self) -> MutexGuard<'_, Partitions> {
        self.partitions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn start_worker(&self, parts: &mut Partitions, tp: &TopicPartition) {
        let (sender, rx) = mpsc::channel(QUEUE_PER_PARTITION);
        let stop = CancellationToken::new();
        let id = parts.next_id;
        parts.next_id += 1;
        let task = self.runtime.spawn(self.worker.clone().run(
            id,
            rx,
            stop.clone(),
            self.done_tx.clone(),
        ));
        parts.slots.insert(
            tp.clone(),
            Slot {
                id,
                sender,
                stop,
                task,
                backlog: VecDeque::new(),
                paused: false,
                last_done: None,
                first_given: None,
            },
        );
    }

    fn record_assignment(&self, parts: &Partitions) {
        metrics::gauge!("consumer_assigned_partitions").set(parts.slots.len() as f64);
    }

    /// Stores the positions of finished messages whose worker still owns its
    /// partition (or is in `also`: revoked workers that finished in time).
    pub fn store_done(&self, consumer: &BaseConsumer<GroupContext>, also: &HashSet<u64>) {
        let done: Vec<Done> = self
            .done_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_iter()
            .collect();
        if done.is_empty() {
            return;
        }
        let mut parts = self.partitions();
        for Done { worker, next } in done {
            let tp = (next.topic.clone(), next.partition);
            match parts.slots.get_mut(&tp) {
                Some(slot) if slot.id == worker => slot.last_done = Some(next.offset),
                _ if also.contains(&worker) => {}
                _ => {
                    tracing::debug!(topic = %tp.0, partition = tp.1, "Offset of a revoked worker dropped.");
                    continue;
                }
            }
            store(consumer, &next);
        }
    }

    /// Hands `delivery` to its partition's worker; pauses the partition when
    /// the worker's queue is full.
    pub fn dispatch(&self, consumer: &BaseConsumer<GroupContext>, delivery: Delivery) {
        let tp = (delivery.next.topic.clone(), delivery.next.partition);
        let mut parts = self.partitions();
        if !parts.slots.contains_key(&tp) {
            // Assignments start workers; this is only a safety net.
            self.start_worker(&mut parts, &tp);
            self.record_assignment(&parts);
        }
        let Some(slot) = parts.slots.get_mut(&tp) else {
            return;
        };
        slot.first_given.get_or_insert(delivery.next.offset - 1);
        slot.backlog.push_back(delivery);
        let dead = slot.flush();
        slot.pace(consumer, &tp);
        if dead {
            self.restart_dead(consumer, &mut parts, &tp);
        }
    }

    /// Moves backlogs into queues that have room; resumes the partitions
    /// whose workers caught up (`Slot::pace`). True while some
    /// partition stays paused.
    pub fn flush_backlogs(&self, consumer: &BaseConsumer<GroupContext>) -> bool {
        let mut parts = self.partitions();
        let mut dead = Vec::new();
        let mut paused = false;
        for (tp, slot) in parts.slots.iter_mut() {
            if slot.flush() {
                dead.push(tp.clone());
            } else {
                slot.pace(consumer, tp);
            }
            paused |= slot.paused;
        }
        for tp in dead {
            self.restart_dead(consumer, &mut parts, &tp);
        }
        paused
    }

    /// A worker ended by itself (it panicked): start a new one and rewind
    /// the partition to the first message not finished, so none is skipped.
    fn restart_dead(
        &self,
        consumer: &BaseConsumer<GroupContext>,
        parts: &mut Partitions,
        tp: &TopicPartition,
    ) {
        let Some(old) = parts.slots.remove(tp) else {
            return;
        };
        let resume = old.last_done.or(old.first_given);
        tracing::error!(topic = %tp.0, partition = tp.1, ?resume,
            "A partition worker ended unexpectedly; restarting it from the first unfinished message.");
        metrics::counter!("consumer_worker_restarts_total").increment(1);
        self.start_worker(parts, tp);
        if old.paused {
            set_paused(consumer, tp, false);
        }
        if let Some(offset) = resume
            && let Err(e) =
                consumer.seek(&tp.0, tp.1, Offset::Offset(offset), Duration::from_secs(5))
        {
            tracing::error!(error = %e, topic = %tp.0, partition = tp.1, "Cannot rewind the partition.");
        }
    }

    /// Stops the workers of `revoked` (all when `None`), lets them finish the
    /// message in hand within `bound`, stores what they finished and commits
    /// synchronously. Stragglers are aborted: they never store an offset.
    pub fn revoke(
        &self,
        consumer: &BaseConsumer<GroupContext>,
        revoked: Option<&[TopicPartition]>,
        bound: Duration,
    ) {
        let slots: Vec<(TopicPartition, Slot)> = {
            let mut parts = self.partitions();
            let keys: Vec<TopicPartition> = match revoked {
                Some(tps) => tps.to_vec(),
                None => parts.slots.keys().cloned().collect(),
            };
            let slots = keys
                .into_iter()
                .filter_map(|tp| parts.slots.remove(&tp).map(|s| (tp, s)))
                .collect();
            self.record_assignment(&parts);
            slots
        };
        for (_, slot) in &slots {
            slot.stop.cancel();
        }
        let mut finished = HashSet::new();
        let mut late = Vec::new();
        self.runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + bound;
            for (tp, slot) in slots {
                let abort = slot.task.abort_handle();
                if tokio::time::timeout_at(deadline, slot.task).await.is_ok() {
                    finished.insert(slot.id);
                } else {
                    abort.abort();
                    late.push(tp.clone());
                }
                self.ctx.consumer.recovered(&tp.0, tp.1);
                metrics::gauge!("consumer_lag", "topic" => tp.0.clone(), "partition" => tp.1.to_string())
                    .set(0.0);
            }
        });
        if !late.is_empty() {
            tracing::warn!(
                ?late,
                bound_ms = bound.as_millis() as u64,
                "Revoked partitions' workers did not finish within the bound; their messages will be read again."
            );
        }
        self.store_done(consumer, &finished);
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => {}
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                tracing::warn!(error = %e, "Committing offsets before the revocation failed.")
            }
        }
    }
}

fn store(consumer: &BaseConsumer<GroupContext>, next: &NextOffset) {
    let result = next.to_list().and_then(|tpl| consumer.store_offsets(&tpl));
    if let Err(e) = result {
        tracing::debug!(error = %e, topic = %next.topic, partition = next.partition,
            "Offset not stored (partition no longer assigned?).");
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl ClientContext for GroupContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::kafka_log::client_error(&error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::kafka_log::client_log(level, fac, message);
    }

    /// Consumer lag per partition, from librdkafka's statistics.
    fn stats(&self, statistics: Statistics) {
        for (name, topic) in &statistics.topics {
            if !self.inbound_topics.contains(name) {
                continue;
            }
            for (id, p) in &topic.partitions {
                if *id >= 0 && p.consumer_lag >= 0 {
                    metrics::gauge!("consumer_lag", "topic" => name.clone(), "partition" => id.to_string())
                        .set(p.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let revoked = partitions_of(tpl);
            tracing::info!(partitions = ?revoked, lost = consumer.assignment_lost(),
                "Partitions revoked; finishing their messages in hand.");
            metrics::counter!("consumer_rebalances_total", "kind" => "revoke").increment(1);
            self.revoke(
                consumer,
                Some(&revoked),
                self.ctx.settings.consumer.revoke_timeout,
            );
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let assigned = partitions_of(tpl);
                tracing::info!(partitions = ?assigned, "Partitions assigned.");
                metrics::counter!("consumer_rebalances_total", "kind" => "assign").increment(1);
                let mut parts = self.partitions();
                for tp in &assigned {
                    if !parts.slots.contains_key(tp) {
                        self.start_worker(&mut parts, tp);
                    }
                }
                self.record_assignment(&parts);
                drop(parts);
                // A partition paused before a revocation starts unpaused.
                if let Err(e) = consumer.resume(tpl) {
                    tracing::debug!(error = %e, "Resuming assigned partitions failed.");
                }
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => {
                metrics::counter!("consumer_rebalances_total", "kind" => "error").increment(1);
                tracing::warn!(error = %e, "Consumer group rebalance failed.");
            }
        }
    }
}
