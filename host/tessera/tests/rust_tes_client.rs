//! The Rust `tes` crate (0.11, feature `client`) as a client of the real server, and
//! the task files in `examples/tes/` submitted as they are, so neither can rot.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{BUSYBOX, DEADLINE, Options, Server, short};
use serde_json::Value;
use tes::v1::Client;
use tes::v1::types::requests::{self, GetTaskParams, ListTasksParams, View};
use tes::v1::types::responses::{MinimalTask, Task};
use tes::v1::types::task::{Executor, Input, State};

/// How often a test polls; the deadline is `DEADLINE`.
const POLL: Duration = Duration::from_millis(50);

/// The tes client retries server errors when given delays; these tests want every
/// error to show, so no request is retried.
fn no_retry() -> std::iter::Empty<Duration> {
    std::iter::empty()
}

fn client(s: &Server, token: Option<&str>) -> Client {
    let mut builder = Client::builder()
        .url_from_string(s.tes(""))
        .expect("base URL")
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(30));
    if let Some(token) = token {
        builder = builder.authorizer(tes::auth::BearerTokenAuthorizer::new(token));
    }
    builder.try_build().expect("tes client")
}

async fn get(
    c: &Client,
    s: &Server,
    id: &str,
    view: View,
) -> tes::v1::types::responses::TaskResponse {
    match c
        .get_task(id, Some(&GetTaskParams { view }), no_retry())
        .await
    {
        Ok(t) => t,
        Err(e) => {
            // Show what the server sent, so a type the crate rejects is plain to see.
            let raw = s.task(id, &format!("{view:?}").to_uppercase()).await;
            panic!(
                "tes client: get {id} ({view:?}): {e:?}\nthe server's response: {}",
                short(&raw)
            )
        }
    }
}

async fn minimal(c: &Client, s: &Server, id: &str) -> MinimalTask {
    get(c, s, id, View::Minimal)
        .await
        .into_minimal()
        .expect("a MINIMAL response")
}

async fn task(c: &Client, s: &Server, id: &str, view: View) -> Task {
    get(c, s, id, view)
        .await
        .into_task()
        .expect("a BASIC or FULL response")
}

