//! A small HTTP/1.1 file server on 127.0.0.1 for filer tests: GET serves what it holds,
//! PUT stores the body, and chosen paths answer with a fixed status (and location).

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::server::{Recorded, read_request};

#[derive(Default)]
struct State {
    files: BTreeMap<String, Vec<u8>>,
    /// path → (status, location)
    fixed: BTreeMap<String, (u16, Option<String>)>,
    requests: Vec<Recorded>,
    connections: usize,
}

pub struct FileServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FileServer {
    pub fn start() -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                shared.lock().unwrap().connections += 1;
                let shared = shared.clone();
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        FileServer { addr, state }
    }

    /// `127.0.0.1:<port>`.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn put_file(&self, path: &str, bytes: Vec<u8>) {
        self.state.lock().unwrap().files.insert(path.into(), bytes);
    }

    pub fn file(&self, path: &str) -> Option<Vec<u8>> {
        self.state.lock().unwrap().files.get(path).cloned()
    }

    /// Every request for `path` (with any query) gets `status` (and `location`).
    pub fn answer(&self, path: &str, status: u16, location: Option<&str>) {
        self.state
            .lock()
            .unwrap()
            .fixed
            .insert(path.into(), (status, location.map(str::to_owned)));
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let Some(request) = read_request(&mut reader) else {
        return;
    };
    let path = request.path.split('?').next().unwrap_or("").to_string();
    let (status, location, body) = {
        let mut s = state.lock().unwrap();
        s.requests.push(Recorded {
            body: Vec::new(),
            ..request.clone()
        });
        if let Some((status, location)) = s.fixed.get(&path).cloned() {
            (
                status,
                location,
                format!("answer {status} for this").into_bytes(),
            )
        } else {
            match request.method.as_str() {
                "GET" => match s.files.get(&path) {
                    Some(b) => (200, None, b.clone()),
                    None => (404, None, b"no such file".to_vec()),
                },
                "PUT" => {
                    s.files.insert(path, request.body);
                    (201, None, Vec::new())
                }
                _ => (405, None, Vec::new()),
            }
        }
    };
    let mut head = format!(
        "HTTP/1.1 {status} Whatever\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if let Some(l) = location {
        head.push_str(&format!("location: {l}\r\n"));
    }
    head.push_str("\r\n");
    let _ = writer.write_all(head.as_bytes());
    let _ = writer.write_all(&body);
    let _ = writer.flush();
}
