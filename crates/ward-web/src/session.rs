//! Sessions and CSRF, resolved once per request by one middleware.
//!
//! The session cookie holds an opaque random token; the control plane stores only its
//! hash. Every state-changing request must carry `_csrf`: with a session, the session's
//! token; without one (sign-in, signup), the value of a pre-session cookie set when the
//! form was shown (double submit). A cross-site `Origin` is refused outright. A
//! multipart form (a file upload) carries `_csrf` in its address instead, so that its
//! body streams to the handler unread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use sha2::{Digest, Sha256};
use ward_control::Session;
use ward_control::sessions::random_token;
use ward_control::support::SupportSession;

use crate::views::pages;
use crate::{AppError, AppState, WebConfig};

/// Largest form body accepted (forms are small; uploads are not forms).
const MAX_FORM_BYTES: usize = 256 * 1024;

/// The session resolved for this request, if any.
#[derive(Clone)]
pub struct ResolvedSession(pub Option<Session>);

/// The support session resolved for this request, if any: a cookie names either a
/// user's session or a support session, never both. Pages outside a clinic see no one.
#[derive(Clone)]
pub struct ResolvedSupport(pub Option<SupportSession>);

/// The CSRF token forms on this page must carry. A new pre-session token is only sent
/// as a cookie if a handler actually put it in a form (`used`): otherwise a browser's
/// parallel first requests (the page and its favicon) would each mint one and the last
/// cookie set would not match the form.
#[derive(Clone)]
pub struct CsrfToken {
    /// The token.
    pub token: String,
    /// Set when a page used a freshly minted token.
    pub used: Option<Arc<AtomicBool>>,
}

/// Cookie names: `__Host-` prefixed when served over https (then the browser insists on
/// Secure, Path=/ and no Domain, so no subdomain can plant one).
pub fn session_cookie_name(config: &WebConfig) -> &'static str {
    if config.is_https() {
        "__Host-ward_session"
    } else {
        "ward_session"
    }
}

fn csrf_cookie_name(config: &WebConfig) -> &'static str {
    if config.is_https() {
        "__Host-ward_csrf"
    } else {
        "ward_csrf"
    }
}

fn base_cookie(config: &WebConfig, name: &'static str, value: String) -> Cookie<'static> {
    let mut c = Cookie::new(name, value);
    c.set_http_only(true);
    c.set_same_site(SameSite::Lax);
    c.set_path("/");
    c.set_secure(config.is_https());
    c
}

/// The Set-Cookie value starting a session.
pub fn session_cookie(
    config: &WebConfig,
    token: String,
    max_age: chrono::TimeDelta,
) -> HeaderValue {
    let mut c = base_cookie(config, session_cookie_name(config), token);
    c.set_max_age(cookie::time::Duration::seconds(max_age.num_seconds()));
    header_value(&c)
}

/// The Set-Cookie value removing the session cookie: same attributes, expired.
pub fn clear_session_cookie(config: &WebConfig) -> HeaderValue {
    let mut c = base_cookie(config, session_cookie_name(config), String::new());
    c.set_max_age(cookie::time::Duration::ZERO);
    header_value(&c)
}

/// The cookie naming a sign-in whose password was right and whose second factor is
/// still to be typed: a random token (stored hashed, single use, minutes long).
pub fn pending_cookie_name(config: &WebConfig) -> &'static str {
    if config.is_https() {
        "__Host-ward_pending"
    } else {
        "ward_pending"
    }
}

/// The Set-Cookie value naming a pending sign-in for `max_age`.
pub fn pending_cookie(
    config: &WebConfig,
    token: String,
    max_age: chrono::TimeDelta,
) -> HeaderValue {
    let mut c = base_cookie(config, pending_cookie_name(config), token);
    c.set_same_site(SameSite::Strict);
    c.set_max_age(cookie::time::Duration::seconds(max_age.num_seconds()));
    header_value(&c)
}

/// The Set-Cookie value removing the pending sign-in cookie.
pub fn clear_pending_cookie(config: &WebConfig) -> HeaderValue {
    let mut c = base_cookie(config, pending_cookie_name(config), String::new());
    c.set_same_site(SameSite::Strict);
    c.set_max_age(cookie::time::Duration::ZERO);
    header_value(&c)
}

fn header_value(c: &Cookie<'_>) -> HeaderValue {
    HeaderValue::from_str(&c.encoded().to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    // Compare digests so the comparison's time does not depend on where they differ.
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

fn expected_origin(config: &WebConfig, headers: &HeaderMap) -> Option<String> {
    if let Some(url) = &config.public_url {
        let url = url.trim_end_matches('/');
        // scheme://host[:port] only.
        let after_scheme = url.find("://").map_or(0, |i| i + 3);
        let end = url[after_scheme..]
            .find('/')
            .map_or(url.len(), |i| after_scheme + i);
        return Some(url[..end].to_owned());
    }
    let host = headers.get(header::HOST)?.to_str().ok()?;
    Some(format!("http://{host}"))
}

fn cross_site(config: &WebConfig, headers: &HeaderMap) -> bool {
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site") {
        return true;
    }
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        // Browsers send `Origin: null` on form posts from pages with Referrer-Policy
        // no-referrer (ours); Sec-Fetch-Site above and the token decide those.
        Some("null") => false,
        Some(origin) => {
            expected_origin(config, headers).is_none_or(|want| !origin.eq_ignore_ascii_case(&want))
        }
        None => false,
    }
}

