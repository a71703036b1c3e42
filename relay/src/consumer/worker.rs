//! One partition's worker: takes the partition's messages in order and
//! brings each to a final outcome (applied, duplicate, ignored or
//! dead-lettered) before the next; a transient failure is retried with
//! capped backoff and the offset does not move. `process` is the one
//! message step that tests drive directly.

use super::dead_letter::{DeadLetterError, DeadLetters, retry_ceiling};
use super::message::{Inbound, TopicKind, header_text, parse_message};
use super::offsets::NextOffset;
use super::transaction::OpenTransaction;
use crate::backoff::Backoff;
use crate::context::RelayContext;
use deadpool_postgres::Pool;
use order_shared::StoreError;
use order_shared::db::Emit;
use order_shared::db::inbox::{InboundContext, Outcome, apply_inbound};
use order_shared::domain::InboundEvent;
use order_shared::domain::OrderStatus;
use order_shared::error::error_chain;
use order_shared::telemetry::count_transition;
use order_shared::trace::{TRACEPARENT, TraceParent};
use rdkafka::message::{Message, OwnedMessage};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// What consuming one message did (the `outcome` label of
/// `consumed_events_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumed {
    Applied,
    Duplicate,
    Ignored,
    DeadLettered,
}

impl Consumed {
    pub fn as_str(self) -> &'static str {
        match self {
            Consumed::Applied => "applied",
            Consumed::Duplicate => "duplicate",
            Consumed::Ignored => "ignored",
            Consumed::DeadLettered => "dead_lettered",
        }
    }
}

/// A failure that a later try may cure: the offset does not move.
#[derive(Debug, thiserror::Error)]
pub enum Retry {
    #[error("database: {source}")]
    Database {
        reason: &'static str,
        #[source]
        source: StoreError,
    },
    #[error(transparent)]
    DeadLetter(#[from] DeadLetterError),
}

impl Retry {
    /// A bounded label for `consumer_retries_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            Retry::Database { reason, .. } => reason,
            Retry::DeadLetter(e) => e.reason(),
        }
    }

    fn ceiling(&self) -> Duration {
        match self {
            Retry::Database { .. } => Duration::from_secs(10),
            Retry::DeadLetter(e) => retry_ceiling(e),
        }
    }
}

/// Names a transient database failure by its SQLSTATE.
fn retry_reason(err: &StoreError) -> &'static str {
    match err.sql_state().map(|s| s.code()) {
        Some("40P01") => "deadlock",
        Some("40001") => "serialization_failure",
        Some("25006") => "read_only",
        Some("55P03") => "lock_not_available",
        Some("57014") => "statement_timeout",
        Some("57P01" | "57P02" | "57P03") => "server_shutdown",
        Some("42P01") => "undefined_table",
        Some(code) if code.starts_with("08") => "connection",
        Some(_) => "database",
        None if err.is_transient() => "unavailable",
        None => "database",
    }
}

/// A message handed to a worker, with the position to store once it is done.
#[derive(Debug)]
pub struct Delivery {
    pub msg: OwnedMessage,
    pub next: NextOffset,
}

/// A worker finished a message: its position may be stored, if the worker
/// still owns the partition.
#[derive(Debug)]
pub struct Done {
    pub worker: u64,
    pub next: NextOffset,
}

/// Applies one partition's messages.
#[derive(Clone)]
pub struct PartitionWorker {
    ctx: Arc<RelayContext>,
    pool: Pool,
    kinds: Arc<HashMap<String, TopicKind>>,
    dead_letters: DeadLetters,
}

impl PartitionWorker {
    pub fn new(ctx: Arc<RelayContext>, pool: Pool, kinds: Arc<HashMap<String, TopicKind>>) -> Self {
        let dead_letters = DeadLetters::new(ctx.clone());
        PartitionWorker {
            ctx,
            pool,
            kinds,
            dead_letters,
        }
    }

    /// Brings one message to a final outcome, or reports a failure to retry.
    pub async fn process(&self, msg: &OwnedMessage) -> Result<Consumed, Retry> {
        let Some(kind) = self.kinds.get(msg.topic()).copied() else {
            self.dead_letters
                .send(msg, &format!("unexpected topic {}", msg.topic()))
                .await?;
            return Ok(Consumed::DeadLettered);
        };
        let prefix = &self.ctx.settings.kafka.topic_prefix;
        let inbound = match parse_message(kind, msg.headers(), msg.payload(), msg.topic(), prefix) {
            Ok(inbound) => inbound,
            Err(reason) => {
                self.dead_letters.send(msg, &reason.to_string()).await?;
                return Ok(Consumed::DeadLettered);
            }
        };
        let span = tracing::Span::current();
        span.record(
            "order_id",
            tracing::field::display(inbound.event.order_id()),
        );
        let traceparent = header_text(msg.headers(), TRACEPARENT).and_then(TraceParent::parse);
        if let Some(tp) = &traceparent {
            span.record("trace_id", tp.trace_id());
        }
        match self.apply(msg, &inbound, traceparent.as_ref()).await {
            Ok(Outcome::Applied { .. }) => Ok(Consumed::Applied),
            Ok(Outcome::Duplicate) => Ok(Consumed::Duplicate),
            Ok(Outcome::Ignored { status }) => {
                if status == OrderStatus::Cancelled
                    && matches!(inbound.event, InboundEvent::PaymentAuthorized { .. })
                {
                    metrics::counter!("payments_for_cancelled_orders_total").increment(1);
                    tracing::warn!(key = %inbound.key,
                        "Payment authorized for a cancelled order: the money is held; refund or release it.");
                }
                Ok(Consumed::Ignored)
            }
            Err(StoreError::NotFound) => {
                self.dead_letters.send(msg, "unknown order").await?;
                Ok(Consumed::DeadLettered)
            }
            Err(e) if e.is_data_error() || matches!(e, StoreError::Corrupt(_)) => {
                let reason = format!("cannot apply: {}", error_chain(&e));
                tracing::error!(error = %reason, "Event cannot be applied.");
                self.dead_letters.send(msg, &reason).await?;
                Ok(Consumed::DeadLettered)
            }
            Err(source) => Err(Retry::Database {
                reason: retry_reason(&source),
                source,
            }),
        }
    }

