//! The floor of a request on the required stack, for `./scripts/bench.sh`
//! (not a test, not the service): a bare poem server that does only what
//! any create or read must do — read the HTTP request, verify the bearer
//! token (jsonwebtoken, HS256), parse the JSON body (serde), run pgbench's
//! own statement (`scripts/bench/pg-*.sql`, one round trip) on a
//! deadpool-postgres connection, and answer with JSON (serde). No
//! validation, no state machine, no metrics, no logs. Its CPU per request
//! and its rate, measured like the API's, are what poem, tokio,
//! jsonwebtoken and tokio-postgres cost on this machine before any code of
//! ours runs.
//!
//! - `POST /api/orders`: `pg-create.sql`, answers 201 `{"id", "status"}`.
//! - `GET /api/orders/{id}`: `pg-get.sql`, answers the order.
//! - `GET /api/orders?limit=N`: `pg-list.sql`, answers `{"items": [...]}`.
//!
//! Usage: floor DATABASE_URL PORT JWT_SECRET

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use poem::http::StatusCode;
use poem::web::{Data, Json, Path, Query, TypedHeader, headers};
use poem::{EndpointExt, Route, Server, get, handler, listener::TcpListener, post};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use std::sync::Arc;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CREATE_SQL: &str = include_str!("../../scripts/bench/pg-create.sql");
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
#[allow(dead_code)] // parsed, as the API does, then not used
struct NewOrder {
    currency: String,
    items: Vec<Item>,
    shipping_address: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct Item {
    product_id: String,
    quantity: i32,
    unit_price: i64,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Claims {
    sub: String,
    exp: u64,
}

#[derive(Serialize)]
struct Created {
    id: String,
    status: &'static str,
}

/// One order as the read statements return it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OrderJson {
    id: uuid::Uuid,
    user_id: String,
    status: String,
    currency: String,
    total_amount: i64,
    version: i64,
    shipping_address: serde_json::Value,
    carrier: Option<String>,
    tracking_number: Option<String>,
    cancellation_reason: Option<String>,
    payment_id: Option<String>,
    inventory_reserved_at: Option<chrono::DateTime<chrono::Utc>>,
    reservation_id: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
    items: serde_json::Value,
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
    Json(order): Json<NewOrder>,
) -> poem::Result<(StatusCode, Json<Created>)> {
    let claims = verify(state, auth.token())?;
    run_one(state, CREATE_SQL, &[]).await?;
    drop(order);
    Ok((
        StatusCode::CREATED,
        Json(Created {
            id: claims.sub,
            status: "PENDING",
        }),
    ))
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
) -> poem::Result<Json<OrderJson>> {
    let claims = verify(state, auth.token())?;
    let rows = run_one(state, &state.get_sql, &[&id, &claims.sub]).await?;
    let row = rows
        .first()
        .ok_or_else(|| poem::Error::from_status(StatusCode::NOT_FOUND))?;
    Ok(Json(
        OrderJson::from_row(row).map_err(poem::error::InternalServerError)?,
    ))
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
