//! Users, groups, memberships and personal access tokens, on SQLite and PostgreSQL.

mod support;

use support::Db;
use tessera_core::identity::Role;
use tessera_store::StoreError;

store_tests!(
    a_user_comes_with_a_personal_group_it_administers,
    names_are_shared_by_users_and_groups,
    memberships_carry_one_role_per_group,
    tokens_are_kept_by_digest_listed_by_name_and_revoked,
    users_and_groups_are_listed_changed_and_deleted,
    the_audit_log_pages_newest_first_and_is_pruned_by_age,
);

async fn a_user_comes_with_a_personal_group_it_administers(db: &Db) {
    let store = &db.store;
    assert_eq!(store.count_users().await.unwrap(), 0);
    store
        .create_user("ada", Some("$argon2id$v=19$fake"), true)
        .await
        .unwrap();
    assert_eq!(store.count_users().await.unwrap(), 1);
    let ada = store.user("ada").await.unwrap().unwrap();
    assert_eq!(ada.password_hash.as_deref(), Some("$argon2id$v=19$fake"));
    assert!(ada.instance_admin);
    assert_eq!(ada.token_generation, 0);
    assert_eq!(
        store.memberships("ada").await.unwrap(),
        [("ada".to_string(), Role::Admin)]
    );
    store.create_user("bob", None, false).await.unwrap();
    let bob = store.user("bob").await.unwrap().unwrap();
    assert_eq!((bob.password_hash, bob.instance_admin), (None, false));
    assert_eq!(store.user("nobody").await.unwrap(), None);
}

async fn names_are_shared_by_users_and_groups(db: &Db) {
    let store = &db.store;
    store.create_user("ada", None, false).await.unwrap();
    store.create_group("lab").await.unwrap();
    for taken in ["ada", "lab"] {
        assert!(matches!(
            store.create_user(taken, None, false).await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            store.create_group(taken).await,
            Err(StoreError::Conflict(_))
        ));
    }
    assert_eq!(store.count_users().await.unwrap(), 1);
}

async fn memberships_carry_one_role_per_group(db: &Db) {
    let store = &db.store;
    store.create_user("ada", None, false).await.unwrap();
    store.create_group("lab").await.unwrap();
    store.create_group("ops").await.unwrap();
    store.set_member("lab", "ada", Role::Read).await.unwrap();
    store.set_member("ops", "ada", Role::Write).await.unwrap();
    // A second set replaces the role.
    store.set_member("lab", "ada", Role::Admin).await.unwrap();
    assert_eq!(
        store.memberships("ada").await.unwrap(),
        [
            ("ada".to_string(), Role::Admin),
            ("lab".to_string(), Role::Admin),
            ("ops".to_string(), Role::Write)
        ]
    );
    assert!(store.remove_member("ops", "ada").await.unwrap());
    assert!(!store.remove_member("ops", "ada").await.unwrap());
    assert_eq!(store.memberships("ada").await.unwrap().len(), 2);
    for (group, user) in [("nope", "ada"), ("lab", "nobody")] {
        assert!(matches!(
            store.set_member(group, user, Role::Read).await,
            Err(StoreError::NotFound(_))
        ));
    }
}

async fn tokens_are_kept_by_digest_listed_by_name_and_revoked(db: &Db) {
    let store = &db.store;
    store.create_user("ada", None, false).await.unwrap();
    store.create_user("bob", None, false).await.unwrap();
    let expires = time::macros::datetime!(2030-01-01 00:00:00 UTC);
    store
        .add_token("ada", "ci", "digest-1", true, Some(expires))
        .await
        .unwrap();
    store
        .add_token("ada", "laptop", "digest-2", false, None)
        .await
        .unwrap();
    // Names are per user.
    store
        .add_token("bob", "ci", "digest-3", false, None)
        .await
        .unwrap();
    assert!(matches!(
        store.add_token("ada", "ci", "digest-4", false, None).await,
        Err(StoreError::Conflict(_))
    ));
    let ci = store.token_by_digest("digest-1").await.unwrap().unwrap();
    assert_eq!(
        (
            ci.user.as_str(),
            ci.name.as_str(),
            ci.read_only,
            ci.expires_at
        ),
        ("ada", "ci", true, Some(expires))
    );
    assert_eq!(store.token_by_digest("digest-9").await.unwrap(), None);
    let names: Vec<String> = store
        .tokens_of("ada")
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["ci", "laptop"]);

    assert!(store.revoke_token("ada", "ci").await.unwrap());
    assert!(!store.revoke_token("ada", "ci").await.unwrap());
    assert_eq!(store.token_by_digest("digest-1").await.unwrap(), None);
    // Revoking everything: the tokens go and the generation rises; bob's stay.
    assert_eq!(store.revoke_all_tokens("ada").await.unwrap(), Some(1));
    assert_eq!(store.token_by_digest("digest-2").await.unwrap(), None);
    assert_eq!(
        store.user("ada").await.unwrap().unwrap().token_generation,
        1
    );
    assert!(store.token_by_digest("digest-3").await.unwrap().is_some());
    assert_eq!(store.revoke_all_tokens("nobody").await.unwrap(), None);
}

