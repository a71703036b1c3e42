//! The relay's side of the outbox, in three parts: [`session`] (the lease
//! session: advisory locks, membership, wake-ups, timeouts), [`claim`] (the
//! rows of one shard: claim, delete after ack, count failures and park) and
//! [`admin`] (backlog figures and the operators' parked-row commands).

pub mod admin;
pub mod claim;
pub mod rows;
pub mod session;

pub use admin::{parked_rows, replay_parked, stats};
pub use rows::{
    CHANNEL, MEMBER_CLASS, OutboxRow, OutboxStats, ParkedRow, ROW_COLUMNS, SHARD_CLASS,
};
pub use session::{OutboxSession, SessionEvent, SessionTimedOut};
