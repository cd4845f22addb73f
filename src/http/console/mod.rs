//! The web console: a page embedded in the binary (`assets/`, no build step, nothing fetched from
//! elsewhere) and the JSON API it calls under `/console/api/`. Roles are gRPC's: a reader sees,
//! an admin also changes. A caller is a client certificate's identity (on TLS) or a console
//! session opened with a token (`falco-api token create`), held in an HttpOnly, SameSite=Strict
//! cookie; every request that changes something must also carry the session's CSRF value in
//! `X-CSRF-Token`.

mod api;
mod stream;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http::{header, Method, StatusCode};
use serde_json::json;

use super::{json, Caller};
use crate::net::identity::Role;
use crate::services::App;

/// The session cookie's name.
pub const COOKIE: &str = "falco_api_session";
/// The header state-changing requests carry the CSRF value in.
pub const CSRF_HEADER: &str = "x-csrf-token";

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// Who a console request acts as.
#[derive(Clone, Debug)]
pub struct User {
    /// `token:NAME`, or the certificate's `cn:`/`san:` name.
    pub identity: String,
    pub reader: bool,
    pub admin: bool,
    pub csrf: String,
}

#[derive(Clone)]
struct Console {
    app: App,
    tls: bool,
    /// Refused sign-ins since the last one logged, and when that was.
    refused: std::sync::Arc<std::sync::Mutex<(u64, Option<std::time::Instant>)>>,
}

/// Refused sign-ins are logged at most this often (with how many there were).
const REFUSED_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The console's routes; `tls`: cookies are marked Secure; request bodies of `max_body` bytes
/// at most.
pub fn routes(app: App, tls: bool, max_body: usize, stall: std::time::Duration) -> Router {
    let console = Console {
        app,
        tls,
        refused: Default::default(),
    };
    let api = api::routes()
        .route("/alerts/stream", get(stream::alerts))
        .layer(Extension(stream::StallTimeout(stall)))
        .with_state(console.app.clone())
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            authenticate,
        ));
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(page))
        .route("/console/app.js", get(script))
        .route("/console/app.css", get(style))
        .route("/console/api/login", post(login))
        .route("/console/api/logout", post(logout))
        .nest("/console/api", api)
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .with_state(console)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The page, with a policy that lets it load nothing but itself.
async fn page() -> Response {
    let mut r = asset("text/html; charset=utf-8", INDEX);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        http::HeaderValue::from_static("no-referrer"),
    );
    r
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

pub(crate) fn cookie_value(request: &http::HeaderMap) -> Option<&str> {
    request
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// The caller: a client certificate's identity first, else a session cookie.
fn user(console: &Console, caller: Option<&Caller>, headers: &http::HeaderMap) -> Option<User> {
    if let Some(id) = caller.and_then(|c| c.identity.as_ref()) {
        return Some(User {
            identity: id.name.clone(),
            reader: id.roles.contains(&Role::Reader) || id.roles.contains(&Role::Admin),
            admin: id.roles.contains(&Role::Admin),
            csrf: console.app.tokens.csrf(&id.name),
        });
    }
    let session = console.app.tokens.session(cookie_value(headers)?)?;
    Some(User {
        identity: session.identity,
        reader: true,
        admin: session.role == Role::Admin,
        csrf: session.csrf,
    })
}

/// Every API call: 401 without a user, 403 for a change without the admin role or without the
/// session's CSRF value.
async fn authenticate(
    State(console): State<Console>,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = request.extensions().get::<Caller>().cloned();
    let Some(user) = user(&console, caller.as_ref(), request.headers()) else {
        return json(
            StatusCode::UNAUTHORIZED,
            json!({"error": "sign in with a token (falco-api token create) or a client certificate"}),
        );
    };
    if !user.reader {
        return json(
            StatusCode::FORBIDDEN,
            json!({"error": format!("{} has neither the reader nor the admin role", user.identity)}),
        );
    }
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD);
    if changes {
        if !user.admin {
            return json(
                StatusCode::FORBIDDEN,
                json!({"error": format!("{} lacks the admin role: readers cannot change anything", user.identity)}),
            );
        }
        let sent = request
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !crate::services::tokens::same(sent.as_bytes(), user.csrf.as_bytes()) {
            return json(
                StatusCode::FORBIDDEN,
                json!({"error": "missing or wrong X-CSRF-Token (reload the console)"}),
            );
        }
    }
    request.extensions_mut().insert(user);
    next.run(request).await
}

#[derive(serde::Deserialize)]
struct LoginBody {
    token: String,
}

async fn login(
    State(console): State<Console>,
    Extension(caller): Extension<Caller>,
    body: Option<Json<LoginBody>>,
) -> Response {
    let Some(Json(body)) = body else {
        return json(
            StatusCode::BAD_REQUEST,
            json!({"error": "expected JSON {\"token\": \"fapi_…\"}"}),
        );
    };
    let Some(token) = console.app.tokens.verify(&body.token) else {
        console.log_refused(&caller);
        return json(
            StatusCode::UNAUTHORIZED,
            json!({"error": "unknown, revoked or expired token"}),
        );
    };
    let cookie = console.app.tokens.open_session(&token);
    let Some(session) = console.app.tokens.session(&cookie) else {
        tracing::error!(token = %token.name, "a console session just opened does not verify");
        return json(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "the session could not be opened; try again"}),
        );
    };
    let secure = if console.tls { "; Secure" } else { "" };
    let mut r = json(
        StatusCode::OK,
        json!({
            "identity": session.identity,
            "admin": session.role == Role::Admin,
            "csrf": session.csrf,
        }),
    );
    if let Ok(v) = http::HeaderValue::from_str(&format!(
        "{COOKIE}={cookie}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        crate::services::tokens::SESSION_SECS
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

impl Console {
    /// Logs refused sign-ins at a rate: the first at once, then a count every
    /// [`REFUSED_LOG_EVERY`], so a flood of guesses cannot flood the log.
    fn log_refused(&self, caller: &Caller) {
        let mut refused = self
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        refused.0 += 1;
        let due = refused.1.is_none_or(|at| at.elapsed() >= REFUSED_LOG_EVERY);
        if due {
            tracing::info!(
                from = %caller.addr,
                refused = refused.0,
                "console sign-in refused (count since the last such line)"
            );
            *refused = (0, Some(std::time::Instant::now()));
        }
    }
}

/// Ends the session on the server (a copy of the cookie is refused from now on) and clears it
/// in the browser.
async fn logout(State(console): State<Console>, headers: http::HeaderMap) -> Response {
    if let Some(cookie) = cookie_value(&headers) {
        let tokens = console.app.tokens.clone();
        let cookie = cookie.to_string();
        let ended = tokio::task::spawn_blocking(move || tokens.end_session(&cookie)).await;
        let failure = match ended {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(e) = failure {
            return json(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": format!("the session could not be ended: {e}")}),
            );
        }
    }
    let mut r = json(StatusCode::OK, json!({}));
    r.headers_mut().insert(
        header::SET_COOKIE,
        http::HeaderValue::from_static(
            "falco_api_session=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}
