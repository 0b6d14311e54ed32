//! The server facing a network: a slow-loris client is cut off, connections beyond the
//! cap wait, a shutdown lets the request in flight finish, and HTTPS from a certificate.

mod common;

use common::{Options, Server, tessera_bin};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn api_only(extra: &[&str]) -> Server {
    Server::start(Options {
        executor: "none",
        extra_args: extra.iter().map(|s| s.to_string()).collect(),
        ..Options::default()
    })
    .await
}

/// Whether the peer has ended the connection: a read that returns end of file or an
/// error (or an answer, after which it must end).
async fn ended(conn: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    match conn.read(&mut buf).await {
        Ok(0) | Err(_) => true,
        // hyper may answer 408 first; the connection must end right after.
        Ok(_) => matches!(
            tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        ),
    }
}

#[tokio::test]
async fn a_client_sending_its_head_a_byte_a_second_is_disconnected() {
    let s = api_only(&["--header-timeout-secs", "2"]).await;
    let head = b"GET /healthz HTTP/1.1\r\nHost: tessera\r\nUser-Agent: slow-loris\r\n\r\n";
    let mut conn = TcpStream::connect(("127.0.0.1", s.port())).await.unwrap();
    let mut sent = 0;
    let cut_off = loop {
        if sent == head.len() {
            break false;
        }
        if conn.write_all(&head[sent..=sent]).await.is_err() {
            break true;
        }
        sent += 1;
        // The pace of the attack: one byte a second, unless the server ends it first.
        tokio::select! {
            gone = ended(&mut conn) => if gone { break true },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        // Meanwhile everyone else is served.
        let (status, _) = s.get_json(&format!("{}/healthz", s.url)).await;
        assert_eq!(status, 200);
    };
    assert!(
        cut_off,
        "the whole head ({} bytes) went through at a byte a second",
        head.len()
    );
    assert!(sent < head.len(), "cut off after {sent} bytes");
}

#[tokio::test]
async fn a_request_body_that_stalls_is_cut_off_long_before_the_idle_timeout() {
    let s = api_only(&["--body-timeout-secs", "2", "--idle-timeout-secs", "600"]).await;
    let mut conn = TcpStream::connect(("127.0.0.1", s.port())).await.unwrap();
    let head = format!(
        "POST /ga4gh/tes/v1/tasks HTTP/1.1\r\nHost: tessera\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\": ",
        s.token
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    // Then nothing more: the handler waits for the rest of the body.
    let cut = tokio::time::timeout(Duration::from_secs(60), ended(&mut conn)).await;
    assert!(
        matches!(cut, Ok(true)),
        "a stalled body held its connection for a minute (idle timeout 600 s): {cut:?}"
    );
    // Bodies that keep coming are not cut: a create whose body arrives in two parts a
    // second apart succeeds.
    let body = br#"{"executors": [{"image": "busybox", "command": ["true"]}]}"#;
    let mut conn = TcpStream::connect(("127.0.0.1", s.port())).await.unwrap();
    let head = format!(
        "POST /ga4gh/tes/v1/tasks HTTP/1.1\r\nHost: tessera\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        s.token,
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    conn.write_all(&body[10..]).await.unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let s = api_only(&["--max-connections", "2", "--header-timeout-secs", "60"]).await;
    let addr = ("127.0.0.1", s.port());
    let first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = format!("{}/healthz", s.url);
    let blocked = client
        .get(&url)
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(
        blocked.is_err(),
        "a third connection was served while two were open: {blocked:?}"
    );
    drop(first);
    let served = client
        .get(&url)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("served once a connection closed");
    assert_eq!(served.status(), 200);
}

#[tokio::test]
async fn a_shutdown_lets_the_request_in_flight_finish() {
    let mut s = api_only(&["--drain-timeout-secs", "30"]).await;
    let body = serde_json::to_vec(&serde_json::json!({
        "name": "in flight at shutdown",
        "executors": [{"image": "busybox", "command": ["true"]}]
    }))
    .unwrap();
    let (half, rest) = body.split_at(body.len() / 2);
    let mut conn = TcpStream::connect(("127.0.0.1", s.port())).await.unwrap();
    let head = format!(
        "POST /ga4gh/tes/v1/tasks HTTP/1.1\r\nHost: tessera\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        s.token,
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    // The handler asks for the body: the request is in flight.
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    conn.write_all(half).await.unwrap();

    s.signal_terminate();
    // The server stops accepting: new connections are refused.
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", s.port())).await.is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "still accepting after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    conn.write_all(rest).await.unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"id\""), "{answer}");
    let status = s.wait_exit().expect("the server exits");
    assert!(status.success(), "{status}:\n{}", s.server_log());
}

#[tokio::test]
async fn https_from_a_certificate_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{made:?}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut server = std::process::Command::new(tessera_bin())
        .args(["serve", "--executor", "none", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env_remove("TESSERA_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let curl = |args: &[&str]| {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "5"])
            .args(args)
            .output()
            .expect("curl")
    };
    let health = format!("https://127.0.0.1:{port}/healthz");
    let cacert = cert.display().to_string();
    let start = Instant::now();
    let served = loop {
        let out = curl(&["--cacert", &cacert, &health]);
        if out.status.success() {
            break out;
        }
        assert!(
            server.try_wait().unwrap().is_none(),
            "tessera exited: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never served HTTPS"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(String::from_utf8_lossy(&served.stdout), "ok");
    // The API over TLS, with the generated token.
    let token = std::fs::read_to_string(dir.path().join("data/api-token")).unwrap();
    let info = curl(&[
        "--cacert",
        &cacert,
        "-H",
        &format!("Authorization: Bearer {}", token.trim()),
        &format!("https://127.0.0.1:{port}/ga4gh/tes/v1/service-info"),
    ]);
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["type"]["artifact"], "tes");
    // Plain HTTP on the TLS port is not served.
    let plain = curl(&[&format!("http://127.0.0.1:{port}/healthz")]);
    assert!(
        !String::from_utf8_lossy(&plain.stdout).contains("ok"),
        "{plain:?}"
    );
    let _ = server.kill();
    let _ = server.wait();
}
