//! Who watches what, across processes, so that a change nobody watches is
//! not announced (a hint costs its maker a queue entry and a share of a
//! NOTIFY statement, the database the NOTIFY, and every API replica the
//! reading of it: with no stream open, skipping them took the API's CPU
//! per create from 132 to 114 µs and raised the create rate by 16 %,
//! `docs/benchmarks.md`, fifteenth pass).
//!
//! A replica with open streams holds, on its LISTEN connection, a shared
//! advisory lock `(INTEREST_CLASS, bucket)` for each bucket its streams
//! watch: a user's orders and an order fall in one of [`BUCKETS`] buckets
//! by a fixed hash, and admins' all-orders streams in [`ALL_ORDERS`]. A
//! lock lives exactly as long as that connection, so a replica that dies
//! stops being "interested" with it. Each announcer (every API replica,
//! and the relay's consumer) reads the held buckets every
//! [`INTEREST_REFRESH`] and announces a change only when its user's or its
//! order's bucket is held (or an all-orders stream is open). Until its
//! first read, and whenever a read fails, it announces every change.
//!
//! A stream that opens misses the hints of the changes made before the
//! announcers' next read: the replica runs its version check again
//! [`CATCH_UP`] after it took a new bucket, which finds those changes.

use crate::StoreError;
use crate::db::{GenericClient, HELD_ADVISORY_LOCKS};
use crate::domain::OrderId;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Advisory-lock class of the interest locks ("ORDL").
pub const INTEREST_CLASS: i32 = 0x4f52_444c;
/// Buckets of users and orders: few enough that the locks (one per bucket
/// per replica at most) stay a small part of PostgreSQL's lock table.
pub const BUCKETS: i32 = 256;
/// The bucket of admins' all-orders streams.
pub const ALL_ORDERS: i32 = BUCKETS;
/// How often an announcer reads the held buckets.
pub const INTEREST_REFRESH: Duration = Duration::from_secs(1);
/// How long after taking a new bucket a replica checks the versions of
/// what its streams watch: twice the refresh, for a slow read.
pub const CATCH_UP: Duration = Duration::from_secs(2);

/// The bucket of a user's orders.
pub fn user_bucket(user_id: &str) -> i32 {
    bucket(b'u', user_id.as_bytes())
}

/// The bucket of one order.
pub fn order_bucket(order_id: OrderId) -> i32 {
    bucket(b'o', order_id.as_uuid().as_bytes())
}

/// FNV-1a: the same bucket in every process and every version.
fn bucket(kind: u8, bytes: &[u8]) -> i32 {
    let hash = std::iter::once(&kind)
        .chain(bytes)
        .fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
        });
    (hash % BUCKETS as u32) as i32
}

/// Takes shared interest locks on `buckets` for the session of `client`
/// (a connection of its own: pooled sessions are shared).
pub async fn take(client: &tokio_postgres::Client, buckets: &[i32]) -> Result<(), StoreError> {
    let sql = "SELECT count(pg_advisory_lock_shared($1, b)) FROM unnest($2::int4[]) b";
    client.query_one(sql, &[&INTEREST_CLASS, &buckets]).await?;
    Ok(())
}

/// Releases the interest locks on `buckets` of the session of `client`.
pub async fn release(client: &tokio_postgres::Client, buckets: &[i32]) -> Result<(), StoreError> {
    let sql = "SELECT count(pg_advisory_unlock_shared($1, b)) FROM unnest($2::int4[]) b";
    client.query_one(sql, &[&INTEREST_CLASS, &buckets]).await?;
    Ok(())
}

/// The buckets some session of this database holds (advisory locks are
/// per database, and `pg_locks` shows every database's).
pub async fn held(client: &impl GenericClient) -> Result<BTreeSet<i32>, StoreError> {
    let sql = format!("SELECT DISTINCT objid::int4 {HELD_ADVISORY_LOCKS}");
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client.query(&stmt, &[&i64::from(INTEREST_CLASS)]).await?;
    rows.iter()
        .map(|r| r.try_get::<_, i32>(0).map_err(StoreError::from))
        .collect()
}

/// An announcer's view of the held buckets.
#[derive(Debug, Default)]
pub struct Interest {
    /// Read at least once, and the last read succeeded.
    known: AtomicBool,
    bits: [AtomicU64; 5],
}

impl Interest {
    /// Whether a change of `order_id`, owned by `user_id`, may be watched.
    pub fn wants(&self, order_id: OrderId, user_id: &str) -> bool {
        !self.known.load(Ordering::Acquire)
            || self.has(ALL_ORDERS)
            || self.has(user_bucket(user_id))
            || self.has(order_bucket(order_id))
    }

    fn has(&self, bucket: i32) -> bool {
        let b = bucket as usize;
        self.bits[b / 64].load(Ordering::Relaxed) & (1 << (b % 64)) != 0
    }

    /// The buckets just read, or `None`: unknown, every change is wanted.
    pub fn set(&self, held: Option<&BTreeSet<i32>>) {
        let Some(held) = held else {
            self.known.store(false, Ordering::Release);
            return;
        };
        let mut bits = [0_u64; 5];
        for b in held.iter().filter(|b| (0..=ALL_ORDERS).contains(*b)) {
            let b = *b as usize;
            bits[b / 64] |= 1 << (b % 64);
        }
        for (slot, value) in self.bits.iter().zip(bits) {
            slot.store(value, Ordering::Relaxed);
        }
        self.known.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(n: u128) -> OrderId {
        OrderId::from(uuid::Uuid::from_u128(n))
    }

    #[test]
    fn buckets_are_fixed_and_in_range() {
        // Every process must agree: a change of the hash is a protocol change.
        assert_eq!(user_bucket("alice"), 152);
        assert_eq!(user_bucket(""), 16);
        let spread: BTreeSet<i32> = (0..2000)
            .map(|n| user_bucket(&format!("user-{n}")))
            .collect();
        assert!(spread.iter().all(|b| (0..BUCKETS).contains(b)));
        assert!(spread.len() > 200, "{}", spread.len());
        assert!(
            (0..100)
                .map(order)
                .all(|o| (0..BUCKETS).contains(&order_bucket(o)))
        );
    }

    #[test]
    fn a_change_is_wanted_until_known_then_only_when_its_bucket_is_held() {
        let interest = Interest::default();
        assert!(interest.wants(order(1), "alice"), "unknown: everything");
        interest.set(Some(&BTreeSet::new()));
        assert!(!interest.wants(order(1), "alice"));
        interest.set(Some(&BTreeSet::from([user_bucket("alice")])));
        assert!(interest.wants(order(1), "alice"));
        assert!(interest.wants(order(2), "alice"));
        interest.set(Some(&BTreeSet::from([order_bucket(order(3))])));
        assert!(interest.wants(order(3), "bob"));
        interest.set(Some(&BTreeSet::from([ALL_ORDERS, -1, 9999])));
        assert!(interest.wants(order(4), "carol"));
        interest.set(None);
        assert!(
            interest.wants(order(5), "dave"),
            "a failed read: everything"
        );
    }
}