/// Poll the MINIMAL view until `pred` holds for the state, or fail at the deadline.
async fn wait_for(
    c: &Client,
    s: &Server,
    id: &str,
    what: &str,
    pred: impl Fn(State) -> bool,
) -> State {
    let start = Instant::now();
    loop {
        let state = minimal(c, s, id).await.state.unwrap_or_default();
        if pred(state) {
            return state;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "task {id} never reached {what}; last state {state:?}\nserver log:\n{}",
            s.server_log()
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn wait_terminal(c: &Client, s: &Server, id: &str) -> State {
    wait_for(c, s, id, "a terminal state", is_terminal).await
}

/// `State::is_executing` is false for CANCELING too, which is not an end.
fn is_terminal(state: State) -> bool {
    matches!(
        state,
        State::Complete
            | State::ExecutorError
            | State::SystemError
            | State::Canceled
            | State::Preempted
    )
}

fn executor(command: &[&str]) -> Executor {
    Executor {
        image: BUSYBOX.into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        ..Executor::default()
    }
}

const CONTENT: &str = "hello from the tes crate\n";

#[tokio::test]
async fn tes_crate_round_trip_views_list_and_cancel() {
    let s = Server::start(Options::default()).await;
    let c = client(&s, Some(&s.token));

    // service-info
    let info = c.service_info(no_retry()).await.unwrap_or_else(|e| {
        panic!("tes client: service-info: {e:?}");
    });
    assert_eq!(info.name(), "Tessera");
    assert_eq!(info.ty().group, "org.ga4gh");
    assert_eq!(info.ty().version, "1.1.0");
    assert!(!info.version().is_empty());
    assert!(
        info.storage()
            .is_some_and(|st| st.iter().any(|p| p.starts_with("file://"))),
        "the allowed directory is listed as storage: {:?}",
        info.storage()
    );

    // No token: the request is refused, and the crate reports the 401.
    let anonymous = client(&s, None);
    match anonymous.list_tasks(None, no_retry()).await {
        Err(tes::v1::client::Error::Reqwest(e)) => {
            assert_eq!(e.status().map(|st| st.as_u16()), Some(401), "{e}")
        }
        other => panic!("an anonymous list must fail with 401: {other:?}"),
    }

    // create: an inline input and two executors.
    let request = requests::Task {
        name: Some("tes-rs round trip".into()),
        description: Some("created by the Rust tes crate".into()),
        tags: Some(BTreeMap::from([("client".into(), "tes-rs".into())])),
        inputs: Some(vec![Input {
            path: "/data/in.txt".into(),
            content: Some(CONTENT.into()),
            ..Input::default()
        }]),
        executors: vec![
            executor(&["cat", "/data/in.txt"]),
            executor(&["sh", "-c", "echo err >&2"]),
        ],
        ..requests::Task::default()
    };
    let id = c
        .create_task(&request, no_retry())
        .await
        .unwrap_or_else(|e| panic!("tes client: create: {e:?}"))
        .id;
    assert!(!id.is_empty());

    assert_eq!(wait_terminal(&c, &s, &id).await, State::Complete);

    // MINIMAL: exactly id and state.
    let m = minimal(&c, &s, &id).await;
    assert_eq!(m.id, id);
    assert_eq!(m.state, Some(State::Complete));
    let (_, raw) = s
        .get_json(&s.tes(&format!("/tasks/{id}?view=MINIMAL")))
        .await;
    assert_eq!(
        raw.as_object().map(|o| o.len()),
        Some(2),
        "MINIMAL is only id and state: {raw}"
    );

    // FULL: everything, with stdout, stderr, exit codes and the input's content.
    let full = task(&c, &s, &id, View::Full).await;
    assert_eq!(full.id.as_deref(), Some(id.as_str()));
    assert_eq!(full.state, Some(State::Complete));
    assert_eq!(full.name.as_deref(), Some("tes-rs round trip"));
    assert_eq!(
        full.tags
            .as_ref()
            .and_then(|t| t.get("client"))
            .map(String::as_str),
        Some("tes-rs")
    );
    assert_eq!(full.executors, request.executors);
    assert!(full.creation_time.is_some());
    let inputs = full.inputs.as_ref().expect("FULL has inputs");
    assert_eq!(inputs[0].content.as_deref(), Some(CONTENT));
    let logs = full.logs.as_ref().expect("FULL has logs");
    let attempt = logs.last().expect("one attempt");
    assert!(attempt.start_time.is_some() && attempt.end_time.is_some());
    assert_eq!(attempt.logs.len(), 2, "{attempt:?}");
    let (first, second) = (&attempt.logs[0], &attempt.logs[1]);
    assert_eq!(first.stdout.as_deref(), Some(CONTENT));
    assert_eq!(first.exit_code, 0);
    assert_eq!(second.stderr.as_deref(), Some("err\n"));
    assert_eq!(second.stdout.as_deref().unwrap_or(""), "");
    assert_eq!(second.exit_code, 0);
    assert!(first.start_time.is_some() && first.end_time.is_some());

    // BASIC: the same task without stdout, stderr, input content and system logs.
    let basic = task(&c, &s, &id, View::Basic).await;
    assert_eq!(basic.id, full.id);
    assert_eq!(basic.state, Some(State::Complete));
    assert_eq!(basic.name, full.name);
    assert_eq!(basic.tags, full.tags);
    assert_eq!(basic.executors, full.executors);
    assert_eq!(basic.creation_time, full.creation_time);
    assert_eq!(basic.inputs.as_ref().unwrap()[0].path, "/data/in.txt");
    assert_eq!(basic.inputs.as_ref().unwrap()[0].content, None);
    let basic_attempt = basic.logs.as_ref().unwrap().last().unwrap();
    assert_eq!(basic_attempt.system_logs, None);
    assert_eq!(basic_attempt.logs.len(), 2);
    for (b, f) in basic_attempt.logs.iter().zip(&attempt.logs) {
        assert_eq!((b.stdout.as_deref(), b.stderr.as_deref()), (None, None));
        assert_eq!(b.exit_code, f.exit_code);
        assert_eq!(b.start_time, f.start_time);
    }

    // list: the default (MINIMAL) list, and a filtered FULL one.
    let all = c
        .list_tasks(None, no_retry())
        .await
        .unwrap_or_else(|e| panic!("tes client: list: {e:?}"));
    let found = all
        .tasks
        .iter()
        .filter_map(|t| t.as_minimal())
        .find(|t| t.id == id)
        .unwrap_or_else(|| panic!("{id} is not in the list: {:?}", all.tasks));
    assert_eq!(found.state, Some(State::Complete));
    let filtered = c
        .list_tasks(
            Some(&ListTasksParams {
                name_prefix: Some("tes-rs".into()),
                state: Some(State::Complete),
                tag_keys: Some(vec!["client".into()]),
                tag_values: Some(vec!["tes-rs".into()]),
                view: Some(View::Full),
                ..ListTasksParams::default()
            }),
            no_retry(),
        )
        .await
        .unwrap_or_else(|e| panic!("tes client: filtered list: {e:?}"));
    assert_eq!(filtered.tasks.len(), 1, "{:?}", filtered.tasks);
    let listed = filtered.tasks[0].as_task().expect("a FULL list entry");
    assert_eq!(listed.id.as_deref(), Some(id.as_str()));
    assert_eq!(
        listed.logs.as_ref().unwrap().last().unwrap().logs[0]
            .stdout
            .as_deref(),
        Some(CONTENT)
    );

    // A failing executor: EXECUTOR_ERROR, its exit code, and the FULL view still reads.
    let failing = c
        .create_task(
            &requests::Task {
                executors: vec![executor(&["sh", "-c", "echo before; exit 3"])],
                ..requests::Task::default()
            },
            no_retry(),
        )
        .await
        .unwrap_or_else(|e| panic!("tes client: create: {e:?}"))
        .id;
    assert_eq!(wait_terminal(&c, &s, &failing).await, State::ExecutorError);
    let failed = task(&c, &s, &failing, View::Full).await;
    let exec = &failed.logs.as_ref().unwrap().last().unwrap().logs[0];
    assert_eq!(exec.exit_code, 3);
    assert_eq!(exec.stdout.as_deref(), Some("before\n"));

    // cancel: a long task, canceled once it runs.
    let sleeper = c
        .create_task(
            &requests::Task {
                name: Some("tes-rs sleeper".into()),
                executors: vec![executor(&["sleep", "1000"])],
                ..requests::Task::default()
            },
            no_retry(),
        )
        .await
        .unwrap_or_else(|e| panic!("tes client: create: {e:?}"))
        .id;
    let state = wait_for(&c, &s, &sleeper, "RUNNING", |st| {
        st == State::Running || is_terminal(st)
    })
    .await;
    assert_eq!(state, State::Running);
    c.cancel_task(&sleeper, no_retry())
        .await
        .unwrap_or_else(|e| panic!("tes client: cancel: {e:?}"));
    assert_eq!(wait_terminal(&c, &s, &sleeper).await, State::Canceled);
    let canceled = task(&c, &s, &sleeper, View::Full).await;
    assert_eq!(canceled.state, Some(State::Canceled));

    // Canceling a finished task is accepted and changes nothing.
    c.cancel_task(&id, no_retry())
        .await
        .unwrap_or_else(|e| panic!("tes client: cancel of a finished task: {e:?}"));
    assert_eq!(minimal(&c, &s, &id).await.state, Some(State::Complete));

    // Paging with page_size and the opaque next_page_token, through the crate: one
    // task a page gives the same tasks, in the same order, as one unpaged list.
    let all = c
        .list_tasks(None, no_retry())
        .await
        .unwrap_or_else(|e| panic!("tes client: list: {e:?}"));
    assert_eq!(all.tasks.len(), 3, "{:?}", all.tasks);
    let mut paged = Vec::new();
    let mut page_token = None;
    loop {
        let page = c
            .list_tasks(
                Some(&ListTasksParams {
                    page_size: Some(1),
                    page_token: page_token.take(),
                    ..ListTasksParams::default()
                }),
                no_retry(),
            )
            .await
            .unwrap_or_else(|e| panic!("tes client: paged list: {e:?}"));
        assert!(page.tasks.len() <= 1, "{:?}", page.tasks);
        paged.extend(
            page.tasks
                .iter()
                .filter_map(|t| t.as_minimal())
                .map(|t| t.id.clone()),
        );
        match page.next_page_token {
            Some(token) if !token.is_empty() => page_token = Some(token),
            _ => break,
        }
        assert!(
            paged.len() <= all.tasks.len(),
            "paging does not end: {paged:?}"
        );
    }
    let listed_ids: Vec<String> = all
        .tasks
        .iter()
        .filter_map(|t| t.as_minimal())
        .map(|t| t.id.clone())
        .collect();
    assert_eq!(paged, listed_ids);
}

fn example(name: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/tes/");
    std::fs::read_to_string(format!("{path}{name}"))
        .unwrap_or_else(|e| panic!("reading examples/tes/{name}: {e}"))
}

async fn submit_example(s: &Server, text: String) -> Value {
    // The Rust client's request type takes the example as well.
    serde_json::from_str::<requests::Task>(&text)
        .unwrap_or_else(|e| panic!("the tes crate rejects the example: {e}\n{text}"));
    let (status, body) = s.post_raw(&s.tes("/tasks"), text).await;
    assert_eq!(status, 200, "create failed: {body}");
    let id = body["id"].as_str().expect("id").to_string();
    let t = s.wait_done(&id).await;
    assert_eq!(
        t["state"],
        "COMPLETE",
        "{}\nserver log:\n{}",
        short(&t),
        s.server_log()
    );
    t
}

#[tokio::test]
async fn example_hello_json_runs_as_documented() {
    let s = Server::start(Options::default()).await;
    let t = submit_example(&s, example("hello.json")).await;
    assert_eq!(t["name"], "hello");
    assert_eq!(t["tags"]["project"], "demo");
    let logs = &t["logs"][0]["logs"];
    assert_eq!(logs.as_array().map(Vec::len), Some(2), "{}", short(&t));
    assert_eq!(logs[1]["stdout"], "HELLO TESSERA\n", "{}", short(&t));
}

#[tokio::test]
async fn example_outputs_json_runs_with_its_directory_allowed() {
    let s = Server::start(Options::default()).await;
    let text = example("outputs.json");
    assert!(text.contains("file:///srv/tessera/out/"), "{text}");
    // The example's placeholder directory becomes the one this server allows.
    let text = text.replace("/srv/tessera", &s.allowed.display().to_string());
    let t = submit_example(&s, text).await;
    let out = s.allowed.join("out/up.txt");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap_or_default(),
        "HELLO TESSERA\n",
        "{}",
        short(&t)
    );
    assert_eq!(t["logs"][0]["outputs"][0]["size_bytes"], "14");

    // The tes crate reads the output file log too.
    let c = client(&s, Some(&s.token));
    let id = t["id"].as_str().unwrap();
    let full = task(&c, &s, id, View::Full).await;
    let outputs = &full.logs.as_ref().unwrap()[0].outputs;
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    assert_eq!(outputs[0].path, "/out/up.txt");
    assert_eq!(outputs[0].size_bytes, "14");
    assert!(outputs[0].url.ends_with("/out/up.txt"), "{outputs:?}");
}

#[tokio::test]
async fn example_s3_json_runs_as_documented() {
    let s = Server::start(Options::default()).await;
    let words = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/tes/words.txt");
    // As the example says: put its input with the CLI first.
    common::cli_ok(&s, &["data", "put", words, "s3://demo/in/words.txt"]).await;
    let t = submit_example(&s, example("s3.json")).await;
    let count = common::cli_ok(&s, &["data", "get", "s3://demo/out/count.txt"]).await;
    assert_eq!(String::from_utf8_lossy(&count).trim(), "9", "{}", short(&t));
    let sorted = common::cli_ok(&s, &["data", "get", "s3://demo/out/sorted.txt"]).await;
    assert!(
        String::from_utf8_lossy(&sorted).starts_with("and\ninputs\n"),
        "{}",
        short(&t)
    );
}
