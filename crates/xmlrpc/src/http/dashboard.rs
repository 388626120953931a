//! The web dashboard: the pages supervisord's `[inet_http_server]` serves (`/`,
//! `/index.html`, `/tail.html?processname=...`), rebuilt as one page that the daemon keeps
//! current, its actions, and its live feed.
//!
//! - `GET /`, `/index.html`: the process table ([`assets`], HTML, CSS and vanilla JS
//!   embedded in the binary; nothing is fetched from elsewhere). supervisord's
//!   `?action=...` links changed things on a `GET`; here a `GET` only shows the page.
//! - `GET /tail.html?processname=<namespec>[&channel=stderr]`: a log that follows like
//!   `tail -f`, read from `/logtail/...` as it streams.
//! - `GET /ui/events`: server-sent events ([`feed`]) pushing the daemon's facts whenever
//!   its change counter moves, and CPU and memory every [`feed::USAGE_REFRESH`] while the
//!   stream is open. With no stream open, nothing runs.
//! - `POST /ui/action/<verb>[/<namespec>]` ([`actions`]): start, stop, restart and clear
//!   the log of one process; restart and stop all; the `update` plan (`plan`, a dry run)
//!   and its application (`update/<plan id>`, refused when the plan changed since).
//!
//! Every route needs the socket's credentials (the router answers 401 before this module
//! runs). A `POST` must also come from the dashboard's own origin: its `Origin` header must
//! name the `Host` it was sent to, and a `Sec-Fetch-Site`, when present, must be
//! `same-origin`; anything else is 403, so another site's page cannot make a logged-in
//! browser act (cross-site request forgery).

use std::sync::Arc;

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};

use super::response::{Body, full, plain};
use crate::backend::Backend;

mod actions;
mod assets;
mod feed;

/// What a dashboard path leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Page {
    Index,
    Tail,
    Asset(&'static assets::Asset),
    Events,
    Action(String),
}

impl Page {
    /// The page a path names, if it is the dashboard's.
    pub(crate) fn route(path: &str) -> Option<Page> {
        match path {
            "/" | "/index.html" => Some(Page::Index),
            "/tail.html" => Some(Page::Tail),
            "/ui/events" => Some(Page::Events),
            _ => {
                if let Some(action) = path.strip_prefix("/ui/action/") {
                    return Some(Page::Action(action.to_owned()));
                }
                assets::find(path).map(Page::Asset)
            }
        }
    }

    /// The one method the page answers.
    pub(crate) fn method(&self) -> Method {
        match self {
            Page::Action(_) => Method::POST,
            _ => Method::GET,
        }
    }
}

/// Answers an authorized request for `page` (its method already checked).
pub(crate) async fn answer<B: Backend>(
    page: Page,
    headers: &HeaderMap,
    backend: Arc<B>,
) -> Response<Body> {
    match page {
        Page::Index => document(&assets::INDEX),
        Page::Tail => document(&assets::TAIL),
        Page::Asset(asset) => document(asset),
        Page::Events => feed::stream(backend).await,
        Page::Action(action) => {
            if !same_origin(headers) {
                return plain(StatusCode::FORBIDDEN);
            }
            actions::run(&action, backend.as_ref()).await
        }
    }
}

/// An embedded file, with the headers that keep the page to itself: no script, style or
/// connection but its own origin's, no framing by another site, no sniffing.
fn document(asset: &'static assets::Asset) -> Response<Body> {
    let mut response = full(asset.content_type, asset.body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Whether a `POST` comes from a page of this server: `Origin` present and naming the
/// request's `Host` (browsers send it with every `POST`), and `Sec-Fetch-Site`, which
/// browsers that send it cannot be made to forge, `same-origin`.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site")
        && site.as_bytes() != b"same-origin"
    {
        return false;
    }
    let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), headers.get(header::HOST))
    else {
        return false;
    };
    let (Ok(origin), Ok(host)) = (origin.to_str(), host.to_str()) else {
        return false;
    };
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https") && !host.is_empty() && authority.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests;
