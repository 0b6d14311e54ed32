//! Tests against the real Docker engine on /var/run/docker.sock (or DOCKER_HOST).
//! They build the local busybox test image on first use (tests/images/build.sh).

mod common;

use std::collections::BTreeMap;

use common::*;
use futures_util::StreamExt;
use tessera_docker::{Bind, DockerClient, DockerError};
use tessera_executor::LogChunk;

#[tokio::test]
async fn info_describes_the_engine() {
    let info = engine().info().await.expect("info");
    assert!(!info.version.is_empty());
    assert!(info.api_version.starts_with("1."), "{info:?}");
    assert!(info.cpus > 0);
    assert!(info.memory_bytes > 0);
    assert!(!info.storage_driver.is_empty());
    assert!(matches!(info.cgroup_version, Some(1 | 2)), "{info:?}");
}

#[tokio::test]
async fn unreachable_socket_is_reported_by_info() {
    let engine = DockerClient::connect(Some("/nonexistent/tessera/docker.sock"))
        .expect("connect does no I/O");
    let err = engine.info().await.unwrap_err();
    assert!(matches!(err, DockerError::Unreachable(_)), "{err:?}");

    // A path that exists but is no socket.
    let file = tempfile::NamedTempFile::new().unwrap();
    let engine = DockerClient::connect(Some(file.path().to_str().unwrap())).unwrap();
    assert!(engine.info().await.unwrap_err().is_unreachable());
    assert!(engine.status("x").await.unwrap_err().is_unreachable());
    let first = engine.logs("x", false).next().await.expect("one item");
    assert!(first.unwrap_err().is_unreachable());
    assert_eq!(engine.peak_memory("x").await, None);
}

#[tokio::test]
async fn exit_codes_are_returned_not_errors() {
    let engine = engine();
    let (ok, three) = (unique("exit0"), unique("exit3"));
    let _cleanup = Cleanup::new(&[&ok, &three]);

    let (code, _) = run(&engine, &sh(&ok, "exit 0"), None).await;
    assert_eq!(code, 0);
    let (code, _) = run(&engine, &sh(&three, "exit 3"), None).await;
    assert_eq!(code, 3);

    // Waiting on an already exited container answers at once with the same code.
    assert_eq!(engine.wait(&three).await.unwrap(), 3);
    let status = engine.status(&three).await.unwrap().expect("exists");
    assert!(!status.running);
    assert_eq!(status.state, "exited");
    assert_eq!(status.exit_code, Some(3));
    assert!(
        status.started_at.is_some() && status.finished_at.is_some(),
        "{status:?}"
    );
    assert!(!status.oom_killed);
    assert_eq!(status.error, None);
}

#[tokio::test]
async fn created_container_status() {
    let engine = engine();
    let name = unique("created");
    let _cleanup = Cleanup::new(&[&name]);
    engine.create(&sh(&name, "true")).await.unwrap();
    let status = engine.status(&name).await.unwrap().unwrap();
    assert_eq!(status.state, "created");
    assert!(!status.running);
    assert_eq!(
        (status.exit_code, status.started_at, status.finished_at),
        (None, None, None)
    );
}

#[tokio::test]
async fn stdout_and_stderr_are_separated_and_ordered() {
    let engine = engine();
    let name = unique("streams");
    let _cleanup = Cleanup::new(&[&name]);
    let script = "for i in $(seq 1 300); do echo out$i; echo err$i >&2; done; printf tail";
    let (code, output) = run(&engine, &sh(&name, script), None).await;
    assert_eq!(code, 0);
    let expect = |prefix: &str| {
        (1..=300)
            .map(|i| format!("{prefix}{i}\n"))
            .collect::<String>()
    };
    assert_eq!(output.out(), expect("out") + "tail");
    assert_eq!(output.err(), expect("err"));
}

