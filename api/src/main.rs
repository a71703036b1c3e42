//! `order-api [serve | migrate | healthcheck | token --sub NAME [--admin] [--ttl SECS] | asyncapi]`

use anyhow::{Context, bail};
use order_api::{ApiSettings, Application};
use order_shared::config::ProcessEnv;
use std::process::ExitCode;

/// mimalloc: the allocator was the largest single cost in the profile
/// (about 15 % of the API's CPU per create with glibc malloc;
/// docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: order-api [serve | migrate | healthcheck | token --sub NAME [--admin] [--ttl SECS] | asyncapi]";

#[tokio::main]
async fn main() -> ExitCode {
    let result = run(std::env::args().skip(1).collect()).await;
    // The log lines still held go out before the error and the exit.
    order_shared::telemetry::flush_logs();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("order-api: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Vec<String>) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        None | Some("serve") => serve().await,
        Some("migrate") => order_shared::db::migrate::command()
            .await
            .context("migration failed"),
        Some("healthcheck") => healthcheck().await,
        Some("token") => token(&args[1..]),
        Some("asyncapi") => {
            // The document `docs/asyncapi.json` keeps and `/api/asyncapi.json` serves.
            println!("{}", order_api::startup::asyncapi_text());
            Ok(())
        }
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command {other:?}\n{USAGE}"),
    }
}

async fn serve() -> anyhow::Result<()> {
    let settings = ApiSettings::from_env(&ProcessEnv)?;
    order_shared::telemetry::init_tracing(settings.common.log_format);
    order_shared::telemetry::prometheus()?;
    let shutdown = order_shared::shutdown::on_signal();
    let app = Application::build(settings, shutdown).await?;
    app.run().await.context("server failed")
}

/// Exit 0 when the local API is ready (container health checks).
async fn healthcheck() -> anyhow::Result<()> {
    let port = order_shared::config::parse_or(&ProcessEnv, "API_PORT", 3003_u16)?;
    let ready =
        order_shared::probe::http_ok(port, "/health/ready", std::time::Duration::from_secs(3));
    if ready.await {
        Ok(())
    } else {
        bail!("http://127.0.0.1:{port}/health/ready is not ready")
    }
}

fn token(args: &[String]) -> anyhow::Result<()> {
    let mut sub = None;
    let mut admin = false;
    let mut ttl = 86_400_u64;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--sub" => sub = it.next().cloned(),
            "--admin" => admin = true,
            "--ttl" => {
                ttl = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .context("--ttl takes a number of seconds")?
            }
            other => bail!("unknown option {other:?}\n{USAGE}"),
        }
    }
    let sub = sub
        .filter(|s| !s.is_empty())
        .context("--sub NAME is required")?;
    if order_api::config::app_env(&ProcessEnv)? != order_api::config::AppEnv::Development {
        bail!(
            "order-api token mints tokens for local development only; \
             set APP_ENV=development (./scripts/run.sh does) or use your identity provider"
        );
    }
    let auth = order_api::config::auth_from_env(&ProcessEnv)?;
    let order_api::auth::JwtKey::Hs256(secret) = &auth.key else {
        bail!("JWT_SECRET must be set: tokens can be minted only with the HS256 secret");
    };
    let token = order_api::auth::mint_hs256(
        secret.expose(),
        &sub,
        admin,
        ttl,
        auth.issuer.as_deref(),
        auth.audience.as_deref(),
    )?;
    println!("{token}");
    Ok(())
}
