//! An APIv2-like service using the middleware: a read endpoint and a write endpoint over a
//! small schema, `/metrics` (Prometheus text) and `/health` (`application/health+json`).
//!
//! ```text
//! cargo run --example api_service                          # two embedded testkit regions
//! cargo run --example api_service -- --listen 127.0.0.1:8080
//! cargo run --example api_service -- --config examples/regions.toml   # your regions
//! ```
//!
//! Routes: `GET /orders/{id}`, `GET /orders/by-sku/{sku}`, `POST /orders` (JSON `{"id": 1,
//! "customer_id": "<uuid>", "amount": "12.50", "note": "…", "sku": "AB-1"}`; only `id` is
//! required; an `Idempotency-Key` header makes it safe to retry), `GET /metrics`,
//! `GET /health`, `GET /status` (the health as a customer-facing status line).
//!
//! The `orders` table has the types a real one has: `INT`, `UNIQUEIDENTIFIER`,
//! `DECIMAL(18, 2)` (amounts travel as strings in JSON, so they stay exact), `DATETIME2`,
//! `NVARCHAR` and `VARCHAR`; rows map into an `Order` struct with
//! [`FromRow`](mssql_resilience::sql::FromRow). The lookup by `sku` sends a `VARCHAR`
//! parameter ([`Param::varchar`]) so SQL Server can seek the `VARCHAR` index; it needs a
//! real server (the embedded testkit runs `EXEC sp_executesql` only with literal
//! arguments, and answers that route with error 214).
//! Each HTTP request's time budget (the `X-Request-Timeout-Ms` header, default 2000)
//! becomes the ambient deadline of every database call it makes.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use mssql_resilience::chrono::{DateTime, NaiveDateTime, Utc};
use mssql_resilience::config::Config;
use mssql_resilience::deadline::ambient;
use mssql_resilience::error::ErrorKind;
use mssql_resilience::idempotency::{create_table_sql, idempotent_execute, DEFAULT_TABLE};
use mssql_resilience::rust_decimal::Decimal;
use mssql_resilience::sql::{FromRow, Param, Row, RowError, SqlRequest};
use mssql_resilience::telemetry::{health, record_gauges, status_line};
use mssql_resilience::uuid::Uuid;
use mssql_resilience::{Error, RequestContext, Stack};
use mssql_testkit::chaos::ChaosProxy;
use mssql_testkit::tds::{TdsServer, TdsServerConfig};
use serde_json::json;

const SCHEMA: &str = "CREATE TABLE orders (\
    id INT NOT NULL PRIMARY KEY, \
    customer_id UNIQUEIDENTIFIER NOT NULL, \
    amount DECIMAL(18, 2) NOT NULL, \
    created_at DATETIME2 NOT NULL, \
    note NVARCHAR(200) NULL, \
    sku VARCHAR(20) NULL)";

const ORDER_COLUMNS: &str = "id, customer_id, amount, created_at, note, sku";

/// One row of `orders`.
struct Order {
    id: i32,
    customer_id: Uuid,
    amount: Decimal,
    created_at: NaiveDateTime,
    note: Option<String>,
    sku: Option<String>,
}

impl FromRow for Order {
    fn from_row(row: &Row) -> Result<Self, RowError> {
        Ok(Order {
            id: row.try_get("id")?,
            customer_id: row.try_get("customer_id")?,
            amount: row.try_get("amount")?,
            created_at: row.try_get("created_at")?,
            note: row.try_get("note")?,
            sku: row.try_get("sku")?,
        })
    }
}

impl Order {
    fn to_json(&self) -> serde_json::Value {
        json!({
            "id": self.id,
            "customer_id": self.customer_id.to_string(),
            "amount": self.amount.to_string(),
            "created_at": self.created_at.format("%Y-%m-%dT%H:%M:%S%.f").to_string(),
            "note": self.note,
            "sku": self.sku,
        })
    }
}

#[derive(Clone)]
struct App {
    stack: Stack,
    metrics: PrometheusHandle,
}

/// The embedded regions: kept alive for the process's lifetime.
struct Embedded {
    _regions: Vec<(TdsServer, ChaosProxy)>,
}

