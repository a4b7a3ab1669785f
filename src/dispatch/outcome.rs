//! What a worker's answer means for the message: `docs/SEMANTICS.md`, "Outcome of a request".
//!
//! [`classify`] takes how one attempt went — a connect that failed ([`ConnectFailure`],
//! the reactor's phase) or a finished [`Exchange`](crate::proto::fastcgi::Exchange)
//! ([`Finished`]) — and answers one [`Outcome`]. The order of the checks is the table's,
//! with these decisions of ferry's own (recorded in `docs/SEMANTICS.md`):
//!
//! 1. A failed connect, `FCGI_OVERLOADED`, `FCGI_CANT_MPX_CONN` and `FCGI_UNKNOWN_ROLE`
//!    (the pool does not play RESPONDER: a misconfigured pool, not a bad message) are pool
//!    failures, as are php-fpm's *own* refusals, recognised by status and by what php-fpm
//!    writes on STDERR before any script runs (`sapi/fpm/fpm/fpm_main.c`):
//!    - 404 with "Primary script unknown" (SCRIPT_FILENAME does not exist);
//!    - 403 with "has been denied (see security.limit_extensions)";
//!    - 403 or 404 with "Unable to open primary script" (unreadable script: EACCES → 403
//!      "Access denied.", other errors → 404 "No input file specified.").
//!
//!    A script's own 404/403 (no such STDERR) stays a permanent failure.
//! 2. EOF/reset before any response byte on a *reused* kept connection: sent again once
//!    (php-fpm may have closed the idle connection just as ferry wrote to it). On a fresh
//!    connection, or after some bytes, it is retryable.
//! 3. Request timeout, a malformed response, EOF mid-response: retryable — these never
//!    look at the headers, since the response did not complete.
//! 4. After a complete END_REQUEST, `X-Ferry-Action` wins over everything else in the
//!    table (`ack` is success even with `Status: 500` or an app status ≠ 0). With
//!    `require_action_header`, its absence is retryable (even for a 4xx).
//! 5. Then app status ≠ 0 (retryable), a missing or unfinished CGI head (malformed,
//!    retryable), and the status: absent/2xx/3xx success, 408/429 and 5xx retryable, other
//!    4xx permanent, anything else (1xx, 6xx–9xx) malformed.
//!
//! `X-Ferry-Retry-After` applies to any retryable outcome of a complete response (the docs
//! name it with `retry`; a `503` that says when to come back is honoured the same way).

use std::io;
use std::time::Duration;

use crate::proto::fastcgi::{Ending, FerryAction, Finished, ProtocolStatus};

/// Why a connect to the pool failed (the reactor maps its `io::Error` with
/// [`ConnectFailure::from_io_error`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// `ECONNREFUSED`: nothing listens (php-fpm stopped; a stale unix socket).
    Refused,
    /// `ENOENT`: the unix socket path does not exist.
    NotFound,
    /// `EAGAIN` on a unix socket connect: php-fpm's listen backlog is full.
    BacklogFull,
    /// The connect did not complete within `connect_timeout_ms`.
    TimedOut,
    /// Any other connect error (EACCES on the socket, unreachable host…).
    Other,
}

impl ConnectFailure {
    /// Classifies a connect error.
    pub fn from_io_error(error: &io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::ConnectionRefused => Self::Refused,
            io::ErrorKind::NotFound => Self::NotFound,
            io::ErrorKind::WouldBlock => Self::BacklogFull,
            io::ErrorKind::TimedOut => Self::TimedOut,
            _ => Self::Other,
        }
    }
}

/// How one attempt went, as [`classify`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt<'a> {
    /// The connect phase failed; no request was sent.
    ConnectFailed(ConnectFailure),
    /// The exchange ran to its end.
    Finished(&'a Finished),
}

/// Why a message failed (permanently or for now). `as_str` is the label used in logs,
/// metrics and `x-ferry-failure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// `Status: 4xx` other than 408/429 (permanent).
    ClientError,
    /// `X-Ferry-Action: dead-letter` (permanent).
    DeadLetterRequested,
    /// The payload could not become a request body: not a JSON object for `form`, too
    /// large, or metadata FastCGI cannot carry (permanent; decided by `dispatch::request`).
    InvalidMessage,
    /// `Status: 5xx` (retryable).
    ServerError,
    /// `Status: 408` (retryable).
    RequestTimeoutStatus,
    /// `Status: 429` (retryable).
    TooManyRequests,
    /// END_REQUEST with an app status other than 0 (retryable).
    AppStatus,
    /// EOF or reset after the request was written (retryable).
    ConnectionClosed,
    /// No END_REQUEST within `request_timeout_ms` (retryable).
    Timeout,
    /// The response broke FastCGI or CGI, or had no CGI head (retryable).
    MalformedResponse,
    /// `X-Ferry-Action: retry` (retryable).
    RetryRequested,
    /// `require_action_header` and no `X-Ferry-Action` (retryable).
    MissingActionHeader,
}

