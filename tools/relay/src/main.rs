//! docroom-relay, the bare relay (issue 29): the physical-limit anchor of tools/bench-compare.
//!
//! A WebSocket server where the URL path names a room: every frame a client sends is forwarded
//! as-is (the same bytes, no copy) to every other client connected to the same room. That is the
//! least work a server could do to deliver the broadcasts docroom delivers: accept, read a
//! frame, write it to the room's other sockets. As a production relay would run: tokio's
//! multi-threaded runtime, one task per connection that reads its socket and writes what the
//! others queued for it (several queued frames in one write).
//!
//! It does not: keep a document, decode or apply updates, answer a late joiner with the
//! document's state, store anything (no Redis, no PostgreSQL), acknowledge updates, authenticate,
//! or limit anything (a slow client's queue grows without bound). Awareness frames are
//! forwarded like any other.
//!
//! One concession to the y-websocket protocol, so a provider (and the load generator, which waits
//! for a sync step 2 after its sync step 1 before it sends) can connect: a client's sync step 1
//! (a binary frame starting 0x00 0x00: messageSync, syncStep1) is answered with an empty sync
//! step 2 and not forwarded. The relay never sends a sync step 1, so clients send no sync step 2.
//! The Yjs protocol has no acks (docroom sends none over /yjs either), so none are sent.
//!
//! Usage: docroom-relay [--port PORT] (or PORT; default 8080), on HOST (default 127.0.0.1);
//! prints `listening addr=HOST:PORT` to stderr once bound (port 0: any free port).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// A room's clients: id and the queue of frames its socket writes.
type Room = Mutex<Vec<(u64, mpsc::UnboundedSender<Message>)>>;
type Rooms = Mutex<HashMap<String, Arc<Room>>>;

/// messageSync (0), syncStep2 (1), an empty update as a varbuf (2 bytes: no structs, no
/// deletions).
const EMPTY_SYNC_STEP2: &[u8] = &[0, 1, 2, 0, 0];

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    while let Some(a) = args.next() {
        match (a.as_str(), a.strip_prefix("--port=")) {
            (_, Some(p)) => port = p.to_string(),
            ("--port", None) => port = args.next().unwrap_or_default(),
            _ => {
                return Err(std::io::Error::other(format!(
                    "unknown argument {a}; usage: docroom-relay [--port PORT]"
                )))
            }
        }
    }
    let port: u16 = port
        .parse()
        .map_err(|_| std::io::Error::other(format!("bad port {port:?}")))?;
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(host, port))
}

async fn serve(host: String, port: u16) -> std::io::Result<()> {
    let listener = TcpListener::bind((host.as_str(), port)).await?;
    eprintln!("listening addr={}", listener.local_addr()?);
    let rooms: Arc<Rooms> = Arc::default();
    for id in 0u64.. {
        match listener.accept().await {
            Ok((tcp, _)) => drop(tokio::spawn(client(tcp, id, rooms.clone()))),
            Err(e) => eprintln!("accept: {e}"), // e.g. out of file descriptors: go on
        }
    }
    Ok(())
}

async fn client(tcp: TcpStream, id: u64, rooms: Arc<Rooms>) {
    let _ = tcp.set_nodelay(true);
    let mut path = String::new();
    #[allow(clippy::result_large_err)] // the library's callback type, error response and all
    let callback = |req: &Request, resp: Response| {
        path = req.uri().path().to_owned();
        Ok(resp)
    };
    // An 8 KiB read buffer, not the library's 128 KiB, which it zeroes on every read: half the
    // relay's CPU went to that memset.
    let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
    let accepted = tokio_tungstenite::accept_hdr_async_with_config(tcp, callback, Some(config));
    let Ok(mut ws) = accepted.await else {
        return;
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let room = {
        let mut rooms = rooms.lock().unwrap();
        let room = rooms.entry(path.clone()).or_default().clone();
        room.lock().unwrap().push((id, tx.clone()));
        room
    };
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(m) = out else { break };
                // Whatever else is queued goes out in the same write.
                let mut ok = ws.feed(m).await.is_ok();
                while let (true, Ok(m)) = (ok, rx.try_recv()) {
                    ok = ws.feed(m).await.is_ok();
                }
                if !ok || ws.flush().await.is_err() {
                    break;
                }
            }
            frame = ws.next() => match frame {
                Some(Ok(Message::Binary(b))) if b.starts_with(&[0, 0]) => {
                    let _ = tx.send(Message::binary(EMPTY_SYNC_STEP2));
                }
                Some(Ok(m @ (Message::Binary(_) | Message::Text(_)))) => {
                    for (peer, queue) in room.lock().unwrap().iter() {
                        if *peer != id {
                            let _ = queue.send(m.clone());
                        }
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {} // ping, pong: the library answers pings itself
            }
        }
    }
    let mut rooms = rooms.lock().unwrap();
    let mut members = room.lock().unwrap();
    members.retain(|(peer, _)| *peer != id);
    if members.is_empty() {
        rooms.remove(&path);
    }
}