fn usage() -> ! {
    eprintln!("usage: api_service [--listen ADDR] [--config FILE]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("api_service: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut listen: SocketAddr = "127.0.0.1:8080".parse()?;
    let mut config_file = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                let value = args.next().unwrap_or_else(|| usage());
                listen = value
                    .parse()
                    .map_err(|_| format!("invalid --listen address {value:?}"))?;
            }
            "--config" => config_file = Some(args.next().unwrap_or_else(|| usage())),
            "-h" | "--help" => usage(),
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }

    let metrics = mssql_resilience::telemetry::prometheus::install()?;
    let (config, _embedded) = match config_file {
        Some(path) => {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
            (Config::from_toml_with_env(&text, std::env::vars())?, None)
        }
        None if std::env::var_os("MSSQL_RESILIENCE_CONFIG").is_some() => {
            (Config::from_env()?, None)
        }
        None => {
            let (config, embedded) = embedded_regions().await?;
            (config, Some(embedded))
        }
    };
    if _embedded.is_some() {
        create_schema(&config).await?;
    }
    let stack = Stack::builder(config).build()?;
    stack.wait_for_probes(Duration::from_secs(5)).await;

    let app = App {
        stack: stack.clone(),
        metrics,
    };
    let router = Router::new()
        .route("/orders/{id}", get(get_order))
        .route("/orders", axum::routing::post(create_order))
        .route("/orders/by-sku/{sku}", get(find_orders))
        .route("/metrics", get(render_metrics))
        // The health document as one customer-facing status line (ops/README.md).
        .route(
            "/status",
            get(|State(app): State<App>| async move {
                let (_, doc) = health::document("api_service", &app.stack.health());
                Json(status_line::CustomerStatus::from_health(&doc).to_json())
            }),
        )
        .layer(axum::middleware::from_fn(request_budget))
        .with_state(app)
        .merge(health::router(stack, "/health", "api_service"));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Two testkit regions behind chaos proxies (westeurope primary, northeurope secondary).
async fn embedded_regions() -> Result<(Config, Embedded), Box<dyn std::error::Error>> {
    let mut toml = String::new();
    let mut regions = Vec::new();
    for name in ["westeurope", "northeurope"] {
        let server =
            TdsServer::start(TdsServerConfig::new("app", "example-only").database("app")).await?;
        let proxy = ChaosProxy::start("127.0.0.1:0".parse()?, server.addr()).await?;
        toml.push_str(&format!(
            "[[regions]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {}\ndatabase = \"app\"\n\
             user = \"app\"\npassword = \"example-only\"\nencryption = \"not_supported\"\n",
            proxy.addr().port()
        ));
        regions.push((server, proxy));
    }
    Ok((
        Config::from_toml_str(&toml)?,
        Embedded { _regions: regions },
    ))
}

/// The schema, in every region directly (geo-replication would do this in Azure).
async fn create_schema(config: &Config) -> Result<(), Box<dyn std::error::Error>> {
    for region in &config.regions {
        let mut single = config.clone();
        single.regions = vec![region.clone()];
        let stack = Stack::builder(single)
            .probes(false)
            .metrics(false)
            .build()?;
        for ddl in [SCHEMA.to_owned(), create_table_sql(DEFAULT_TABLE)] {
            stack
                .call(SqlRequest::execute(
                    RequestContext::write("create_schema"),
                    ddl,
                    [],
                ))
                .await?;
        }
    }
    Ok(())
}

/// The HTTP request's own budget becomes the ambient deadline of its database calls.
async fn request_budget(request: Request, next: Next) -> Response {
    let budget = request
        .headers()
        .get("x-request-timeout-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(Duration::from_secs(2), Duration::from_millis);
    ambient::with_budget(budget, next.run(request)).await
}

async fn get_order(State(app): State<App>, Path(id): Path<i32>) -> Response {
    let orders = app
        .stack
        .query_as::<Order>(
            RequestContext::read("get_order"),
            format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = @P1"),
            [Param::from(id)],
        )
        .await;
    match orders {
        Ok(orders) => match orders.first() {
            Some(order) => Json(order.to_json()).into_response(),
            None => (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "no such order"})),
            )
                .into_response(),
        },
        Err(e) => error_response(&e),
    }
}

