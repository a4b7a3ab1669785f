//! What a control request asks for (`docs/OPERATIONS.md` "Control endpoint"), and the
//! bearer-token rule: GET is open; POST needs `Authorization: Bearer <token>` when a token
//! is configured.

use super::http::Request;

/// A routed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'b> {
    /// `GET /healthz`: 200 while the loop runs.
    Healthz,
    /// `GET /readyz`: 200 when every source is connected and every circuit closed.
    Readyz,
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `GET /status`: JSON.
    Status,
    /// `GET /jobs`: JSON list of in-flight jobs.
    Jobs,
    /// `POST /sources/{name}/pause`.
    Pause(&'b str),
    /// `POST /sources/{name}/resume`.
    Resume(&'b str),
}

/// Why a request cannot be routed: the status to answer (the connection stays usable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    /// No such path (404).
    NotFound,
    /// A known path with another method (405).
    MethodNotAllowed,
    /// A POST without the configured bearer token (401).
    Unauthorized,
}

impl RouteError {
    /// Status code, reason and a message for the JSON body.
    pub fn status(self) -> (u16, &'static str, &'static str) {
        match self {
            RouteError::NotFound => (404, "Not Found", "no such endpoint"),
            RouteError::MethodNotAllowed => (405, "Method Not Allowed", "method not allowed here"),
            RouteError::Unauthorized => (
                401,
                "Unauthorized",
                "POST needs Authorization: Bearer <token>",
            ),
        }
    }
}

/// Routes `request`; `token` is the configured bearer token, if any.
pub fn route<'b>(request: &Request<'b>, token: Option<&str>) -> Result<Route<'b>, RouteError> {
    let get = request.method == "GET" || request.method == "HEAD";
    let post = request.method == "POST";
    let simple = match request.path {
        "/healthz" => Some(Route::Healthz),
        "/readyz" => Some(Route::Readyz),
        "/metrics" => Some(Route::Metrics),
        "/status" => Some(Route::Status),
        "/jobs" => Some(Route::Jobs),
        _ => None,
    };
    if let Some(route) = simple {
        return if get {
            Ok(route)
        } else {
            Err(RouteError::MethodNotAllowed)
        };
    }
    let Some(rest) = request.path.strip_prefix("/sources/") else {
        return Err(RouteError::NotFound);
    };
    let (name, action) = rest.rsplit_once('/').ok_or(RouteError::NotFound)?;
    if name.is_empty() || name.contains('/') {
        return Err(RouteError::NotFound);
    }
    let route = match action {
        "pause" => Route::Pause(name),
        "resume" => Route::Resume(name),
        _ => return Err(RouteError::NotFound),
    };
    if !post {
        return Err(RouteError::MethodNotAllowed);
    }
    if let Some(token) = token {
        let expected = format!("Bearer {token}");
        let given = request.authorization.unwrap_or_default();
        if !constant_time_eq(given, expected.as_bytes()) {
            return Err(RouteError::Unauthorized);
        }
    }
    Ok(route)
}

/// Compares without stopping at the first difference (the token is a secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(method: &'a str, path: &'a str, auth: Option<&'a [u8]>) -> Request<'a> {
        Request {
            method,
            path,
            authorization: auth,
            keep_alive: true,
        }
    }

    #[test]
    fn routes() {
        assert_eq!(
            route(&request("GET", "/metrics", None), None),
            Ok(Route::Metrics)
        );
        assert_eq!(
            route(&request("GET", "/readyz", None), Some("t")),
            Ok(Route::Readyz)
        );
        assert_eq!(
            route(&request("POST", "/sources/tasks/pause", None), None),
            Ok(Route::Pause("tasks"))
        );
        assert_eq!(
            route(
                &request("POST", "/sources/tasks/resume", Some(b"Bearer s3")),
                Some("s3")
            ),
            Ok(Route::Resume("tasks"))
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(
            route(&request("GET", "/nope", None), None),
            Err(RouteError::NotFound)
        );
        assert_eq!(
            route(&request("POST", "/metrics", None), None),
            Err(RouteError::MethodNotAllowed)
        );
        assert_eq!(
            route(&request("GET", "/sources/tasks/pause", None), None),
            Err(RouteError::MethodNotAllowed)
        );
        assert_eq!(
            route(&request("POST", "/sources/tasks/pause", None), Some("s3")),
            Err(RouteError::Unauthorized)
        );
        assert_eq!(
            route(
                &request("POST", "/sources/tasks/pause", Some(b"Bearer nope")),
                Some("s3")
            ),
            Err(RouteError::Unauthorized)
        );
        assert_eq!(
            route(&request("POST", "/sources//pause", None), None),
            Err(RouteError::NotFound)
        );
        assert_eq!(
            route(&request("POST", "/sources/a/b/pause", None), None),
            Err(RouteError::NotFound)
        );
    }
}
