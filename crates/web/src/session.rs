//! One terminal's websocket: the upgrade, then the session that moves the
//! chardev's output (from its tap) to the page and the page's input to the
//! chardev.
//!
//! Frames to the page: binary for output bytes, JSON text for notices
//! (`hello`, `backend`, `skipped`, `closed`). Frames from the page: binary
//! or text, both taken as input bytes (so a stock client that sends text
//! works); from a read-only page any input closes the socket (1008).
//!
//! Backpressure both ways: the next output chunk is read from the tap only
//! once the last one was flushed to the socket (a page that stops reading
//! holds its own tap only; the chardev does not wait for it), and the next
//! message from the page is read only once the tap took the last one.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use base64::Engine;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use qchar_chardev::tap::{Tap, TapRead};
use qchar_chardev::ChardevError;

use crate::auth;
use crate::{ConsoleEvent, Shared};

/// Output read from the tap per frame.
const CHUNK: usize = 64 * 1024;
/// Largest message (and frame) a page may send.
const MAX_IN: usize = 64 * 1024;
/// The RFC 6455 GUID for `Sec-WebSocket-Accept`.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

type Body = Full<Bytes>;

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn bad_request(why: &'static str) -> Response<Body> {
    crate::server::text(StatusCode::BAD_REQUEST, why)
}

/// Answers a websocket request for chardev `id`: `101` and a session, or
/// why not.
pub(crate) fn upgrade(
    mut req: Request<Incoming>,
    id: &str,
    query: Option<&str>,
    shared: &Arc<Shared>,
) -> Response<Body> {
    let h = req.headers();
    if !auth::same_origin(h, shared.tls.is_some()) {
        log::warn!("web console: websocket for '{id}' refused: cross-site origin");
        return crate::server::forbidden();
    }
    if !has_token(h, header::UPGRADE, "websocket") || !has_token(h, header::CONNECTION, "upgrade") {
        return bad_request("400 Bad Request: not a websocket upgrade\n");
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return bad_request("400 Bad Request: websocket version 13 only\n");
    }
    let Some(key) = h
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|k| k.as_bytes().len() == 24)
        .map(|k| k.as_bytes().to_vec())
    else {
        return bad_request("400 Bad Request: bad websocket key\n");
    };
    // No subprotocol is needed; a client that asks for some gets `binary`
    // if it offered it, else is refused (it would expect a protocol this
    // console does not speak).
    let offered = h.contains_key(header::SEC_WEBSOCKET_PROTOCOL);
    let binary = has_token(h, header::SEC_WEBSOCKET_PROTOCOL, "binary");
    if offered && !binary {
        return bad_request("400 Bad Request: the only subprotocol is 'binary'\n");
    }
    let read_only = auth::query_param(query, "ro").is_some_and(|v| v == "1" || v == "on");
    let Ok(permit) = shared.terminals.clone().try_acquire_owned() else {
        log::warn!(
            "web console: a terminal of '{id}' refused: {} open",
            crate::MAX_TERMINALS
        );
        return crate::server::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Unavailable: too many terminals\n",
        );
    };
    let tap = match shared.consoles.tap(id, read_only) {
        Ok(t) => t,
        Err(ChardevError::NotFound(_) | ChardevError::DoesNotExist(_)) => {
            return crate::server::text(StatusCode::NOT_FOUND, "404 Not Found\n");
        }
        Err(e) => {
            return crate::server::text(StatusCode::CONFLICT, format!("409 Conflict: {e}\n"));
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let shared2 = shared.clone();
    let id2 = id.to_string();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(up) => {
                let cfg = WebSocketConfig::default()
                    .max_message_size(Some(MAX_IN))
                    .max_frame_size(Some(MAX_IN));
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Server, Some(cfg))
                        .await;
                session(ws, tap, &id2, read_only, &shared2).await;
                drop(permit);
            }
            Err(e) => log::debug!("web console: websocket upgrade failed: {e}"),
        }
    });
    let mut digest = Sha1::new();
    digest.update(&key);
    digest.update(GUID.as_bytes());
    let accept = base64::engine::general_purpose::STANDARD.encode(digest.finalize());
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if binary {
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("binary"),
        );
    }
    r
}

/// Counts a terminal in while it lives.
struct Counted<'a> {
    shared: &'a Shared,
    id: &'a str,
}

impl<'a> Counted<'a> {
    fn new(shared: &'a Shared, id: &'a str) -> Counted<'a> {
        shared.count_session(id, 1);
        Counted { shared, id }
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.shared.count_session(self.id, -1);
    }
}

