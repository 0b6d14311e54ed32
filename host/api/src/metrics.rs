//! Prometheus metrics: API latency by route, tasks by state and queue depth, and the
//! calls of every plugin binding (calls, errors by kind, latency quantiles).

use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, HistogramVec, IntGauge, IntGaugeVec, TextEncoder, register_histogram_vec,
    register_int_gauge, register_int_gauge_vec,
};
use std::sync::LazyLock;
use std::time::Instant;

static API_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "tessera_api_request_seconds",
        "API request latency by route, method and status",
        &["route", "method", "status"],
        vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5
        ]
    )
    .unwrap_or_else(|e| panic!("registering a metric at start-up: {e}"))
});

static TASKS_BY_STATE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "tessera_tasks",
        "Unfinished tasks by state (finished ones: tessera_tasks_finished_total)",
        &["state"]
    )
    .unwrap_or_else(|e| panic!("registering a metric at start-up: {e}"))
});

static QUEUE_DEPTH: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("tessera_queue_depth", "Tasks waiting in QUEUED")
        .unwrap_or_else(|e| panic!("registering a metric at start-up: {e}"))
});

static RUNNING: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "tessera_tasks_being_driven",
        "Tasks this server is driving now"
    )
    .unwrap_or_else(|e| panic!("registering a metric at start-up: {e}"))
});

pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    // Only known methods become label values: anyone can send any method.
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m.to_string(),
        _ => "other".to_string(),
    };
    let start = Instant::now();
    let resp = next.run(req).await;
    API_LATENCY
        .with_label_values(&[&route, &method, resp.status().as_str()])
        .observe(start.elapsed().as_secs_f64());
    resp
}

/// How often a scrape may count the unfinished tasks in the store; scrapes in between
/// show the last count.
const COUNT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

static LAST_COUNT: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);

/// Whether this scrape counts (at most once per [`COUNT_EVERY`]).
fn count_now() -> bool {
    let mut last = LAST_COUNT.lock().unwrap_or_else(|e| e.into_inner());
    if last.is_some_and(|t| t.elapsed() < COUNT_EVERY) {
        return false;
    }
    *last = Some(Instant::now());
    true
}

pub async fn render(State(state): State<AppState>) -> Response {
    let counted = if count_now() {
        Some(state.runner().store().count_unfinished_by_state().await)
    } else {
        None
    };
    match counted {
        None => {}
        Some(Ok(counts)) => {
            for s in tessera_core::State::ALL
                .into_iter()
                .filter(|s| !s.is_terminal())
            {
                let n = counts
                    .iter()
                    .find(|(st, _)| *st == s)
                    .map(|(_, n)| *n)
                    .unwrap_or(0);
                TASKS_BY_STATE.with_label_values(&[s.as_str()]).set(n);
                if s == tessera_core::State::Queued {
                    QUEUE_DEPTH.set(n);
                }
            }
        }
        Some(Err(e)) => tracing::warn!(error = %e, "counting tasks for metrics failed"),
    }
    RUNNING.set(state.runner().running_count() as i64);
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&prometheus::gather(), &mut buf) {
        return crate::Error::internal("encoding metrics failed", e).into_response();
    }
    buf.extend_from_slice(plugin_metrics(&state.registry().binding_metrics()).as_bytes());
    let mut resp = buf.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}

