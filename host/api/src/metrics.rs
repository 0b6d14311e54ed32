//! Prometheus metrics: API latency by route, tasks by state and queue depth.

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
    register_int_gauge_vec!("tessera_tasks", "Stored tasks by state", &["state"])
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

pub async fn render(State(state): State<AppState>) -> Response {
    match state.runner().store().count_by_state().await {
        Ok(counts) => {
            for s in tessera_core::State::ALL {
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
        Err(e) => tracing::warn!(error = %e, "counting tasks for metrics failed"),
    }
    RUNNING.set(state.runner().running_count() as i64);
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&prometheus::gather(), &mut buf) {
        return crate::Error::internal("encoding metrics failed", e).into_response();
    }
    let mut resp = buf.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}
