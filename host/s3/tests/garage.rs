//! The client against a real S3 store (Garage in the test environment): round trips,
//! metadata, listing and paging, and the errors a caller meets.

mod support;

use std::io::{self, Cursor, Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tessera_s3::{S3Client, S3Config, S3Error, Secret};

use support::*;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn small_objects_round_trip_with_their_metadata() {
    let Some(env) = s3_env() else { return };
    let store = blocking(env.config);
    let prefix = unique_prefix("small");
    for (name, size) in [("empty", 0u64), ("one", 1), ("some", 100 * 1024 + 3)] {
        let key = format!("{prefix}{name}");
        let mut source = Generator::new(size + 7, size);
        assert_eq!(
            store.put(&env.bucket, &key, size, &mut source).unwrap(),
            size
        );
        let sent = source.digest();

        let info = store
            .head(&env.bucket, &key)
            .unwrap()
            .expect("just written");
        assert_eq!(info.key, key);
        assert_eq!(info.size, size);
        let etag = info.etag.clone().expect("an entity tag");
        assert!(!etag.is_empty() && !etag.contains('"'), "{etag:?}");
        let modified = info.modified_ms.expect("a modification time");
        assert!(
            modified.abs_diff(now_ms()) < 10 * 60 * 1000,
            "modified {modified}"
        );

        let reader = store.get(&env.bucket, &key).unwrap();
        assert_eq!(reader.info(), &info);
        let (len, received) = hash_reader(reader).unwrap();
        assert_eq!((len, received), (size, sent), "{key}");
        store.delete(&env.bucket, &key).unwrap();
    }
}

#[test]
fn an_object_is_replaced_and_read_in_odd_steps() {
    let Some(env) = s3_env() else { return };
    let store = blocking(env.config);
    let key = format!("{}replaced", unique_prefix("replace"));
    store
        .put(&env.bucket, &key, 5, Cursor::new(b"first"))
        .unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    store
        .put(&env.bucket, &key, data.len() as u64, Cursor::new(&data))
        .unwrap();
    let mut reader = store.get(&env.bucket, &key).unwrap();
    let mut back = Vec::new();
    let mut buf = [0u8; 977];
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        back.extend_from_slice(&buf[..n]);
    }
    assert_eq!(back, data);
    // Reading past the end stays at the end.
    assert_eq!(reader.read(&mut buf).unwrap(), 0);
    store.delete(&env.bucket, &key).unwrap();
}

#[test]
fn head_of_a_missing_key_is_none() {
    let Some(env) = s3_env() else { return };
    let store = blocking(env.config);
    let key = format!("{}never-written", unique_prefix("missing"));
    assert_eq!(store.head(&env.bucket, &key).unwrap(), None);
    assert!(matches!(
        store.get(&env.bucket, &key),
        Err(S3Error::NotFound)
    ));
    // Deleting what is not there is fine.
    store.delete(&env.bucket, &key).unwrap();
}