#[tokio::test]
async fn following_sees_output_while_the_container_runs() {
    let engine = engine();
    let name = unique("follow");
    let _cleanup = Cleanup::new(&[&name]);
    let sync = tempfile::tempdir().unwrap();
    let mut spec = sh(
        &name,
        "echo ready; while [ ! -e /sync/go ]; do sleep 0.05; done; echo done >&2; exit 4",
    );
    spec.binds.push(Bind::new(sync.path(), "/sync", false));
    engine.create(&spec).await.unwrap();
    engine.start(&name, None).await.unwrap();

    let mut logs = engine.logs(&name, true);
    let mut stdout = Vec::new();
    while !stdout.ends_with(b"ready\n") {
        match logs.next().await.expect("stream open").expect("chunk") {
            LogChunk::Stdout(b) => stdout.extend_from_slice(&b),
            LogChunk::Stderr(b) => panic!("unexpected stderr {b:?}"),
        }
    }
    // The container cannot exit before we create /sync/go: the line came while it ran.
    assert!(engine.status(&name).await.unwrap().unwrap().running);

    std::fs::write(sync.path().join("go"), b"").unwrap();
    let rest = collect(logs).await; // ends when the container stops
    assert_eq!(rest.err(), "done\n");
    assert!(rest.stdout.is_empty());
    assert_eq!(engine.wait(&name).await.unwrap(), 4);
}

#[tokio::test]
async fn missing_executable_is_command_not_found() {
    let engine = engine();
    let (relative, absolute) = (unique("nocmd"), unique("nocmd-abs"));
    let _cleanup = Cleanup::new(&[&relative, &absolute]);

    for (name, program) in [
        (&relative, "no-such-program"),
        (&absolute, "/no/such/program"),
    ] {
        engine.create(&spec(name, &[program, "arg"])).await.unwrap();
        let err = engine.start(name, None).await.unwrap_err();
        match &err {
            DockerError::CommandNotFound(message) => {
                assert!(message.contains(program), "{message}")
            }
            other => panic!("expected CommandNotFound, got {other:?}"),
        }
        let status = engine.status(name).await.unwrap().unwrap();
        assert!(!status.running);
        eprintln!("status after failed start of {program}: {status:?}");
        assert!(status.error.is_some(), "{status:?}");
        assert_eq!(status.exit_code, Some(127), "{status:?}");
        assert_eq!(engine.wait(name).await.unwrap(), 127);
    }
}

#[tokio::test]
async fn missing_executable_with_stdin_is_command_not_found() {
    let engine = engine();
    let name = unique("nocmd-stdin");
    let _cleanup = Cleanup::new(&[&name]);
    let input = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(input.path(), b"hello").unwrap();
    let mut spec = spec(&name, &["no-such-program"]);
    spec.open_stdin = true;
    engine.create(&spec).await.unwrap();
    let err = engine
        .start(&name, Some(input.path().to_owned()))
        .await
        .unwrap_err();
    assert!(matches!(err, DockerError::CommandNotFound(_)), "{err:?}");
}

#[tokio::test]
async fn pulling_a_nonexistent_image_fails_with_a_reason() {
    let engine = engine();
    let image = format!("tessera-test/{}:v1", unique("no-such-image"));
    let err = engine.ensure_image(&image).await.unwrap_err();
    let DockerError::ImagePull {
        image: reported,
        reason,
    } = &err
    else {
        panic!("expected ImagePull, got {err:?}");
    };
    eprintln!("pull failure: {reason}");
    assert_eq!(reported, &image);
    let reason = reason.to_lowercase();
    assert!(
        [
            "no such host",
            "lookup",
            "denied",
            "not found",
            "does not exist",
            "unknown",
            "dial",
            "timeout",
            "refused"
        ]
        .iter()
        .any(|w| reason.contains(w)),
        "{reason}"
    );
    // Not cached as present: asking again fails again.
    assert!(matches!(
        engine.ensure_image(&image).await,
        Err(DockerError::ImagePull { .. })
    ));
}

