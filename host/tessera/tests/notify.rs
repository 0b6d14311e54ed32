//! Notifications end to end: the built-in webhook notifier bound over the API, real task
//! state changes, a real HTTP receiver; signatures, filters, retries with backoff, the
//! outbox surviving a crash, and the HTTP grant.

mod common;

use common::{Options, Server, simple_task};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Hit {
    signature: Option<String>,
    body: String,
    status: u16,
}

/// A webhook receiver on 127.0.0.1 that answers 503 to the first `fail_first` requests
/// (and to all while `down` is set), 200 after, and records every request.
#[derive(Clone)]
struct Receiver {
    port: u16,
    hits: Arc<Mutex<Vec<Hit>>>,
    fail_first: Arc<AtomicUsize>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    async fn start(fail_first: usize) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Receiver {
            port: listener.local_addr().unwrap().port(),
            hits: Arc::default(),
            fail_first: Arc::new(AtomicUsize::new(fail_first)),
            down: Arc::default(),
        };
        let me = r.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let me = me.clone();
                tokio::spawn(async move {
                    let Some((head, body)) = common::read_http_request(&mut conn).await else {
                        return;
                    };
                    let signature = head.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("x-tessera-signature")
                            .then(|| v.trim().to_string())
                    });
                    let body = String::from_utf8_lossy(&body).to_string();
                    let failing = me.down.load(Ordering::SeqCst)
                        || me
                            .fail_first
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok();
                    let status = if failing { 503 } else { 200 };
                    me.hits.lock().unwrap().push(Hit {
                        signature,
                        body,
                        status,
                    });
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                });
            }
        });
        r
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Wait until a request satisfies `pred`.
    async fn wait_for(&self, what: &str, pred: impl Fn(&[Hit]) -> bool) -> Vec<Hit> {
        let start = Instant::now();
        loop {
            let hits = self.hits();
            if pred(&hits) {
                return hits;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the receiver never saw {what}; it saw {hits:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn signed(key: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

async fn bind_webhook(s: &Server, body: Value) {
    let (status, b) = s
        .post_json(
            &format!(
                "{}/v1/plugins/notifier-webhook/versions/0.1.0/activate",
                s.url
            ),
            &body,
        )
        .await;
    assert_eq!(status, 200, "{b}");
}

fn about(hits: &[Hit], task: &str, state: &str) -> usize {
    hits.iter()
        .filter(|h| h.body.contains(task) && h.body.contains(state))
        .count()
}

#[tokio::test]
async fn webhooks_are_signed_filtered_and_retried_until_delivered() {
    let rx = Receiver::start(1).await;
    let s = Server::start(Options::default()).await;
    // Installed with the binary, not bound until configured.
    let (_, list) = s.get_json(&format!("{}/v1/plugins", s.url)).await;
    assert!(list.to_string().contains("notifier-webhook"), "{list}");
    let hook = format!("127.0.0.1:{}", rx.port);
    bind_webhook(
        &s,
        json!({
            "config": {"url": format!("http://{hook}/hook")},
            "secrets": {"signing-key": "s3cret"},
            "allow_hosts": [hook],
            "filter": {"states": ["COMPLETE", "EXECUTOR_ERROR"]},
        }),
    )
    .await;
    // Secrets are never shown back.
    let (_, shown) = s
        .get_json(&format!("{}/v1/plugins/notifier-webhook", s.url))
        .await;
    assert!(!shown.to_string().contains("s3cret"), "{shown}");

    let id = s.create(&simple_task(&["true"])).await;
    assert_eq!(s.wait_done(&id).await["state"], "COMPLETE");
    // The first attempt gets a 503; the retry (after a backoff) gets through.
    let hits = rx
        .wait_for("a delivered COMPLETE event", |h| {
            h.iter().any(|x| x.status == 200 && x.body.contains(&id))
        })
        .await;
    assert_eq!(about(&hits, &id, "COMPLETE"), 2, "{hits:?}");
    assert_eq!(hits[0].status, 503);
    // Only the filtered state was sent (no QUEUED, INITIALIZING or RUNNING).
    for h in &hits {
        let event: Value = serde_json::from_str(&h.body).expect("the body is JSON");
        assert_eq!(event["to_state"], "COMPLETE", "{hits:?}");
        assert_eq!(event["task_id"], id.as_str());
    }
    let ok = hits.iter().find(|h| h.status == 200).unwrap();
    let body: Value = serde_json::from_str(&ok.body).expect("the body is JSON");
    assert!(body.to_string().contains(&id), "{body}");
    assert_eq!(
        ok.signature.as_deref(),
        Some(signed("s3cret", &ok.body).as_str())
    );
}

#[tokio::test]
async fn the_outbox_survives_a_crash_and_hosts_outside_the_grant_are_refused() {
    let rx = Receiver::start(0).await;
    rx.down.store(true, Ordering::SeqCst);
    let mut s = Server::start(Options::default()).await;
    let hook = format!("127.0.0.1:{}", rx.port);
    bind_webhook(
        &s,
        json!({
            "config": {"url": format!("http://{hook}/hook")},
            "allow_hosts": [hook],
            "filter": {"states": ["COMPLETE"]},
        }),
    )
    .await;
    let id = s.create(&simple_task(&["true"])).await;
    assert_eq!(s.wait_done(&id).await["state"], "COMPLETE");
    rx.wait_for("a failed attempt", |h| about(h, &id, "COMPLETE") >= 1)
        .await;
    // Crash while the delivery waits for its retry; the receiver comes back meanwhile.
    s.kill9();
    rx.down.store(false, Ordering::SeqCst);
    s.spawn().await;
    rx.wait_for("the delivery after the restart", |h| {
        h.iter()
            .any(|x| x.status == 200 && x.body.contains(&id) && x.body.contains("COMPLETE"))
    })
    .await;

    // A binding whose grant does not cover the URL delivers nothing and counts errors.
    let before = rx.hits().len();
    bind_webhook(
        &s,
        json!({
            "config": {"url": format!("http://{hook}/hook")},
            "allow_hosts": ["example.invalid"],
            "filter": {"states": ["COMPLETE"]},
        }),
    )
    .await;
    let id2 = s.create(&simple_task(&["true"])).await;
    assert_eq!(s.wait_done(&id2).await["state"], "COMPLETE");
    let start = Instant::now();
    loop {
        let (_, shown) = s
            .get_json(&format!("{}/v1/plugins/notifier-webhook", s.url))
            .await;
        let errors: u64 = shown["versions"][0]["calls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["errors"].as_u64().unwrap_or(0))
            .sum();
        if errors >= 1 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{shown}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        rx.hits()[before..].iter().all(|h| !h.body.contains(&id2)),
        "a denied host was reached"
    );
}