#[test]
fn listing_filters_by_prefix_and_pages() {
    let Some(env) = s3_env() else { return };
    let store = blocking(env.config);
    let prefix = unique_prefix("list");
    let names = ["a", "b", "c/d", "c/e", "f"];
    for (i, name) in names.iter().enumerate() {
        let body = vec![b'x'; i + 1];
        store
            .put(
                &env.bucket,
                &format!("{prefix}{name}"),
                body.len() as u64,
                Cursor::new(body),
            )
            .unwrap();
    }
    // A key that shares the prefix's text but not its "directory".
    let sibling = format!("{}x", prefix.trim_end_matches('/'));
    store
        .put(&env.bucket, &sibling, 1, Cursor::new(b"s"))
        .unwrap();

    let keys = |infos: Vec<tessera_s3::ObjectInfo>| -> Vec<String> {
        infos
            .into_iter()
            .map(|i| i.key.strip_prefix(&prefix).unwrap().to_owned())
            .collect()
    };
    let all = store.list(&env.bucket, &prefix, None, 100).unwrap();
    assert_eq!(
        all.iter().map(|i| i.size).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert!(
        all.iter()
            .all(|i| i.etag.is_some() && i.modified_ms.is_some())
    );
    assert_eq!(keys(all), names);

    // Pages of two, each after the last key of the one before.
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list(&env.bucket, &prefix, after.as_deref(), 2)
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        after = Some(page.last().unwrap().key.clone());
        pages.push(keys(page));
    }
    assert_eq!(pages, [vec!["a", "b"], vec!["c/d", "c/e"], vec!["f"]]);

    // A narrower prefix, and a start-after that is not itself a key.
    let c = store
        .list(&env.bucket, &format!("{prefix}c/"), None, 10)
        .unwrap();
    assert_eq!(keys(c), ["c/d", "c/e"]);
    let after_b = store
        .list(&env.bucket, &prefix, Some(&format!("{prefix}bz")), 10)
        .unwrap();
    assert_eq!(keys(after_b), ["c/d", "c/e", "f"]);
    assert!(matches!(
        store.list(&env.bucket, &prefix, None, 0),
        Err(S3Error::InvalidInput(_))
    ));

    for name in names {
        store
            .delete(&env.bucket, &format!("{prefix}{name}"))
            .unwrap();
    }
    store.delete(&env.bucket, &sibling).unwrap();
    assert!(
        store
            .list(&env.bucket, &prefix, None, 10)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn wrong_credentials_are_denied_without_showing_them() {
    let Some(env) = s3_env() else { return };
    let bad_secret = "wrong-secret-0123456789abcdef0123456789abcdef0123456789";
    let cases = [
        // A known key with the wrong secret.
        S3Config {
            secret_access_key: Secret::new(bad_secret),
            ..env.config.clone()
        },
        // A key the store does not know.
        S3Config {
            access_key_id: "GK00000000000000000000dead".into(),
            secret_access_key: Secret::new(bad_secret),
            ..env.config.clone()
        },
    ];
    for config in cases {
        let access_key_id = config.access_key_id.clone();
        let store = blocking(config);
        let key = format!("{}denied", unique_prefix("denied"));
        let errors = [
            store.head(&env.bucket, &key).map(|_| ()),
            store.list(&env.bucket, "", None, 1).map(|_| ()),
            store.get(&env.bucket, &key).map(|_| ()),
            store
                .put(&env.bucket, &key, 3, Cursor::new(b"abc"))
                .map(|_| ()),
            // Refused while the body is on its way (one PutObject)…
            store
                .put(&env.bucket, &key, 5 << 20, Generator::new(1, 5 << 20))
                .map(|_| ()),
            // …or before it (a multipart upload: only a few MiB are ever read).
            store
                .put(&env.bucket, &key, 65 << 20, Generator::new(1, 65 << 20))
                .map(|_| ()),
        ];
        for error in errors {
            eprintln!("{error:?}");
            let Err(S3Error::Denied(message)) = &error else {
                panic!("expected Denied, got {error:?}");
            };
            assert!(!message.contains(bad_secret), "{message}");
            assert!(!message.contains(&access_key_id), "{message}");
        }
    }
}

#[test]
fn a_missing_bucket_is_an_error_that_names_it() {
    let Some(env) = s3_env() else { return };
    let store = blocking(env.config);
    let bucket = "tessera-no-such-bucket";
    let errors = [
        store.head(bucket, "k").map(|_| ()),
        store.list(bucket, "", None, 10).map(|_| ()),
        store.get(bucket, "k").map(|_| ()),
        store.put(bucket, "k", 3, Cursor::new(b"abc")).map(|_| ()),
        store
            .put(bucket, "k", 65 << 20, Generator::new(1, 65 << 20))
            .map(|_| ()),
    ];
    for error in errors {
        eprintln!("{error:?}");
        match &error {
            Err(S3Error::NotFound) => {}
            Err(S3Error::Denied(message)) => assert!(message.contains(bucket), "{message}"),
            other => panic!("expected NotFound or Denied, got {other:?}"),
        }
    }
}

#[test]
fn a_body_of_the_wrong_size_stores_nothing() {
    let Some(env) = s3_env() else { return };
    let store = blocking(env.config);
    let prefix = unique_prefix("size");

    let short = format!("{prefix}short");
    let error = store
        .put(&env.bucket, &short, 10, Cursor::new(b"123456789"))
        .unwrap_err();
    assert!(
        matches!(&error, S3Error::InvalidInput(m) if m.contains("ended after 9 of 10")),
        "{error:?}"
    );
    assert_eq!(store.head(&env.bucket, &short).unwrap(), None);

    let long = format!("{prefix}long");
    let error = store
        .put(&env.bucket, &long, 10, Cursor::new(b"12345678901"))
        .unwrap_err();
    assert!(
        matches!(&error, S3Error::InvalidInput(m) if m.contains("longer")),
        "{error:?}"
    );
    assert_eq!(store.head(&env.bucket, &long).unwrap(), None);

    // A body that fails midway: its error comes back, nothing is stored.
    struct Failing(u64);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("disk on fire"));
            }
            let n = (buf.len() as u64).min(self.0) as usize;
            buf[..n].fill(b'z');
            self.0 -= n as u64;
            Ok(n)
        }
    }
    let failing = format!("{prefix}failing");
    let error = store
        .put(&env.bucket, &failing, 3 << 20, Failing(2 << 20))
        .unwrap_err();
    assert!(
        matches!(&error, S3Error::Other(m) if m.contains("disk on fire")),
        "{error:?}"
    );
    assert_eq!(store.head(&env.bucket, &failing).unwrap(), None);
}

