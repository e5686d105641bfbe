//! Assembles the standard stack from one [`Config`]:
//!
//! ```text
//! deadline (total budget, ambient deadline) → retry (classifier, backoff, retry budget)
//!   → failover router (priority, health, read/write intent)
//!     └ per region: circuit breaker → attempt timeout → pool checkout → tiberius
//! ```
//!
//! ```no_run
//! use mssql_resilience::{config::Config, Stack, sql::SqlRequest, RequestContext};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_file("regions.toml")?;
//! let stack = Stack::builder(config).build()?;
//! let response = stack
//!     .call(SqlRequest::query(RequestContext::read("health_check"), "SELECT 1", []))
//!     .await?;
//! assert_eq!(response.scalar().and_then(|v| v.as_i64()), Some(1));
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

use crate::auth::AccessTokenProvider;
use crate::circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer};
use crate::classify::{SharedClassifier, SqlServerClassifier};
use crate::config::{Authentication, Config};
use crate::deadline::Deadline;
use crate::error::{ConfigError, Error};
use crate::failover::probe::SqlProber;
use crate::failover::{
    FailoverSettings, HealthPolicy, LatencyEstimator, RegionSnapshot, RegionSpec, Router,
};
use crate::observe::{Fanout, SharedObserver};
use crate::pool::{
    Connector, Pool, PoolSettings, SharedConnector, SqlService, TcpConnector, TiberiusManager,
};
use crate::retry::budget::RetryBudget;
use crate::retry::Retry;
use crate::retry::RetryLayer;
use crate::sql::{SqlRequest, SqlResponse};
use crate::telemetry::{MetricsObserver, Telemetry, TelemetryLayer};

/// The longest a connect may take on a region whose answers show it is slow.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The assembled service type, type-erased (what [`Stack::service`] returns).
pub type StackService = BoxCloneSyncService<SqlRequest, SqlResponse, Error>;

/// The assembled service, as built: no boxing on [`Stack::call`]'s path.
type Assembled = Telemetry<Deadline<Retry<Router>>>;

/// Builds a [`Stack`]. Every setter says its default.
pub struct StackBuilder {
    config: Config,
    connectors: HashMap<String, SharedConnector>,
    observers: Vec<SharedObserver>,
    metrics: bool,
    telemetry: TelemetryLayer,
    classifier: SharedClassifier,
    probes: bool,
    access_tokens: Option<Arc<dyn AccessTokenProvider>>,
}

impl fmt::Debug for StackBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StackBuilder")
            .field("config", &self.config)
            .field(
                "custom_connectors",
                &self.connectors.keys().collect::<Vec<_>>(),
            )
            .field("probes", &self.probes)
            .field("access_tokens", &self.access_tokens.is_some())
            .finish_non_exhaustive()
    }
}

impl StackBuilder {
    /// Dials region `name` with `connector` (e.g. through a proxy). Defaults to
    /// [`TcpConnector`].
    pub fn connector(mut self, region: impl Into<String>, connector: impl Connector) -> Self {
        self.connectors.insert(region.into(), Arc::new(connector));
        self
    }

    /// Also reports every layer's events to `observer`. Events always become `tracing`
    /// events, and metrics unless [`metrics`](Self::metrics) is off.
    pub fn observer(mut self, observer: SharedObserver) -> Self {
        self.observers.push(observer);
        self
    }

    /// Records metrics through the `metrics` facade ([`MetricsObserver`] and the
    /// [`TelemetryLayer`]'s call histogram). Defaults to `true`; without an installed
    /// recorder the calls are no-ops.
    pub fn metrics(mut self, enabled: bool) -> Self {
        self.metrics = enabled;
        self
    }

    /// Puts each statement's text on its span as `db.query.text`. Defaults to `false`
    /// (SQL text may carry personal data); it never goes into metrics.
    pub fn record_query_text(mut self, enabled: bool) -> Self {
        self.telemetry = self.telemetry.record_query_text(enabled);
        self
    }

    /// Classifies errors with `classifier`. Defaults to [`SqlServerClassifier`].
    pub fn classifier(mut self, classifier: SharedClassifier) -> Self {
        self.classifier = classifier;
        self
    }

