//! Builds the application from settings and runs it until shutdown. Tests
//! start this very `Application` on port 0.

use crate::auth::JwtVerifier;
use crate::config::ApiSettings;
use crate::conn::{ConnLimits, GuardedAcceptor};
use crate::http::HttpLayer;
use crate::limits::OrderRateLimit;
use crate::live::{Announcer, Hub, LiveSettings};
use crate::routes::live::LiveApi;
use crate::routes::{health, orders::OrdersApi};
use crate::upstream::{CartClient, ProductClient, Upstream};
use deadpool_postgres::Pool;
use order_shared::db::purge::Purge;
use poem::listener::TcpAcceptor;
use poem::middleware::Cors;
use poem::{EndpointExt, Route, Server};
use poem_openapi::OpenApiService;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often expired idempotency keys are purged.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);

/// A bound, not yet running API server.
pub struct Application {
    port: u16,
    /// The live-update fan-out and what feeds it (started by `run`).
    hub: Arc<Hub>,
    announcing: JoinHandle<()>,
    reads: tokio::sync::mpsc::UnboundedReceiver<order_shared::domain::OrderId>,
    db: order_shared::db::DbSettings,
    live: LiveSettings,
    acceptor: GuardedAcceptor<TcpAcceptor>,
    app: poem::endpoint::BoxEndpoint<'static>,
    pool: Pool,
    shutdown: CancellationToken,
    grace: Duration,
}

impl Application {
    /// Checks `OUTBOX_SHARDS` against the database (waiting for it up to
    /// `order_shared::db::pinned::STARTUP_DATABASE_WAIT`), binds the port
    /// and wires routes.
    pub async fn build(settings: ApiSettings, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let pool = order_shared::db::build_pool(&settings.common.db)?;
        order_shared::db::pinned::verify_at_start(&pool, settings.common.outbox_shards).await?;
        let verifier = Arc::new(JwtVerifier::new(&settings.auth)?);
        let upstream = settings.upstream;
        let http = crate::upstream::http::client(upstream.timeout)?;
        let products = ProductClient::new(
            Upstream::new("product", http.clone(), upstream.breaker),
            settings.product_service_url.clone(),
            upstream.max_concurrency,
        );
        let carts = CartClient::new(
            Upstream::new("cart", http, upstream.breaker),
            settings.cart_service_url.clone(),
        );
        if !products.checks_prices() {
            tracing::warn!(
                "PRODUCT_SERVICE_URL is unset: client prices are trusted. Do not run like this in production."
            );
        }
        let (reads_tx, reads) = tokio::sync::mpsc::unbounded_channel();
        let hub = Hub::new(settings.live.max_streams_per_user, reads_tx);
        let live = LiveApi {
            pool: pool.clone(),
            hub: hub.clone(),
            settings: settings.live,
            shutdown: shutdown.clone(),
        };
        let (announcer, announcing) = Announcer::spawn(pool.clone(), shutdown.clone());
        let orders = OrdersApi {
            hub: hub.clone(),
            announcer,
            pool: pool.clone(),
            products,
            carts,
            shards: settings.common.outbox_shards,
            idempotency_ttl: settings.idempotency_ttl,
            notify: settings.outbox_notify,
            rate_limit: settings
                .orders_per_minute
                .map(|n| Arc::new(OrderRateLimit::new(n))),
        };
        let api = OpenApiService::new((orders, live), "Order service", env!("CARGO_PKG_VERSION"))
            .description(
                "Orders of the shop: placement, lifecycle (PENDING -> CONFIRMED -> SHIPPED -> \
                 DELIVERED, or CANCELLED) and history. Errors are RFC 9457 problem+json.",
            )
            .server("/api");
        let spec = api.spec_endpoint();
        let docs = api.swagger_ui();
        let route = Route::new()
            .nest("/api", api)
            .at("/api/openapi.json", spec)
            .at("/api/asyncapi.json", asyncapi_endpoint())
            .nest("/docs", docs)
            .at("/health/live", poem::get(health::live))
            // Data only where it is read: each `.data()` layer costs every
            // request it wraps (docs/benchmarks.md, eighteenth pass). The
            // orders routes get the token verifier from `HttpLayer`.
            .at("/health/ready", poem::get(health::ready).data(pool.clone()))
            .at(
                "/metrics",
                poem::get(health::metrics)
                    .data(order_shared::telemetry::prometheus()?)
                    .data(pool.clone()),
            );
        let route = if settings.cors_allowed_origins.is_empty() {
            route.boxed()
        } else {
            let mut cors = Cors::new()
                .allow_methods(["GET", "POST", "PATCH", "OPTIONS"])
                .allow_headers([
                    "authorization",
                    "content-type",
                    "idempotency-key",
                    "if-match",
                    "last-event-id",
                    order_shared::trace::TRACEPARENT,
                ])
                .expose_headers(["location", "idempotent-replayed", "etag", "retry-after"])
                .max_age(600);
            if !settings.cors_allowed_origins.iter().any(|o| o == "*") {
                cors = cors.allow_origins(settings.cors_allowed_origins.iter().map(String::as_str));
            }
            route.with(cors).boxed()
        };
        let app = route
            .with(HttpLayer {
                max_body_bytes: settings.max_body_bytes,
                request_timeout: settings.request_timeout,
                body_read_timeout: settings.body_read_timeout,
                verifier: verifier.clone(),
            })
            .boxed();

        let (acceptor, port) =
            order_shared::listen::bind(&settings.host, settings.port, "API_HOST/API_PORT").await?;
        let acceptor = GuardedAcceptor::new(
            acceptor,
            ConnLimits {
                header_read: settings.header_read_timeout,
                idle: settings.idle_timeout,
            },
        );
        Ok(Application {
            port,
            hub,
            announcing,
            reads,
            db: settings.common.db.clone(),
            live: settings.live,
            acceptor,
            app,
            pool,
            shutdown,
            grace: settings.common.shutdown_timeout,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Serves until the shutdown token fires, then drains in-flight requests
    /// (at most the grace period).
    pub async fn run(self) -> std::io::Result<()> {
        tracing::info!(port = self.port, "order-api listening.");
        let purge = tokio::spawn(Purge::ExpiredIdempotencyKeys.run_every(
            self.pool.clone(),
            PURGE_INTERVAL,
            self.shutdown.clone(),
        ));
        let feeding = crate::live::feed::spawn(
            self.pool.clone(),
            self.db,
            self.hub,
            self.reads,
            self.live.check_every,
            self.shutdown.clone(),
        );
        let shutdown = self.shutdown.clone();
        let result = Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(
                self.app,
                async move { shutdown.cancelled().await },
                Some(self.grace),
            )
            .await;
        purge.abort();
        feeding.iter().for_each(JoinHandle::abort);
        self.announcing.abort();
        self.pool.close();
        tracing::info!("order-api stopped.");
        result
    }
}

/// The AsyncAPI document of the service's topics, pretty-printed (the text
/// of `docs/asyncapi.json`).
pub fn asyncapi_text() -> String {
    let doc = order_shared::asyncapi::document(env!("CARGO_PKG_VERSION"));
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}

/// `GET /api/asyncapi.json`: built once, at start.
fn asyncapi_endpoint() -> impl poem::Endpoint {
    let body = asyncapi_text();
    poem::get(poem::endpoint::make_sync(move |_| {
        poem::Response::builder()
            .content_type("application/json")
            .body(body.clone())
    }))
}
