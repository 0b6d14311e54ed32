//! The built-in webhook notifier (builtin-plugins/dist/notifier-webhook.wasm, built by
//! `bash builtin-plugins/build.sh`; skipped when missing) against a local HTTP server.

mod common;

use std::time::Duration;

use common::server::{Recorded, Reply, Server};
use common::*;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tessera_plugin_runtime::Grants;
use tessera_plugin_runtime::{
    CallError, Capability, Manifest, NotifierPlugin, PluginConfig, PluginError, PluginRuntime,
};

/// The manifest the host installs it with, with a test-sized timeout.
fn webhook_manifest() -> Manifest {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../builtin-plugins/notifier-webhook/manifest.toml"
    ))
    .unwrap();
    let mut m: Manifest = toml::from_str(&text).unwrap();
    assert_eq!(m.name, "notifier-webhook");
    assert_eq!(m.world, tessera_plugin_runtime::World::Notifier);
    assert_eq!(m.capabilities, [Capability::Config, Capability::Http]);
    assert_eq!(m.secrets, ["signing-key"]);
    m.limits.timeout = Some(Duration::from_secs(5));
    m
}

fn webhook(rt: &PluginRuntime, config: PluginConfig, hosts: &[&str]) -> Option<NotifierPlugin> {
    let bytes = built_plugin("notifier-webhook")?;
    let hosts = hosts.iter().map(|h| h.to_string()).collect();
    Some(
        rt.load::<NotifierPlugin>(
            webhook_manifest(),
            &bytes,
            Grants {
                config,
                allowed_hosts: hosts,
                ..Grants::default()
            },
        )
        .unwrap(),
    )
}

const BODY: &str = r#"{"task_id":"t-1","name":"nightly","tags":{"team":"lab","note":"a \"quoted\" \\ value"},"from_state":"QUEUED","to_state":"RUNNING","at":"2026-05-01T12:00:00Z","reason":null}"#;

fn one(server: &Server) -> Recorded {
    let got = server.requests();
    assert_eq!(got.len(), 1, "{got:?}");
    got[0].clone()
}

#[test]
fn posts_the_event_as_json_to_the_configured_url() {
    let server = Server::start(Reply::Status(200));
    let rt = runtime();
    let a = server.authority();
    let url = format!("http://{a}/hooks/abc?x=1");
    let Some(p) = webhook(&rt, PluginConfig::new().value("url", &url), &[&a]) else {
        return;
    };
    // The task's own URL is used only when `url` is unset.
    let mut e = event();
    e.notification_url = Some("http://elsewhere.example/".into());
    assert_eq!(p.deliver(&e), Ok(()));
    let r = one(&server);
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/hooks/abc?x=1");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.header("user-agent"),
        Some("tessera-notifier-webhook/0.1.0")
    );
    assert_eq!(r.header("x-tessera-signature"), None);
    assert_eq!(String::from_utf8(r.body).unwrap(), BODY);
}

#[test]
fn signs_the_body_with_the_signing_key_and_never_logs_it() {
    let server = Server::start(Reply::Status(202));
    let rt = runtime();
    let a = server.authority();
    let key = "k3y-that-must-not-leak";
    let config = PluginConfig::new()
        .value("url", format!("http://{a}/"))
        .secret("signing-key", key);
    let Some(p) = webhook(&rt, config, &[&a]) else {
        return;
    };
    let (r, logs) = logged(|| p.deliver(&event()));
    assert_eq!(r, Ok(()));
    let got = one(&server);
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(&got.body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        got.header("x-tessera-signature"),
        Some(format!("sha256={hex}").as_str())
    );
    assert!(!logs.contains(key), "{logs}");
    assert!(logs.contains("delivered t-1 RUNNING"), "{logs}");
}

