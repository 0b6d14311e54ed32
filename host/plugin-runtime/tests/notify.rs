//! Notifiers: loading against the notifier world and its grants, deliveries, outgoing
//! HTTP to allowed hosts only, and deadlines that hold while a guest waits in the host.

mod common;

use std::time::{Duration, Instant};

use common::server::{Reply, Server};
use common::*;
use tessera_plugin_runtime::{
    CallError, Capability, ErrorKind, LoadError, Manifest, NotifierPlugin, PluginConfig,
    PluginError, PluginRuntime, World,
};

use Capability::{Config, Http};
use tessera_plugin_runtime::{Grants, RouterPlugin};

const SECOND: Duration = Duration::from_secs(1);

fn load(
    rt: &PluginRuntime,
    name: &str,
    m: Manifest,
    config: PluginConfig,
    hosts: &[&str],
) -> Result<NotifierPlugin, LoadError> {
    let hosts = hosts.iter().map(|h| h.to_string()).collect();
    rt.load::<NotifierPlugin>(
        m,
        &component(name),
        Grants {
            config,
            allowed_hosts: hosts,
            ..Grants::default()
        },
    )
}

/// notify-fetch, sending to `authority`, allowed to reach `hosts`.
fn fetcher(
    rt: &PluginRuntime,
    authority: &str,
    hosts: &[&str],
    timeout: Duration,
) -> NotifierPlugin {
    let config = PluginConfig::new().value("authority", authority);
    load(
        rt,
        "notify-fetch",
        notifier_manifest("fetch", &[Config, Http], timeout),
        config,
        hosts,
    )
    .unwrap()
}

