//! The floor of a request on the required stack, for `./scripts/bench.sh`
//! (not a test, not the service): a bare poem server that does only what
//! any create or read must do — read the HTTP request, verify the bearer
//! token (jsonwebtoken, HS256), parse the JSON body (serde), run pgbench's
//! statement (`scripts/bench/pg-*.sql`, one round trip; a create's with the
//! body's values as parameters) on a deadpool-postgres connection, and
//! answer what the contract asks for with JSON (serde). No
//! validation, no state machine, no metrics, no logs. Its CPU per request
//! and its rate, measured like the API's, are what poem, tokio,
//! jsonwebtoken and tokio-postgres cost on this machine before any code of
//! ours runs.
//!
//! - `POST /api/orders`: `pg-create.sql`'s writes with the body's values
//!   and the caller as parameters ([`CREATE_SQL`]); answers as the contract
//!   requires (DESIGN section 3): 201, `Location`, `ETag`, the order.
//! - `GET /api/orders/{id}`: `pg-get.sql`, answers the order and its `ETag`.
//! - `GET /api/orders?limit=N`: `pg-list.sql`, answers `{"items": [...]}`.
//!
//! Usage: floor DATABASE_URL PORT JWT_SECRET

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use poem::http::StatusCode;
use poem::web::{Data, Json, Path, Query, TypedHeader, headers};
use poem::{EndpointExt, IntoResponse, Route, Server, get, handler, listener::TcpListener, post};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use std::sync::Arc;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `scripts/bench/pg-create.sql` with the request's values as parameters
/// instead of constants: $1 user, $2 currency, $3-$6 the lines' columns,
/// $7 total, $8 address, $9 the lines as the event's JSON. Returns what the
/// answer needs beyond the body: the id and the time.
const CREATE_SQL: &str = "\
WITH v AS (
  SELECT (lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
          || substr(md5(random()::text), 1, 20))::uuid AS id,
         (lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
          || substr(md5(random()::text), 1, 20))::uuid AS eid,
         now() AS at
), o AS (
  INSERT INTO orders (id, user_id, status, currency, total_amount, version, shipping_address, created_at, updated_at)
  SELECT v.id, $1, 'PENDING', $2, $7, 1, $8, v.at, v.at FROM v RETURNING id, created_at
), i AS (
  INSERT INTO order_items (order_id, line_no, product_id, quantity, unit_price, line_total)
  SELECT o.id, t.n::int, t.p, t.q, t.u, t.l FROM o,
    unnest($3::text[], $4::int4[], $5::int8[], $6::int8[]) WITH ORDINALITY AS t(p, q, u, l, n)
), h AS (
  INSERT INTO order_status_history (order_id, from_status, to_status, reason, actor, created_at)
  SELECT o.id, NULL, 'PENDING', NULL, concat('user', chr(58), $1), v.at FROM o, v
), ob AS (
  INSERT INTO outbox (event_id, aggregate_id, aggregate_version, event_type, topic, payload, headers, shard)
  SELECT v.eid, o.id, 1, 'order.placed', 'order.placed',
    json_build_object('eventId', v.eid, 'eventType', 'order.placed', 'occurredAt', v.at,
      'orderId', o.id, 'userId', $1, 'version', 1,
      'data', json_build_object('items', $9::json, 'totalAmount', $7, 'currency', $2,
        'shippingAddress', $8)),
    '{}'::jsonb, abs(hashtext(o.id::text)) % 32
  FROM o, v
)
SELECT id, created_at FROM o";

