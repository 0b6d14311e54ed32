//! Tokens from a real OpenID provider (the npm package `oidc-provider`, started here on
//! loopback by `scripts/oidc-provider.mjs`): RS256, ES256 and EdDSA tokens are accepted
//! and provision their user and groups; tokens for another audience, expired, not yet
//! valid, altered, or signed with a key the provider rotated out are refused.

mod common;

use common::{Options, Server, simple_task};
use serde_json::{Value, json};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The node_modules holding oidc-provider (scripts/test-env.sh); `None` skips unless
/// TESSERA_REQUIRE_ALL=1.
fn node_modules() -> Option<String> {
    match std::env::var("TESSERA_TEST_OIDC_NODE_MODULES") {
        Ok(p) => Some(p),
        Err(_) => {
            assert!(
                std::env::var("TESSERA_REQUIRE_ALL").is_err(),
                "TESSERA_TEST_OIDC_NODE_MODULES is not set; scripts/test-env.sh installs oidc-provider"
            );
            None
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// One provider process.
struct Provider {
    child: Child,
    url: String,
}

impl Provider {
    /// Start on `port` with the keys in `keys` (made when missing), claiming `issuer`,
    /// its clock shifted by `offset_secs`; returns once it listens.
    fn start(modules: &str, port: u16, issuer: &str, keys: &Path, offset_secs: i64) -> Provider {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/oidc-provider.mjs");
        let mut child = Command::new("node")
            .arg(script)
            .env("OIDC_PORT", port.to_string())
            .env("OIDC_ISSUER", issuer)
            .env("OIDC_KEYS", keys)
            .env("OIDC_CLOCK_OFFSET_SECS", offset_secs.to_string())
            .env("OIDC_NODE_MODULES", modules)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the OpenID provider did not start");
        Provider {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// An access token for `client` (for `resource`, else the provider's default).
    async fn token(&self, client: &str, resource: Option<&str>) -> String {
        let secret = format!("{client}-secret");
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", client),
            ("client_secret", secret.as_str()),
        ];
        if let Some(r) = resource {
            form.push(("resource", r));
        }
        let resp = reqwest::Client::new()
            .post(format!("{}/token", self.url))
            .form(&form)
            .send()
            .await
            .unwrap();
        let body: Value = resp.json().await.unwrap();
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token for {client}: {body}"))
            .to_string()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn whoami(s: &Server, token: &str) -> (u16, Value) {
    let r = s
        .http
        .get(format!("{}/v1/auth/whoami", s.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn keys_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_a_real_provider_are_checked_and_provision_users() {
    let Some(modules) = node_modules() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let provider = Provider::start(&modules, port, &issuer, &keys_file(dir.path(), "k1"), 0);
    let s = Server::start(Options {
        executor: "none",
        extra_args: vec![
            "--oidc-issuer".into(),
            issuer.clone(),
            "--oidc-audience".into(),
            "urn:tessera:api".into(),
            // Rotations are seen at the first token with a new key; the rate limit of
            // those fetches is tested in host/api (oidc.rs) with a paused clock.
            "--oidc-refetch-interval-secs".into(),
            "0".into(),
        ],
        ..Options::default()
    })
    .await;

    // The server says which provider it accepts.
    let providers: Value = s
        .http
        .get(format!("{}/v1/auth/providers", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(providers["oidc"]["issuer"], issuer.as_str());

    // RS256, ES256 and EdDSA tokens: the user and its group are provisioned.
    for client in ["ada-rs", "ada-es", "ada-ed"] {
        let token = provider.token(client, None).await;
        let (status, me) = whoami(&s, &token).await;
        assert_eq!(status, 200, "{client}: {me}");
        assert_eq!(me["username"], "ada", "{client}");
        assert_eq!(me["instance_admin"], false);
        let groups = me["groups"].to_string();
        assert!(
            groups.contains(r#"{"group":"lab","role":"write"}"#),
            "{client}: {groups}"
        );
    }
    let admin_get = |path: String| {
        let s = &s;
        async move {
            let r = s.req(reqwest::Method::GET, &path).send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, ada) = admin_get(format!("{}/v1/admin/users/ada", s.url)).await;
    assert_eq!(status, 200, "{ada}");
    assert_eq!(ada["password_login"], false);
    let (status, _) = admin_get(format!("{}/v1/groups/lab", s.url)).await;
    assert_eq!(status, 200);
    // The provider's roles are roles here: ada writes in lab.
    let ada_token = provider.token("ada-rs", None).await;
    let mut task = simple_task(&["true"]);
    task["tags"] = json!({"tessera.group": "lab"});
    let r = s
        .http
        .post(s.tes("/tasks"))
        .bearer_auth(&ada_token)
        .json(&task)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // The admin role makes an instance admin.
    let root = provider.token("root-ed", None).await;
    let (status, me) = whoami(&s, &root).await;
    assert_eq!((status, me["username"].as_str()), (200, Some("oidc-root")));
    assert_eq!(me["instance_admin"], true);
    // A username that is no valid Tessera name is refused, saying which claim.
    let (status, body) = whoami(&s, &provider.token("mallory-rs", None).await).await;
    assert_eq!(status, 401);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("preferred_username"),
        "{body}"
    );

    // Another audience, altered payload, altered signature.
    let other = provider.token("ada-rs", Some("urn:other:api")).await;
    assert_eq!(whoami(&s, &other).await.0, 401);
    let parts: Vec<&str> = ada_token.split('.').collect();
    let root_payload = root.split('.').nth(1).unwrap();
    let mut sig = parts[2].as_bytes().to_vec();
    sig[5] = if sig[5] == b'A' { b'B' } else { b'A' };
    for forged in [
        format!("{}.{}.{}", parts[0], root_payload, parts[2]),
        format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            String::from_utf8(sig).unwrap()
        ),
        format!("{}.{}.", parts[0], parts[1]),
    ] {
        assert_eq!(whoami(&s, &forged).await.0, 401, "{forged}");
    }

    // Expired and not yet valid: the same provider's keys and issuer, its clock off by
    // two hours either way.
    for (offset, words) in [(-7200, "expired"), (7200, "not valid")] {
        let skewed = Provider::start(
            &modules,
            free_port(),
            &issuer,
            &keys_file(dir.path(), "k1"),
            offset,
        );
        let token = skewed.token("ada-es", None).await;
        let (status, body) = whoami(&s, &token).await;
        assert_eq!(status, 401, "offset {offset}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains(words),
            "offset {offset}: {body}"
        );
    }

    // A key rotation: the provider restarts with new keys. A token with a new key is
    // accepted (its key id makes the server fetch the keys again); one signed with a
    // rotated-out key is refused, though it was accepted before.
    let old = provider.token("ada-ed", None).await;
    assert_eq!(whoami(&s, &old).await.0, 200);
    drop(provider);
    let rotated = Provider::start(&modules, port, &issuer, &keys_file(dir.path(), "k2"), 0);
    let new = rotated.token("ada-ed", None).await;
    assert_eq!(whoami(&s, &new).await.0, 200);
    let (status, body) = whoami(&s, &old).await;
    assert_eq!(status, 401, "{body}");

    // The CLI logs in with the client-credentials grant and keeps the token.
    let config = tempfile::tempdir().unwrap();
    let run = |args: &[&str], input: &str| {
        use std::io::Write;
        let mut cmd = common::cli_command(&s, args);
        cmd.env("XDG_CONFIG_HOME", config.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = run(&["login", "--oidc-client-id", "ada-rs"], "ada-rs-secret\n");
    assert!(ok, "{err}");
    let (ok, out, err) = run(&["whoami"], "");
    assert!(ok && out.starts_with("ada\n"), "{out}{err}");
    let (ok, _, err) = run(&["login", "--oidc-client-id", "ada-rs"], "wrong\n");
    assert!(!ok && err.contains("refused"), "{err}");
}