/// The plugin bindings' calls in the text format. Written out here rather than kept in
/// registered vectors: the counters live with each loaded version (a reactivation starts
/// them from zero, which Prometheus reads as a counter reset), and a binding that is gone
/// should leave no series behind.
fn plugin_metrics(bindings: &[tessera_registry::BindingMetrics]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if bindings.is_empty() {
        return out;
    }
    let labels = |b: &tessera_registry::BindingMetrics| {
        format!(
            "world=\"{}\",scope=\"{}\",plugin=\"{}\",version=\"{}\"",
            b.world,
            escape(&scope_label(b)),
            escape(&b.plugin),
            escape(&b.version)
        )
    };
    let _ = writeln!(
        out,
        "# HELP tessera_plugin_calls_total Plugin calls by binding\n\
         # TYPE tessera_plugin_calls_total counter"
    );
    for b in bindings {
        let _ = writeln!(
            out,
            "tessera_plugin_calls_total{{{}}} {}",
            labels(b),
            b.metrics.calls
        );
    }
    let _ = writeln!(
        out,
        "# HELP tessera_plugin_errors_total Failed plugin calls by binding and kind \
         (trap, timeout, out-of-memory, plugin, invalid-result, instantiate)\n\
         # TYPE tessera_plugin_errors_total counter"
    );
    for b in bindings {
        for kind in tessera_plugin_runtime::ErrorKind::ALL {
            let _ = writeln!(
                out,
                "tessera_plugin_errors_total{{{},kind=\"{}\"}} {}",
                labels(b),
                kind.name(),
                b.metrics.errors_of(kind)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP tessera_plugin_call_seconds Plugin call latency by binding\n\
         # TYPE tessera_plugin_call_seconds summary"
    );
    for b in bindings {
        let l = labels(b);
        for (q, v) in [("0.5", b.metrics.p50), ("0.99", b.metrics.p99)] {
            if let Some(v) = v {
                let _ = writeln!(
                    out,
                    "tessera_plugin_call_seconds{{{l},quantile=\"{q}\"}} {}",
                    v.as_secs_f64()
                );
            }
        }
        let sum = b.metrics.mean.map_or(0.0, |m| m.as_secs_f64()) * b.metrics.calls as f64;
        let _ = writeln!(out, "tessera_plugin_call_seconds_sum{{{l}}} {sum}");
        let _ = writeln!(
            out,
            "tessera_plugin_call_seconds_count{{{l}}} {}",
            b.metrics.calls
        );
    }
    out
}

/// The scope as a label: `/metrics` is open, so a binding that belongs to a group shows
/// a digest of the group's name, not the name (the plugin API, which checks who asks,
/// shows the name).
fn scope_label(b: &tessera_registry::BindingMetrics) -> String {
    use sha2::{Digest, Sha256};
    let world = tessera_core::plugin::World::from_name(b.world);
    match world.and_then(|w| w.binding_group(&b.scope)) {
        Some(group) => {
            let d = Sha256::digest(group.as_bytes());
            format!("group-{:02x}{:02x}{:02x}{:02x}", d[0], d[1], d[2], d[3])
        }
        None => b.scope.clone(),
    }
}

/// A label value in the text format: backslash, double quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tessera_plugin_runtime::{ErrorKind, MetricsSnapshot};
    use tessera_registry::BindingMetrics;

    #[test]
    fn plugin_bindings_become_series() {
        let text = plugin_metrics(&[BindingMetrics {
            world: "router",
            scope: "a\"b".into(),
            plugin: "router-default".into(),
            version: "0.1.0".into(),
            metrics: MetricsSnapshot {
                calls: 10,
                errors: 2,
                errors_by_kind: vec![(ErrorKind::Trap, 2)],
                instantiations: 1,
                p50: Some(Duration::from_micros(2)),
                p99: Some(Duration::from_micros(9)),
                mean: Some(Duration::from_micros(3)),
            },
        }]);
        // The group's name is not shown; a digest of it is.
        assert!(!text.contains("a\\\"b"), "{text}");
        let l = r#"world="router",scope="group-39a01277",plugin="router-default",version="0.1.0""#;
        assert!(
            text.contains(&format!("tessera_plugin_calls_total{{{l}}} 10\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "tessera_plugin_errors_total{{{l},kind=\"trap\"}} 2\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "tessera_plugin_errors_total{{{l},kind=\"timeout\"}} 0\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "tessera_plugin_call_seconds{{{l},quantile=\"0.99\"}} 0.000009\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("tessera_plugin_call_seconds_count{{{l}}} 10\n")),
            "{text}"
        );
        assert!(plugin_metrics(&[]).is_empty());
    }
}