#[tokio::test]
async fn ensure_image_finds_local_images() {
    let engine = engine();
    engine.ensure_image(IMAGE).await.unwrap();
    engine.ensure_image(IMAGE).await.unwrap(); // cached
    engine.ensure_image("tessera-test/busybox").await.unwrap(); // implicit :latest
    let err = engine.ensure_image("").await.unwrap_err();
    assert!(matches!(err, DockerError::ImagePull { .. }), "{err:?}");
}

#[tokio::test]
async fn present_images_are_cached_until_create_finds_them_gone() {
    let engine = engine();
    let tag = format!("tessera-test/{}:v1", unique("cached"));
    let docker = |args: &[&str]| {
        let status = std::process::Command::new("docker")
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "docker {args:?}");
    };
    docker(&["tag", IMAGE, &tag]);
    engine.ensure_image(&tag).await.unwrap();
    docker(&["rmi", &tag]);
    // Known present: no inspect, so no (failing) pull either.
    engine.ensure_image(&tag).await.unwrap();

    let name = unique("cached");
    let _cleanup = Cleanup::new(&[&name]);
    let mut spec = sh(&name, "true");
    spec.image = tag.clone();
    assert!(engine.create(&spec).await.unwrap_err().is_not_found());
    // The failed create dropped it from the cache: now it is looked for, and pulled.
    let err = engine.ensure_image(&tag).await.unwrap_err();
    assert!(matches!(err, DockerError::ImagePull { .. }), "{err:?}");
}

#[tokio::test]
async fn creating_from_a_missing_image_is_not_found() {
    let engine = engine();
    let name = unique("noimage");
    let _cleanup = Cleanup::new(&[&name]);
    let mut spec = sh(&name, "true");
    spec.image = format!("tessera-test/{}:v1", unique("absent"));
    let err = engine.create(&spec).await.unwrap_err();
    assert!(matches!(err, DockerError::NotFound), "{err:?}");
}

