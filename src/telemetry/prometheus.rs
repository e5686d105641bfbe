//! Installs `metrics-exporter-prometheus` as the global recorder (feature `prometheus`),
//! with histogram buckets suited to database latencies (not summaries).

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use super::names::{CONNECTION_CREATE_TIME, CONNECTION_WAIT_TIME, OPERATION_DURATION};

/// Buckets for database call latency, in seconds: 1 ms to 30 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs the recorder, describes the metrics, and returns the handle whose
/// [`render`](PrometheusHandle::render) gives the Prometheus text for a `/metrics` route.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let mut builder = PrometheusBuilder::new();
    for name in [
        OPERATION_DURATION,
        CONNECTION_CREATE_TIME,
        CONNECTION_WAIT_TIME,
    ] {
        builder =
            builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), LATENCY_BUCKETS)?;
    }
    let handle = builder.install_recorder()?;
    super::describe_metrics();
    Ok(handle)
}