    /// One transaction: inbox row, change, history and outbox rows, in
    /// three round trips: `BEGIN` goes with the inbox row and the order's
    /// lock (pipelined, run in this order), then the write, then `COMMIT`.
    async fn apply(
        &self,
        msg: &OwnedMessage,
        inbound: &Inbound,
        traceparent: Option<&TraceParent>,
    ) -> Result<Outcome, StoreError> {
        let open = OpenTransaction::new(self.pool.get().await?);
        let client = open.client();
        let ictx = InboundContext {
            key: &inbound.key,
            scope: &inbound.scope,
            topic: msg.topic(),
            emit: Emit {
                traceparent,
                shards: self.ctx.settings.common.outbox_shards,
                notify: self.ctx.settings.outbox_notify,
            },
        };
        let (begun, applied) = tokio::join!(
            client.batch_execute("BEGIN"),
            apply_inbound(client, &ictx, &inbound.event)
        );
        begun?;
        let outcome = match applied {
            Ok(outcome) => outcome,
            Err(e) => {
                open.roll_back().await;
                return Err(e);
            }
        };
        client.batch_execute("COMMIT").await?;
        open.close();
        if let Outcome::Applied {
            transition,
            changed,
        } = &outcome
        {
            if let Some((from, to)) = transition {
                count_transition(*from, *to);
            }
            // The API replicas' streams learn of the change from this hint
            // (queued, never waited for), as of the API's own changes.
            if let Some(hint) = changed
                && let Some(hints) = &self.ctx.hints
            {
                hints.announce(hint.order_id, hint.version, hint.user_id.as_str());
            }
        }
        tracing::info!(key = %inbound.key, outcome = outcome.as_str(), "Event consumed.");
        Ok(outcome)
    }

    /// Works the partition's messages until `stop` or the sender goes;
    /// reports each finished message on `done`. After `stop` it takes no
    /// new message and gives up retrying the one in hand.
    pub(crate) async fn run(
        self,
        id: u64,
        mut rx: mpsc::Receiver<Delivery>,
        stop: CancellationToken,
        done: std::sync::mpsc::Sender<Done>,
    ) {
        loop {
            let delivery = tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                delivery = rx.recv() => match delivery {
                    Some(d) => d,
                    None => return,
                },
            };
            let msg = &delivery.msg;
            let Some(outcome) = self.settle(msg, &stop).await else {
                return;
            };
            metrics::counter!("consumed_events_total", "topic" => msg.topic().to_owned(),
                "outcome" => outcome.as_str())
            .increment(1);
            if done
                .send(Done {
                    worker: id,
                    next: delivery.next,
                })
                .is_err()
            {
                return;
            }
        }
    }

    /// Retries `process` until it settles; `None` when stopped first. Each
    /// attempt runs in its own `event` span (topic, partition, offset,
    /// attempt, and the order and trace ids once parsed), so its log lines
    /// say which event they are about and nothing leaks into other tasks.
    async fn settle(&self, msg: &OwnedMessage, stop: &CancellationToken) -> Option<Consumed> {
        let health = &self.ctx.consumer;
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(60));
        let mut failing_since: Option<Instant> = None;
        for attempt in 1_u64.. {
            let started = Instant::now();
            let span = tracing::info_span!(
                "event",
                topic = msg.topic(),
                partition = msg.partition(),
                offset = msg.offset(),
                attempt,
                order_id = tracing::field::Empty,
                trace_id = tracing::field::Empty
            );
            let attempted = async {
                let result = self.process(msg).await;
                match &result {
                    Ok(_) if failing_since.is_some() => {
                        tracing::info!("Event consumed after retries.");
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %error_chain(err), reason = err.reason(),
                        "Consuming failed; retrying without moving the offset."),
                }
                result
            }
            .instrument(span)
            .await;
            match attempted {
                Ok(outcome) => {
                    metrics::histogram!("consumer_processing_duration_seconds")
                        .record(started.elapsed().as_secs_f64());
                    if failing_since.is_some() {
                        health.recovered(msg.topic(), msg.partition());
                    }
                    return Some(outcome);
                }
                Err(err) => {
                    let since = *failing_since.get_or_insert(started);
                    health.retrying(msg.topic(), msg.partition(), err.reason(), since);
                    metrics::counter!("consumer_retries_total", "topic" => msg.topic().to_owned(),
                        "reason" => err.reason())
                    .increment(1);
                    let delay = backoff.next_delay().min(err.ceiling());
                    tokio::select! {
                        _ = stop.cancelled() => return None,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        None
    }
}