    /// Runs background health probes. Defaults to `true`; turning them off leaves health
    /// to the breakers alone (for tests of the breaker path).
    pub fn probes(mut self, enabled: bool) -> Self {
        self.probes = enabled;
        self
    }

    /// Supplies the access tokens of the regions with `authentication = "entra"`: the
    /// provider is asked for a fresh token for every new connection to them (see
    /// [`auth`](crate::auth)). Required when such a region exists; regions with SQL Server
    /// authentication ignore it. Defaults to none.
    pub fn access_tokens(mut self, provider: Arc<dyn AccessTokenProvider>) -> Self {
        self.access_tokens = Some(provider);
        self
    }

    /// Validates the configuration and assembles the stack. Starts the probes, so it must
    /// run inside a tokio runtime. Opens no connection itself.
    pub fn build(mut self) -> Result<Stack, ConfigError> {
        let config = self.config;
        config.validate()?;
        if self.metrics {
            self.observers.insert(0, Arc::new(MetricsObserver));
        }
        let metrics = self.metrics;
        let observer: Option<SharedObserver> = match self.observers.len() {
            0 => None,
            1 => self.observers.pop(),
            _ => Some(Arc::new(Fanout(self.observers))),
        };
        let observer = &observer;
        let budget = config.timeouts.budget()?;
        let policy = config.retry.policy()?;
        let retry_budget = config.retry_budget.budget()?;
        let mut specs = Vec::with_capacity(config.regions.len());
        let mut pools = Vec::with_capacity(config.regions.len());
        for (i, region) in config.regions.iter().enumerate() {
            let section = format!("regions[{i}]");
            let tiberius = region.tiberius_config().map_err(|e| e.within(&section))?;
            let connector = self
                .connectors
                .get(&region.name)
                .cloned()
                .unwrap_or_else(|| Arc::new(TcpConnector::default()));
            let latency = Arc::new(LatencyEstimator::new());
            let mut manager = TiberiusManager::new(
                tiberius,
                connector,
                config.timeouts.connect,
                config.pool.validation_timeout,
                config.failover.max_redirects,
            )
            // A connect serves later requests too: on a region that answers slowly it may
            // take longer than one call's budget (growth past the configured connect
            // timeout needs slow answers as evidence).
            .with_latency(
                latency.clone(),
                MAX_CONNECT_TIMEOUT.max(config.timeouts.total),
            );
            if let Some(observer) = observer {
                manager = manager.with_observer(region.name.clone(), observer.clone());
            }
            if region.authentication == Authentication::Entra {
                let Some(provider) = &self.access_tokens else {
                    return Err(ConfigError::new(
                        "authentication",
                        "entra",
                        "needs an access-token provider: call `StackBuilder::access_tokens`",
                    )
                    .within(&section));
                };
                manager = manager.with_access_tokens(provider.clone());
            }
            let pool = Pool::new(
                manager.clone(),
                PoolSettings {
                    max_size: config.pool.max_size,
                    min_idle: config.pool.min_idle,
                    idle_timeout: config.pool.idle_timeout,
                    max_lifetime: config.pool.max_lifetime,
                    // Each attempt's own (latency-aware) bound cuts a checkout short; the
                    // pool itself never waits past the longest budget a request may get.
                    checkout_timeout: budget.max_total(),
                },
            );
            let breaker = CircuitBreakerHandle::with_parts(
                config.breaker.breaker_config(region.name.clone())?,
                self.classifier.clone(),
                observer.clone(),
            );
            let mut attempt = budget.attempt_layer();
            if let Some(observer) = observer {
                attempt = attempt.with_observer(observer.clone());
            }
            let service = ServiceBuilder::new()
                .layer(CircuitBreakerLayer::new(breaker.clone()))
                .layer(attempt)
                .service(
                    SqlService::new(pool.clone(), region.name.as_str())
                        .with_latency(latency.clone()),
                );
            specs.push(RegionSpec {
                name: region.name.clone().into(),
                role: region.role,
                service: BoxCloneSyncService::new(service),
                breaker,
                prober: self.probes.then(|| {
                    Arc::new(SqlProber::new(manager)) as Arc<dyn crate::failover::probe::Prober>
                }),
                pool: Some(pool.clone()),
                address: region.address().ok(),
                latency,
            });
            pools.push((region.name.clone(), pool));
        }
        let router = Router::start(
            specs,
            FailoverSettings {
                probe_interval: config.failover.probe_interval,
                probe_timeout: config.failover.probe_timeout,
                probe_jitter: config.failover.probe_jitter,
                hedge_delay: config.failover.hedge_delay,
                health: HealthPolicy {
                    unhealthy_after: config.failover.unhealthy_after,
                    healthy_after: config.failover.healthy_after,
                    failback_hysteresis: config.failover.failback_hysteresis,
                    degraded_latency: config.failover.degraded_latency,
                },
                attempt_timeout: Some(config.timeouts.attempt),
                max_probe_timeout: config
                    .failover
                    .probe_interval
                    .saturating_mul(4)
                    .max(config.failover.probe_timeout),
            },
            Some(retry_budget.clone()),
            self.classifier.clone(),
            observer.clone(),
        );
        // Every attempt runs under the attempt timeout (cut to the remaining budget), the
        // retry layer never sleeps past the deadline and the router checks it before each
        // hop: the deadline needs no timer of its own here.
        let mut deadline = budget.deadline_layer().stamp_only();
        let mut retry = RetryLayer::new(policy)
            .with_budget(retry_budget.clone())
            .with_classifier(self.classifier.clone());
        if let Some(observer) = observer {
            deadline = deadline.with_observer(observer.clone());
            retry = retry.with_observer(observer.clone());
        }
        let mut telemetry = self.telemetry.metrics(metrics);
        if let Some(database) = config.regions.first().and_then(|r| r.database.clone()) {
            telemetry = telemetry.namespace(database);
        }
        let service = ServiceBuilder::new()
            .layer(telemetry)
            .layer(deadline)
            .layer(retry)
            .service(router.clone());
        Ok(Stack {
            service,
            router,
            retry_budget,
            pools,
        })
    }
}

