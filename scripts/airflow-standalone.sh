#!/usr/bin/env bash
# Runs Apache Airflow 3 standalone (scheduler, DAG processor, triggerer, API server;
# SQLite) on 127.0.0.1:PORT with HOME as AIRFLOW_HOME and the one DAG file given, its
# login off (every caller is an admin): how the Airflow adapter's test and the benchmark
# start theirs. It execs Airflow, so the caller's pid is Airflow's.
#
#   scripts/airflow-standalone.sh AIRFLOW_BIN HOME PORT DAG_FILE
set -euo pipefail
bin=$1 home=$2 port=$3 dag_file=$4
mkdir -p "$home/dags"
cp "$dag_file" "$home/dags/"
export PATH="$(dirname "$bin"):$PATH"
export AIRFLOW_HOME="$home"
export AIRFLOW__CORE__DAGS_FOLDER="$home/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT="$port"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$port/execution/"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True
# Parse the DAG folder often, so a new DAG file appears soon.
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=5
exec "$bin" standalone