#[tokio::test]
async fn stdin_is_streamed_from_a_file() {
    let engine = engine();
    let (wc, cat, copy, empty, ignore) = (
        unique("wc"),
        unique("cat"),
        unique("copy"),
        unique("empty"),
        unique("ignore"),
    );
    let _cleanup = Cleanup::new(&[&wc, &cat, &copy, &empty, &ignore]);
    let dir = tempfile::tempdir().unwrap();

    // ~1 MiB of every byte value, newlines and NULs included.
    let binary: Vec<u8> = (0..(1usize << 20) + 12345)
        .map(|i| (i * 7 + i / 253) as u8)
        .collect();
    let binary_path = dir.path().join("binary");
    std::fs::write(&binary_path, &binary).unwrap();
    let text: String = (0..5000)
        .map(|i| format!("line {i} of the input\n"))
        .collect();
    let text_path = dir.path().join("text");
    std::fs::write(&text_path, &text).unwrap();
    let empty_path = dir.path().join("empty");
    std::fs::write(&empty_path, b"").unwrap();

    let with_stdin = |name: &str, command: &[&str]| {
        let mut s = spec(name, command);
        s.open_stdin = true;
        s
    };

    let (code, output) = run(
        &engine,
        &with_stdin(&wc, &["wc", "-c"]),
        Some(binary_path.clone()),
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(output.out().trim(), binary.len().to_string());

    // Counted inside the container: read from Docker's log file right after the exit,
    // a big output was once found cut short on a busy engine (CI, 48 of 113 KB), which
    // is not what this test is about. Tasks read output live through an attachment.
    let (code, output) = run(
        &engine,
        &with_stdin(
            &cat,
            &[
                "sh",
                "-c",
                "cat > /tmp/in; wc -c < /tmp/in; tail -n 1 /tmp/in",
            ],
        ),
        Some(text_path),
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(
        output.out().split_whitespace().next(),
        Some(text.len().to_string().as_str())
    );
    assert!(
        output.out().ends_with("line 4999 of the input\n"),
        "{}",
        output.out()
    );

    // Byte-exact: copy stdin to a bind mount and compare on the host.
    let out_dir = tempfile::tempdir().unwrap();
    let mut copier = with_stdin(&copy, &["sh", "-c", "cat > /out/copy"]);
    copier.binds.push(Bind::new(out_dir.path(), "/out", false));
    let (code, _) = run(&engine, &copier, Some(binary_path.clone())).await;
    assert_eq!(code, 0);
    assert!(
        std::fs::read(out_dir.path().join("copy")).unwrap() == binary,
        "copy differs"
    );

    let (code, output) = run(
        &engine,
        &with_stdin(&empty, &["wc", "-c"]),
        Some(empty_path),
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(output.out().trim(), "0");

    // A container that never reads its stdin still runs to completion.
    let (code, _) = run(&engine, &with_stdin(&ignore, &["true"]), Some(binary_path)).await;
    assert_eq!(code, 0);
}

#[tokio::test]
async fn a_missing_stdin_file_is_an_error_before_starting() {
    let engine = engine();
    let name = unique("nostdinfile");
    let _cleanup = Cleanup::new(&[&name]);
    let mut spec = spec(&name, &["cat"]);
    spec.open_stdin = true;
    engine.create(&spec).await.unwrap();
    let err = engine
        .start(&name, Some("/nonexistent/stdin".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DockerError::Other(ref m) if m.contains("/nonexistent/stdin")),
        "{err:?}"
    );
    assert_eq!(
        engine.status(&name).await.unwrap().unwrap().state,
        "created"
    );
}

#[tokio::test]
async fn binds_are_read_write_or_read_only() {
    let engine = engine();
    let (rw, ro) = (unique("bind-rw"), unique("bind-ro"));
    let _cleanup = Cleanup::new(&[&rw, &ro]);
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("in.txt"), "from the host\n").unwrap();

    let mut spec = sh(
        &rw,
        "cat /data/in.txt; echo from the container > /data/out.txt",
    );
    spec.binds.push(Bind::new(data.path(), "/data", false));
    let (code, output) = run(&engine, &spec, None).await;
    assert_eq!(code, 0, "{}", output.err());
    assert_eq!(output.out(), "from the host\n");
    assert_eq!(
        std::fs::read_to_string(data.path().join("out.txt")).unwrap(),
        "from the container\n"
    );

    let mut spec = sh(&ro, "cat /data/in.txt && echo nope > /data/forbidden");
    spec.binds.push(Bind::new(data.path(), "/data", true));
    let (code, output) = run(&engine, &spec, None).await;
    assert_ne!(code, 0);
    assert_eq!(output.out(), "from the host\n");
    assert!(
        output.err().contains("Read-only file system"),
        "{}",
        output.err()
    );
    assert!(!data.path().join("forbidden").exists());
}

#[tokio::test]
async fn a_missing_bind_source_fails_at_create() {
    let engine = engine();
    let name = unique("bind-missing");
    let _cleanup = Cleanup::new(&[&name]);
    let mut spec = sh(&name, "true");
    spec.binds
        .push(Bind::new("/nonexistent/tessera/source", "/data", false));
    let err = engine.create(&spec).await.unwrap_err();
    assert!(
        matches!(err, DockerError::Other(ref m) if m.contains("/nonexistent/tessera/source")),
        "{err:?}"
    );
    assert_eq!(engine.status(&name).await.unwrap(), None);
}

#[tokio::test]
async fn labels_round_trip_through_list_by_label() {
    let engine = engine();
    let key = format!("tessera.test.{}", unique("label"));
    let (a, b) = (unique("label-a"), unique("label-b"));
    let _cleanup = Cleanup::new(&[&a, &b]);
    for (name, value) in [(&a, "alpha"), (&b, "beta")] {
        let mut spec = sh(name, "sleep 1000");
        spec.labels.insert(key.clone(), value.to_owned());
        spec.labels
            .insert("tessera.other".to_owned(), "x=y".to_owned());
        engine.create(&spec).await.unwrap();
    }
    engine.start(&b, None).await.unwrap();

    let mut all = engine.list_by_label(&key, None).await.unwrap();
    all.sort_by(|x, y| x.name.cmp(&y.name));
    assert_eq!(
        all.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        [a.as_str(), b.as_str()]
    );
    assert!(!all[0].running);
    assert!(all[1].running);
    assert_eq!(all[0].labels.get(&key).map(String::as_str), Some("alpha"));
    assert_eq!(
        all[0].labels.get("tessera.other").map(String::as_str),
        Some("x=y")
    );

    let only_beta = engine.list_by_label(&key, Some("beta")).await.unwrap();
    assert_eq!(only_beta.len(), 1);
    assert_eq!(only_beta[0].name, b);
    assert_eq!(
        only_beta[0].labels,
        BTreeMap::from([
            (key.clone(), "beta".to_owned()),
            ("tessera.other".to_owned(), "x=y".to_owned()),
            (LABEL.to_owned(), std::process::id().to_string()),
        ])
    );
    assert!(
        engine
            .list_by_label(&key, Some("gamma"))
            .await
            .unwrap()
            .is_empty()
    );

    engine.remove(&a).await.unwrap();
    engine.remove(&b).await.unwrap();
    assert!(engine.list_by_label(&key, None).await.unwrap().is_empty());
}

#[tokio::test]
async fn kill_stops_a_running_container() {
    let engine = engine();
    let name = unique("kill");
    let _cleanup = Cleanup::new(&[&name]);
    engine
        .create(&spec(&name, &["sleep", "1000"]))
        .await
        .unwrap();
    engine.start(&name, None).await.unwrap();
    assert!(engine.status(&name).await.unwrap().unwrap().running);

    let waiter = {
        let engine = engine.clone();
        let name = name.clone();
        tokio::spawn(async move { engine.wait(&name).await })
    };
    engine.kill(&name).await.unwrap();
    assert_eq!(waiter.await.unwrap().unwrap(), 137);
    let status = engine.status(&name).await.unwrap().unwrap();
    assert!(!status.running);
    assert_eq!(status.exit_code, Some(137));

    // Killing what is not running, or not there, is fine.
    engine.kill(&name).await.unwrap();
    engine.kill(&unique("never-existed")).await.unwrap();
}

#[tokio::test]
async fn remove_makes_status_none() {
    let engine = engine();
    let (done, running) = (unique("rm-done"), unique("rm-running"));
    let _cleanup = Cleanup::new(&[&done, &running]);
    run(&engine, &sh(&done, "true"), None).await;
    engine.remove(&done).await.unwrap();
    assert_eq!(engine.status(&done).await.unwrap(), None);
    engine.remove(&done).await.unwrap(); // already gone: fine

    engine
        .create(&spec(&running, &["sleep", "1000"]))
        .await
        .unwrap();
    engine.start(&running, None).await.unwrap();
    engine.remove(&running).await.unwrap(); // forced
    assert_eq!(engine.status(&running).await.unwrap(), None);
}

#[tokio::test]
async fn missing_containers() {
    let engine = engine();
    let name = unique("missing");
    assert_eq!(engine.status(&name).await.unwrap(), None);
    assert!(engine.wait(&name).await.unwrap_err().is_not_found());
    assert!(engine.start(&name, None).await.unwrap_err().is_not_found());
    let first = engine.logs(&name, false).next().await.expect("an item");
    assert!(first.unwrap_err().is_not_found());
    assert_eq!(engine.peak_memory(&name).await, None);
}

#[tokio::test]
async fn name_in_use_is_conflict() {
    let engine = engine();
    let name = unique("conflict");
    let _cleanup = Cleanup::new(&[&name]);
    engine.create(&sh(&name, "true")).await.unwrap();
    let err = engine.create(&sh(&name, "true")).await.unwrap_err();
    assert!(matches!(err, DockerError::Conflict), "{err:?}");
}

#[tokio::test]
async fn memory_limit_and_peak_memory() {
    let engine = engine();
    let name = unique("memory");
    let _cleanup = Cleanup::new(&[&name]);
    let limit = 256i64 << 20;
    let mut spec = sh(
        &name,
        "dd if=/dev/zero of=/dev/null bs=50M count=1 2>/dev/null; sleep 3",
    );
    spec.memory_bytes = Some(limit);
    spec.nano_cpus = Some(500_000_000);
    engine.create(&spec).await.unwrap();
    assert_eq!(inspect(&name, "{{.HostConfig.Memory}}"), limit.to_string());
    let swap = inspect(&name, "{{.HostConfig.MemorySwap}}");
    assert!(
        swap == limit.to_string() || swap == "-1",
        "MemorySwap {swap}"
    );
    assert_eq!(inspect(&name, "{{.HostConfig.NanoCpus}}"), "500000000");

    // Spawned before the start: it waits for the container to run, then to stop.
    let peak = tokio::spawn({
        let engine = engine.clone();
        let name = name.clone();
        async move { engine.peak_memory(&name).await }
    });
    engine.start(&name, None).await.unwrap();
    assert_eq!(engine.wait(&name).await.unwrap(), 0);
    let peak = peak.await.unwrap().expect("a memory sample");
    let cgroup = engine.info().await.unwrap().cgroup_version;
    eprintln!("peak memory {peak} bytes (cgroup v{cgroup:?})");
    assert!(peak > 0 && peak <= limit as u64, "{peak}");
    if cgroup == Some(1) {
        // max_usage covers dd's 50 MB buffer even if no sample fell during dd.
        assert!(peak >= 50 << 20, "{peak}");
    }

    // After the container stopped it returns at once.
    assert_eq!(engine.peak_memory(&name).await, None);
}

#[tokio::test]
async fn security_defaults_are_applied() {
    let engine = engine();
    let name = unique("security");
    let _cleanup = Cleanup::new(&[&name]);
    let (code, output) = run(
        &engine,
        &sh(
            &name,
            "grep NoNewPrivs /proc/self/status; cat /proc/net/dev",
        ),
        None,
    )
    .await;
    assert_eq!(code, 0);
    let out = output.out();
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(!out.contains("eth0"), "network none: {out}");
    assert_eq!(
        inspect(&name, "{{json .HostConfig.SecurityOpt}}"),
        r#"["no-new-privileges"]"#
    );
    assert_eq!(inspect(&name, "{{.HostConfig.Privileged}}"), "false");
    assert_eq!(inspect(&name, "{{json .HostConfig.CapDrop}}"), r#"["ALL"]"#);
    assert_eq!(
        inspect(&name, "{{json .HostConfig.CapAdd}}"),
        r#"["CHOWN","DAC_OVERRIDE","FOWNER","FSETID","KILL","SETGID","SETUID"]"#
    );
    assert_eq!(
        inspect(&name, "{{.HostConfig.LogConfig.Type}}"),
        "json-file"
    );
}

#[tokio::test]
async fn command_workdir_and_env() {
    let engine = engine();
    let (env, entry) = (unique("env"), unique("entrypoint"));
    let _cleanup = Cleanup::new(&[&env, &entry]);

    let mut with_env = spec(
        &env,
        &[
            "sh",
            "-c",
            "pwd; echo \"$GREETING|$EMPTY|$SPACED\"",
            "ignored-arg0",
        ],
    );
    with_env.workdir = Some("/tmp/work".to_owned());
    with_env.env = vec![
        ("GREETING".into(), "a=b".into()),
        ("EMPTY".into(), "".into()),
        ("SPACED".into(), "x  y".into()),
    ];
    let (code, output) = run(&engine, &with_env, None).await;
    assert_eq!(code, 0, "{}", output.err());
    assert_eq!(output.out(), "/tmp/work\na=b||x  y\n");

    // The image's ENTRYPOINT is overridden: command[0] is the program.
    let mut spec = spec(&entry, &["echo", "just", "this"]);
    spec.image = ENTRYPOINT_IMAGE.to_owned();
    let (code, output) = run(&engine, &spec, None).await;
    assert_eq!(code, 0);
    assert_eq!(output.out(), "just this\n");
}
