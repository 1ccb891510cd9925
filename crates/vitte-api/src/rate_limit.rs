//! Per-client rate limits on the API.
//!
//! Each request counts one event against the `VITTE_RATE_API` quotas under
//! the key `api:<client>`. Over the limit the request is answered `429 Too
//! Many Requests` with `Retry-After` (whole seconds, rounded up, at least 1)
//! and `{"error":"rate_limited","retry_after":N}`, and the handler never
//! runs. A limiter that cannot be reached lets requests through with a
//! warning: the API stays up when Redis does not.
//!
//! Who the client is:
//!
//! - The peer address of the connection, from axum's
//!   [`ConnectInfo<SocketAddr>`] request extension. It is only there when the
//!   server is started with `into_make_service_with_connect_info::<SocketAddr>()`.
//! - With `VITTE_API_TRUST_FORWARDED=true`, the **last** (rightmost) address
//!   of `X-Forwarded-For` instead. A proxy appends the address it received
//!   the request from, so the last entry is the one our proxy wrote; every
//!   entry to its left came from the client (or from proxies we know nothing
//!   of) and could be anything, so trusting the first entry would let a
//!   client pick its own key and escape the limit. This assumes exactly one
//!   trusted proxy in front; behind a chain (a CDN, then a load balancer) the
//!   last entry is the previous proxy's address, so configure the outer
//!   proxies to pass the client address on in a header of their own. If the
//!   last entry is missing or not an address, the peer address is used;
//!   entries further left are never consulted.
//! - IPv6 clients are keyed by their /64 network: one host usually controls
//!   a whole /64 and could otherwise change address at every request.
//!   IPv4-mapped IPv6 addresses count as the IPv4 address.
//! - With neither, every such request shares the one key `api:unknown`: a
//!   limit on all of them together rather than none at all. A warning is
//!   logged once.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use vitte_domain::Clock;
use vitte_domain::ports::{Quota, RateDecision, RateLimiter};
use vitte_runtime::AppContext;

use crate::ApiError;

/// The key shared by requests whose client address is unknown.
pub const UNKNOWN_CLIENT_KEY: &str = "api:unknown";

/// What the rate-limit middleware needs; cheap to clone.
#[derive(Clone)]
pub struct ApiRateLimit {
    inner: Arc<Inner>,
}

struct Inner {
    /// The shared or in-process engine.
    limiter: Arc<dyn RateLimiter>,
    /// Source of "now" for the limiter.
    clock: Arc<dyn Clock>,
    /// The quotas every client gets; never empty.
    quotas: Vec<Quota>,
    /// Whether `X-Forwarded-For` names the client.
    trust_forwarded: bool,
    /// Set once the missing-address warning has been logged.
    warned_unknown: AtomicBool,
}

impl ApiRateLimit {
    /// The limits `ctx` configures, or `None` when `VITTE_RATE_API` is empty
    /// (no limit).
    pub fn from_context(ctx: &AppContext) -> Option<Self> {
        let quotas = ctx.settings.rate_api.0.clone();
        if quotas.is_empty() {
            return None;
        }
        Some(Self {
            inner: Arc::new(Inner {
                limiter: ctx.limiter.clone(),
                clock: ctx.clock.clone(),
                quotas,
                trust_forwarded: ctx.settings.api_trust_forwarded,
                warned_unknown: AtomicBool::new(false),
            }),
        })
    }

    /// The limiter key of a request.
    fn key(&self, request: &Request) -> String {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        match client_address(request.headers(), peer, self.inner.trust_forwarded) {
            Some(ip) => client_key(ip),
            None => {
                if !self.inner.warned_unknown.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        trust_forwarded = self.inner.trust_forwarded,
                        "the API cannot see client addresses (no peer address and no \
                         trusted X-Forwarded-For); all such clients share one rate limit"
                    );
                }
                UNKNOWN_CLIENT_KEY.to_owned()
            }
        }
    }
}

/// The middleware: counts the request, answers 429 when over the limit.
pub async fn enforce(State(limit): State<ApiRateLimit>, request: Request, next: Next) -> Response {
    let key = limit.key(&request);
    let inner = &limit.inner;
    match inner
        .limiter
        .acquire(&key, &inner.quotas, inner.clock.now())
        .await
    {
        Ok(RateDecision::Allowed) => next.run(request).await,
        Ok(RateDecision::Limited { retry_after }) => {
            tracing::debug!(%key, ?retry_after, "API client over its rate limit");
            ApiError::RateLimited { retry_after }.into_response()
        }
        Err(error) => {
            tracing::warn!(%error, %key, "rate limiter unavailable; letting the request through");
            next.run(request).await
        }
    }
}

/// The client's address: the last `X-Forwarded-For` entry when trusted and
/// valid, else the peer address (see the module docs for why the last).
pub fn client_address(
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    trust_forwarded: bool,
) -> Option<IpAddr> {
    trust_forwarded
        .then(|| last_forwarded_for(headers))
        .flatten()
        .or(peer)
}

/// The last entry of all `X-Forwarded-For` headers (several headers read as
/// one comma-separated list, in order), if it is an address. Entries may
/// carry a port (`1.2.3.4:5678`, `[2001:db8::1]:443`), which is dropped.
fn last_forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let last_header = headers.get_all("x-forwarded-for").iter().next_back()?;
    let entry = last_header.to_str().ok()?.rsplit(',').next()?.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The limiter key of a client address: `api:<ipv4>` or `api:<ipv6 /64>/64`.
pub fn client_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("api:{v4}"),
        IpAddr::V6(v6) => {
            let network = Ipv6Addr::from_bits(v6.to_bits() & !(u128::MAX >> 64));
            format!("api:{network}/64")
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(
                "x-forwarded-for",
                HeaderValue::from_str(value).expect("a header value"),
            );
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn the_last_forwarded_entry_is_the_client_only_when_trusted() {
        let peer = Some(ip("10.0.0.1"));
        let spoofed = headers(&["6.6.6.6, 203.0.113.7"]);
        assert_eq!(
            client_address(&spoofed, peer, true),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(client_address(&spoofed, peer, false), peer);
        // Several headers are one list: the last header's last entry wins.
        let split = headers(&["6.6.6.6", "198.51.100.2 , 203.0.113.9"]);
        assert_eq!(client_address(&split, peer, true), Some(ip("203.0.113.9")));
        // Ports are dropped.
        let ported = headers(&["203.0.113.7:5678"]);
        assert_eq!(client_address(&ported, None, true), Some(ip("203.0.113.7")));
        let ported6 = headers(&["[2001:db8::1]:443"]);
        assert_eq!(
            client_address(&ported6, None, true),
            Some(ip("2001:db8::1"))
        );
    }

    #[test]
    fn a_bad_last_entry_falls_back_to_the_peer_never_further_left() {
        let peer = Some(ip("10.0.0.1"));
        for bad in ["203.0.113.7, unknown", "203.0.113.7,", "garbage"] {
            assert_eq!(client_address(&headers(&[bad]), peer, true), peer, "{bad}");
            assert_eq!(client_address(&headers(&[bad]), None, true), None, "{bad}");
        }
        assert_eq!(client_address(&HeaderMap::new(), peer, true), peer);
        assert_eq!(client_address(&HeaderMap::new(), None, false), None);
    }

    #[test]
    fn keys_group_ipv6_by_network_and_unmap_ipv4() {
        assert_eq!(client_key(ip("203.0.113.7")), "api:203.0.113.7");
        assert_eq!(client_key(ip("::ffff:203.0.113.7")), "api:203.0.113.7");
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            "api:2001:db8:1:2::/64"
        );
        assert_eq!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
    }
}