/// A pgbench script's statement with its variables (`:user`, ...) as
/// parameters (`$1`, ...).
fn statement(file: &str, vars: &[(&str, &str)]) -> String {
    let mut sql = file
        .lines()
        .filter(|l| !l.starts_with("--") && !l.starts_with('\\'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace(';', "");
    for (var, param) in vars {
        sql = sql.replace(var, param);
    }
    sql
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewOrder {
    currency: String,
    items: Vec<Item>,
    shipping_address: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    product_id: String,
    quantity: i32,
    unit_price: i64,
    #[serde(default)]
    line_total: i64,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Claims {
    sub: String,
    exp: u64,
}

/// One order as the contract answers it: the read statements return its
/// address and items as JSON (`serde_json::Value`); a create has them
/// parsed from the body.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OrderJson<A = serde_json::Value, I = serde_json::Value> {
    id: uuid::Uuid,
    user_id: String,
    status: String,
    currency: String,
    total_amount: i64,
    version: i64,
    shipping_address: A,
    carrier: Option<String>,
    tracking_number: Option<String>,
    cancellation_reason: Option<String>,
    payment_id: Option<String>,
    inventory_reserved_at: Option<chrono::DateTime<chrono::Utc>>,
    reservation_id: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
    items: I,
}

impl OrderJson {
    fn from_row(r: &tokio_postgres::Row) -> Result<Self, tokio_postgres::Error> {
        Ok(OrderJson {
            id: r.try_get(0)?,
            user_id: r.try_get(1)?,
            status: r.try_get(2)?,
            currency: r.try_get(3)?,
            total_amount: r.try_get(4)?,
            version: r.try_get(5)?,
            shipping_address: r.try_get(6)?,
            carrier: r.try_get(7)?,
            tracking_number: r.try_get(8)?,
            cancellation_reason: r.try_get(9)?,
            payment_id: r.try_get(10)?,
            inventory_reserved_at: r.try_get(11)?,
            reservation_id: r.try_get(12)?,
            created_at: r.try_get(13)?,
            updated_at: r.try_get(14)?,
            items: r.try_get(15)?,
        })
    }
}

#[derive(Serialize)]
struct Page {
    items: Vec<OrderJson>,
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<i64>,
}

struct State {
    get_sql: String,
    list_sql: String,
    pool: Pool,
    key: DecodingKey,
    validation: Validation,
}

#[handler]
async fn create(
    Data(state): Data<&Arc<State>>,
    TypedHeader(auth): TypedHeader<headers::Authorization<headers::authorization::Bearer>>,
    Json(mut order): Json<NewOrder>,
) -> poem::Result<poem::Response> {
    let claims = verify(state, auth.token())?;
    for item in &mut order.items {
        item.line_total = i64::from(item.quantity) * item.unit_price;
    }
    let mut columns = (vec![], vec![], vec![], vec![]);
    for item in &order.items {
        columns.0.push(item.product_id.as_str());
        columns.1.push(item.quantity);
        columns.2.push(item.unit_price);
        columns.3.push(item.line_total);
    }
    let total: i64 = columns.3.iter().sum();
    let address = tokio_postgres::types::Json(&order.shipping_address);
    let lines = tokio_postgres::types::Json(&order.items);
    let rows = run_one(
        state,
        CREATE_SQL,
        &[
            &claims.sub,
            &order.currency,
            &columns.0,
            &columns.1,
            &columns.2,
            &columns.3,
            &total,
            &address,
            &lines,
        ],
    )
    .await?;
    let row = rows
        .first()
        .ok_or_else(|| poem::Error::from_status(StatusCode::CONFLICT))?;
    let at = row.try_get(1).map_err(poem::error::InternalServerError)?;
    let created = OrderJson {
        id: row.try_get(0).map_err(poem::error::InternalServerError)?,
        user_id: claims.sub,
        status: "PENDING".to_owned(),
        currency: order.currency,
        total_amount: total,
        version: 1,
        shipping_address: order.shipping_address,
        carrier: None,
        tracking_number: None,
        cancellation_reason: None,
        payment_id: None,
        inventory_reserved_at: None,
        reservation_id: None,
        created_at: at,
        updated_at: at,
        items: order.items,
    };
    let location = format!("/api/orders/{}", created.id);
    Ok(Json(created)
        .with_status(StatusCode::CREATED)
        .with_header("Location", location)
        .with_header("ETag", "\"1\"")
        .into_response())
}

/// One statement on a pooled connection (prepared once per connection).
async fn run_one(
    state: &State,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> poem::Result<Vec<tokio_postgres::Row>> {
    let db = state
        .pool
        .get()
        .await
        .map_err(poem::error::InternalServerError)?;
    let stmt = db
        .prepare_cached(sql)
        .await
        .map_err(poem::error::InternalServerError)?;
    db.query(&stmt, params)
        .await
        .map_err(poem::error::InternalServerError)
}

fn verify(state: &State, token: &str) -> poem::Result<Claims> {
    jsonwebtoken::decode::<Claims>(token, &state.key, &state.validation)
        .map(|t| t.claims)
        .map_err(|e| poem::Error::from_string(e.to_string(), StatusCode::UNAUTHORIZED))
}

#[handler]
async fn get_one(
    Data(state): Data<&Arc<State>>,
    TypedHeader(auth): TypedHeader<headers::Authorization<headers::authorization::Bearer>>,
    Path(id): Path<uuid::Uuid>,
) -> poem::Result<poem::Response> {
    let claims = verify(state, auth.token())?;
    let rows = run_one(state, &state.get_sql, &[&id, &claims.sub]).await?;
    let row = rows
        .first()
        .ok_or_else(|| poem::Error::from_status(StatusCode::NOT_FOUND))?;
    let order = OrderJson::from_row(row).map_err(poem::error::InternalServerError)?;
    let tag = format!("\"{}\"", order.version);
    Ok(Json(order).with_header("ETag", tag).into_response())
}

#[handler]
async fn list(
    Data(state): Data<&Arc<State>>,
    TypedHeader(auth): TypedHeader<headers::Authorization<headers::authorization::Bearer>>,
    Query(page): Query<ListQuery>,
) -> poem::Result<Json<Page>> {
    let claims = verify(state, auth.token())?;
    let limit = page.limit.unwrap_or(20).clamp(1, 100) + 1;
    let rows = run_one(state, &state.list_sql, &[&claims.sub, &limit]).await?;
    let items = rows
        .iter()
        .map(OrderJson::from_row)
        .collect::<Result<_, _>>()
        .map_err(poem::error::InternalServerError)?;
    Ok(Json(Page { items }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, port, secret] = args.as_slice() else {
        anyhow::bail!("usage: floor DATABASE_URL PORT JWT_SECRET");
    };
    let manager = Manager::from_config(
        tokio_postgres::Config::from_str(url)?,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(16)
        .runtime(Runtime::Tokio1)
        .build()?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_aud = false;
    let state = Arc::new(State {
        get_sql: statement(
            include_str!("../../scripts/bench/pg-get.sql"),
            &[(":id", "$1"), (":user", "$2")],
        ),
        list_sql: statement(
            include_str!("../../scripts/bench/pg-list.sql"),
            &[(":user", "$1"), (":limit", "$2")],
        ),
        pool,
        key: DecodingKey::from_secret(secret.as_bytes()),
        validation,
    });
    let app = Route::new()
        .at("/api/orders", post(create).get(list))
        .at("/api/orders/:id", get(get_one))
        .data(state);
    Server::new(TcpListener::bind(format!("127.0.0.1:{port}")))
        .run(app)
        .await?;
    Ok(())
}
