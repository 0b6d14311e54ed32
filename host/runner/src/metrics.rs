//! The runner's Prometheus metrics, registered in the default registry.

use prometheus::{HistogramVec, IntCounterVec, register_histogram_vec, register_int_counter_vec};
use std::sync::LazyLock;

/// Executor-side failures by kind (image_pull, engine_unreachable, create, start, staging).
pub static EXECUTOR_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "tessera_executor_errors_total",
        "Failures on the executor side, by kind",
        &["kind"]
    )
    .unwrap_or_else(|e| panic!("registering a metric at start-up: {e}"))
});

/// Router calls that failed (the tasks stayed queued).
pub static ROUTING_FAILURES: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "tessera_routing_failures_total",
        "Router calls that failed; their tasks stayed queued"
    )
    .unwrap_or_else(|e| panic!("registering a metric at start-up: {e}"))
});

/// Tasks this server took over from another whose lease ran out.
pub static TASKS_ADOPTED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "tessera_tasks_adopted_total",
        "Tasks taken over from another server whose lease ran out"
    )
    .unwrap_or_else(|e| panic!("registering a metric at start-up: {e}"))
});

/// Tasks that reached a terminal state in this process, by state.
pub static TASKS_FINISHED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "tessera_tasks_finished_total",
        "Tasks that reached a terminal state, by state",
        &["state"]
    )
    .unwrap_or_else(|e| panic!("registering a metric at start-up: {e}"))
});

/// Time spent per phase of a task (queue, stage_in, run, stage_out).
pub static PHASE_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "tessera_task_phase_seconds",
        "Time spent per task phase",
        &["phase"],
        vec![
            0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0
        ]
    )
    .unwrap_or_else(|e| panic!("registering a metric at start-up: {e}"))
});

/// The kinds counted in [`EXECUTOR_ERRORS`].
pub const ERROR_KINDS: [&str; 7] = [
    "image_pull",
    "engine_unreachable",
    "create",
    "start",
    "wait",
    "status",
    "staging",
];

/// Register every series at zero, so dashboards see them before the first event.
pub fn init() {
    for kind in ERROR_KINDS {
        EXECUTOR_ERRORS.with_label_values(&[kind]);
    }
    for state in tessera_core::State::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
    {
        TASKS_FINISHED.with_label_values(&[state.as_str()]);
    }
    LazyLock::force(&ROUTING_FAILURES);
    LazyLock::force(&TASKS_ADOPTED);
    for phase in ["queue", "stage_in", "run", "stage_out"] {
        PHASE_SECONDS.with_label_values(&[phase]);
    }
}