fn too_much() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        pages::message(
            "Too much data",
            "That form sent more data than Ward accepts. Shorten the text and try again.",
        ),
    )
        .into_response()
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Who a request comes from, as its cookies say, and the CSRF token its forms carry.
struct Resolved {
    session: Option<Session>,
    support: Option<SupportSession>,
    /// The session's token, or the pre-session cookie's, or a freshly minted one.
    csrf: String,
    /// The token minted for this request when it had neither (to set as a cookie if a
    /// page put it in a form).
    minted: Option<String>,
}

impl Resolved {
    /// Looks up the session cookie (a user's session, else a support session) and the
    /// pre-session CSRF cookie.
    async fn from_cookies(app: &AppState, headers: &HeaderMap) -> Result<Self, AppError> {
        let jar = CookieJar::from_headers(headers);
        let cookie = jar.get(session_cookie_name(&app.config));
        let session = match cookie {
            Some(c) => app.control.session(c.value(), app.session_policy).await?,
            None => None,
        };
        let support = match (&session, cookie) {
            (None, Some(c)) => app.control.support_session(c.value()).await?,
            _ => None,
        };
        let pre_csrf = jar
            .get(csrf_cookie_name(&app.config))
            .map(|c| c.value().to_owned())
            .filter(|v| v.len() == 64);
        let (csrf, minted) = match (&session, &support, pre_csrf) {
            (Some(s), _, _) => (s.csrf_token.clone(), None),
            (None, Some(s), _) => (s.csrf_token.clone(), None),
            (None, None, Some(v)) => (v, None),
            (None, None, None) => {
                let t = random_token();
                (t.clone(), Some(t))
            }
        };
        Ok(Self {
            session,
            support,
            csrf,
            minted,
        })
    }
}

/// The request's body, once a state-changing request passed the checks: not
/// cross-site, and carrying the form's `_csrf` (in the body, read up to
/// [`MAX_FORM_BYTES`], or for a multipart upload in the address, its body left to
/// stream). Other requests' bodies pass unread. `Err` is the refusal.
async fn checked_body(
    app: &AppState,
    parts: &axum::http::request::Parts,
    body: Body,
    who: &Resolved,
) -> Result<Body, Response> {
    if !matches!(
        parts.method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return Ok(body);
    }
    if cross_site(&app.config, &parts.headers) {
        tracing::warn!(path = %parts.uri.path(), "refused a cross-site form submission");
        return Err(forbidden());
    }
    // A file upload streams: its token is in the form's address, not its body.
    let multipart = parts
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let (sent, body) = if multipart {
        let query = parts.uri.query().unwrap_or_default().as_bytes();
        (form_field(query, "_csrf"), body)
    } else {
        let bytes = to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| too_much())?;
        (form_field(&bytes, "_csrf"), Body::from(bytes))
    };
    let minted = who.minted.is_some();
    if !minted
        && sent
            .as_ref()
            .is_some_and(|s| constant_time_eq(s, &who.csrf))
    {
        return Ok(body);
    }
    let why = match (minted, sent.is_some()) {
        (true, _) => "no session and no form cookie",
        (false, false) => "the form carried no token",
        (false, true) => "the form's token does not match",
    };
    tracing::warn!(path = %parts.uri.path(), why, "refused a form submission");
    Err(forbidden())
}

/// Resolves the session, enforces CSRF on state-changing requests, and marks responses
/// uncacheable.
pub async fn middleware(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let who = match Resolved::from_cookies(&app, &parts.headers).await {
        Ok(who) => who,
        Err(e) => return e.into_response(),
    };
    let body = match checked_body(&app, &parts, body, &who).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    parts.extensions.insert(ResolvedSession(who.session));
    parts.extensions.insert(ResolvedSupport(who.support));
    let used = who
        .minted
        .as_ref()
        .map(|_| Arc::new(AtomicBool::new(false)));
    parts.extensions.insert(CsrfToken {
        token: who.csrf,
        used: used.clone(),
    });
    let mut response = next.run(Request::from_parts(parts, body)).await;
    let headers = response.headers_mut();
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let (Some(t), Some(used)) = (who.minted, used)
        && used.load(Ordering::Acquire)
    {
        let cookie = base_cookie(&app.config, csrf_cookie_name(&app.config), t);
        headers.append(header::SET_COOKIE, header_value(&cookie));
    }
    response
}

fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        pages::message(
            "This form has expired",
            "For your security, the form could not be accepted. Go back, reload the page, and try again.",
        ),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_decoded() {
        assert_eq!(
            form_field(b"a=1&_csrf=ab%20c+d&x=", "_csrf").as_deref(),
            Some("ab c d")
        );
        assert_eq!(form_field(b"a=1", "_csrf"), None);
        assert_eq!(
            form_field(b"_csrf=%zz%4", "_csrf").as_deref(),
            Some("%zz%4")
        );
    }
}
