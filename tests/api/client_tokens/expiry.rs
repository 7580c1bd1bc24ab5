//! A token that expires closes the sessions it opened, with a reason, and is refused after
//! (SPEC §3 "Client tokens").

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::{now, token_expiring, SECRET};
use crate::harness::{TestApp, TestOptions, WsClient};

/// Reads until a Close frame; answers its code and reason.
async fn close_of(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    within: Duration,
) -> (u16, String) {
    let read = async {
        while let Some(message) = socket.next().await {
            match message {
                Ok(Message::Close(Some(frame))) => {
                    return (u16::from(frame.code), frame.reason.to_string())
                }
                Ok(Message::Close(None)) => panic!("closed without a code"),
                Ok(_) => {}
                Err(e) => panic!("connection ended without a Close frame: {e}"),
            }
        }
        panic!("connection ended without a Close frame");
    };
    tokio::time::timeout(within, read)
        .await
        .expect("the session was not closed in time")
}

#[tokio::test]
async fn a_token_that_expires_mid_session_closes_the_connection_with_a_reason() {
    // Long heartbeat timeout: only the token's expiry may end these sessions.
    let app = TestApp::spawn(
        TestOptions::new()
            .env("DOCROOM_JWT_SECRET", SECRET)
            .env("DOCROOM__SESSION__CLIENT_TIMEOUT_MS", 60_000),
    )
    .await;
    let exp = now() + 3;
    let short = format!(
        "Bearer {}",
        token_expiring(&["short-lived", "short-yjs"], "rw", exp)
    );
    let open = |path: &str| {
        let mut request = app.ws_url(path).into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", short.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    let (mut json_socket, _) = open("/docs/short-lived/ws")
        .await
        .expect("connect while valid");
    let (mut yjs_socket, _) = open("/yjs/short-yjs").await.expect("connect while valid");

    // Usable while the token is valid.
    json_socket
        .send(Message::text(
            r#"{"type":"update","ref":"early","content":1}"#,
        ))
        .await
        .unwrap();
    let ack = loop {
        let Some(Ok(Message::Text(text))) = json_socket.next().await else {
            panic!("no ack before expiry")
        };
        let message: Value = serde_json::from_str(&text).unwrap();
        if message["ref"] == "early" {
            break message;
        }
    };
    assert_eq!(ack["type"], "ack", "{ack}");

    // Both are read at once, so both answer the server's Pings while they wait.
    let (json_close, yjs_close) = tokio::join!(
        close_of(&mut json_socket, Duration::from_secs(10)),
        close_of(&mut yjs_socket, Duration::from_secs(10)),
    );
    for (route, (code, reason)) in [("json", json_close), ("yjs", yjs_close)] {
        assert!(now() >= exp, "{route}: closed before the token expired");
        assert_eq!(code, 1008, "{route}: close code (reason {reason:?})");
        assert!(
            reason.to_lowercase().contains("expir"),
            "{route}: the close reason does not mention expiry: {reason:?}"
        );
    }

    // A new connection with the expired token is refused. (Checked a whole second past `exp`:
    // within the second of `exp` itself the JWT library still accepts the token.)
    while now() <= exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = WsClient::open(&app, "/docs/short-lived/ws", &[("Authorization", &short)]).await;
    assert_eq!(refused.err().map(|r| r.status), Some(401));
}