/// Orders by SKU: the parameter is sent as `VARCHAR`, like the column, so the server does
/// not convert the column (which would scan instead of seek).
async fn find_orders(State(app): State<App>, Path(sku): Path<String>) -> Response {
    let orders = app
        .stack
        .query_as::<Order>(
            RequestContext::read("find_orders_by_sku"),
            format!("SELECT TOP 100 {ORDER_COLUMNS} FROM orders WHERE sku = @P1 ORDER BY id"),
            [Param::varchar(sku)],
        )
        .await;
    match orders {
        Ok(orders) => Json(json!({
            "orders": orders.iter().map(Order::to_json).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(e) => error_response(&e),
    }
}

#[derive(serde::Deserialize)]
struct NewOrder {
    id: i32,
    /// The anonymous customer (the nil UUID) when absent.
    customer_id: Option<String>,
    /// A decimal string (exact); `"0.00"` when absent.
    amount: Option<String>,
    note: Option<String>,
    sku: Option<String>,
}

/// The creation time of an order: wall-clock time by nature (the crate's own code never
/// reads the wall clock; timeouts use the tokio clock).
#[allow(clippy::disallowed_methods)]
fn now_utc() -> NaiveDateTime {
    DateTime::<Utc>::from(std::time::SystemTime::now()).naive_utc()
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": message}))).into_response()
}

async fn create_order(
    State(app): State<App>,
    headers: HeaderMap,
    Json(order): Json<NewOrder>,
) -> Response {
    let customer_id = match order.customer_id.as_deref().map(Uuid::parse_str) {
        None => Uuid::nil(),
        Some(Ok(id)) => id,
        Some(Err(_)) => return bad_request("customer_id must be a UUID".into()),
    };
    let amount = match order.amount.as_deref().map(str::parse::<Decimal>) {
        None => Decimal::ZERO,
        Some(Ok(amount)) if amount.scale() <= 2 => amount,
        Some(_) => return bad_request("amount must be a decimal with at most 2 places".into()),
    };
    if order
        .sku
        .as_ref()
        .is_some_and(|s| s.len() > 20 || !s.is_ascii())
    {
        return bad_request("sku must be at most 20 ASCII characters".into());
    }
    let sql = "INSERT INTO orders (id, customer_id, amount, created_at, note, sku) \
               VALUES (@P1, @P2, @P3, @P4, @P5, @P6)";
    // `sku` goes in as NVARCHAR: an INSERT converts the value, not the column, so the
    // VARCHAR parameter (needed for seeks, see `find_orders`) buys nothing here.
    let params = mssql_resilience::params![
        order.id,
        customer_id,
        amount,
        now_utc(),
        order.note,
        order.sku,
    ];
    let context = RequestContext::write("create_order");
    let request = match headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
        Some(key) => match idempotent_execute(context, DEFAULT_TABLE, key, sql, params) {
            Ok(request) => request,
            Err(e) => return bad_request(e.to_string()),
        },
        None => SqlRequest::execute(context, sql, params),
    };
    match app.stack.call(request).await {
        Ok(response) => (
            StatusCode::CREATED,
            Json(json!({"id": order.id, "replayed": response.replayed})),
        )
            .into_response(),
        Err(e) => error_response(&e),
    }
}

async fn render_metrics(State(app): State<App>) -> impl IntoResponse {
    record_gauges(&app.stack);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        app.metrics.render(),
    )
}

/// Maps the middleware's errors to HTTP: what the client can do about each.
fn error_response(error: &Error) -> Response {
    let (status, hint) = if error.is_outcome_unknown() {
        (StatusCode::BAD_GATEWAY, "the write may or may not have been applied; read it back or retry with an Idempotency-Key")
    } else {
        match error.kind() {
            ErrorKind::NoRegionAvailable { .. } | ErrorKind::CircuitOpen { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable; retry later",
            ),
            ErrorKind::DeadlineExceeded | ErrorKind::Timeout { .. } => (
                StatusCode::GATEWAY_TIMEOUT,
                "the database did not answer in time",
            ),
            ErrorKind::Server {
                number: 2627 | 2601,
                ..
            } => (StatusCode::CONFLICT, "already exists"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "database error"),
        }
    };
    let mut response = (
        status,
        Json(json!({"error": hint, "detail": error.to_string()})),
    )
        .into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
    }
    response
}