impl Reason {
    /// A stable snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientError => "client_error",
            Self::DeadLetterRequested => "dead_letter_requested",
            Self::InvalidMessage => "invalid_message",
            Self::ServerError => "server_error",
            Self::RequestTimeoutStatus => "status_408",
            Self::TooManyRequests => "status_429",
            Self::AppStatus => "app_status",
            Self::ConnectionClosed => "connection_closed",
            Self::Timeout => "timeout",
            Self::MalformedResponse => "malformed_response",
            Self::RetryRequested => "retry_requested",
            Self::MissingActionHeader => "missing_action_header",
        }
    }
}

/// Why a pool failed (`ferry_pool_failures_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolFailureReason {
    /// Connect refused.
    ConnectRefused,
    /// The unix socket does not exist.
    SocketNotFound,
    /// The listen backlog is full (EAGAIN).
    BacklogFull,
    /// Connect timed out.
    ConnectTimeout,
    /// Another connect error.
    ConnectError,
    /// END_REQUEST `FCGI_OVERLOADED`.
    Overloaded,
    /// END_REQUEST `FCGI_CANT_MPX_CONN`.
    CantMpxConn,
    /// END_REQUEST `FCGI_UNKNOWN_ROLE`.
    UnknownRole,
    /// php-fpm's own 404 "Primary script unknown" (or "Unable to open primary script").
    ScriptUnknown,
    /// php-fpm's own 403 "Access denied." (`security.limit_extensions`, unreadable
    /// script).
    AccessDenied,
    /// A spawned pool has no worker process running (they keep dying; restarts are
    /// backed off).
    NoProcess,
}

impl PoolFailureReason {
    /// A stable snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConnectRefused => "connect_refused",
            Self::SocketNotFound => "socket_not_found",
            Self::BacklogFull => "backlog_full",
            Self::ConnectTimeout => "connect_timeout",
            Self::ConnectError => "connect_error",
            Self::Overloaded => "overloaded",
            Self::CantMpxConn => "cant_mpx_conn",
            Self::UnknownRole => "unknown_role",
            Self::ScriptUnknown => "script_unknown",
            Self::AccessDenied => "access_denied",
            Self::NoProcess => "no_process",
        }
    }
}

impl From<ConnectFailure> for PoolFailureReason {
    fn from(failure: ConnectFailure) -> Self {
        match failure {
            ConnectFailure::Refused => Self::ConnectRefused,
            ConnectFailure::NotFound => Self::SocketNotFound,
            ConnectFailure::BacklogFull => Self::BacklogFull,
            ConnectFailure::TimedOut => Self::ConnectTimeout,
            ConnectFailure::Other => Self::ConnectError,
        }
    }
}

/// What to do with the message after one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done: acknowledge.
    Success,
    /// Never retry: dead-letter.
    Permanent {
        /// Why.
        reason: Reason,
    },
    /// Counts one attempt; retry after a delay (or give up after `max_attempts`).
    Retryable {
        /// Why.
        reason: Reason,
        /// `X-Ferry-Retry-After`, when the worker gave one.
        retry_after: Option<Duration>,
    },
    /// The pool, not the message, failed: no attempt counted, the job waits, the pool's
    /// circuit opens.
    PoolFailure {
        /// Why.
        reason: PoolFailureReason,
    },
    /// Send it again once on a new connection; no attempt counted.
    ResendOnce,
}

/// `ferry_attempts_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptResult {
    /// Success.
    Ok,
    /// Retryable, except timeouts.
    Retryable,
    /// Permanent.
    Permanent,
    /// Retryable because the request timed out.
    Timeout,
}

impl AttemptResult {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Retryable => "retryable",
            Self::Permanent => "permanent",
            Self::Timeout => "timeout",
        }
    }
}

impl Outcome {
    /// The attempt this outcome counts, if any (pool failures and resends count none).
    pub fn attempt_result(&self) -> Option<AttemptResult> {
        match self {
            Self::Success => Some(AttemptResult::Ok),
            Self::Permanent { .. } => Some(AttemptResult::Permanent),
            Self::Retryable {
                reason: Reason::Timeout,
                ..
            } => Some(AttemptResult::Timeout),
            Self::Retryable { .. } => Some(AttemptResult::Retryable),
            Self::PoolFailure { .. } | Self::ResendOnce => None,
        }
    }
}

