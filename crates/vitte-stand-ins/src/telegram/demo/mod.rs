//! The chat page: a web page, served at `GET /`, that plays a Telegram client
//! in a private chat with the bot. It writes, presses buttons and pays only
//! through the control API, so the bot sees exactly the updates a real
//! client would cause, and it shows what the bot sent from the long-polled
//! chat listing.
//!
//! Plain HTML, CSS and JavaScript compiled into the binary: no build step and
//! nothing fetched from elsewhere, so the demo works offline. The page never
//! turns the bot's text into markup; it builds elements from the message
//! entities, and the content security policy refuses any script or style
//! that is not one of these files.

use std::sync::Arc;

use axum::Router;
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::Shared;

const PAGE: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");

/// Only this origin's files; pictures may also be `data:` (the favicon and
/// the background pattern) or `blob:`.
const POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; media-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub(crate) fn router() -> Router<Arc<Shared>> {
    // Single-segment paths, so they never compete with `/{bot}/{method}`.
    Router::new()
        .route(
            "/",
            get(|| async { asset(PAGE, "text/html; charset=utf-8") }),
        )
        .route(
            "/demo.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/demo.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The files change with the binary; a stale cached script would talk to
    // a control API it does not match.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}
