//! `engine-airflow`, Tessera's built-in engine adapter for Apache Airflow 3, over its
//! REST API v2. Bound to an engine name (e.g. `airflow`), it runs workflows whose
//! definition names a DAG: `{"dag_id": "etl", "conf": {…}}`.
//!
//! - `validate`: the DAG must exist at Airflow; its task graph comes from
//!   `GET /api/v2/dags/{id}/tasks`.
//! - `submit`: unpauses the DAG (unless `unpause-dags` is `false`) and triggers a run
//!   (`POST /api/v2/dags/{id}/dagRuns`, `logical_date` null) named after the Tessera run
//!   (`tessera-RUN`), with `conf` = the definition's `conf` and the run's parameters; a
//!   repeated submit finds the run it made.
//! - `status`: the run and its task instances; a task instance's try is Airflow's own
//!   count ([`logic::try_of`]).
//! - `cancel`: marks the run failed (Airflow stops what runs).
//! - `retry`: clears the chosen task instances (or the failed ones), with their
//!   downstream when asked.
//! - `logs`: a try's log (`full_content`), one line per record, paged by byte offset.
//!
//! Configuration: `url` (the API server, e.g. `http://airflow.internal:8080`),
//! `unpause-dags` (default true), `request-timeout-ms` (default 10000). Secrets:
//! `username` and `password` for `POST /auth/token`.
//!
//! [`logic`] is plain Rust that builds and is tested natively; the component glue
//! (bindings from `tessera-plugin-sdk`) exists only on wasm32.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

pub mod logic;

#[cfg(target_arch = "wasm32")]
mod component;