/// STDERR text php-fpm writes when SCRIPT_FILENAME does not exist (with status 404).
pub const PRIMARY_SCRIPT_UNKNOWN: &[u8] = b"Primary script unknown";
/// STDERR text php-fpm writes when `security.limit_extensions` refuses the script (403).
pub const LIMIT_EXTENSIONS_DENIED: &[u8] = b"has been denied (see security.limit_extensions)";
/// STDERR text php-fpm writes when it cannot open the script (403 on EACCES, else 404).
pub const UNABLE_TO_OPEN_PRIMARY_SCRIPT: &[u8] = b"Unable to open primary script";

/// The outcome of one attempt (see the module docs for the order of the checks).
/// `require_action_header` is the job's; `kept_connection_reused` says the request went
/// over an idle kept connection rather than a fresh one.
pub fn classify(
    attempt: Attempt<'_>,
    require_action_header: bool,
    kept_connection_reused: bool,
) -> Outcome {
    let finished = match attempt {
        Attempt::ConnectFailed(failure) => {
            return Outcome::PoolFailure {
                reason: failure.into(),
            }
        }
        Attempt::Finished(finished) => finished,
    };
    let retryable = |reason| Outcome::Retryable {
        reason,
        retry_after: None,
    };
    let app_status = match finished.ending {
        Ending::ClosedBeforeResponse if kept_connection_reused => return Outcome::ResendOnce,
        Ending::ClosedBeforeResponse | Ending::ClosedMidResponse => {
            return retryable(Reason::ConnectionClosed)
        }
        Ending::TimedOut => return retryable(Reason::Timeout),
        Ending::Malformed(_) => return retryable(Reason::MalformedResponse),
        Ending::EndRequest {
            protocol_status: ProtocolStatus::Overloaded,
            ..
        } => {
            return Outcome::PoolFailure {
                reason: PoolFailureReason::Overloaded,
            }
        }
        Ending::EndRequest {
            protocol_status: ProtocolStatus::CantMpxConn,
            ..
        } => {
            return Outcome::PoolFailure {
                reason: PoolFailureReason::CantMpxConn,
            }
        }
        Ending::EndRequest {
            protocol_status: ProtocolStatus::UnknownRole,
            ..
        } => {
            return Outcome::PoolFailure {
                reason: PoolFailureReason::UnknownRole,
            }
        }
        Ending::EndRequest {
            app_status,
            protocol_status: ProtocolStatus::RequestComplete,
        } => app_status,
    };

    if let Some(reason) = php_fpm_refusal(finished) {
        return Outcome::PoolFailure { reason };
    }
    let retry_after = finished.retry_after_s.map(Duration::from_secs);
    let outcome = match finished.action {
        Some(FerryAction::Ack) => return Outcome::Success,
        Some(FerryAction::DeadLetter) => Outcome::Permanent {
            reason: Reason::DeadLetterRequested,
        },
        Some(FerryAction::Retry) => retryable(Reason::RetryRequested),
        None if require_action_header => retryable(Reason::MissingActionHeader),
        None if app_status != 0 => retryable(Reason::AppStatus),
        None if !finished.head_complete => retryable(Reason::MalformedResponse),
        None => by_status(finished.status),
    };
    match outcome {
        Outcome::Retryable { reason, .. } => Outcome::Retryable {
            reason,
            retry_after,
        },
        other => other,
    }
}

/// The table's rows for the `Status:` header of a complete response.
fn by_status(status: Option<u16>) -> Outcome {
    match status {
        None | Some(200..=399) => Outcome::Success,
        Some(408) => Outcome::Retryable {
            reason: Reason::RequestTimeoutStatus,
            retry_after: None,
        },
        Some(429) => Outcome::Retryable {
            reason: Reason::TooManyRequests,
            retry_after: None,
        },
        Some(400..=499) => Outcome::Permanent {
            reason: Reason::ClientError,
        },
        Some(500..=599) => Outcome::Retryable {
            reason: Reason::ServerError,
            retry_after: None,
        },
        Some(_) => Outcome::Retryable {
            reason: Reason::MalformedResponse,
            retry_after: None,
        },
    }
}

/// php-fpm's own 404/403, told from a script's by what php-fpm wrote on STDERR (it comes
/// before any script output, so it is always within the excerpt).
fn php_fpm_refusal(finished: &Finished) -> Option<PoolFailureReason> {
    let stderr = &finished.stderr;
    match finished.status {
        Some(404)
            if stderr.contains(PRIMARY_SCRIPT_UNKNOWN)
                || stderr.contains(UNABLE_TO_OPEN_PRIMARY_SCRIPT) =>
        {
            Some(PoolFailureReason::ScriptUnknown)
        }
        Some(403)
            if stderr.contains(LIMIT_EXTENSIONS_DENIED)
                || stderr.contains(UNABLE_TO_OPEN_PRIMARY_SCRIPT) =>
        {
            Some(PoolFailureReason::AccessDenied)
        }
        _ => None,
    }
}
