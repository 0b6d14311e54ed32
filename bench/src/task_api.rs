//! The Task API against TES on the same tasks (one model, one path: the costs should
//! match), and the event stream's fan-out.

use futures_util::StreamExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::{Args, Lat, drive, start_server, tessera_bin};

/// Milliseconds from a task's creation to its RUNNING event, from the server's own
/// clock (no polling in the figure).
fn to_running_ms(status: &Value) -> Option<f64> {
    let created = status["task"]["creation_time"].as_str()?;
    let running = status["events"]
        .as_array()?
        .iter()
        .find(|e| e["to_state"] == "RUNNING")?["at"]
        .as_str()?;
    let parse = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    };
    Some((parse(running)? - parse(created)?).as_seconds_f64() * 1000.0)
}

struct Round {
    submit_per_s: f64,
    submit: Lat,
    to_running: Lat,
    done_per_s: f64,
}

/// Submit `n` tasks with `conc` clients through `submit` (which returns the task id),
/// wait for all to COMPLETE, and read each one's submit→RUNNING time.
async fn round<F, Fut>(http: &reqwest::Client, url: &str, n: usize, conc: usize, submit: F) -> Round
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = String> + Send,
{
    let ids = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n)));
    let start = Instant::now();
    let sink = ids.clone();
    let submit = Arc::new(submit);
    let (submit_per_s, submit_lat) = drive(n, conc, move |i| {
        let (submit, sink) = (submit.clone(), sink.clone());
        async move {
            let id = submit(i).await;
            if let Ok(mut ids) = sink.lock() {
                ids.push(id);
            }
        }
    })
    .await;
    let ids: Vec<String> = ids.lock().map(|v| v.clone()).unwrap_or_default();
    let mut to_running = Vec::new();
    for id in &ids {
        loop {
            let status: Value = http
                .get(format!("{url}/v1/tasks/{id}"))
                .send()
                .await
                .expect("GET")
                .json()
                .await
                .expect("json");
            match status["state"].as_str() {
                Some("COMPLETE") => {
                    if let Some(ms) = to_running_ms(&status) {
                        to_running.push(Duration::from_secs_f64(ms / 1000.0));
                    }
                    break;
                }
                Some(s) if ["EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"].contains(&s) => {
                    panic!("task {id} ended {s}: {status}")
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    Round {
        submit_per_s,
        submit: submit_lat,
        to_running: Lat(to_running),
        done_per_s: n as f64 / start.elapsed().as_secs_f64(),
    }
}

pub async fn bench_task_api(args: &Args) {
    let (n, conc) = (50usize, args.docker_concurrency);
    println!(
        "\n## 7. Task API runs against TES tasks: {n} `true` tasks per round on Docker, {conc} clients, 3 rounds each, interleaved\n"
    );
    let dir = tempfile::tempdir().expect("tmp");
    let server = start_server(
        &tessera_bin(args),
        dir.path(),
        &[
            "--max-concurrent-tasks",
            &conc.to_string(),
            "--default-network",
            "none",
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let url = server.url.clone();
    let op: Value = http
        .post(format!("{url}/v1/operations"))
        .json(&json!({"name": "bench", "image": args.image, "command": ["true"]}))
        .send()
        .await
        .expect("POST operation")
        .json()
        .await
        .expect("json");
    let runs_url = format!(
        "{url}/v1/operations/{}/runs",
        op["id"].as_str().expect("id")
    );
    let _ = std::process::Command::new("docker")
        .args(["run", "--rm", &args.image, "true"])
        .status();
    let mut tes_rounds = Vec::new();
    let mut run_rounds = Vec::new();
    for _ in 0..3 {
        let (h, u, image) = (http.clone(), url.clone(), args.image.clone());
        tes_rounds.push(
            round(&http, &url, n, conc, move |i| {
                let (h, u, image) = (h.clone(), u.clone(), image.clone());
                async move {
                    let body = json!({"name": format!("t{i}"), "executors": [{"image": image, "command": ["true"]}]});
                    let v: Value = h
                        .post(format!("{u}/ga4gh/tes/v1/tasks"))
                        .json(&body)
                        .send()
                        .await
                        .expect("POST")
                        .json()
                        .await
                        .expect("json");
                    v["id"].as_str().expect("id").to_string()
                }
            })
            .await,
        );
        let (h, r) = (http.clone(), runs_url.clone());
        run_rounds.push(
            round(&http, &url, n, conc, move |_| {
                let (h, r) = (h.clone(), r.clone());
                async move {
                    let v: Value = h
                        .post(&r)
                        .json(&json!({}))
                        .send()
                        .await
                        .expect("POST")
                        .json()
                        .await
                        .expect("json");
                    v["id"].as_str().expect("id").to_string()
                }
            })
            .await,
        );
    }
    let merge = |rounds: &mut Vec<Round>| {
        let (mut submit, mut running) = (Vec::new(), Vec::new());
        let (mut sub_rate, mut done_rate) = (0.0, 0.0);
        for r in rounds.iter_mut() {
            submit.append(&mut r.submit.0);
            running.append(&mut r.to_running.0);
            sub_rate += r.submit_per_s;
            done_rate += r.done_per_s;
        }
        let k = rounds.len() as f64;
        (Lat(submit), Lat(running), sub_rate / k, done_rate / k)
    };
    let (mut ts, mut tr, tsr, tdr) = merge(&mut tes_rounds);
    let (mut rs, mut rr, rsr, rdr) = merge(&mut run_rounds);
    println!(
        "| path | submit p50 ms | submit p95 ms | submit/s | submit→RUNNING p50 ms | p95 ms | COMPLETE/s |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let (t50, t95, tr50, tr95) = (ts.pct(0.5), ts.pct(0.95), tr.pct(0.5), tr.pct(0.95));
    let (r50, r95, rr50, rr95) = (rs.pct(0.5), rs.pct(0.95), rr.pct(0.5), rr.pct(0.95));
    println!(
        "| TES `POST /ga4gh/tes/v1/tasks` | {t50:.2} | {t95:.2} | {tsr:.0} | {tr50:.0} | {tr95:.0} | {tdr:.2} |"
    );
    println!(
        "| Task API `POST /v1/operations/{{id}}/runs` | {r50:.2} | {r95:.2} | {rsr:.0} | {rr50:.0} | {rr95:.0} | {rdr:.2} |"
    );
    println!(
        "| run / TES | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
        r50 / t50,
        r95 / t95,
        rsr / tsr,
        rr50 / tr50,
        rr95 / tr95,
        rdr / tdr
    );
    drop(server);
    bench_fanout(args).await;
}

/// 100 subscribers on `GET /v1/events` while tasks are created at about 1,000 a second
/// (one event each): every subscriber must see every event; how late they arrive.
async fn bench_fanout(args: &Args) {
    const SUBSCRIBERS: usize = 100;
    const RATE: usize = 1000;
    const SECONDS: usize = 5;
    let total = RATE * SECONDS;
    println!(
        "\n## 8. Event stream fan-out: {SUBSCRIBERS} subscribers, {total} events at {RATE}/s\n"
    );
    let dir = tempfile::tempdir().expect("tmp");
    let server = start_server(&tessera_bin(args), dir.path(), &["--executor", "none"]).await;
    let url = server.url.clone();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");
    let ready = Arc::new(AtomicUsize::new(0));
    let mut subs = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let (http, url, ready) = (http.clone(), url.clone(), ready.clone());
        subs.push(tokio::spawn(async move {
            let r = http
                .get(format!("{url}/v1/events?type=task.created"))
                .send()
                .await
                .expect("subscribe");
            ready.fetch_add(1, Ordering::SeqCst);
            let mut body = r.bytes_stream();
            let mut buf = String::new();
            let mut seen = std::collections::HashSet::new();
            let mut lags = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            while seen.len() < total && Instant::now() < deadline {
                let Ok(Some(Ok(chunk))) =
                    tokio::time::timeout(Duration::from_secs(30), body.next()).await
                else {
                    break;
                };
                let now = time::OffsetDateTime::now_utc();
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let frame: String = buf.drain(..end + 2).collect();
                    let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data:")) else {
                        continue;
                    };
                    let Ok(v) = serde_json::from_str::<Value>(data.trim()) else {
                        continue;
                    };
                    if let Some(seq) = v["seq"].as_i64() {
                        seen.insert(seq);
                    }
                    if let Some(at) = v["at"].as_str().and_then(|a| {
                        time::OffsetDateTime::parse(
                            a,
                            &time::format_description::well_known::Rfc3339,
                        )
                        .ok()
                    }) {
                        lags.push(Duration::from_secs_f64(
                            ((now - at).as_seconds_f64()).max(0.0),
                        ));
                    }
                }
            }
            (seen.len(), lags)
        }));
    }
    while ready.load(Ordering::SeqCst) < SUBSCRIBERS {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Paced creation: a tenth of a second's worth every 100 ms, 8 at a time.
    let start = Instant::now();
    let tes = format!("{url}/ga4gh/tes/v1/tasks");
    for tick in 0..(SECONDS * 10) {
        let due = start + Duration::from_millis(100 * tick as u64);
        tokio::time::sleep_until(due.into()).await;
        let (h, t) = (http.clone(), tes.clone());
        drive(RATE / 10, 8, move |i| {
            let (h, t) = (h.clone(), t.clone());
            async move {
                let r = h
                    .post(&t)
                    .json(&json!({"name": format!("f{i}"), "executors": [{"image": "x", "command": ["true"]}]}))
                    .send()
                    .await
                    .expect("POST");
                assert!(r.status().is_success());
            }
        })
        .await;
    }
    let produced_in = start.elapsed().as_secs_f64();
    let mut complete = 0;
    let mut fewest = usize::MAX;
    let mut all_lags = Vec::new();
    for s in subs {
        let (n, mut lags) = s.await.expect("subscriber");
        fewest = fewest.min(n);
        complete += usize::from(n == total);
        all_lags.append(&mut lags);
    }
    let mut lat = Lat(all_lags);
    println!(
        "| produced | rate /s | subscribers with every event | fewest seen | delivery lag p50 ms | p99 ms | max ms |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {total} | {:.0} | {complete}/{SUBSCRIBERS} | {fewest} | {:.0} | {:.0} | {:.0} |",
        total as f64 / produced_in,
        lat.pct(0.5),
        lat.pct(0.99),
        lat.pct(1.0)
    );
}
