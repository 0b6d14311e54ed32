//! deploy/compose/compose.yaml end to end on this machine's Docker with Debian's
//! docker-compose: the server in its image with PostgreSQL and Garage (each FROM scratch,
//! built by `scripts/compose-images.sh`), a TES task writing an output to the S3 store
//! and another reading it back, and the tasks still there after the server's container
//! is replaced (its state is in PostgreSQL).
//!
//! Needs the images compose.yaml names in TESSERA_IMAGE, TESSERA_POSTGRES_IMAGE and
//! TESSERA_GARAGE_IMAGE (`eval "$(bash scripts/compose-images.sh)"`; the test command
//! sets them); skipped without, unless TESSERA_REQUIRE_COMPOSE=1.

mod common;

use common::{Remote, short};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

struct Images {
    tessera: String,
    postgres: String,
    garage: String,
}

fn images() -> Option<Images> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let Some(tessera) = var("TESSERA_IMAGE") else {
        assert!(
            var("TESSERA_REQUIRE_COMPOSE").is_none(),
            "TESSERA_IMAGE is not set (scripts/compose-images.sh sets it)"
        );
        eprintln!("skipping: no compose images (TESSERA_IMAGE)");
        return None;
    };
    let need = |k: &str| var(k).unwrap_or_else(|| panic!("{k} is not set"));
    Some(Images {
        tessera,
        postgres: need("TESSERA_POSTGRES_IMAGE"),
        garage: need("TESSERA_GARAGE_IMAGE"),
    })
}

fn hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("reading /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// One compose project: its variables, `down -v` when dropped.
struct Project {
    name: String,
    env: Vec<(&'static str, String)>,
    work_dir: PathBuf,
}

impl Project {
    fn compose(&self, args: &[&str]) -> (bool, String) {
        let file = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/compose/compose.yaml"
        );
        let out = Command::new("docker-compose")
            .args(["-f", file, "-p", &self.name])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (*k, v)))
            .output()
            .expect("running docker-compose");
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    fn logs(&self) -> String {
        self.compose(&["logs", "--no-color", "--tail", "40"]).1
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "--timeout", "5"]);
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_file_runs_the_server_with_postgresql_and_an_s3_store() {
    let Some(images) = images() else { return };
    let name = format!("tessera-compose-{}", std::process::id());
    let work_dir = std::env::temp_dir().join(format!("{name}-work"));
    std::fs::create_dir_all(&work_dir).unwrap();
    let port = free_port();
    let token = format!("tsr-compose-{}", hex(16));
    let bucket = "tessera";
    let p = Project {
        env: vec![
            ("TESSERA_IMAGE", images.tessera.clone()),
            ("TESSERA_POSTGRES_IMAGE", images.postgres.clone()),
            ("TESSERA_GARAGE_IMAGE", images.garage.clone()),
            ("TESSERA_PORT", port.to_string()),
            ("TESSERA_AUTH_TOKEN", token.clone()),
            ("TESSERA_POSTGRES_PASSWORD", hex(16)),
            ("TESSERA_GARAGE_RPC_SECRET", hex(32)),
            ("TESSERA_S3_ACCESS_KEY_ID", format!("GK{}", hex(12))),
            ("TESSERA_S3_SECRET_ACCESS_KEY", hex(32)),
            ("TESSERA_S3_BUCKET", bucket.to_string()),
            ("TESSERA_WORK_DIR", work_dir.display().to_string()),
            ("TESSERA_TASK_NETWORK", format!("{name}-tasks")),
        ],
        name,
        work_dir,
    };
    let (ok, out) = p.compose(&["up", "-d"]);
    assert!(ok, "{out}\n{}", p.logs());

    let api = Remote::new(format!("http://127.0.0.1:{port}"), &token);
    let ready = || async {
        let deadline = Instant::now() + common::DEADLINE;
        loop {
            let up = api.http.get(format!("{}/readyz", api.url)).send().await;
            if up.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(Instant::now() < deadline, "not ready:\n{}", p.logs());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    ready().await;
    let (status, _) = api
        .call_as(None, reqwest::Method::GET, "/ga4gh/tes/v1/tasks", None)
        .await;
    assert_eq!(status, 401);
    let (status, body) = api
        .call(
            reqwest::Method::POST,
            "/v1/plugins/filer-s3/versions/0.2.0/activate",
            Some(&json!({"scope": "s3", "buckets": [bucket]})),
        )
        .await;
    assert_eq!(status, 200, "{body}\n{}", p.logs());
    let run = |task: Value| {
        let (api, p) = (&api, &p);
        async move {
            let id = api.create(&task).await;
            let done = api.wait_done(&id, || p.logs()).await;
            (id, done)
        }
    };
    let busybox = "tessera-test/busybox:latest";
    let (first, done) = run(json!({
        "inputs": [{"path": "/in/greeting.txt", "content": "hello from compose\n"}],
        "outputs": [{"url": format!("s3://{bucket}/out/shout.txt"), "path": "/out/shout.txt"}],
        "executors": [{"image": busybox, "command": ["sh", "-c", "tr a-z A-Z < /in/greeting.txt > /out/shout.txt"]}],
    }))
    .await;
    assert_eq!(done["state"], "COMPLETE", "{}\n{}", short(&done), p.logs());
    assert_eq!(done["logs"][0]["outputs"][0]["size_bytes"], "19");
    let (_, done) = run(json!({
        "inputs": [{"url": format!("s3://{bucket}/out/shout.txt"), "path": "/data/in.txt"}],
        "executors": [{"image": busybox, "command": ["cat", "/data/in.txt"]}],
    }))
    .await;
    assert_eq!(done["state"], "COMPLETE", "{}\n{}", short(&done), p.logs());
    assert_eq!(done["logs"][0]["logs"][0]["stdout"], "HELLO FROM COMPOSE\n");

    // A new server container: the tasks are in PostgreSQL, not in the container.
    let (ok, out) = p.compose(&["up", "-d", "--force-recreate", "--no-deps", "tessera"]);
    assert!(ok, "{out}");
    ready().await;
    let (_, task) = api
        .call(
            reqwest::Method::GET,
            &format!("/ga4gh/tes/v1/tasks/{first}?view=MINIMAL"),
            None,
        )
        .await;
    assert_eq!(task["state"], "COMPLETE", "{}\n{}", short(&task), p.logs());
}
