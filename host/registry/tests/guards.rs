//! What the registry refuses so that a plugin cannot hurt the host or another plugin: a
//! built-in's name, a call timeout beyond the host's cap, `*` grants not asked for, and
//! settings (secrets, grants) handed from one plugin to another.

use tessera_plugin_runtime::{PluginRuntime, RuntimeConfig};
use tessera_registry::{Builtin, Grant, Registry, RegistryError, Settings};
use tessera_store::Store;

fn component(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../plugin-runtime/tests/components/{name}.wat",
        env!("CARGO_MANIFEST_DIR")
    );
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn router(name: &str, version: &str, extra: &str) -> String {
    format!("name = \"{name}\"\nversion = \"{version}\"\nworld = \"router\"\n{extra}")
}

async fn open(dir: &std::path::Path, builtins: &[Builtin]) -> Registry {
    let store = Store::connect(&format!("sqlite://{}/t.db", dir.display()))
        .await
        .unwrap();
    let runtime = PluginRuntime::new(RuntimeConfig {
        cache_dir: Some(dir.join("cache")),
        ..RuntimeConfig::default()
    })
    .unwrap();
    Registry::open(store, runtime, builtins, None, Vec::new())
        .await
        .unwrap()
}

#[tokio::test]
async fn an_upload_cannot_take_a_builtins_name() {
    let dir = tempfile::tempdir().unwrap();
    let builtin = Builtin {
        manifest: Box::leak(router("router-default", "0.1.0", "").into_boxed_str()),
        component: Box::leak(component("first-fit").into_boxed_slice()),
    };
    let reg = open(dir.path(), &[builtin]).await;
    let err = reg
        .install(
            &router("router-default", "9.9.9", ""),
            component("first-fit"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::Conflict(m) if m.contains("built-in")),
        "{err:?}"
    );
    // The next start still works (it installs the built-in again).
    drop(reg);
    open(dir.path(), &[builtin]).await;
}

#[tokio::test]
async fn a_call_timeout_beyond_the_hosts_cap_is_refused_at_install() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path(), &[]).await;
    // The default cap for routers is 1 s.
    let err = reg
        .install(
            &router("slow", "1", "[limits]\ntimeout-ms = 5000\n"),
            component("first-fit"),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("more than this host allows"),
        "{err}"
    );
    reg.install(
        &router("slow", "1", "[limits]\ntimeout-ms = 1000\n"),
        component("first-fit"),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn wildcards_are_granted_only_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path(), &[]).await;
    reg.install(&router("r", "1", ""), component("first-fit"))
        .await
        .unwrap();
    for settings in [
        Settings {
            allow_hosts: vec!["*".into()],
            ..Settings::default()
        },
        Settings {
            buckets: vec!["*".into()],
            ..Settings::default()
        },
    ] {
        let err = reg
            .activate("r", "1", None, Some(settings.clone()), Grant::Named)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RegistryError::Invalid(m) if m.contains("grant-any")),
            "{err:?}"
        );
        let view = reg
            .activate("r", "1", None, Some(settings), Grant::Any)
            .await
            .unwrap();
        assert!(view.allow_hosts.contains(&"*".into()) || view.buckets.contains(&"*".into()));
    }
    // Named hosts need nothing more.
    reg.activate(
        "r",
        "1",
        None,
        Some(Settings {
            allow_hosts: vec!["example.org".into()],
            ..Settings::default()
        }),
        Grant::Named,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn secrets_stay_with_the_plugin_they_were_set_for() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path(), &[]).await;
    let with_secret = "secrets = [\"token\"]\n";
    reg.install(&router("a", "1", with_secret), component("first-fit"))
        .await
        .unwrap();
    reg.install(&router("a", "2", with_secret), component("first-fit"))
        .await
        .unwrap();
    reg.install(&router("b", "1", with_secret), component("first-fit"))
        .await
        .unwrap();
    let settings = Settings {
        secrets: [("token".to_string(), "s3cr3t".to_string())].into(),
        ..Settings::default()
    };
    let a = reg
        .activate("a", "1", None, Some(settings), Grant::Named)
        .await
        .unwrap();
    assert_eq!(a.secrets, ["token"]);
    // A new version of the same plugin keeps them…
    let a2 = reg
        .activate("a", "2", None, None, Grant::Named)
        .await
        .unwrap();
    assert_eq!(a2.secrets, ["token"]);
    // …another plugin on the scope does not get them…
    let b = reg
        .activate("b", "1", None, None, Grant::Named)
        .await
        .unwrap();
    assert!(b.secrets.is_empty(), "{:?}", b.secrets);
    // …and rolling back gives them back to the plugin they belong to.
    let back = reg.rollback("b", None).await.unwrap();
    assert_eq!(
        (back.plugin.as_str(), back.secrets.clone()),
        ("a", vec!["token".to_string()])
    );
}