#[test]
fn empty_names_are_invalid_input() {
    let Some(env) = s3_env() else { return };
    let store = blocking(env.config);
    assert!(matches!(
        store.head(&env.bucket, ""),
        Err(S3Error::InvalidInput(_))
    ));
    assert!(matches!(store.get("", "k"), Err(S3Error::InvalidInput(_))));
}

#[test]
fn an_unreachable_store_is_unavailable() {
    // Needs no store: nothing listens on port 1.
    let store = blocking(S3Config {
        endpoint: Some("http://127.0.0.1:1".into()),
        region: "garage".into(),
        access_key_id: "GKexample".into(),
        secret_access_key: Secret::new("secret-secret"),
        path_style: true,
    });
    let error = store.head("bucket", "key").unwrap_err();
    eprintln!("{error:?}");
    assert!(
        matches!(&error, S3Error::Unavailable(m) if m.contains("bucket/key")),
        "{error:?}"
    );
}

#[test]
fn a_reader_dropped_midway_does_not_hang() {
    let Some(env) = s3_env() else { return };
    let store = blocking(env.config);
    let key = format!("{}dropped", unique_prefix("drop"));
    let size = 8 << 20;
    store
        .put(&env.bucket, &key, size, Generator::new(3, size))
        .unwrap();
    let mut reader = store.get(&env.bucket, &key).unwrap();
    let mut buf = vec![0u8; 4096];
    reader.read_exact(&mut buf).unwrap();
    drop(reader);
    // The client is still usable.
    assert_eq!(store.head(&env.bucket, &key).unwrap().unwrap().size, size);
    store.delete(&env.bucket, &key).unwrap();
}

