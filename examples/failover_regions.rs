//! Regional failover, end to end.
//!
//! With no arguments, starts two embedded testkit regions (westeurope = primary,
//! northeurope = secondary), each behind a chaos proxy, and scripts an outage: the primary
//! is black-holed, reads move to the secondary; the primary heals, and traffic fails back
//! once it has stayed healthy for the hysteresis period.
//!
//! ```text
//! cargo run --example failover_regions
//! cargo run --example failover_regions -- --config examples/regions.toml   # your regions
//! ```
//!
//! With `--config`, it reads the regions from the TOML file (and `MSSQL_RESILIENCE__…`
//! environment overrides), runs `SELECT 1` every 500 ms and prints each region's health.

use std::time::Duration;

use mssql_resilience::config::Config;
use mssql_resilience::failover::RegionSnapshot;
use mssql_resilience::sql::SqlRequest;
use mssql_resilience::{RequestContext, Stack};
use mssql_testkit::chaos::{ChaosProxy, Toxics};
use mssql_testkit::tds::{TdsServer, TdsServerConfig};
use tokio::time::Instant;

fn summary(health: &[RegionSnapshot]) -> String {
    health
        .iter()
        .map(|r| {
            format!(
                "{}[{}{}{} breaker={}]",
                r.name,
                if r.healthy { "healthy" } else { "UNHEALTHY" },
                if r.writable { ",rw" } else { ",ro" },
                if r.serving_reads {
                    ",serving-reads"
                } else {
                    ""
                },
                r.breaker.as_str()
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn probe_loop(stack: &Stack, for_how_long: Duration) {
    let start = Instant::now();
    while start.elapsed() < for_how_long {
        let t = Instant::now();
        let result = stack
            .call(SqlRequest::query(
                RequestContext::read("ping"),
                "SELECT DB_NAME()",
                [],
            ))
            .await;
        let outcome = match result {
            Ok(_) => "ok".to_owned(),
            Err(e) => format!("error: {e}"),
        };
        println!(
            "{:>6.1}s  SELECT -> {outcome} in {:>5} ms   {}",
            start.elapsed().as_secs_f64(),
            t.elapsed().as_millis(),
            summary(&stack.health())
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, path] if flag == "--config" => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            let vars = std::env::vars();
            let config = Config::from_toml_with_env(&text, vars)?;
            let stack = Stack::builder(config).build()?;
            probe_loop(&stack, Duration::from_secs(3600)).await;
            Ok(())
        }
        [] => embedded().await,
        _ => Err("usage: failover_regions [--config FILE]".into()),
    }
}

async fn embedded() -> Result<(), Box<dyn std::error::Error>> {
    let mut regions = Vec::new();
    for name in ["westeurope", "northeurope"] {
        let server =
            TdsServer::start(TdsServerConfig::new("app", "example-only").database("app")).await?;
        let proxy = ChaosProxy::start("127.0.0.1:0".parse()?, server.addr()).await?;
        regions.push((name, server, proxy));
    }
    let mut toml = String::from(
        "[failover]\nprobe_interval = \"500ms\"\nprobe_timeout = \"300ms\"\nfailback_hysteresis = \"5s\"\n",
    );
    for (name, _, proxy) in &regions {
        toml.push_str(&format!(
            "[[regions]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {}\ndatabase = \"app\"\n\
             user = \"app\"\npassword = \"example-only\"\nencryption = \"not_supported\"\n",
            proxy.addr().port()
        ));
    }
    let stack = Stack::builder(Config::from_toml_str(&toml)?).build()?;
    stack.wait_for_probes(Duration::from_secs(5)).await;
    println!("== both regions up");
    probe_loop(&stack, Duration::from_secs(2)).await;
    println!("== westeurope black-holed (accepts, never answers)");
    regions[0].2.handle().set(Toxics::blackhole());
    probe_loop(&stack, Duration::from_secs(4)).await;
    println!("== westeurope healed; fail-back waits for 5 s of good health");
    regions[0].2.handle().set(Toxics::ok());
    probe_loop(&stack, Duration::from_secs(9)).await;
    Ok(())
}
