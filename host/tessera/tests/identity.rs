//! Identity end to end on the real binary: the bootstrap admin, users and groups, password
//! logins (host-signed JWTs), personal access tokens, and the rule that another group's
//! objects do not exist for a caller (404 on every TES and plugin endpoint, absent from
//! lists), with roles deciding who may submit, cancel and bind plugins.

mod common;

use common::{Client, Options, Server, admin, client_with, login, simple_task, user};
use reqwest::Method;
use serde_json::{Value, json};

/// Create a TES task as `c`, in `group` when given; the status and the id.
async fn create(c: &Client<'_>, name: &str, group: Option<&str>) -> (u16, String) {
    let mut task = simple_task(&["true"]);
    task["name"] = json!(name);
    if let Some(g) = group {
        task["tags"] = json!({ "tessera.group": g });
    }
    let (status, body) = c.post("/tasks", &task).await;
    (status, body["id"].as_str().unwrap_or_default().to_string())
}

/// The ids of the TES tasks `c` lists.
async fn listed_ids(c: &Client<'_>) -> Vec<String> {
    let (status, body) = c.get("/tasks?view=MINIMAL").await;
    assert_eq!(status, 200, "{body}");
    body["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

async fn server() -> Server {
    Server::start(Options {
        executor: "none",
        ..Options::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_token_is_the_instance_admins() {
    let s = server().await;
    assert!(s.token.starts_with("tsr_pat_"), "{}", s.token);
    let admin = admin(&s);
    let (status, me) = admin.get("/v1/auth/whoami").await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["username"], "admin");
    assert_eq!(me["instance_admin"], true);
    assert_eq!(me["default_group"], "admin");
    // It is listed among the admin's tokens, by name only.
    let (_, tokens) = admin.get("/v1/auth/tokens").await;
    let listed = tokens["tokens"].to_string();
    assert!(listed.contains("api-token-"), "{listed}");
    assert!(!listed.contains(&s.token), "{listed}");
    // No password: the admin cannot log in with one, and a wrong one gets the same answer.
    let (status, body) = login(&s, "admin", "").await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    let (status, _) = login(&s, "nobody", "whatever-1").await;
    assert_eq!(status, 401);
    // The data and signing key files are private.
    use std::os::unix::fs::PermissionsExt;
    for f in ["api-token", "signing-key"] {
        let mode = std::fs::metadata(s.data_dir.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_groups_objects_do_not_exist_and_roles_decide_what_members_do() {
    let s = server().await;
    let admin = admin(&s);
    let ada = user(&s, "ada").await;
    let bob = user(&s, "bob").await;
    let carol = user(&s, "carol").await;
    assert_eq!(
        admin.post("/v1/groups", &json!({"name": "lab"})).await.0,
        201
    );
    // Only instance admins make groups; group admins manage members.
    assert_eq!(ada.post("/v1/groups", &json!({"name": "x"})).await.0, 403);
    assert_eq!(
        admin
            .put("/v1/groups/lab/members/ada", &json!({"role": "admin"}))
            .await
            .0,
        200
    );
    assert_eq!(
        ada.put("/v1/groups/lab/members/carol", &json!({"role": "read"}))
            .await
            .0,
        200
    );
    // bob is in no shared group: lab does not exist for him.
    assert_eq!(bob.get("/v1/groups/lab").await.0, 404);
    assert_eq!(
        bob.put("/v1/groups/lab/members/bob", &json!({"role": "admin"}))
            .await
            .0,
        404
    );
    // carol sees lab but may not manage it.
    assert_eq!(carol.get("/v1/groups/lab").await.0, 200);
    assert_eq!(
        carol
            .put("/v1/groups/lab/members/carol", &json!({"role": "admin"}))
            .await
            .0,
        403
    );
    // Every group endpoint answers bob as if lab did not exist; carol sees it but may
    // not change its quota or retention, or delete it.
    for (method, path, body) in [
        (Method::DELETE, "/v1/groups/lab", None),
        (Method::DELETE, "/v1/groups/lab/members/carol", None),
        (
            Method::PUT,
            "/v1/groups/lab/quota",
            Some(json!({"max_queued": 1})),
        ),
        (
            Method::PUT,
            "/v1/groups/lab/retention",
            Some(json!({"days": 1})),
        ),
    ] {
        let (status, _) = bob.call(method.clone(), path, body.as_ref()).await;
        assert_eq!(status, 404, "bob {method} {path}");
        let (status, _) = carol.call(method.clone(), path, body.as_ref()).await;
        assert_eq!(status, 403, "carol {method} {path}");
    }
    let (_, groups) = bob.get("/v1/groups").await;
    assert_eq!(groups["groups"].as_array().unwrap().len(), 1, "{groups}");

    // ada's tasks: one in her own group, one in lab.
    let (status, own) = create(&ada, "ada-own", None).await;
    assert_eq!(status, 200);
    let (status, lab) = create(&ada, "ada-lab", Some("lab")).await;
    assert_eq!(status, 200);
    let (_, bobs) = create(&bob, "bob-own", None).await;

    // Every TES and task endpoint answers bob as if ada's tasks did not exist.
    for id in [&own, &lab] {
        for path in [
            format!("/tasks/{id}"),
            format!("/tasks/{id}?view=BASIC"),
            format!("/tasks/{id}?view=FULL"),
            format!("/v1/tasks/{id}"),
        ] {
            let (status, body) = bob.get(&path).await;
            assert_eq!(status, 404, "{path}: {body}");
            assert_eq!(body["code"], "not_found");
        }
        for path in [
            format!("/tasks/{id}:cancel"),
            format!("/v1/tasks/{id}/cancel"),
        ] {
            let (status, body) = bob.post(&path, &json!({})).await;
            assert_eq!(status, 404, "{path}: {body}");
        }
    }
    assert_eq!(listed_ids(&bob).await, std::slice::from_ref(&bobs));
    let (_, page) = bob.get("/tasks?name_prefix=ada&view=FULL").await;
    assert_eq!(page["tasks"], json!([]));
    // bob cannot submit into lab: for him it does not exist.
    let (status, _) = create(&bob, "sneak", Some("lab")).await;
    assert_eq!(status, 404);

    // carol reads lab's task, not ada's own; she may neither cancel it nor submit there.
    assert_eq!(carol.get(&format!("/tasks/{lab}?view=FULL")).await.0, 200);
    assert_eq!(carol.get(&format!("/tasks/{own}")).await.0, 404);
    assert_eq!(listed_ids(&carol).await, std::slice::from_ref(&lab));
    let (status, body) = carol
        .post(&format!("/tasks/{lab}:cancel"), &json!({}))
        .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    assert_eq!(
        carol
            .post(&format!("/v1/tasks/{lab}/cancel"), &json!({}))
            .await
            .0,
        403
    );
    assert_eq!(create(&carol, "read-only", Some("lab")).await.0, 403);
    // The task is untouched by the refused cancels.
    let (_, t) = ada.get(&format!("/tasks/{lab}")).await;
    assert_eq!(t["state"], "QUEUED");
    // A writer cancels; the instance admin sees everything.
    assert_eq!(
        ada.post(&format!("/v1/tasks/{lab}/cancel"), &json!({}))
            .await
            .0,
        200
    );
    let mut all = listed_ids(&admin).await;
    all.sort();
    let mut want = vec![own.clone(), lab.clone(), bobs.clone()];
    want.sort();
    assert_eq!(all, want);

    // Users and groups are the instance admins' to manage.
    for (method, path) in [
        (Method::GET, "/v1/admin/users"),
        (Method::GET, "/v1/admin/users/ada"),
        (Method::DELETE, "/v1/admin/users/ada"),
        (Method::POST, "/v1/admin/users/ada/revoke-tokens"),
    ] {
        let (status, body) = bob.call(method, path, None).await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    let (_, users) = admin.get("/v1/admin/users").await;
    assert_eq!(users["users"].as_array().unwrap().len(), 4, "{users}");
    let (_, shown) = admin.get("/v1/admin/users/carol").await;
    assert!(shown["groups"].to_string().contains("\"lab\""), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_are_installed_by_instance_admins_and_bound_per_group_by_group_admins() {
    let s = server().await;
    let admin = admin(&s);
    let ada = user(&s, "ada").await;
    let bob = user(&s, "bob").await;
    admin.post("/v1/groups", &json!({"name": "lab"})).await;
    admin
        .put("/v1/groups/lab/members/ada", &json!({"role": "write"}))
        .await;

    // Installing and deleting are for instance admins (checked before the body is read).
    let r = s
        .http
        .post(format!("{}/v1/plugins", s.url))
        .bearer_auth(&bob.token)
        .multipart(reqwest::multipart::Form::new().text("manifest", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(
        bob.delete("/v1/plugins/router-default/versions/0.2.0")
            .await
            .0,
        403
    );
    // The instance's bindings are for instance admins.
    let activate = "/v1/plugins/router-default/versions/0.2.0/activate";
    assert_eq!(bob.post(activate, &json!({})).await.0, 403);
    // A write member may not bind for lab, bob does not see lab, ada's own group is hers.
    assert_eq!(ada.post(activate, &json!({"scope": "lab"})).await.0, 403);
    assert_eq!(bob.post(activate, &json!({"scope": "lab"})).await.0, 404);
    let (status, body) = bob.post(activate, &json!({"scope": "bob"})).await;
    assert_eq!(status, 200, "{body}");
    admin
        .put("/v1/groups/lab/members/ada", &json!({"role": "admin"}))
        .await;
    let (status, body) = ada.post(activate, &json!({"scope": "lab"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        ada.post(
            "/v1/plugins/router-default/rollback",
            &json!({"scope": "bob"})
        )
        .await
        .0,
        404
    );

    // Each sees only the bindings of its groups; the instance admin sees all of them.
    let scopes = |v: &Value| -> Vec<String> {
        let mut s: Vec<String> = v["bindings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["scope"].as_str().unwrap().to_string())
            .collect();
        s.sort();
        s
    };
    let (_, p) = bob.get("/v1/plugins/router-default").await;
    assert_eq!(scopes(&p), ["bob"]);
    let (_, p) = ada.get("/v1/plugins/router-default").await;
    assert_eq!(scopes(&p), ["lab"]);
    let (_, p) = admin.get("/v1/plugins/router-default").await;
    assert_eq!(scopes(&p), ["", "bob", "lab"]);
    let (_, list) = bob.get("/v1/plugins").await;
    assert!(!list.to_string().contains("\"lab\""), "{list}");
    // /metrics is open: it shows no group names.
    let metrics = s.metrics_text().await;
    assert!(metrics.contains("tessera_plugin_calls_total"), "{metrics}");
    for name in ["\"lab\"", "\"bob\""] {
        assert!(!metrics.contains(name), "{name} in {metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_access_tokens_are_scoped_shown_once_and_revoked_at_once() {
    let s = server().await;
    let admin = admin(&s);
    let ada = user(&s, "ada").await;
    let (status, made) = ada
        .post(
            "/v1/auth/tokens",
            &json!({"name": "ci", "read_only": true, "expires_in_days": 7}),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let ci = client_with(&s, &made["token"]);
    assert!(ci.token.starts_with("tsr_pat_"));
    let (_, listed) = ada.get("/v1/auth/tokens").await;
    assert_eq!(listed["tokens"][0]["name"], "ci");
    assert!(!listed.to_string().contains(&ci.token));
    assert_eq!(
        ada.post("/v1/auth/tokens", &json!({"name": "ci"})).await.0,
        409
    );
    // A lifetime past what a date can hold is refused, not a crash (the fuzzer found it).
    let (status, err) = ada
        .post(
            "/v1/auth/tokens",
            &json!({"name": "forever", "expires_in_days": 2_147_483_648u64}),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    let (status, err) = ada
        .post(
            "/v1/auth/tokens",
            &json!({"name": "forever", "expires_in_days": 36_501}),
        )
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("invalid_parameter")),
        "{err}"
    );
    assert_eq!(
        ada.post("/v1/auth/tokens", &json!({"name": "Bad Name"}))
            .await
            .0,
        400
    );

    // Read-only: it reads, it does not write, and it cannot make a token that writes.
    let (_, task) = create(&ada, "t", None).await;
    let (_, me) = ci.get("/v1/auth/whoami").await;
    assert_eq!(
        (me["username"].as_str(), me["read_only"].as_bool()),
        (Some("ada"), Some(true))
    );
    assert_eq!(ci.get(&format!("/tasks/{task}")).await.0, 200);
    assert_eq!(create(&ci, "no", None).await.0, 403);
    assert_eq!(
        ci.post(&format!("/v1/tasks/{task}/cancel"), &json!({}))
            .await
            .0,
        403
    );
    assert_eq!(
        ci.post("/v1/auth/tokens", &json!({"name": "escalate"}))
            .await
            .0,
        403
    );
    let (status, _) = ci
        .post(
            "/v1/auth/tokens",
            &json!({"name": "ro-2", "read_only": true}),
        )
        .await;
    assert_eq!(status, 201);

    // Revoking one token ends it at once.
    assert_eq!(ada.delete("/v1/auth/tokens/ci").await.0, 204);
    assert_eq!(ci.get("/v1/auth/whoami").await.0, 401);
    assert_eq!(ada.delete("/v1/auth/tokens/ci").await.0, 404);

    // Revoking everything ends the password logins' access tokens too.
    let (_, made) = ada
        .post("/v1/auth/tokens", &json!({"name": "laptop"}))
        .await;
    let laptop = client_with(&s, &made["token"]);
    assert_eq!(laptop.get("/v1/auth/whoami").await.0, 200);
    assert_eq!(
        ada.post("/v1/auth/tokens/revoke-all", &json!({})).await.0,
        204
    );
    for c in [&ada, &laptop] {
        let (status, body) = c.get("/v1/auth/whoami").await;
        assert_eq!(status, 401, "{body}");
    }
    // A new login works again.
    let (status, _) = login(&s, "ada", "ada-password-1").await;
    assert_eq!(status, 200);
    // An instance admin revokes for a user; a new password ends old sessions too.
    let (_, body) = login(&s, "ada", "ada-password-1").await;
    let ada2 = client_with(&s, &body["access_token"]);
    assert_eq!(ada2.get("/v1/auth/whoami").await.0, 200);
    assert_eq!(
        admin
            .put(
                "/v1/admin/users/ada/password",
                &json!({"password": "another-password"})
            )
            .await
            .0,
        204
    );
    assert_eq!(ada2.get("/v1/auth/whoami").await.0, 401);
    assert_eq!(login(&s, "ada", "ada-password-1").await.0, 401);
    assert_eq!(login(&s, "ada", "another-password").await.0, 200);
    // A deleted user's tokens stop working.
    let (_, body) = login(&s, "ada", "another-password").await;
    let ada3 = client_with(&s, &body["access_token"]);
    assert_eq!(admin.delete("/v1/admin/users/ada").await.0, 204);
    assert_eq!(ada3.get("/v1/auth/whoami").await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_and_foreign_access_tokens_are_refused() {
    let s = server().await;
    let ada = user(&s, "ada").await;
    assert_eq!(ada.get("/v1/auth/whoami").await.0, 200);
    let parts: Vec<&str> = ada.token.split('.').collect();
    assert_eq!(parts.len(), 3);
    // Another signature, another payload, no signature, `alg: none`.
    let mut sig = parts[2].to_string().into_bytes();
    sig[3] = if sig[3] == b'A' { b'B' } else { b'A' };
    let forged = [
        format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            String::from_utf8(sig).unwrap()
        ),
        format!("{}.{}.", parts[0], parts[1]),
        // {"alg":"none","typ":"JWT"}
        format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]),
        // {"alg":"HS256","typ":"JWT"}
        format!(
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{}.{}",
            parts[1], parts[2]
        ),
    ];
    for token in forged {
        let c = Client { s: &s, token };
        let (status, body) = c.get("/v1/auth/whoami").await;
        assert_eq!(status, 401, "{}: {body}", c.token);
    }
    // A token signed by another server's key is refused here.
    let other = server().await;
    let foreign = user(&other, "ada").await;
    let c = Client {
        s: &s,
        token: foreign.token.clone(),
    };
    assert_eq!(c.get("/v1/auth/whoami").await.0, 401);
}

/// The CLI with its own config directory; stdin fed `input`. (success, stdout, stderr)
async fn cli(
    s: &Server,
    config: &std::path::Path,
    args: &[&str],
    input: &str,
) -> (bool, String, String) {
    use std::io::Write;
    let mut cmd = common::cli_command(s, args);
    cmd.env("XDG_CONFIG_HOME", config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let input = input.to_string();
    let out = tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().expect("tessera CLI");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_logs_in_keeps_the_token_privately_and_administers() {
    let s = server().await;
    let config = tempfile::tempdir().unwrap();
    let c = config.path();
    // The instance admin (its token from the data directory) makes a user and a group.
    let (ok, _, err) = cli(
        &s,
        c,
        &["admin", "user", "create", "ada", "--password-stdin"],
        "ada-password-1\n",
    )
    .await;
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&s, c, &["admin", "group", "create", "lab"], "").await;
    assert!(ok, "{err}");
    let (ok, _, err) = cli(
        &s,
        c,
        &[
            "admin",
            "group",
            "set-member",
            "lab",
            "ada",
            "--role",
            "write",
        ],
        "",
    )
    .await;
    assert!(ok, "{err}");
    let (ok, _, err) = cli(
        &s,
        c,
        &["admin", "group", "quota", "lab", "--max-queued", "0"],
        "",
    )
    .await;
    assert!(ok, "{err}");
    let (ok, out, _) = cli(&s, c, &["whoami"], "").await;
    assert!(ok && out.starts_with("admin (instance admin)"), "{out}");

    // A wrong password keeps nothing; the right one keeps the token for this server.
    let (ok, _, err) = cli(
        &s,
        c,
        &["login", "-u", "ada", "--password-stdin"],
        "wrong-password\n",
    )
    .await;
    assert!(!ok && err.contains("wrong"), "{err}");
    assert!(!c.join("tessera/credentials.json").exists());
    let (ok, _, err) = cli(
        &s,
        c,
        &["login", "-u", "ada", "--password-stdin"],
        "ada-password-1\n",
    )
    .await;
    assert!(ok, "{err}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(c.join("tessera/credentials.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // The kept token comes before the data directory's.
    let (ok, out, _) = cli(&s, c, &["whoami"], "").await;
    assert!(ok, "{out}");
    assert!(out.starts_with("ada\n"), "{out}");
    assert!(out.contains("lab") && out.contains("write"), "{out}");
    // ada is no instance admin.
    let (ok, _, err) = cli(&s, c, &["admin", "user", "list"], "").await;
    assert!(!ok && err.contains("instance administrators"), "{err}");
    // lab's queue takes nothing (the quota set above); the error says so.
    let task = s.allowed.join("task.json");
    let mut doc = simple_task(&["true"]);
    doc["tags"] = json!({"tessera.group": "lab"});
    std::fs::write(&task, doc.to_string()).unwrap();
    let (ok, _, err) = cli(&s, c, &["task", "submit", task.to_str().unwrap()], "").await;
    assert!(!ok && err.contains("its limit is 0"), "ok={ok} err={err}");

    // A personal access token, printed once, then kept with --with-token elsewhere.
    let (ok, token, err) = cli(
        &s,
        c,
        &["admin", "token", "create", "laptop", "--read-only"],
        "",
    )
    .await;
    assert!(ok, "{err}");
    let token = token.trim().to_string();
    assert!(token.starts_with("tsr_pat_"), "{token}");
    let other = tempfile::tempdir().unwrap();
    let (ok, _, err) = cli(
        &s,
        other.path(),
        &["login", "--with-token"],
        &format!("{token}\n"),
    )
    .await;
    assert!(ok, "{err}");
    let (ok, out, _) = cli(&s, other.path(), &["whoami"], "").await;
    assert!(ok && out.starts_with("ada (read-only token)"), "{out}");
    let (ok, out, err) = cli(&s, c, &["admin", "token", "list", "-o", "json"], "").await;
    assert!(
        ok && out.contains("laptop") && !out.contains(&token),
        "{out}{err}"
    );
    let (ok, _, err) = cli(&s, c, &["admin", "token", "revoke", "laptop"], "").await;
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&s, other.path(), &["whoami"], "").await;
    assert!(!ok && err.contains("not valid"), "{err}");

    // The audit log through the CLI (ada is no instance admin).
    let (ok, _, err) = cli(&s, c, &["admin", "audit"], "").await;
    assert!(!ok && err.contains("instance administrators"), "{err}");

    // Logging out falls back to the data directory's token.
    let (ok, _, _) = cli(&s, c, &["logout"], "").await;
    assert!(ok);
    let (ok, out, _) = cli(&s, c, &["whoami"], "").await;
    assert!(ok && out.starts_with("admin"), "{out}");
    let (ok, out, err) = cli(&s, c, &["admin", "audit", "--actor", "ada"], "").await;
    assert!(ok, "{err}");
    assert!(
        out.contains("/v1/auth/tokens/{name}") && out.contains("laptop"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_are_audited_for_instance_admins_to_read() {
    let s = server().await;
    let admin = admin(&s);
    let ada = user(&s, "ada").await;
    assert_eq!(login(&s, "ada", "not-her-password").await.0, 401);
    let (_, task) = create(&ada, "audited", None).await;
    let bob = user(&s, "bob").await;
    assert_eq!(
        bob.post(&format!("/v1/tasks/{task}/cancel"), &json!({}))
            .await
            .0,
        404
    );
    // Reads are not recorded.
    ada.get(&format!("/tasks/{task}")).await;

    assert_eq!(bob.get("/v1/admin/audit").await.0, 403);
    let (status, log) = admin.get("/v1/admin/audit?page_size=1000").await;
    assert_eq!(status, 200, "{log}");
    let entries: Vec<(String, String, String, String, u64)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["method"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
                e["object"].as_str().unwrap().to_string(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let has = |actor: &str, action: &str, object: &str, status: u64| {
        entries
            .iter()
            .any(|e| e.0 == actor && e.2 == action && e.3 == object && e.4 == status)
    };
    assert!(has("admin", "/v1/admin/users", "ada", 201), "{entries:?}");
    assert!(has("ada", "/v1/auth/token", "ada", 200), "{entries:?}");
    assert!(has("ada", "/v1/auth/token", "ada", 401), "{entries:?}");
    assert!(has("ada", "/ga4gh/tes/v1/tasks", &task, 200), "{entries:?}");
    assert!(
        has("bob", "/v1/tasks/{id}/cancel", &task, 404),
        "{entries:?}"
    );
    assert!(entries.iter().all(|e| e.1 != "GET"), "{entries:?}");
    // Newest first, paged, filtered by actor.
    assert_eq!(entries[0].0, "bob");
    let (_, first) = admin.get("/v1/admin/audit?page_size=2&actor=ada").await;
    assert_eq!(first["entries"].as_array().unwrap().len(), 2);
    let token = first["next_page_token"].as_str().unwrap();
    let (_, rest) = admin
        .get(&format!(
            "/v1/admin/audit?page_size=10&actor=ada&page_token={token}"
        ))
        .await;
    let rest = rest["entries"].as_array().unwrap();
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert!(rest.iter().all(|e| e["actor"] == "ada"));
}

/// Each started task of `ids`: (seq of the event that started it, seq of the event that
/// ended it, if it has).
async fn started_spans(c: &Client<'_>, ids: &[String]) -> Vec<(String, i64, Option<i64>)> {
    let mut out = Vec::new();
    for id in ids {
        let (_, st) = c.get(&format!("/v1/tasks/{id}")).await;
        let events = st["events"].as_array().unwrap();
        let seq_of = |pred: &dyn Fn(&str) -> bool| {
            events
                .iter()
                .find(|e| pred(e["to_state"].as_str().unwrap()))
                .map(|e| e["seq"].as_i64().unwrap())
        };
        if let Some(start) = seq_of(&|s| s == "INITIALIZING") {
            let end = seq_of(&|s| {
                matches!(
                    s,
                    "COMPLETE" | "EXECUTOR_ERROR" | "SYSTEM_ERROR" | "CANCELED"
                )
            });
            out.push((id.clone(), start, end));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_bound_each_group_and_a_long_queue_does_not_hold_back_another_group() {
    let s = Server::start(Options {
        max_concurrent_tasks: 2,
        ..Options::default()
    })
    .await;
    let admin = admin(&s);
    for g in ["a", "b"] {
        assert_eq!(admin.post("/v1/groups", &json!({ "name": g })).await.0, 201);
    }
    // Group a queues 1,000 tasks.
    let mut a_ids = Vec::new();
    for chunk in 0..50 {
        let names: Vec<String> = (0..20).map(|i| format!("a-{chunk}-{i}")).collect();
        let creates = names.iter().map(|n| create(&admin, n, Some("a")));
        for (status, id) in futures_util::future::join_all(creates).await {
            assert_eq!(status, 200);
            a_ids.push(id);
        }
    }
    // A queue limit refuses more (429), and only in its group.
    let (status, quota) = admin
        .put("/v1/groups/a/quota", &json!({"max_queued": 5}))
        .await;
    assert_eq!(status, 200, "{quota}");
    let mut t = simple_task(&["true"]);
    t["tags"] = json!({"tessera.group": "a"});
    let (status, body) = admin.post("/tasks", &t).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("quota_exceeded")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("limit is 5"),
        "{body}"
    );
    // Group b's first task starts next to a's long queue: between its submission and
    // its start, at most one of a's tasks starts per slot (a dispatch that read the
    // queue just before b's task arrived fills each slot freed in it).
    let (status, b_first) = create(&admin, "b-first", Some("b")).await;
    assert_eq!(status, 200);
    let (_, b_events) = admin.get(&format!("/v1/tasks/{b_first}")).await;
    let b_queued = b_events["events"][0]["seq"].as_i64().unwrap();
    let b_done = s.wait_done(&b_first).await;
    assert_eq!(b_done["state"], "COMPLETE", "{b_done}");
    let b_start = started_spans(&admin, std::slice::from_ref(&b_first)).await[0].1;
    assert!(b_queued < b_start);
    // Hold a's queue back entirely, then look at what ran.
    admin
        .put("/v1/groups/a/quota", &json!({"max_running": 0}))
        .await;
    let spans = started_spans(&admin, &a_ids).await;
    let overtaking = spans
        .iter()
        .filter(|(_, start, _)| *start > b_queued && *start < b_start)
        .count();
    assert!(
        overtaking <= 2,
        "{overtaking} of a's tasks started while b's first waited (queued at event {b_queued}, started at {b_start})"
    );
    assert!(
        spans.len() < 900,
        "a's queue was not long: {} ran",
        spans.len()
    );

    // A running limit: a's tasks run one at a time while b's run beside them.
    admin
        .put("/v1/groups/a/quota", &json!({"max_running": 1}))
        .await;
    let b_more: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..4 {
            ids.push(create(&admin, &format!("b-{i}"), Some("b")).await.1);
        }
        ids
    };
    // Every event after this one came after the limit was set.
    let limited_from = admin.get(&format!("/v1/tasks/{}", b_more[0])).await.1["events"][0]["seq"]
        .as_i64()
        .unwrap();
    for id in &b_more {
        assert_eq!(s.wait_done(id).await["state"], "COMPLETE");
    }
    // Let a's limited queue move a little, then stop it again.
    let before = started_spans(&admin, &a_ids).await.len();
    let mut waited = 0;
    while started_spans(&admin, &a_ids).await.len() < before + 3 && waited < 600 {
        waited += 1;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    admin
        .put("/v1/groups/a/quota", &json!({"max_running": 0}))
        .await;
    // The tasks a started under the limit never overlapped.
    let mut ended = Vec::new();
    for (id, _, end) in started_spans(&admin, &a_ids).await {
        if end.is_none() {
            s.wait_done(&id).await;
        }
        ended.push(id);
    }
    let mut spans: Vec<(i64, i64)> = started_spans(&admin, &ended)
        .await
        .into_iter()
        .filter(|(_, start, _)| *start > limited_from)
        .map(|(id, start, end)| (start, end.unwrap_or_else(|| panic!("{id} still runs"))))
        .collect();
    spans.sort();
    assert!(spans.len() >= 3, "{spans:?}");
    for w in spans.windows(2) {
        assert!(
            w[0].1 < w[1].0,
            "a's tasks overlapped under max_running 1: {spans:?}"
        );
    }
    // The oldest of a's waiting tasks says why it waits.
    let ended: std::collections::HashSet<&String> = ended.iter().collect();
    let waiting = a_ids.iter().find(|id| !ended.contains(id)).unwrap();
    // Until the server's own slots are free again it says that first (under a loaded
    // machine that takes a while): wait for the group's reason within the deadline.
    let mut reason = String::new();
    let since = std::time::Instant::now();
    while since.elapsed() < common::DEADLINE {
        reason = s.status(waiting).await["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if reason.contains("limit of 0 running tasks") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        reason.contains("group a has reached its limit of 0 running tasks"),
        "{reason}"
    );
}
