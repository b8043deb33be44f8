//! What keeps other web sites out of the API (and out of the web page served beside it): a
//! `Host` check against DNS rebinding and a cross-site check on requests that change state.
//!
//! A page the developer visits can reach a loopback API in two ways:
//!
//! - **Cross-site requests.** A form post or a `no-cors` fetch to `POST /api/reset` is sent by
//!   the browser without asking (its answer is unreadable, but the reset happens). A request that
//!   changes state (any method but GET, HEAD and OPTIONS) is refused when it comes from a page of
//!   another site (`Sec-Fetch-Site: cross-site`, or an `Origin` that names none of the hosts
//!   below, `null` included) and its body is not JSON: a browser sends JSON across sites only
//!   after a CORS preflight, which this API never grants. Programs (curl, test code) send
//!   neither header and are not affected.
//! - **DNS rebinding.** A page whose name is made to resolve to 127.0.0.1 reads the API as if
//!   it were its own; its requests still say its name in `Host`. Without `--http-token`, `Host`
//!   must name the listener: its IP address (any IP when it listens on all addresses),
//!   `localhost`, or a name given with `--http-host`, with any port. `/healthz` is exempt, and a
//!   request without `Host` (HTTP/1.0) passes. With a token, the token protects the API and any
//!   `Host` is accepted, as before.
//!
//! Both refusals are `403` with the API's JSON error.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The route left open to any `Host`, for health checks.
const OPEN_PATH: &str = "/healthz";

/// The hosts that name this API's listener, and whether `Host` is checked at all.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    listener: IpAddr,
    names: Arc<[String]>,
    check_host: bool,
}

impl Guard {
    /// The rules for a listener on `listener`, also known as `names` (`--http-host`); `Host` is
    /// checked unless a token protects the API.
    pub(crate) fn new(listener: SocketAddr, names: &[String], token: bool) -> Self {
        Self {
            listener: listener.ip(),
            names: names
                .iter()
                .map(|name| normalize(name).to_owned())
                .collect(),
            check_host: !token,
        }
    }

    /// Whether `host` (a `Host` or `Origin` host, without port) names this listener.
    fn names_listener(&self, host: &str) -> bool {
        let host = normalize(host);
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return self.listener.is_unspecified() || ip == self.listener;
        }
        host.eq_ignore_ascii_case("localhost")
            || self
                .names
                .iter()
                .any(|name| name.eq_ignore_ascii_case(host))
    }

    /// Why `headers` of a `method` request to `path` are refused, if they are.
    fn refusal(&self, method: &Method, path: &str, headers: &HeaderMap) -> Option<ApiError> {
        let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
        if self.check_host && path != OPEN_PATH {
            if let Some(host) = headers.get(header::HOST) {
                let named = host
                    .to_str()
                    .ok()
                    .is_some_and(|h| self.names_listener(strip_port(h)));
                if !named {
                    return Some(
                        ApiError::new(
                            StatusCode::FORBIDDEN,
                            format!(
                                "Host {:?} does not name this server",
                                String::from_utf8_lossy(host.as_bytes())
                            ),
                        )
                        .hint(
                            "use its IP address or localhost, or start failmail with \
                             --http-host NAME for each name it is reached by",
                        ),
                    );
                }
            }
        }
        let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        let cross_site = text("sec-fetch-site") == Some("cross-site")
            || text(header::ORIGIN.as_str()).is_some_and(|origin| !self.same_site(origin));
        let json = text(header::CONTENT_TYPE.as_str()).is_some_and(is_json);
        (!safe && cross_site && !json).then(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "a request from another site may not change state",
            )
            .hint(
                "send it from a program, not from a web page of another site, or with \
                 Content-Type: application/json",
            )
        })
    }

    /// Whether an `Origin` (`scheme://host[:port]`, or `null`) is a page of this server.
    fn same_site(&self, origin: &str) -> bool {
        origin
            .split_once("://")
            .is_some_and(|(_, authority)| self.names_listener(strip_port(authority)))
    }
}

/// A host name as compared: without a final dot.
fn normalize(host: &str) -> &str {
    host.trim().trim_end_matches('.')
}

/// `host:port` or `[v6]:port` without the port.
fn strip_port(authority: &str) -> &str {
    let authority = authority.trim();
    if let Some(end) = authority.find(']') {
        return &authority[..=end];
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// `application/json` or any `…+json` media type.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence.to_ascii_lowercase().ends_with("+json")
}

/// Middleware: refuses what [`Guard`] refuses (403 JSON), passes the rest on.
pub(crate) async fn check(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    match guard.refusal(request.method(), request.uri().path(), request.headers()) {
        Some(error) => error.into_response(),
        None => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    fn loopback(names: &[&str]) -> Guard {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        Guard::new("127.0.0.1:8025".parse().unwrap(), &names, false)
    }

    #[test]
    fn host_must_name_the_listener() {
        let guard = loopback(&["failmail.test"]);
        for host in [
            "127.0.0.1:8025",
            "127.0.0.1",
            "localhost:8025",
            "LOCALHOST.",
            "failmail.test:1",
        ] {
            let ok = headers(&[("host", host)]);
            assert!(
                guard.refusal(&Method::GET, "/api/messages", &ok).is_none(),
                "{host}"
            );
        }
        for host in [
            "rebind.attacker.example",
            "127.0.0.2:8025",
            "[::1]:8025",
            "localhost.evil",
        ] {
            let bad = headers(&[("host", host)]);
            let refusal = guard.refusal(&Method::GET, "/api/messages", &bad);
            assert_eq!(
                refusal.map(|e| e.status),
                Some(StatusCode::FORBIDDEN),
                "{host}"
            );
            assert!(guard.refusal(&Method::GET, "/healthz", &bad).is_none());
        }
        assert!(guard
            .refusal(&Method::GET, "/api/messages", &HeaderMap::new())
            .is_none());
        let any = Guard::new("[::]:8025".parse().unwrap(), &[], false);
        assert!(any.names_listener("[2001:db8::1]") && !any.names_listener("evil.example"));
        let token = Guard::new("0.0.0.0:8025".parse().unwrap(), &[], true);
        let foreign = headers(&[("host", "mail.example")]);
        assert!(token
            .refusal(&Method::GET, "/api/messages", &foreign)
            .is_none());
    }

    #[test]
    fn cross_site_changes_need_json() {
        let guard = loopback(&[]);
        let form = "application/x-www-form-urlencoded";
        let refused = [
            vec![("origin", "http://evil.example"), ("content-type", form)],
            vec![("origin", "null"), ("content-type", "text/plain")],
            vec![("sec-fetch-site", "cross-site")],
        ];
        for pairs in refused {
            let map = headers(&pairs);
            assert!(
                guard.refusal(&Method::POST, "/api/reset", &map).is_some(),
                "{pairs:?}"
            );
            assert!(
                guard.refusal(&Method::GET, "/api/events", &map).is_none(),
                "{pairs:?}"
            );
        }
        let passed = [
            vec![],
            vec![("origin", "http://localhost:3000"), ("content-type", form)],
            vec![
                ("origin", "http://evil.example"),
                ("content-type", "application/json"),
            ],
            vec![("sec-fetch-site", "same-origin"), ("content-type", form)],
            vec![
                ("sec-fetch-site", "cross-site"),
                ("content-type", "application/merge-patch+json"),
            ],
        ];
        for pairs in passed {
            let map = headers(&pairs);
            assert!(
                guard.refusal(&Method::POST, "/api/reset", &map).is_none(),
                "{pairs:?}"
            );
        }
    }
}
