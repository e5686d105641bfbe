//! Regions for the SQL integration tests: two testkit TDS servers, each behind a chaos
//! proxy, over real TCP on loopback, with the real tiberius client. Tests that need no
//! server-side fault also run against real servers when `MSSQL_TEST_URL` (and, for two
//! regions, `MSSQL_TEST_URL_SECONDARY`) hold ADO.NET connection strings.
#![allow(dead_code)]

use std::time::Duration;

use mssql_resilience::config::Config;
use mssql_resilience::idempotency::{ensure_table, DEFAULT_TABLE};
use mssql_resilience::sql::{Param, SqlRequest, SqlResponse};
use mssql_resilience::{RequestContext, Stack};
use mssql_testkit::chaos::{ChaosHandle, ChaosProxy};
use mssql_testkit::tds::{Faults, TdsServer, TdsServerConfig};

pub const USER: &str = "app";
pub const PASSWORD: &str = "S3cret-Test!";
pub const DATABASE: &str = "app";

/// One testkit region: a TDS server and the chaos proxy clients dial.
pub struct Region {
    pub name: &'static str,
    pub server: TdsServer,
    pub proxy: ChaosProxy,
}

impl Region {
    pub async fn start(name: &'static str) -> Region {
        let server = TdsServer::start(TdsServerConfig::new(USER, PASSWORD).database(DATABASE))
            .await
            .expect("tds server starts");
        let proxy = ChaosProxy::start("127.0.0.1:0".parse().unwrap(), server.addr())
            .await
            .expect("chaos proxy starts");
        Region {
            name,
            server,
            proxy,
        }
    }

    pub fn faults(&self) -> Faults {
        self.server.faults()
    }

    pub fn chaos(&self) -> ChaosHandle {
        self.proxy.handle()
    }

    fn toml(&self, role: &str) -> String {
        format!(
            "[[regions]]\nname = \"{}\"\nhost = \"127.0.0.1\"\nport = {}\ndatabase = \"{DATABASE}\"\n\
             user = \"{USER}\"\npassword = \"{PASSWORD}\"\nencryption = \"not_supported\"\nrole = \"{role}\"\n",
            self.name,
            self.proxy.addr().port()
        )
    }
}

/// Where the regions live.
pub enum Backend {
    /// Two testkit regions (westeurope primary, northeurope secondary).
    Testkit {
        primary: Box<Region>,
        secondary: Box<Region>,
    },
    /// Real servers from the environment.
    Real {
        primary: String,
        secondary: Option<String>,
    },
}

/// Real servers if `MSSQL_TEST_URL` is set, else the testkit.
pub async fn backend() -> Backend {
    match std::env::var("MSSQL_TEST_URL") {
        Ok(primary) if !primary.is_empty() => Backend::Real {
            primary,
            secondary: std::env::var("MSSQL_TEST_URL_SECONDARY").ok(),
        },
        _ => testkit().await,
    }
}

/// Always the testkit (for tests that inject faults).
pub async fn testkit() -> Backend {
    Backend::Testkit {
        primary: Box::new(Region::start("westeurope").await),
        secondary: Box::new(Region::start("northeurope").await),
    }
}

/// Fast settings so failures show quickly; tests adjust them further.
pub const BASE: &str = "[timeouts]\ntotal = \"3s\"\nattempt = \"1s\"\nconnect = \"500ms\"\n\
[retry]\nmax_attempts = 3\nbase = \"20ms\"\ncap = \"200ms\"\nseed = 7\n\
[breaker]\nwindow_calls = 10\nminimum_calls = 4\nopen_duration = \"1s\"\n\
[pool]\nmax_size = 4\n\
[failover]\nprobe_interval = \"200ms\"\nprobe_timeout = \"150ms\"\nfailback_hysteresis = \"2s\"\nhealthy_after = 2\n";

impl Backend {
    pub fn primary(&self) -> &Region {
        match self {
            Backend::Testkit { primary, .. } => primary,
            Backend::Real { .. } => panic!("this test needs the testkit"),
        }
    }

    pub fn secondary(&self) -> &Region {
        match self {
            Backend::Testkit { secondary, .. } => secondary,
            Backend::Real { .. } => panic!("this test needs the testkit"),
        }
    }

    /// `BASE` + `extra` (whole sections) + the regions, parsed and then edited by `edit`.
    pub fn config(&self, extra: &str, regions: usize, edit: impl FnOnce(&mut Config)) -> Config {
        let mut text = format!("{BASE}{extra}");
        match self {
            Backend::Testkit { primary, secondary } => {
                text.push_str(&primary.toml("auto"));
                if regions > 1 {
                    text.push_str(&secondary.toml("auto"));
                }
            }
            Backend::Real { primary, secondary } => {
                let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
                text.push_str(&format!(
                    "[[regions]]\nname = \"westeurope\"\nconnection_string = \"{}\"\n",
                    esc(primary)
                ));
                if regions > 1 {
                    let secondary = secondary
                        .as_deref()
                        .expect("MSSQL_TEST_URL_SECONDARY is needed for two regions");
                    text.push_str(&format!(
                        "[[regions]]\nname = \"northeurope\"\nconnection_string = \"{}\"\n",
                        esc(secondary)
                    ));
                }
            }
        }
        let mut config = Config::from_toml_str(&text).expect("test config is valid");
        edit(&mut config);
        config
    }
}

/// Waits (real time, bounded) until `check` holds, polling every 20 ms.
pub async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let result = tokio::time::timeout(within, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        result.is_ok(),
        "timed out after {within:?} waiting for: {what}"
    );
}

pub fn read(op: &'static str, sql: &str) -> SqlRequest {
    SqlRequest::query(RequestContext::read(op), sql, [])
}

pub fn exec(op: &'static str, sql: &str, params: Vec<Param>) -> SqlRequest {
    SqlRequest::execute(RequestContext::write(op), sql, params)
}

/// The single integer a query returns.
pub async fn scalar(stack: &Stack, sql: &str) -> i64 {
    let response: SqlResponse = stack.call(read("scalar", sql)).await.expect(sql);
    response
        .scalar()
        .and_then(|v| v.as_i64())
        .unwrap_or_else(|| panic!("{sql} returned {response:?}"))
}

/// One region with a `payments` table and the dedupe table.
pub async fn payments_stack(regions: &Backend) -> Stack {
    payments_stack_with(regions, |_| {}).await
}

/// One region, the payments table and the dedupe table; `edit` adjusts the config.
pub async fn payments_stack_with(regions: &Backend, edit: impl FnOnce(&mut Config)) -> Stack {
    let config = regions.config("", 1, |c| {
        c.retry.max_attempts = 4;
        // These tests are about write safety, not the breaker: keep it out of the way.
        c.breaker.minimum_calls = 10;
        edit(c);
    });
    let stack = Stack::builder(config).probes(false).build().unwrap();
    stack
        .call(exec(
            "ddl",
            "CREATE TABLE payments (id INT NOT NULL PRIMARY KEY, amount BIGINT NOT NULL)",
            vec![],
        ))
        .await
        .unwrap();
    ensure_table(&stack, DEFAULT_TABLE).await.unwrap();
    // Idempotent: a second start finds the table and leaves it alone.
    ensure_table(&stack, DEFAULT_TABLE).await.unwrap();
    stack
}
