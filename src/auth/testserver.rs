//! A scriptable HTTP/1.1 server for unit tests of discovery, key fetching and
//! introspection: fixed responses per path, a request log, and an off switch.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub(crate) fn json(body: serde_json::Value) -> Reply {
        Reply {
            status: 200,
            body: body.to_string(),
            headers: vec![],
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub method: String,
    pub path: String,
    pub head: String,
    pub body: String,
}

#[derive(Default)]
struct Shared {
    routes: HashMap<String, Reply>,
    seen: Vec<Seen>,
    down: bool,
    delay: std::time::Duration,
}

#[derive(Clone)]
pub(crate) struct TestServer {
    pub base: String,
    shared: Arc<Mutex<Shared>>,
}

impl TestServer {
    pub(crate) async fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shared: Arc<Mutex<Shared>> = Arc::default();
        let s = shared.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let (head, body) = loop {
                        let Ok(n) = stream.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let head = text[..end].to_owned();
                            let len = head
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse::<usize>().ok())?
                                })
                                .unwrap_or(0);
                            if buf.len() >= end + 4 + len {
                                break (head, text[end + 4..end + 4 + len].to_owned());
                            }
                        }
                    };
                    let mut first = head.lines().next().unwrap_or("").split(' ');
                    let method = first.next().unwrap_or("").to_owned();
                    let path = first.next().unwrap_or("").to_owned();
                    let reply = {
                        let mut sh = s.lock();
                        if sh.down {
                            None
                        } else {
                            sh.seen.push(Seen {
                                method,
                                path: path.clone(),
                                head,
                                body,
                            });
                            Some(sh.routes.get(&path).cloned().unwrap_or(Reply {
                                status: 404,
                                body: "{}".into(),
                                headers: vec![],
                            }))
                        }
                    };
                    let Some(reply) = reply else { return };
                    let delay = s.lock().delay;
                    tokio::time::sleep(delay).await;
                    let mut out = format!(
                        "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                        reply.status,
                        reply.body.len()
                    );
                    for (k, v) in &reply.headers {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    out.push_str("\r\n");
                    out.push_str(&reply.body);
                    let _ = stream.write_all(out.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        TestServer { base, shared }
    }

    pub(crate) fn route(&self, path: &str, reply: Reply) {
        self.shared.lock().routes.insert(path.to_owned(), reply);
    }

    /// While down, connections are closed without an answer.
    pub(crate) fn set_down(&self, down: bool) {
        self.shared.lock().down = down;
    }

    /// Every answer waits this long.
    pub(crate) fn set_delay(&self, delay: std::time::Duration) {
        self.shared.lock().delay = delay;
    }

    pub(crate) fn hits(&self, path: &str) -> usize {
        self.shared
            .lock()
            .seen
            .iter()
            .filter(|s| s.path == path)
            .count()
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.shared.lock().seen.clone()
    }
}
