//! A transaction begun by hand on a pooled connection, so that `BEGIN`
//! travels with the first statements instead of costing a round trip of
//! its own (tokio-postgres' `Transaction` awaits it first).

use deadpool_postgres::Client;

/// A pooled connection in a transaction begun by hand (so that `BEGIN`
/// needs no round trip of its own). Unless it was committed or rolled back,
/// it never goes back to the pool: dropped (an error, or the worker aborted
/// mid-event), it is taken out of the pool and closed, and the server rolls
/// the transaction back.
pub struct OpenTransaction(Option<Client>);

impl OpenTransaction {
    /// Holds `client` until the transaction ends.
    pub fn new(client: Client) -> Self {
        OpenTransaction(Some(client))
    }

    /// The connection (held until `close` or `roll_back` consumes this).
    pub fn client(&self) -> &Client {
        self.0
            .as_ref()
            .expect("the connection is held until closed")
    }

    /// Rolls back and returns the connection to the pool (or closes it if
    /// the rollback fails).
    pub async fn roll_back(self) {
        if self.client().batch_execute("ROLLBACK").await.is_ok() {
            self.close();
        }
    }

    /// The transaction ended: the connection goes back to the pool.
    pub fn close(mut self) {
        self.0.take();
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OpenTransaction;
    use order_shared::testing::fresh_database;

    /// A transaction the tests begin: it marks itself with a setting that
    /// lasts only as long as it does.
    const BEGIN: &str = "BEGIN; SET LOCAL application_name = 'in-transaction'";

    /// The backend pid of a connection, and whether it is outside the
    /// transaction [`BEGIN`] began.
    async fn state(client: &deadpool_postgres::Client) -> (i32, bool) {
        let sql =
            "SELECT pg_backend_pid(), current_setting('application_name') <> 'in-transaction'";
        let row = client.query_one(sql, &[]).await.unwrap();
        (row.get(0), row.get(1))
    }

    #[tokio::test]
    async fn a_transaction_not_ended_never_goes_back_to_the_pool() {
        let db = fresh_database().await;
        let mut settings = db.settings();
        settings.pool_size = 1;
        let pool = order_shared::db::build_pool(&settings).unwrap();

        // Committed, or rolled back: the same connection comes back, idle.
        let open = OpenTransaction::new(pool.get().await.unwrap());
        let (pid, _) = state(open.client()).await;
        open.client().batch_execute(BEGIN).await.unwrap();
        open.client().batch_execute("COMMIT").await.unwrap();
        open.close();
        let open = OpenTransaction::new(pool.get().await.unwrap());
        assert_eq!(state(open.client()).await, (pid, true));
        open.client().batch_execute(BEGIN).await.unwrap();
        open.roll_back().await;
        assert_eq!(state(&pool.get().await.unwrap()).await, (pid, true));

        // Dropped inside the transaction: that connection is closed, and the
        // pool hands out a fresh one outside any transaction.
        let open = OpenTransaction::new(pool.get().await.unwrap());
        open.client().batch_execute(BEGIN).await.unwrap();
        drop(open);
        let (fresh, idle) = state(&pool.get().await.unwrap()).await;
        assert_ne!(fresh, pid);
        assert!(idle);
    }
}
