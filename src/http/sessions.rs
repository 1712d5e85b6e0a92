//! `POST /api/v1/sessions`: a login script tells Hedgerow who is using a client address, so
//! blocked attempts name the person, not only the machine.
//!
//! Mounted only when `identity.sessions_token_file` is configured. Every request must carry
//! `Authorization: Bearer <token>` (compared in constant time by [`SessionsToken`]): 401
//! without it, 400 with a JSON `{"error": …}` naming the field for a bad body, 201 once the
//! session is stored. The store is written on tokio's blocking pool, never on a worker that
//! answers DNS. Usernames are never logged.

use axum::{
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Router,
};

use crate::{
    clock::Clock,
    identity::sessions::{SessionRequest, SessionsToken},
    store::Commands,
};

/// The endpoint's path.
pub const PATH: &str = "/api/v1/sessions";

/// A session is a few short fields; anything longer is not one.
const MAX_BODY: usize = 16 * 1024;

/// What the endpoint needs: the token, the store's commands and the one clock.
#[derive(Clone)]
pub struct SessionsApi {
    /// The token login scripts present.
    pub token: SessionsToken,
    /// Where sessions are stored.
    pub commands: Commands,
    /// "Now", for sessions sent without a start.
    pub clock: Clock,
}

/// The endpoint's route, with its state.
pub(super) fn routes(api: SessionsApi) -> Router {
    Router::new()
        .route(PATH, post(post_session))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json(status, serde_json::json!({ "error": message.into() }))
}

fn authorised(token: &SessionsToken, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest)
        })
        .is_some_and(|presented| token.matches(presented))
}

async fn post_session(State(api): State<SessionsApi>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorised(&api.token, &headers) {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "a valid `Authorization: Bearer <token>` header is needed (the token in \
             identity.sessions_token_file)",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    let mut request: SessionRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body is not a session: {e}; send JSON like {{\"ip\": \"10.1.2.34\", \
                     \"username\": \"jsmith\", \"device\": \"PC-12\", \"start\": \
                     \"2026-11-26T08:01:02Z\"}}"
                ),
            )
        }
    };
    // An `end` without a `start` is a logout: the session it ends is already stored, and
    // "now" as the start could fall after the end the sending machine's clock gave.
    if request.start.is_none() && request.end.is_some() {
        request.start = request.end.clone();
    }
    let session = match request.validate(api.clock.now()) {
        Ok(s) => s,
        Err(invalid) => {
            return json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({ "error": invalid.to_string(), "field": invalid.field }),
            )
        }
    };
    let commands = api.commands.clone();
    let stored =
        tokio::task::spawn_blocking(move || crate::sessions::store_posted(&commands, session))
            .await;
    match stored {
        Ok(Ok(())) => json(StatusCode::CREATED, serde_json::json!({ "stored": true })),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "a session from the sessions API was not stored");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the session could not be stored; try again",
            )
        }
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Hedgerow is shutting down; try again",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_bearer_token_is_authorised() {
        let dir = std::env::temp_dir().join(format!("hedgerow-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "0123456789abcdef0123\n").unwrap();
        let token = SessionsToken::read(&file).unwrap();
        let mut h = HeaderMap::new();
        assert!(!authorised(&token, &h));
        h.insert(
            header::AUTHORIZATION,
            "Bearer 0123456789abcdef0123".parse().unwrap(),
        );
        assert!(authorised(&token, &h));
        h.insert(
            header::AUTHORIZATION,
            "bearer 0123456789abcdef0123".parse().unwrap(),
        );
        assert!(authorised(&token, &h));
        h.insert(
            header::AUTHORIZATION,
            "Basic 0123456789abcdef0123".parse().unwrap(),
        );
        assert!(!authorised(&token, &h));
        h.insert(
            header::AUTHORIZATION,
            "Bearer wrong-token-wrong".parse().unwrap(),
        );
        assert!(!authorised(&token, &h));
        let _ = std::fs::remove_dir_all(dir);
    }
}