/// The assembled middleware: call it, clone its service into handlers, read its health.
#[derive(Clone)]
pub struct Stack {
    service: Assembled,
    router: Router,
    retry_budget: RetryBudget,
    pools: Vec<(String, Pool)>,
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack")
            .field("router", &self.router)
            .field("retry_budget", &self.retry_budget)
            .finish_non_exhaustive()
    }
}

impl Stack {
    /// A builder from `config`.
    pub fn builder(config: Config) -> StackBuilder {
        StackBuilder {
            config,
            connectors: HashMap::new(),
            observers: Vec::new(),
            metrics: true,
            telemetry: TelemetryLayer::new(),
            classifier: Arc::new(SqlServerClassifier::new()),
            probes: true,
            access_tokens: None,
        }
    }

    /// Runs one request through the whole stack.
    pub async fn call(&self, request: SqlRequest) -> Result<SqlResponse, Error> {
        self.service.clone().oneshot(request).await
    }

    /// The stack as a cloneable tower service (e.g. for an axum handler's state).
    pub fn service(&self) -> StackService {
        BoxCloneSyncService::new(self.service.clone())
    }

    /// The failover router (health snapshots, subscriptions, breakers).
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Each region's health now.
    pub fn health(&self) -> Vec<RegionSnapshot> {
        self.router.snapshot()
    }

    /// The shared retry budget.
    pub fn retry_budget(&self) -> &RetryBudget {
        &self.retry_budget
    }

    /// Each region's pool, by name.
    pub fn pools(&self) -> &[(String, Pool)] {
        &self.pools
    }

    /// Waits until every region has been probed once, or `within` passes.
    pub async fn wait_for_probes(&self, within: Duration) -> bool {
        let mut updates = self.router.subscribe();
        let all_probed = |s: &[RegionSnapshot]| s.iter().all(|r| r.last_probe.is_some());
        tokio::time::timeout(within, async {
            loop {
                if all_probed(&updates.borrow_and_update()) {
                    return;
                }
                if updates.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
        .is_ok()
    }
}