#[test]
fn uses_the_tasks_notification_url_when_none_is_configured() {
    let server = Server::start(Reply::Status(204));
    let rt = runtime();
    let a = server.authority();
    let Some(p) = webhook(&rt, PluginConfig::new(), &[&a]) else {
        return;
    };
    let mut e = event();
    e.notification_url = Some(format!("http://{a}/task-hook"));
    assert_eq!(p.deliver(&e), Ok(()));
    assert_eq!(one(&server).path, "/task-hook");

    // Neither: invalid input, nothing sent.
    match p.deliver(&event()) {
        Err(CallError::Plugin(PluginError::InvalidInput(m))) => {
            assert!(m.contains("no `url`"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn answers_map_to_error_kinds() {
    let rt = runtime();
    for (status, want) in [
        (401, "denied"),
        (403, "denied"),
        (404, "invalid-input"),
        (422, "invalid-input"),
        (429, "unavailable"),
        (500, "unavailable"),
        (503, "unavailable"),
    ] {
        let server = Server::start(Reply::Status(status));
        let a = server.authority();
        let config = PluginConfig::new().value("url", format!("http://{a}/secret-token"));
        let Some(p) = webhook(&rt, config, &[&a]) else {
            return;
        };
        match p.deliver(&event()) {
            Err(CallError::Plugin(e)) => {
                let text = tessera_plugin_runtime::DisplayPluginError(&e).to_string();
                assert!(text.starts_with(&format!("{want}: ")), "{status}: {text}");
                // The receiver by origin, its answer quoted; never the path.
                assert!(
                    text.contains(&format!("http://{a} answered {status}")),
                    "{text}"
                );
                assert!(text.ends_with(": ok"), "{text}");
                assert!(!text.contains("secret-token"), "{text}");
            }
            other => panic!("{status}: {other:?}"),
        }
    }
}

#[test]
fn a_host_the_binding_does_not_allow_is_denied() {
    let server = Server::start(Reply::Status(200));
    let rt = runtime();
    let a = server.authority();
    let config = PluginConfig::new().value("url", format!("http://{a}/"));
    let Some(p) = webhook(&rt, config, &["hooks.example.com"]) else {
        return;
    };
    match p.deliver(&event()) {
        Err(CallError::Plugin(PluginError::Denied(m))) => {
            assert!(m.contains("does not allow"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.connections(), 0);
}

#[test]
fn a_receiver_that_does_not_answer_is_unavailable_or_a_timeout() {
    let server = Server::start(Reply::Hang);
    let rt = runtime();
    let a = server.authority();
    let Some(bytes) = built_plugin("notifier-webhook") else {
        return;
    };
    let mut m = webhook_manifest();
    m.limits.timeout = Some(Duration::from_millis(300));
    let config = PluginConfig::new().value("url", format!("http://{a}/"));
    let p = rt
        .load::<NotifierPlugin>(
            m,
            &bytes,
            Grants {
                config,
                allowed_hosts: vec![a.clone()],
                ..Grants::default()
            },
        )
        .unwrap();
    let r = p.deliver(&event());
    assert!(
        matches!(
            r,
            Err(CallError::Timeout) | Err(CallError::Plugin(PluginError::Unavailable(_)))
        ),
        "{r:?}"
    );
}

#[test]
fn an_unreachable_receiver_is_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let rt = runtime();
    let config = PluginConfig::new().value("url", format!("http://127.0.0.1:{port}/"));
    let Some(p) = webhook(&rt, config, &[format!("127.0.0.1:{port}").as_str()]) else {
        return;
    };
    match p.deliver(&event()) {
        Err(CallError::Plugin(PluginError::Unavailable(m))) => {
            assert!(m.contains("ConnectionRefused"), "{m}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn https_to_a_server_that_does_not_speak_tls_is_unavailable() {
    // Accepts and hangs up at once: the TLS handshake fails.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            drop(s);
        }
    });
    let rt = runtime();
    let config = PluginConfig::new().value("url", format!("https://{a}/"));
    let Some(p) = webhook(&rt, config, &[&a]) else {
        return;
    };
    match p.deliver(&event()) {
        Err(CallError::Plugin(PluginError::Unavailable(m))) => {
            assert!(m.contains(&format!("POST https://{a}: ")), "{m}");
            assert!(m.contains("Tls"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}