/// What woke the session.
enum Step {
    /// The tap had output (or news).
    Out(TapRead),
    /// A message from the page (or its end).
    In(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    /// The tap took this many bytes of pending input.
    Taken(usize),
    /// A chardev event.
    Event(Result<ConsoleEvent, RecvError>),
}

fn notice(v: serde_json::Value) -> Message {
    Message::text(v.to_string())
}

async fn session<S>(
    mut ws: WebSocketStream<S>,
    mut tap: Tap,
    id: &str,
    read_only: bool,
    shared: &Shared,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let _counted = Counted::new(shared, id);
    let mut events = Some(shared.consoles.events());
    let hello = serde_json::json!({
        "type": "hello",
        "id": id,
        "filename": shared.consoles.filename(id).unwrap_or_default(),
        "readOnly": read_only,
    });
    if ws.send(notice(hello)).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; CHUNK];
    // Input the tap has not taken yet, and how far it took it.
    let mut input: Option<(Bytes, usize)> = None;
    loop {
        let step = {
            let mut ev = pin!(async {
                match events.as_mut() {
                    Some(e) => e.recv().await,
                    None => std::future::pending().await,
                }
            });
            poll_fn(|cx| {
                match &input {
                    Some((data, off)) => {
                        if let Poll::Ready(r) = tap.poll_input(cx, &data[*off..]) {
                            // Refused (the chardev went away): dropped.
                            return Poll::Ready(Step::Taken(r.unwrap_or(0)));
                        }
                    }
                    None => {
                        if let Poll::Ready(m) = ws.poll_next_unpin(cx) {
                            return Poll::Ready(Step::In(m));
                        }
                    }
                }
                if let Poll::Ready(r) = tap.poll_read(cx, &mut buf) {
                    return Poll::Ready(Step::Out(r));
                }
                if let Poll::Ready(e) = ev.as_mut().poll(cx) {
                    return Poll::Ready(Step::Event(e));
                }
                Poll::Pending
            })
            .await
        };
        let sent = match step {
            Step::Out(TapRead::Data(n)) => {
                ws.send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
                    .await
            }
            Step::Out(TapRead::Skipped(n)) => {
                ws.send(notice(serde_json::json!({"type": "skipped", "bytes": n})))
                    .await
            }
            Step::Out(TapRead::Closed) => {
                let _ = ws
                    .send(notice(
                        serde_json::json!({"type": "closed", "reason": "removed"}),
                    ))
                    .await;
                let _ = ws.close(None).await;
                return;
            }
            Step::In(Some(Ok(Message::Binary(_) | Message::Text(_)))) if read_only => {
                log::warn!("web console: a read-only terminal of '{id}' sent input: closed");
                let _ = ws
                    .close(Some(CloseFrame {
                        code: CloseCode::Policy,
                        reason: "read-only".into(),
                    }))
                    .await;
                return;
            }
            Step::In(Some(Ok(Message::Binary(b)))) => {
                input = (!b.is_empty()).then_some((b, 0));
                Ok(())
            }
            Step::In(Some(Ok(Message::Text(t)))) => {
                let b = Bytes::from(t);
                input = (!b.is_empty()).then_some((b, 0));
                Ok(())
            }
            // Answers to pings and closes are queued by the protocol; this
            // sends them.
            Step::In(Some(Ok(_))) => ws.flush().await,
            Step::In(None) | Step::In(Some(Err(_))) => return,
            Step::Taken(0) => {
                input = None;
                Ok(())
            }
            Step::Taken(n) => {
                if let Some((data, off)) = input.as_mut() {
                    *off += n;
                    if *off >= data.len() {
                        input = None;
                    }
                }
                Ok(())
            }
            Step::Event(Ok(ConsoleEvent::Changed { id: cid, .. })) if cid == id => {
                let filename = shared.consoles.filename(id).unwrap_or_default();
                ws.send(notice(
                    serde_json::json!({"type": "backend", "filename": filename}),
                ))
                .await
            }
            Step::Event(Ok(_)) => Ok(()),
            Step::Event(Err(RecvError::Lagged(_))) => {
                // Missed some: say where the chardev is now.
                let filename = shared.consoles.filename(id).unwrap_or_default();
                ws.send(notice(
                    serde_json::json!({"type": "backend", "filename": filename}),
                ))
                .await
            }
            Step::Event(Err(RecvError::Closed)) => {
                events = None;
                Ok(())
            }
        };
        if let Err(e) = sent {
            log::debug!("web console: a terminal of '{id}' ended: {e}");
            return;
        }
    }
}