#[test]
fn blocking_calls_work_from_async_workers_and_current_thread_runtimes() {
    let Some(env) = s3_env() else { return };
    let store = blocking(env.config);
    let prefix = unique_prefix("contexts");
    // From tasks on the very runtime the requests run on (both of its workers busy).
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let store = store.clone();
            let (bucket, key) = (env.bucket.clone(), format!("{prefix}{i}"));
            runtime().spawn(async move {
                let body = vec![i as u8; 70_000];
                store
                    .put(&bucket, &key, body.len() as u64, Cursor::new(body))
                    .unwrap();
                let (len, _) = hash_reader(store.get(&bucket, &key).unwrap()).unwrap();
                store.delete(&bucket, &key).unwrap();
                len
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(runtime().block_on(task).unwrap(), 70_000);
    }
    // From inside a current-thread runtime.
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = format!("{prefix}current");
    let found = current.block_on(async { store.head(&env.bucket, &key) });
    assert_eq!(found.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_api_streams_both_ways() {
    let Some(env) = s3_env() else { return };
    let store = S3Client::new(env.config).unwrap();
    let key = format!("{}async", unique_prefix("async"));
    let chunks: Vec<io::Result<Bytes>> = (0..10u8)
        .map(|i| Ok(Bytes::from(vec![i; 100_000])))
        .collect();
    let stored = store
        .put(
            &env.bucket,
            &key,
            1_000_000,
            futures_util::stream::iter(chunks),
        )
        .await
        .unwrap();
    assert_eq!(stored, 1_000_000);
    let mut body = store.get(&env.bucket, &key).await.unwrap();
    assert_eq!(body.info().size, 1_000_000);
    let mut back = Vec::new();
    while let Some(chunk) = body.next_chunk().await.unwrap() {
        back.extend_from_slice(&chunk);
    }
    let expected: Vec<u8> = (0..10u8).flat_map(|i| vec![i; 100_000]).collect();
    assert_eq!(back, expected);
    store.delete(&env.bucket, &key).await.unwrap();
    assert_eq!(store.head(&env.bucket, &key).await.unwrap(), None);
}

#[test]
fn a_writer_uploads_what_is_written_and_nothing_if_abandoned() {
    let Some(env) = s3_env() else { return };
    let store = blocking(env.config.clone());
    let prefix = unique_prefix("writer");

    // Written in odd pieces, flushed midway, finished: stored.
    let key = format!("{prefix}written");
    let data: Vec<u8> = (0..3_000_001u32).map(|i| (i % 253) as u8).collect();
    let mut writer = store
        .put_writer(&env.bucket, &key, data.len() as u64)
        .unwrap();
    for (i, piece) in data.chunks(77_777).enumerate() {
        writer.write_all(piece).unwrap();
        if i == 3 {
            writer.flush().unwrap();
        }
    }
    assert_eq!(writer.written(), data.len() as u64);
    assert_eq!(writer.finish().unwrap(), data.len() as u64);
    let mut back = Vec::new();
    store
        .get(&env.bucket, &key)
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, data);
    store.delete(&env.bucket, &key).unwrap();

    // Every byte written but never finished, one PutObject and a multipart upload:
    // nothing is stored.
    for size in [1000u64, 65 << 20] {
        let key = format!("{prefix}abandoned-{size}");
        let mut writer = store.put_writer(&env.bucket, &key, size).unwrap();
        io::copy(&mut Generator::new(9, size), &mut writer).unwrap();
        drop(writer);
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(store.head(&env.bucket, &key).unwrap(), None, "{size}");
    }

    // Too much, or too little.
    let key = format!("{prefix}too-much");
    let mut writer = store.put_writer(&env.bucket, &key, 4).unwrap();
    let error = writer.write_all(b"12345").unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    assert!(matches!(writer.finish(), Err(S3Error::InvalidInput(_))));
    let mut writer = store.put_writer(&env.bucket, &key, 4).unwrap();
    writer.write_all(b"123").unwrap();
    assert!(matches!(writer.finish(), Err(S3Error::InvalidInput(m)) if m.contains("3 of 4")));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(store.head(&env.bucket, &key).unwrap(), None);

    // Refused by the store: the write or the finish says so.
    let denied = blocking(S3Config {
        secret_access_key: Secret::new("wrong-secret-wrong-secret"),
        ..env.config.clone()
    });
    let mut writer = denied.put_writer(&env.bucket, &key, 65 << 20).unwrap();
    let written = io::copy(&mut Generator::new(1, 65 << 20), &mut writer);
    let error = writer.finish().unwrap_err();
    assert!(
        matches!(error, S3Error::Denied(_)),
        "{error:?} after {written:?}"
    );
}

#[test]
fn calls_and_streams_give_up_at_the_deadline() {
    let Some(env) = s3_env() else { return };
    let store = blocking(env.config);
    let key = format!("{}deadline", unique_prefix("deadline"));
    let past = std::time::Instant::now();
    assert!(matches!(
        store.with_deadline(past).head(&env.bucket, &key),
        Err(S3Error::Unavailable(m)) if m.contains("timed out")
    ));

    let size = 4 << 20;
    store
        .put(&env.bucket, &key, size, Generator::new(5, size))
        .unwrap();
    let soon = std::time::Instant::now() + std::time::Duration::from_millis(500);
    let mut reader = store.with_deadline(soon).get(&env.bucket, &key).unwrap();
    let mut buf = vec![0u8; 1024];
    reader.read_exact(&mut buf).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600));
    let error = reader.read(&mut buf).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");

    let soon = std::time::Instant::now() + std::time::Duration::from_millis(500);
    let mut writer = store
        .with_deadline(soon)
        .put_writer(&env.bucket, &format!("{key}-w"), 10)
        .unwrap();
    writer.write_all(b"12345").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600));
    let error = writer.write_all(b"67890").unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
    assert!(matches!(writer.finish(), Err(S3Error::Unavailable(_))));
    assert_eq!(store.head(&env.bucket, &format!("{key}-w")).unwrap(), None);
    store.delete(&env.bucket, &key).unwrap();
}
