//! Plugin versions and bindings, on SQLite and PostgreSQL.

mod support;

use support::Db;
use tessera_core::State;
use tessera_core::plugin::World;
use tessera_store::{Deleted, Failed, Installed, Lease, PluginVersionRow, Store, StoreError};

store_tests!(
    install_is_idempotent_and_versions_are_immutable,
    bind_activate_and_roll_back,
    delete_refuses_versions_in_use,
    plugins_survive_reopening,
    notifier_outbox_cursor_and_retries,
    one_server_at_a_time_holds_a_notifier,
);

fn version(name: &str, version: &str, world: World, bytes: &[u8]) -> PluginVersionRow {
    PluginVersionRow {
        name: name.into(),
        version: version.into(),
        world,
        manifest: format!(r#"{{"name":"{name}","version":"{version}"}}"#),
        // Distinct bytes give distinct digests; the store only compares them.
        sha256: format!(
            "{:x}",
            bytes.iter().map(|b| *b as u64).sum::<u64>() + bytes.len() as u64
        ),
        size_bytes: bytes.len() as i64,
        origin: "uploaded".into(),
        installed_at: format!("2026-12-01T00:00:0{}Z", bytes.len() % 10),
    }
}

async fn install(store: &Store, name: &str, v: &str, world: World, bytes: &[u8]) {
    let row = version(name, v, world, bytes);
    store.install_plugin_version(&row, bytes).await.unwrap();
}

async fn install_is_idempotent_and_versions_are_immutable(db: &Db) {
    let store = &db.store;
    let bytes = b"\0asm component bytes".to_vec();
    let row = version("pack", "0.1.0", World::Router, &bytes);
    assert_eq!(
        store.install_plugin_version(&row, &bytes).await.unwrap(),
        Installed::New
    );
    assert_eq!(
        store.install_plugin_version(&row, &bytes).await.unwrap(),
        Installed::Unchanged
    );
    let other = b"\0asm other bytes!".to_vec();
    let err = store
        .install_plugin_version(&version("pack", "0.1.0", World::Router, &other), &other)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    // The stored bytes and row are the first ones, byte for byte.
    assert_eq!(
        store.plugin_component("pack", "0.1.0").await.unwrap(),
        Some(bytes.clone())
    );
    assert_eq!(
        store.plugin_version("pack", "0.1.0").await.unwrap(),
        Some(row)
    );
    assert_eq!(store.plugin_component("pack", "9").await.unwrap(), None);
    assert_eq!(store.plugin_versions().await.unwrap().len(), 1);
}

async fn bind_activate_and_roll_back(db: &Db) {
    let store = &db.store;
    install(store, "router-default", "0.1.0", World::Router, b"a").await;
    install(store, "pack", "0.1.0", World::Router, b"bb").await;
    install(store, "pack", "0.2.0", World::Router, b"ccc").await;
    install(store, "hook", "0.1.0", World::Notifier, b"dddd").await;

    // Unknown versions and the wrong world are refused, and change nothing.
    let err = store
        .bind_plugin(World::Router, "", "pack", "9.9.9", None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    let err = store
        .bind_plugin(World::Router, "", "hook", "0.1.0", None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert!(store.plugin_bindings().await.unwrap().is_empty());

    let first = store
        .bind_plugin(World::Router, "", "router-default", "0.1.0", None)
        .await
        .unwrap();
    assert_eq!(first.previous, None);
    assert_eq!(first.settings, "{}");
    store
        .bind_plugin(
            World::Router,
            "",
            "pack",
            "0.1.0",
            Some(r#"{"config":{"k":"v"}}"#),
        )
        .await
        .unwrap();
    // An upgrade without settings keeps the binding's settings.
    let upgraded = store
        .bind_plugin(World::Router, "", "pack", "0.2.0", None)
        .await
        .unwrap();
    assert_eq!(upgraded.settings, r#"{"config":{"k":"v"}}"#);
    assert_eq!(upgraded.previous, Some(("pack".into(), "0.1.0".into())));
    // Activating what is active changes nothing about the rollback target.
    let again = store
        .bind_plugin(World::Router, "", "pack", "0.2.0", None)
        .await
        .unwrap();
    assert_eq!(again.previous, Some(("pack".into(), "0.1.0".into())));

    let back = store
        .rollback_binding(World::Router, "")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (back.plugin.as_str(), back.version.as_str()),
        ("pack", "0.1.0")
    );
    assert_eq!(back.previous, Some(("pack".into(), "0.2.0".into())));
    // Rolling back twice returns to where it was.
    let forth = store
        .rollback_binding(World::Router, "")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(forth.version, "0.2.0");
    assert_eq!(
        store.rollback_binding(World::Router, "ops").await.unwrap(),
        None
    );

    // Another plugin with its own settings: a rollback puts back the previous plugin
    // with the settings it served with, and forth again with the other's.
    store
        .bind_plugin(
            World::Router,
            "",
            "router-default",
            "0.1.0",
            Some(r#"{"allow_hosts":["x"]}"#),
        )
        .await
        .unwrap();
    let back = store
        .rollback_binding(World::Router, "")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (back.plugin.as_str(), back.settings.as_str()),
        ("pack", r#"{"config":{"k":"v"}}"#)
    );
    let forth = store
        .rollback_binding(World::Router, "")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (forth.plugin.as_str(), forth.settings.as_str()),
        ("router-default", r#"{"allow_hosts":["x"]}"#)
    );

    // A per-group router beside the default one.
    store
        .bind_plugin(World::Router, "ops", "router-default", "0.1.0", None)
        .await
        .unwrap();
    let all = store.plugin_bindings().await.unwrap();
    let scopes: Vec<_> = all.iter().map(|b| (b.world, b.scope.as_str())).collect();
    assert_eq!(scopes, [(World::Router, ""), (World::Router, "ops")]);
    assert!(store.unbind_plugin(World::Router, "ops").await.unwrap());
    assert!(!store.unbind_plugin(World::Router, "ops").await.unwrap());
}

async fn delete_refuses_versions_in_use(db: &Db) {
    let store = &db.store;
    install(store, "pack", "0.1.0", World::Router, b"a").await;
    install(store, "pack", "0.2.0", World::Router, b"bb").await;
    store
        .bind_plugin(World::Router, "", "pack", "0.1.0", None)
        .await
        .unwrap();
    store
        .bind_plugin(World::Router, "", "pack", "0.2.0", None)
        .await
        .unwrap();

    assert_eq!(
        store.delete_plugin_version("pack", "0.2.0").await.unwrap(),
        Deleted::InUse(vec![(World::Router, "".into())])
    );
    assert!(
        store
            .plugin_component("pack", "0.2.0")
            .await
            .unwrap()
            .is_some()
    );
    // The rollback target may go; the binding then has nothing to roll back to.
    assert_eq!(
        store.delete_plugin_version("pack", "0.1.0").await.unwrap(),
        Deleted::Deleted
    );
    assert_eq!(store.plugin_bindings().await.unwrap()[0].previous, None);
    assert_eq!(
        store.rollback_binding(World::Router, "").await.unwrap(),
        None
    );
    assert_eq!(
        store.delete_plugin_version("pack", "0.1.0").await.unwrap(),
        Deleted::NotFound
    );
}

async fn plugins_survive_reopening(db: &Db) {
    install(&db.store, "pack", "0.1.0", World::Router, b"abc").await;
    db.store
        .bind_plugin(World::Router, "", "pack", "0.1.0", Some("{}"))
        .await
        .unwrap();
    let again = Store::connect(&db.url).await.unwrap();
    assert_eq!(again.plugin_versions().await.unwrap().len(), 1);
    assert_eq!(again.plugin_bindings().await.unwrap().len(), 1);
    assert_eq!(
        again
            .plugin_component("pack", "0.1.0")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"abc"[..])
    );
}

async fn notifier_outbox_cursor_and_retries(db: &Db) {
    let store = &db.store;
    assert_eq!(store.last_event_seq().await.unwrap(), 0);
    let tasks = store.insert_tasks(&support::names(3)).await.unwrap();
    let last = store.last_event_seq().await.unwrap();
    assert!(last > 0);
    let me = lease("server-a", 3600);
    // A new binding starts at the given point and keeps its cursor from then on.
    assert_eq!(
        store.hold_notifier("hook", last, &me).await.unwrap(),
        Some(last)
    );
    assert_eq!(
        store.hold_notifier("hook", 0, &me).await.unwrap(),
        Some(last)
    );
    store
        .transition(&tasks[0].id, State::Canceling, Some("x"), None)
        .await
        .unwrap()
        .unwrap();
    store
        .transition(&tasks[1].id, State::Canceling, Some("y"), None)
        .await
        .unwrap()
        .unwrap();
    let new = store.events_after(last, 10).await.unwrap();
    assert_eq!(new.len(), 2);
    assert_eq!(new[0].task_id, tasks[0].id);
    assert_eq!(new[1].to_state, State::Canceling);
    assert_eq!(store.events_after(last, 1).await.unwrap().len(), 1);
    assert_eq!(
        store.event(new[1].seq).await.unwrap().as_ref(),
        Some(&new[1])
    );

    // The second delivery failed: the cursor passes both, the failure waits for a retry.
    store
        .advance_notifier(
            "hook",
            new[1].seq,
            &[Failed {
                event_seq: new[1].seq,
                next_at: time::macros::datetime!(2000-01-01 00:00:00 UTC),
                error: "503".into(),
            }],
            "server-a",
        )
        .await
        .unwrap();
    assert_eq!(
        store.hold_notifier("hook", 0, &me).await.unwrap(),
        Some(new[1].seq)
    );
    assert_eq!(store.retry_counts("hook").await.unwrap(), (1, 0));
    assert!(
        store
            .due_retries("hook", time::macros::datetime!(1999-01-01 00:00:00 UTC), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let due = store
        .due_retries("hook", time::macros::datetime!(2001-01-01 00:00:00 UTC), 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].event_seq, due[0].attempts), (new[1].seq, 1));
    store
        .retry_failed(
            "hook",
            new[1].seq,
            time::macros::datetime!(2002-01-01 00:00:00 UTC),
            "timeout",
            false,
            "server-a",
        )
        .await
        .unwrap();
    let due = store
        .due_retries("hook", time::macros::datetime!(2003-01-01 00:00:00 UTC), 10)
        .await
        .unwrap();
    assert_eq!(
        (due[0].attempts, due[0].last_error.as_str()),
        (2, "timeout")
    );
    // Other bindings have their own cursor and retries.
    assert!(
        store
            .due_retries(
                "other",
                time::macros::datetime!(2003-01-01 00:00:00 UTC),
                10
            )
            .await
            .unwrap()
            .is_empty()
    );
    store
        .retry_failed(
            "hook",
            new[1].seq,
            time::macros::datetime!(2002-01-01 00:00:00 UTC),
            "gone",
            true,
            "server-a",
        )
        .await
        .unwrap();
    assert_eq!(store.retry_counts("hook").await.unwrap(), (0, 1));
    assert!(
        store
            .due_retries("hook", time::macros::datetime!(2003-01-01 00:00:00 UTC), 10)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .advance_notifier("hook", new[1].seq, &[], "server-a")
        .await
        .unwrap();
    store
        .retry_delivered("hook", new[1].seq, "server-a")
        .await
        .unwrap();
    assert_eq!(store.retry_counts("hook").await.unwrap(), (0, 0));
}

fn lease(owner: &str, secs: u64) -> Lease {
    Lease {
        owner: owner.into(),
        ttl: std::time::Duration::from_secs(secs),
    }
}

/// One server at a time delivers a binding: another is refused while the holder's lease
/// lives, takes over once it ran out, and then the old holder's bookkeeping is refused.
async fn one_server_at_a_time_holds_a_notifier(db: &Db) {
    let store = &db.store;
    let tasks = store.insert_tasks(&support::names(1)).await.unwrap();
    let start = store.last_event_seq().await.unwrap();
    let a = lease("server-a", 3600);
    let b = lease("server-b", 3600);
    assert_eq!(
        store.hold_notifier("hook", start, &a).await.unwrap(),
        Some(start)
    );
    assert_eq!(store.hold_notifier("hook", start, &b).await.unwrap(), None);
    // Another binding is free for b.
    assert_eq!(
        store.hold_notifier("other", start, &b).await.unwrap(),
        Some(start)
    );
    // A failed delivery queued by a, then a's lease runs out (a renewal with no time to live).
    store
        .transition(&tasks[0].id, State::Canceling, None, None)
        .await
        .unwrap();
    let seq = store.last_event_seq().await.unwrap();
    store
        .advance_notifier(
            "hook",
            seq,
            &[Failed {
                event_seq: seq,
                next_at: time::macros::datetime!(2000-01-01 00:00:00 UTC),
                error: "503".into(),
            }],
            "server-a",
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .hold_notifier("hook", 0, &lease("server-a", 0))
            .await
            .unwrap(),
        Some(seq)
    );
    // b takes over where a left off, with a's retry waiting.
    assert_eq!(store.hold_notifier("hook", 0, &b).await.unwrap(), Some(seq));
    assert_eq!(store.retry_counts("hook").await.unwrap(), (1, 0));
    // a, late, is refused: its cursor move, retry bookkeeping and hold change nothing.
    assert!(matches!(
        store
            .advance_notifier("hook", seq + 100, &[], "server-a")
            .await,
        Err(StoreError::NotHeld(_))
    ));
    store
        .retry_delivered("hook", seq, "server-a")
        .await
        .unwrap();
    assert_eq!(store.retry_counts("hook").await.unwrap(), (1, 0));
    assert_eq!(store.hold_notifier("hook", 0, &a).await.unwrap(), None);
    assert_eq!(store.hold_notifier("hook", 0, &b).await.unwrap(), Some(seq));
    store
        .retry_delivered("hook", seq, "server-b")
        .await
        .unwrap();
    assert_eq!(store.retry_counts("hook").await.unwrap(), (0, 0));
}
