//! What the API tests share: an application context over a fresh SQLite
//! store with a stopped clock, seeded personas, and requests from a chosen
//! client address.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode, header};
use chrono::{DateTime, TimeDelta, Utc};
use clap::Parser;
use serde_json::Value;
use tower::ServiceExt;
use vitte_domain::ManualClock;
use vitte_domain::ids::PersonaSlug;
use vitte_domain::model::{PersonaCard, Picture};
use vitte_domain::ports::{Quota, RateLimiter, Store};
use vitte_runtime::{AppContext, Settings, Shutdown};

/// The settings of a process with every default, as the binary would parse
/// them from an empty command line.
#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
}

/// A fixed start time, so waits are exact.
pub fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_735_689_600, 0).expect("a valid instant")
}

/// `count` requests per `secs` seconds.
pub fn quota(count: u32, secs: u64) -> Quota {
    Quota {
        count,
        period: Duration::from_secs(secs),
    }
}

/// One running API, as a process would have it.
pub struct App {
    /// The context the router was built from.
    pub ctx: AppContext,
    /// The clock the limiter judges by; only moves when told.
    pub clock: Arc<ManualClock>,
}

impl App {
    /// An API over `store` and `limiter` with the API quotas `rate_api` and
    /// `VITTE_API_TRUST_FORWARDED` set to `trust_forwarded`.
    pub fn new(
        store: Arc<dyn Store>,
        limiter: Arc<dyn RateLimiter>,
        rate_api: Vec<Quota>,
        trust_forwarded: bool,
    ) -> Self {
        let mut settings = Cli::try_parse_from(["vitte"])
            .expect("the default settings parse")
            .settings;
        settings.rate_api.0 = rate_api;
        settings.api_trust_forwarded = trust_forwarded;
        let clock = Arc::new(ManualClock::new(t0()));
        let ctx = AppContext {
            settings: Arc::new(settings),
            store,
            limiter,
            clock: clock.clone(),
            shutdown: Shutdown::new(),
        };
        Self { ctx, clock }
    }

    /// The api role's router.
    pub fn router(&self) -> Router {
        vitte_api::router(&self.ctx)
    }

    /// Moves this process's clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock
            .advance(TimeDelta::from_std(by).expect("a short duration"));
    }
}

/// A fresh, migrated SQLite store with three personas: Mira and Elias
/// listed (Mira with a picture), Hidden not.
pub async fn seeded_store() -> Arc<dyn Store> {
    let store = vitte_store_sqlite::testing::fresh_store().await;
    seed(&*store).await;
    store
}

/// The bytes of Mira's picture.
pub const MIRA_PICTURE: &[u8] = b"\x89PNG\r\n\x1a\nnot really a png";

/// Adds the test personas to `store`.
pub async fn seed(store: &dyn Store) {
    let card = |name: &str, notes: &str, tags: &[&str]| PersonaCard {
        name: name.to_owned(),
        description: format!("{{{{char}}}} is {name}.\n\nLonger text."),
        creator_notes: notes.to_owned(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        ..PersonaCard::default()
    };
    let slug = |s: &str| PersonaSlug::parse(s).expect("a valid slug");
    let picture = Picture {
        mime: "image/png".to_owned(),
        bytes: MIRA_PICTURE.to_vec(),
    };
    store
        .upsert_persona(
            &slug("mira"),
            &card("Mira", "A cosy tea-shop owner.", &["cozy", "english"]),
            Some(&picture),
            t0(),
        )
        .await
        .expect("mira");
    store
        .upsert_persona(&slug("elias"), &card("Elias", "", &["jazz"]), None, t0())
        .await
        .expect("elias");
    let hidden = store
        .upsert_persona(
            &slug("hidden"),
            &card("Hidden", "Not for the list.", &[]),
            Some(&picture),
            t0(),
        )
        .await
        .expect("hidden");
    store
        .set_persona_listed(hidden.id, false)
        .await
        .expect("hide");
}

/// A GET of `path` from a client connected from `peer` (none: the server
/// did not record peer addresses), with `forwarded` as `X-Forwarded-For`.
pub fn get(path: &str, peer: Option<&str>, forwarded: Option<&str>) -> Request<Body> {
    let mut request = Request::get(path);
    if let Some(peer) = peer {
        let addr: SocketAddr = peer.parse().expect("a socket address");
        request = request.extension(ConnectInfo(addr));
    }
    if let Some(forwarded) = forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    request.body(Body::empty()).expect("a request")
}

/// Sends `request` through `router`.
pub async fn send(router: &Router, request: Request<Body>) -> Response<Body> {
    router
        .clone()
        .oneshot(request)
        .await
        .expect("the router is infallible")
}

/// The status of `request`.
pub async fn status(router: &Router, request: Request<Body>) -> StatusCode {
    send(router, request).await.status()
}

/// The body of `response` as JSON.
pub async fn json(response: Response<Body>) -> Value {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("a body");
    serde_json::from_slice(&bytes).expect("a JSON body")
}

/// Asserts `response` is the 429 for a wait of `secs` seconds.
pub async fn assert_limited(response: Response<Body>, secs: u64) {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .expect("Retry-After")
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert_eq!(retry_after, secs.to_string());
    assert_eq!(
        json(response).await,
        serde_json::json!({"error": "rate_limited", "retry_after": secs})
    );
}
