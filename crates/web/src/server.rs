//! The HTTP side: accepting connections (bounded), checking access, and
//! answering each path. Connections are HTTP/1.1 served by hyper; the
//! websocket upgrade is answered here and the connection handed to
//! [`crate::session`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch, Semaphore};

use crate::assets;
use crate::auth::{self, Pass};
use crate::{ConsoleEvent, Shared};

/// Longest request head (request line and headers).
const MAX_HEAD: usize = 16 * 1024;
/// Most headers in one request.
const MAX_HEADERS: usize = 64;
/// Time a client has to send a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

type Body = Full<Bytes>;

/// Accepts connections until `stop` changes.
pub(crate) async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            log::error!("web console: cannot listen: {e}");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(crate::MAX_CONNECTIONS));
    // Every chardev keeps a history while the console runs (those there
    // at the start got theirs from `WebConsole::start`).
    let mut events = shared.consoles.events();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            ev = events.recv() => match ev {
                Ok(ConsoleEvent::Added(id)) => shared.consoles.keep_histories(Some(&id)),
                Ok(ConsoleEvent::Removed(id)) => shared.consoles.forget(&id),
                Ok(ConsoleEvent::Changed { .. }) => {}
                // Missed some: look at them all again.
                Err(broadcast::error::RecvError::Lagged(_)) => shared.consoles.keep_histories(None),
                Err(broadcast::error::RecvError::Closed) => break,
            },
            r = listener.accept() => match r {
                Ok((sock, peer)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        log::warn!("web console: {peer} refused: {} connections open", crate::MAX_CONNECTIONS);
                        continue;
                    };
                    let _ = sock.set_nodelay(true);
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        connection(sock, shared).await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    // Out of descriptors, most likely: give the others time
                    // to close some rather than spin.
                    log::warn!("web console: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    shared.consoles.forget_histories();
}

/// Serves one connection: TLS first if the console has it (bounded by
/// the same time as a request head), then HTTP.
async fn connection(sock: tokio::net::TcpStream, shared: Arc<Shared>) {
    match shared.tls.clone() {
        Some(acceptor) => match tokio::time::timeout(HEAD_TIMEOUT, acceptor.accept(sock)).await {
            Ok(Ok(tls)) => {
                if let Some(id) = &shared.authz {
                    let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
                    let objects = Some((id.as_str(), shared.consoles.objects()));
                    if let Err(e) =
                        qchar_chardev::tls::authorize_peer(leaf.map(|c| c.as_ref()), objects)
                    {
                        // As a chardev's refused client: logged, closed,
                        // never answered.
                        log::warn!("web console: client refused: {e}");
                        return;
                    }
                }
                http(tls, shared).await
            }
            Ok(Err(e)) => log::warn!("web console: TLS handshake failed: {e}"),
            Err(_) => log::warn!("web console: TLS handshake timed out"),
        },
        None => http(sock, shared).await,
    }
}

/// HTTP/1.1 on a connected stream.
async fn http<S>(io: S, shared: Arc<Shared>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(req, &shared)) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .max_headers(MAX_HEADERS)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        log::debug!("web console: connection ended: {e}");
    }
}

/// A response with security headers and no caching.
fn reply(status: StatusCode, mime: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             connect-src 'self'; img-src 'self'; font-src 'self'; frame-ancestors 'none'; \
             base-uri 'none'; form-action 'none'",
        ),
    );
    r
}

/// A plain-text response (with the same headers as every other).
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    reply(status, "text/plain; charset=utf-8", body)
}

/// What a refused request gets: the same for every path, so that nothing
/// (not even which chardevs exist) is told to whoever lacks the token.
pub(crate) fn forbidden() -> Response<Body> {
    text(StatusCode::FORBIDDEN, "403 Forbidden\n")
}

fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "404 Not Found\n")
}

fn handle(req: Request<Incoming>, shared: &Arc<Shared>) -> Response<Body> {
    let query = req.uri().query().map(str::to_string);
    // A connection that got through a verify-peer handshake carries a
    // certificate the CA signed: that is its pass.
    let pass = if shared.cert_access {
        Some(Pass::Carried)
    } else {
        auth::check(&shared.token, shared.port, query.as_deref(), req.headers())
    };
    let Some(pass) = pass else {
        return forbidden();
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let path = req.uri().path().to_string();
    let head = req.method() == Method::HEAD;
    let mut resp = if let Some(id) = path.strip_prefix("/ws/") {
        crate::session::upgrade(req, id, query.as_deref(), shared)
    } else if pass == Pass::Query && (path == "/" || path.starts_with("/console/")) {
        // The token moves from the URL into the cookie.
        redirect_with_cookie(&path, query.as_deref(), shared)
    } else if path == "/" {
        page(&assets::INDEX)
    } else if let Some(id) = path.strip_prefix("/console/") {
        if shared.consoles.filename(id).is_some() {
            page(&assets::CONSOLE)
        } else {
            not_found()
        }
    } else if path == "/api/chardevs" {
        reply(
            StatusCode::OK,
            "application/json",
            chardevs_json(shared).to_string(),
        )
    } else if let Some(a) = path.strip_prefix("/static/").and_then(assets::find) {
        reply(StatusCode::OK, a.mime, a.body)
    } else {
        not_found()
    };
    if head {
        *resp.body_mut() = Full::new(Bytes::new());
    }
    resp
}

fn page(a: &assets::Asset) -> Response<Body> {
    reply(StatusCode::OK, a.mime, a.body)
}

/// `303 See Other` to `path` with the query minus the token, setting the
/// console's cookie.
fn redirect_with_cookie(path: &str, query: Option<&str>, shared: &Shared) -> Response<Body> {
    let rest: Vec<&str> = query
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.starts_with("token="))
        .collect();
    let target = if rest.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", rest.join("&"))
    };
    let mut r = text(StatusCode::SEE_OTHER, "");
    let cookie = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict",
        auth::cookie_name(shared.port),
        shared.token
    );
    let h = r.headers_mut();
    if let (Ok(loc), Ok(c)) = (
        HeaderValue::from_str(&target),
        HeaderValue::from_str(&cookie),
    ) {
        h.insert(header::LOCATION, loc);
        h.insert(header::SET_COOKIE, c);
    }
    r
}

/// `/api/chardevs`: the index page's rows.
pub(crate) fn chardevs_json(shared: &Shared) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = shared
        .consoles
        .list()
        .into_iter()
        .map(|c| {
            let last = c
                .last_change
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64);
            serde_json::json!({
                "id": c.id,
                "filename": c.filename,
                "frontend": c.frontend,
                "clients": c.socket_clients + shared.sessions_of(&c.id),
                "bytes-in": c.bytes_in,
                "bytes-out": c.bytes_out,
                "changes": c.changes,
                "last-change": last,
            })
        })
        .collect();
    serde_json::Value::Array(rows)
}
