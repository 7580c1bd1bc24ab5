//! HTTP: the document routes, the admin API, and a raw HTTP/1.1 client for request targets that
//! `reqwest` would rewrite (it resolves `..` and `%2E%2E` before sending).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::app::TestApp;

/// A status and a body, parsed as JSON when it is JSON (`Value::Null` otherwise; see `text`).
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

impl Reply {
    async fn from(response: reqwest::Response) -> Reply {
        let status = response.status().as_u16();
        let text = response.text().await.expect("read the response body");
        Reply::parse(status, text)
    }

    fn parse(status: u16, text: String) -> Reply {
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, body, text }
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// The test's HTTP client (no proxy from the environment, 30 s timeout).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub async fn get(&self, path: &str) -> Reply {
        let response = self.http.get(self.url(path)).send().await;
        Reply::from(response.unwrap_or_else(|e| panic!("GET {path}: {e}"))).await
    }

    pub async fn get_doc(&self, doc: &str) -> Reply {
        self.get(&format!("/docs/{doc}")).await
    }

    pub async fn put_doc(&self, doc: &str, content: &Value) -> Reply {
        self.put_doc_raw(doc, &content.to_string()).await
    }

    /// `PUT /docs/{doc}` with exactly this body text.
    pub async fn put_doc_raw(&self, doc: &str, body: &str) -> Reply {
        let response = self
            .http
            .put(self.url(&format!("/docs/{doc}")))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await;
        Reply::from(response.unwrap_or_else(|e| panic!("PUT /docs/{doc}: {e}"))).await
    }

    /// The admin API with the configured token.
    pub fn admin(&self) -> Admin<'_> {
        Admin {
            app: self,
            authorization: self.admin_token.as_ref().map(|t| format!("Bearer {t}")),
        }
    }

    /// The admin API with any `Authorization` header value, or none.
    pub fn admin_as(&self, authorization: Option<&str>) -> Admin<'_> {
        Admin {
            app: self,
            authorization: authorization.map(str::to_owned),
        }
    }
}

/// `/admin/*` calls. `get`/`post` return whatever came back; the typed helpers assert a 200.
pub struct Admin<'a> {
    app: &'a TestApp,
    authorization: Option<String>,
}

impl Admin<'_> {
    pub async fn get(&self, route: &str) -> Reply {
        let request = self.app.http.get(self.app.url(&format!("/admin/{route}")));
        self.send(request, route).await
    }

    pub async fn post(&self, route: &str, body: &Value) -> Reply {
        let request = self
            .app
            .http
            .post(self.app.url(&format!("/admin/{route}")))
            .json(body);
        self.send(request, route).await
    }

    /// `GET /admin/flusher`.
    pub async fn flusher(&self) -> Value {
        self.ok(self.get("flusher").await, "GET /admin/flusher")
    }

    /// `POST /admin/flusher/flush`: `{"flushed":N,"failed":N}`.
    pub async fn flush_now(&self) -> Value {
        let reply = self.post("flusher/flush", &Value::Null).await;
        self.ok(reply, "POST /admin/flusher/flush")
    }

    /// `GET /admin/rooms`.
    pub async fn rooms(&self) -> Vec<Value> {
        match self.ok(self.get("rooms").await, "GET /admin/rooms") {
            Value::Array(rooms) => rooms,
            other => panic!("GET /admin/rooms is not an array: {other}"),
        }
    }

    /// The entry of `doc` in `GET /admin/rooms`, if it has a room.
    pub async fn room(&self, doc: &str) -> Option<Value> {
        self.rooms()
            .await
            .into_iter()
            .find(|room| room["doc"] == doc)
    }

    /// `GET /admin/replicas`.
    pub async fn replicas(&self) -> Vec<Value> {
        match self.ok(self.get("replicas").await, "GET /admin/replicas") {
            Value::Array(replicas) => replicas,
            other => panic!("GET /admin/replicas is not an array: {other}"),
        }
    }

    /// `GET /admin/breaker`.
    pub async fn breaker(&self) -> Value {
        self.ok(self.get("breaker").await, "GET /admin/breaker")
    }

    /// `POST /admin/breaker` with `{"state": state}`.
    pub async fn set_breaker(&self, state: &str) -> Reply {
        self.post("breaker", &serde_json::json!({ "state": state }))
            .await
    }

    async fn send(&self, mut request: reqwest::RequestBuilder, route: &str) -> Reply {
        if let Some(value) = &self.authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await;
        Reply::from(response.unwrap_or_else(|e| panic!("/admin/{route}: {e:?}"))).await
    }

    fn ok(&self, reply: Reply, what: &str) -> Value {
        assert_eq!(reply.status, 200, "{what}: {}", reply.text);
        reply.body
    }
}

/// One HTTP/1.1 request sent byte for byte as given (`target` is not normalized or re-encoded).
pub async fn raw_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || method == "PUT" || method == "POST" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        head.push_str(body);
        stream.write_all(head.as_bytes()).await.expect("send");
        read_response(&mut stream).await
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| panic!("no complete answer to {method} {target} within 10 s"))
}

/// Reads one response: up to Content-Length, the last chunk, or the end of the stream.
async fn read_response(stream: &mut TcpStream) -> Reply {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let body = &buf[end + 4..];
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse::<usize>().expect("content-length"));
            let chunked = head.contains("transfer-encoding: chunked");
            let complete = match length {
                Some(n) => body.len() >= n,
                None => chunked && find(body, b"0\r\n\r\n").is_some(),
            };
            if complete {
                return parse_response(&buf[..end], body, chunked);
            }
        }
        let n = stream.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            let end = find(&buf, b"\r\n\r\n").expect("the connection closed before the headers");
            let chunked = String::from_utf8_lossy(&buf[..end])
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked");
            return parse_response(&buf[..end], &buf[end + 4..], chunked);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn parse_response(head: &[u8], body: &[u8], chunked: bool) -> Reply {
    let head = String::from_utf8_lossy(head);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    Reply::parse(status, String::from_utf8_lossy(&body).into_owned())
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = find(body, b"\r\n") {
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&body[start..(start + size).min(body.len())]);
        body = &body[(start + size + 2).min(body.len())..];
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
