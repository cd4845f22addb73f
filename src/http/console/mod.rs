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
use crate::app::App;
use crate::auth::Role;

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
}

/// The console's routes; `tls`: cookies are marked Secure.
pub fn routes(app: App, tls: bool) -> Router {
    let console = Console { app, tls };
    let api = api::routes()
        .route("/alerts/stream", get(stream::alerts))
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

fn cookie_value(request: &http::HeaderMap) -> Option<&str> {
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
        if sent != user.csrf {
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
        tracing::info!(from = %caller.addr, "console sign-in refused");
        return json(
            StatusCode::UNAUTHORIZED,
            json!({"error": "unknown, revoked or expired token"}),
        );
    };
    let cookie = console.app.tokens.open_session(&token);
    let session = console
        .app
        .tokens
        .session(&cookie)
        .expect("a session just opened is valid");
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
        crate::tokens::SESSION_SECS
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn logout() -> Response {
    let mut r = json(StatusCode::OK, json!({}));
    r.headers_mut().insert(
        header::SET_COOKIE,
        http::HeaderValue::from_static(
            "falco_api_session=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}