fn refusal(r: Result<NotifierPlugin, LoadError>) -> String {
    match r {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn an_event_is_delivered() {
    let rt = runtime();
    let p = load(
        &rt,
        "notify-echo",
        notifier_manifest("echo", &[], SECOND),
        PluginConfig::new(),
        &[],
    )
    .unwrap();
    let (r, logs) = logged(|| p.deliver(&event()));
    assert_eq!(r, Ok(()));
    // The plugin logged the task id and the new state, read at their offsets; the host
    // added who logged and which task it was about.
    assert!(logs.contains("t-1"), "{logs}");
    assert!(logs.contains("RUNNING"), "{logs}");
    assert!(logs.contains("plugin=echo"), "{logs}");
    assert!(logs.contains("task=\"t-1\""), "{logs}");

    let m = p.metrics().snapshot();
    assert_eq!((m.calls, m.errors, m.instantiations), (1, 0, 1));
    let i = &p.info().interfaces;
    assert_eq!(i.exports, vec!["tessera:plugin/notify@0.1.0".to_string()]);
    assert_eq!(p.manifest().world, World::Notifier);
}

#[test]
fn a_plugin_error_is_passed_on() {
    let rt = runtime();
    let p = load(
        &rt,
        "notify-echo",
        notifier_manifest("echo", &[], SECOND),
        PluginConfig::new(),
        &[],
    )
    .unwrap();
    let mut e = event();
    e.reason = Some("mail server down".into());
    assert_eq!(
        p.deliver(&e),
        Err(CallError::Plugin(PluginError::Unavailable(
            "mail server down".into()
        )))
    );
    assert_eq!(p.metrics().snapshot().errors_of(ErrorKind::Plugin), 1);
}

#[test]
fn an_endless_loop_times_out() {
    let rt = runtime();
    let m = notifier_manifest("spin", &[], Duration::from_millis(20));
    let p = load(&rt, "notify-spin", m, PluginConfig::new(), &[]).unwrap();
    assert_eq!(p.deliver(&event()), Err(CallError::Timeout));
    assert_eq!(p.deliver(&event()), Err(CallError::Timeout));
    assert_eq!(p.metrics().snapshot().errors_of(ErrorKind::Timeout), 2);
}

#[test]
fn a_guest_blocked_in_the_host_times_out_at_its_deadline() {
    // It waits a minute on a clock pollable: epochs cannot interrupt that, the host's
    // deadline on blocking calls does.
    let rt = runtime();
    let m = notifier_manifest("sleep", &[Http], Duration::from_millis(50));
    let p = load(&rt, "notify-sleep", m, PluginConfig::new(), &[]).unwrap();
    let start = Instant::now();
    assert_eq!(p.deliver(&event()), Err(CallError::Timeout));
    assert!(start.elapsed() < 10 * SECOND, "{:?}", start.elapsed());
    assert_eq!(p.metrics().snapshot().errors_of(ErrorKind::Timeout), 1);
}

#[test]
fn a_request_to_an_allowed_host_is_sent() {
    let server = Server::start(Reply::Status(204));
    let rt = runtime();
    let authority = server.authority();
    let p = fetcher(&rt, &authority, &[authority.as_str()], 5 * SECOND);
    assert_eq!(p.deliver(&event()), Ok(()));
    let got = server.requests();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].method, "GET");
    assert_eq!(got[0].path, "/hook");
    assert_eq!(got[0].header("host"), Some(authority.as_str()));
    assert_eq!(p.allowed_hosts(), std::slice::from_ref(&authority));

    // Named next to `*`, an internal host is still reached.
    let p = fetcher(&rt, &authority, &["*", authority.as_str()], 5 * SECOND);
    assert_eq!(p.deliver(&event()), Ok(()));
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn a_star_does_not_reach_internal_addresses() {
    let server = Server::start(Reply::Status(200));
    let rt = runtime();
    // A name that resolves to loopback: refused at connect time, on the resolved
    // address, with destination-IP-prohibited (case 4) and no connection.
    let by_name = format!("localhost:{}", server.addr.port());
    let p = fetcher(&rt, &by_name, &["*"], 5 * SECOND);
    assert_eq!(
        p.deliver(&event()),
        Err(CallError::Plugin(PluginError::Unavailable(
            "HTTP error \u{4}".into()
        )))
    );
    assert_eq!(server.connections(), 0);
}

#[test]
fn a_request_to_another_host_is_denied_without_a_connection() {
    let server = Server::start(Reply::Status(200));
    let rt = runtime();
    let authority = server.authority();
    let other_port = format!("127.0.0.1:{}", server.addr.port().wrapping_add(1).max(1));
    // Another host; the right host on its default port only; another port; nothing.
    for hosts in [
        &["example.com"][..],
        &["127.0.0.1"][..],
        &[other_port.as_str()][..],
        // `*` is the public internet; a loopback address is not on it.
        &["*"][..],
        &[][..],
    ] {
        let p = fetcher(&rt, &authority, hosts, 5 * SECOND);
        let (r, logs) = logged(|| p.deliver(&event()));
        assert_eq!(
            r,
            Err(CallError::Plugin(PluginError::Denied(
                "HTTP-request-denied".into()
            ))),
            "{hosts:?}"
        );
        assert!(logs.contains("outgoing request denied"), "{logs}");
        assert!(logs.contains(&authority), "{logs}");
        // Scheme and authority only: the path may carry a token.
        assert!(!logs.contains("/hook"), "{logs}");
    }
    assert_eq!(server.connections(), 0);
    assert!(server.requests().is_empty());
}

#[test]
fn a_status_other_than_2xx_reaches_the_plugin() {
    let server = Server::start(Reply::Status(503));
    let rt = runtime();
    let authority = server.authority();
    let p = fetcher(&rt, &authority, &[authority.as_str()], 5 * SECOND);
    assert_eq!(
        p.deliver(&event()),
        Err(CallError::Plugin(PluginError::Other(
            "not a 2xx status".into()
        )))
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_refused_connection_is_an_error_code_for_the_plugin() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let rt = runtime();
    let authority = format!("127.0.0.1:{port}");
    let p = fetcher(&rt, &authority, &[authority.as_str()], 5 * SECOND);
    // unavailable("HTTP error <case>"), case 6: connection-refused.
    assert_eq!(
        p.deliver(&event()),
        Err(CallError::Plugin(PluginError::Unavailable(
            "HTTP error \u{6}".into()
        )))
    );
}

#[test]
fn a_server_that_never_answers_ends_the_call_at_the_deadline() {
    let server = Server::start(Reply::Hang);
    let rt = runtime();
    let authority = server.authority();
    let p = fetcher(
        &rt,
        &authority,
        &[authority.as_str()],
        Duration::from_millis(300),
    );
    let start = Instant::now();
    let r = p.deliver(&event());
    let took = start.elapsed();
    // The first-byte timeout and the deadline of the blocking wait are the same instant:
    // either the plugin sees the timeout (and reports it), or the call is cut there.
    assert!(
        matches!(
            r,
            Err(CallError::Timeout) | Err(CallError::Plugin(PluginError::Unavailable(_)))
        ),
        "{r:?}"
    );
    assert!(took < 5 * SECOND, "{took:?}");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn deliveries_work_from_a_blocking_task_of_a_tokio_runtime() {
    // How the host calls notifiers: `spawn_blocking` on its runtime.
    let server = Server::start(Reply::Status(200));
    let rt = runtime();
    let authority = server.authority();
    let p = fetcher(&rt, &authority, &[authority.as_str()], 5 * SECOND);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let r = tokio.block_on(async move {
        let a = tokio::task::spawn_blocking({
            let p = p.clone();
            move || p.deliver(&event())
        });
        let b = tokio::task::spawn_blocking(move || p.deliver(&event()));
        (a.await.unwrap(), b.await.unwrap())
    });
    assert_eq!(r, (Ok(()), Ok(())));
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn http_imports_need_the_http_grant() {
    let rt = runtime();
    let msg = refusal(load(
        &rt,
        "notify-fetch",
        notifier_manifest("fetch", &[Config], SECOND),
        PluginConfig::new(),
        &["*"],
    ));
    assert!(
        msg.contains(
            "imports wasi:http/outgoing-handler@0.2.12, which needs the `http` capability, \
             and the manifest does not grant it"
        ),
        "{msg}"
    );
    assert!(msg.contains("wasi:http/types@0.2.12"), "{msg}");
    // The clock and poll come with `http` only, too.
    let msg = refusal(load(
        &rt,
        "notify-sleep",
        notifier_manifest("sleep", &[], SECOND),
        PluginConfig::new(),
        &[],
    ));
    assert!(
        msg.contains("imports wasi:clocks/monotonic-clock@0.2.12, which needs the `http`"),
        "{msg}"
    );
    assert!(msg.contains("imports wasi:io/poll@0.2.12"), "{msg}");
    // Config without its grant.
    let msg = refusal(load(
        &rt,
        "notify-fetch",
        notifier_manifest("fetch", &[Http], SECOND),
        PluginConfig::new(),
        &["*"],
    ));
    assert!(
        msg.contains("imports tessera:plugin/config@0.1.0, which needs the `config` capability"),
        "{msg}"
    );
}

#[test]
fn a_component_of_another_world_is_refused() {
    let rt = runtime();
    // A router as a notifier.
    let msg = refusal(rt.load::<NotifierPlugin>(
        notifier_manifest("router", &[], SECOND),
        &component("first-fit"),
        Grants {
            config: PluginConfig::new(),
            allowed_hosts: vec![],
            ..Grants::default()
        },
    ));
    assert!(
        msg.contains(
            "does not export tessera:plugin/notify@0.1.0 (it exports tessera:plugin/routing@0.1.0)"
        ),
        "{msg}"
    );
    // A notifier as a router.
    let msg = match rt.load::<RouterPlugin>(
        manifest("echo"),
        &component("notify-echo"),
        Grants::config(PluginConfig::new()),
    ) {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        msg.contains("does not export tessera:plugin/routing@0.2.0"),
        "{msg}"
    );
    // A manifest of another world.
    let msg = refusal(rt.load::<NotifierPlugin>(
        manifest("echo"),
        &component("notify-echo"),
        Grants {
            config: PluginConfig::new(),
            allowed_hosts: vec![],
            ..Grants::default()
        },
    ));
    assert_eq!(
        msg,
        "invalid manifest: the manifest claims the router world, not notifier"
    );
    // An import no world grants.
    let bytes = component_with(
        "notify-echo",
        r#"(import "wasi:cli/environment@0.2.6" (instance (export "get-arguments" (func (result (list string))))))"#,
    );
    let msg = refusal(rt.load::<NotifierPlugin>(
        notifier_manifest("env", &[Http], SECOND),
        &bytes,
        Grants {
            config: PluginConfig::new(),
            allowed_hosts: vec![],
            ..Grants::default()
        },
    ));
    assert_eq!(
        msg,
        "imports wasi:cli/environment@0.2.6 which the notifier world does not grant"
    );
    // A capability the world cannot have.
    let mut m = notifier_manifest("echo", &[], SECOND);
    m.capabilities.push(Capability::Workspace);
    let msg = refusal(rt.load::<NotifierPlugin>(
        m,
        &component("notify-echo"),
        Grants {
            config: PluginConfig::new(),
            allowed_hosts: vec![],
            ..Grants::default()
        },
    ));
    assert!(
        msg.contains("the notifier world cannot be granted `workspace`"),
        "{msg}"
    );
}

#[test]
fn a_wrong_deliver_signature_is_refused() {
    let bytes = wat::parse_str(
        r#"(component
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func $deliver (canon lift (core func $i "f")))
            (instance $notify (export "deliver" (func $deliver)))
            (export "tessera:plugin/notify@0.1.0" (instance $notify)))"#,
    )
    .unwrap();
    let msg = refusal(runtime().load::<NotifierPlugin>(
        notifier_manifest("wrong", &[], SECOND),
        &bytes,
        Grants {
            config: PluginConfig::new(),
            allowed_hosts: vec![],
            ..Grants::default()
        },
    ));
    assert!(
        msg.starts_with("does not match the notifier world"),
        "{msg}"
    );
}

#[test]
fn allowed_hosts_must_be_authorities() {
    let rt = runtime();
    for bad in ["https://example.com", "example.com/hook", "", "a@b"] {
        let r = load(
            &rt,
            "notify-fetch",
            notifier_manifest("fetch", &[Config, Http], SECOND),
            PluginConfig::new(),
            &[bad],
        );
        match r {
            Err(LoadError::Settings(msg)) => assert!(msg.contains("allowed host"), "{msg}"),
            Err(e) => panic!("{bad}: {e}"),
            Ok(_) => panic!("{bad}: loaded"),
        }
    }
    // Without the `http` grant nothing of wasi:http is linked, and hosts do not matter.
    load(
        &rt,
        "notify-echo",
        notifier_manifest("echo", &[], SECOND),
        PluginConfig::new(),
        &["not a host/"],
    )
    .unwrap();
}