async fn users_and_groups_are_listed_changed_and_deleted(db: &Db) {
    let store = &db.store;
    store.create_user("ada", Some("h1"), true).await.unwrap();
    store.create_user("bob", None, false).await.unwrap();
    store.create_group("lab").await.unwrap();
    store.set_member("lab", "bob", Role::Write).await.unwrap();
    store.set_member("lab", "ada", Role::Admin).await.unwrap();
    store.set_member("bob", "ada", Role::Read).await.unwrap();
    let names: Vec<String> = store
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["ada", "bob"]);
    let groups = store.groups().await.unwrap();
    assert_eq!(
        groups
            .iter()
            .map(|g| (g.name.as_str(), g.personal_of.as_deref()))
            .collect::<Vec<_>>(),
        [("ada", Some("ada")), ("bob", Some("bob")), ("lab", None)]
    );
    assert_eq!(
        store.members("lab").await.unwrap(),
        [
            ("ada".to_string(), Role::Admin),
            ("bob".to_string(), Role::Write)
        ]
    );
    // A new password revokes the access tokens issued under the old one.
    assert!(store.set_password("ada", Some("h2")).await.unwrap());
    let ada = store.user("ada").await.unwrap().unwrap();
    assert_eq!(
        (ada.password_hash.as_deref(), ada.token_generation),
        (Some("h2"), 1)
    );
    assert!(!store.set_password("nobody", None).await.unwrap());
    // A personal group goes only with its user.
    assert!(matches!(
        store.delete_group("bob").await,
        Err(StoreError::Conflict(_))
    ));
    store
        .add_token("bob", "ci", "digest-b", false, None)
        .await
        .unwrap();
    assert!(store.delete_user("bob").await.unwrap());
    assert!(!store.delete_user("bob").await.unwrap());
    assert_eq!(store.user("bob").await.unwrap(), None);
    assert_eq!(store.group("bob").await.unwrap(), None);
    assert_eq!(store.token_by_digest("digest-b").await.unwrap(), None);
    assert_eq!(
        store.members("lab").await.unwrap(),
        [("ada".to_string(), Role::Admin)]
    );
    assert_eq!(store.memberships("ada").await.unwrap().len(), 2);
    // The name is free again.
    store.create_user("bob", None, false).await.unwrap();
    assert!(store.delete_group("lab").await.unwrap());
    assert!(!store.delete_group("lab").await.unwrap());
    assert_eq!(
        store.memberships("ada").await.unwrap(),
        [("ada".to_string(), Role::Admin)]
    );
}

async fn the_audit_log_pages_newest_first_and_is_pruned_by_age(db: &Db) {
    use tessera_store::AuditEntry;
    let store = &db.store;
    let entry = |at_ms: i64, actor: &str| AuditEntry {
        at_ms,
        actor: actor.into(),
        method: "POST".into(),
        action: "/ga4gh/tes/v1/tasks".into(),
        object: format!("task-{at_ms}"),
        status: 200,
    };
    store
        .append_audit(&[entry(1, "ada"), entry(2, "bob"), entry(3, "ada")])
        .await
        .unwrap();
    store.append_audit(&[entry(4, "ada")]).await.unwrap();
    let page = store.audit_page(None, None, 2).await.unwrap();
    assert_eq!(
        page.iter().map(|r| r.entry.at_ms).collect::<Vec<_>>(),
        [4, 3]
    );
    assert_eq!(page[0].entry, entry(4, "ada"));
    let next = store.audit_page(Some(page[1].seq), None, 10).await.unwrap();
    assert_eq!(
        next.iter().map(|r| r.entry.at_ms).collect::<Vec<_>>(),
        [2, 1]
    );
    let ada = store.audit_page(None, Some("ada"), 10).await.unwrap();
    assert_eq!(
        ada.iter().map(|r| r.entry.at_ms).collect::<Vec<_>>(),
        [4, 3, 1]
    );
    assert_eq!(store.prune_audit(3).await.unwrap(), 2);
    let left = store.audit_page(None, None, 10).await.unwrap();
    assert_eq!(
        left.iter().map(|r| r.entry.at_ms).collect::<Vec<_>>(),
        [4, 3]
    );
}
