//! `docs/SEMANTICS.md` "Outcome of a request", row by row, plus the header overrides: every
//! case builds the `Finished` summary an exchange would produce and checks `classify`.

use std::time::Duration;

use ferry::dispatch::outcome::{
    classify, Attempt, AttemptResult, ConnectFailure, Outcome, PoolFailureReason, Reason,
};
use ferry::proto::fastcgi::{
    Ending, FcgiError, FerryAction, Finished, ProtocolStatus, StderrSummary,
};

fn end(app_status: u32, protocol_status: ProtocolStatus) -> Ending {
    Ending::EndRequest {
        app_status,
        protocol_status,
    }
}

/// A clean END_REQUEST with a complete head carrying `status`.
fn answer(status: Option<u16>) -> Finished {
    Finished {
        ending: end(0, ProtocolStatus::RequestComplete),
        head_complete: true,
        status,
        action: None,
        retry_after_s: None,
        stderr: StderrSummary::default(),
        stdout_body_bytes: 10,
        any_response_byte: true,
        reusable: false,
        duration: Duration::from_millis(5),
    }
}

fn with_stderr(mut finished: Finished, text: &[u8]) -> Finished {
    finished.stderr = StderrSummary {
        excerpt: text.to_vec(),
        total_bytes: text.len() as u64,
        lines: 1,
    };
    finished
}

fn with_action(mut finished: Finished, action: FerryAction, retry_after: Option<u64>) -> Finished {
    finished.action = Some(action);
    finished.retry_after_s = retry_after;
    finished
}

fn ended(ending: Ending, any_response_byte: bool) -> Finished {
    Finished {
        ending,
        head_complete: false,
        status: None,
        any_response_byte,
        ..answer(None)
    }
}

fn of(finished: &Finished) -> Outcome {
    classify(Attempt::Finished(finished), false, false)
}

fn retryable(reason: Reason) -> Outcome {
    Outcome::Retryable {
        reason,
        retry_after: None,
    }
}

fn pool(reason: PoolFailureReason) -> Outcome {
    Outcome::PoolFailure { reason }
}

// ---- row 1: END_REQUEST with app status 0, Status absent or 2xx/3xx → success ----

#[test]
fn success_rows() {
    for status in [
        None,
        Some(200),
        Some(201),
        Some(204),
        Some(299),
        Some(301),
        Some(304),
        Some(399),
    ] {
        assert_eq!(of(&answer(status)), Outcome::Success, "{status:?}");
    }
    assert_eq!(Outcome::Success.attempt_result(), Some(AttemptResult::Ok));
}

// ---- row 2: Status 4xx other than 408/429 → permanent ----

#[test]
fn permanent_rows() {
    for status in [400, 401, 403, 404, 409, 410, 422, 499] {
        let outcome = of(&answer(Some(status)));
        assert_eq!(
            outcome,
            Outcome::Permanent {
                reason: Reason::ClientError
            },
            "{status}"
        );
        assert_eq!(outcome.attempt_result(), Some(AttemptResult::Permanent));
    }
}

// ---- row 3: 5xx/408/429, app status ≠ 0, EOF/reset after the request, timeout,
// malformed → retryable ----

#[test]
fn retryable_status_rows() {
    for status in [500, 502, 503, 504, 599] {
        assert_eq!(of(&answer(Some(status))), retryable(Reason::ServerError));
    }
    assert_eq!(
        of(&answer(Some(408))),
        retryable(Reason::RequestTimeoutStatus)
    );
    assert_eq!(of(&answer(Some(429))), retryable(Reason::TooManyRequests));
    assert_eq!(
        retryable(Reason::ServerError).attempt_result(),
        Some(AttemptResult::Retryable)
    );
}

#[test]
fn retryable_app_status() {
    let mut finished = answer(None);
    finished.ending = end(255, ProtocolStatus::RequestComplete);
    assert_eq!(of(&finished), retryable(Reason::AppStatus));
    // Even when no head came at all.
    let finished = ended(end(1, ProtocolStatus::RequestComplete), true);
    assert_eq!(of(&finished), retryable(Reason::AppStatus));
}

#[test]
fn retryable_connection_closed_after_the_request_was_written() {
    // On a fresh connection, before any byte: retryable, not resent.
    let before = ended(Ending::ClosedBeforeResponse, false);
    assert_eq!(of(&before), retryable(Reason::ConnectionClosed));
    // After some bytes, fresh or reused connection alike.
    let mid = ended(Ending::ClosedMidResponse, true);
    assert_eq!(of(&mid), retryable(Reason::ConnectionClosed));
    assert_eq!(
        classify(Attempt::Finished(&mid), false, true),
        retryable(Reason::ConnectionClosed)
    );
}

#[test]
fn retryable_timeout_counts_as_timeout() {
    let finished = ended(Ending::TimedOut, true);
    let outcome = of(&finished);
    assert_eq!(outcome, retryable(Reason::Timeout));
    assert_eq!(outcome.attempt_result(), Some(AttemptResult::Timeout));
    // A head that asked for ack does not save a request that never ended.
    let mut acked = with_action(answer(None), FerryAction::Ack, None);
    acked.ending = Ending::TimedOut;
    assert_eq!(of(&acked), retryable(Reason::Timeout));
}

#[test]
fn retryable_malformed() {
    let finished = ended(Ending::Malformed(FcgiError::InvalidStatus), true);
    assert_eq!(of(&finished), retryable(Reason::MalformedResponse));
    // END_REQUEST before the CGI head ended (or with no STDOUT at all).
    let finished = ended(end(0, ProtocolStatus::RequestComplete), true);
    assert_eq!(of(&finished), retryable(Reason::MalformedResponse));
    // A status outside 2xx–5xx.
    for status in [100, 199, 600, 999] {
        assert_eq!(
            of(&answer(Some(status))),
            retryable(Reason::MalformedResponse)
        );
    }
}

// ---- row 4: pool failures, no attempt counted ----

#[test]
fn pool_failure_connect_rows() {
    for (failure, reason) in [
        (ConnectFailure::Refused, PoolFailureReason::ConnectRefused),
        (ConnectFailure::NotFound, PoolFailureReason::SocketNotFound),
        (ConnectFailure::BacklogFull, PoolFailureReason::BacklogFull),
        (ConnectFailure::TimedOut, PoolFailureReason::ConnectTimeout),
        (ConnectFailure::Other, PoolFailureReason::ConnectError),
    ] {
        let outcome = classify(Attempt::ConnectFailed(failure), true, true);
        assert_eq!(outcome, pool(reason));
        assert_eq!(outcome.attempt_result(), None);
    }
}

#[test]
fn connect_failures_from_io_errors() {
    use std::io::{Error, ErrorKind};
    let cases = [
        (Error::from_raw_os_error(111), ConnectFailure::Refused), // ECONNREFUSED
        (Error::from_raw_os_error(2), ConnectFailure::NotFound),  // ENOENT
        (Error::from_raw_os_error(11), ConnectFailure::BacklogFull), // EAGAIN
        (Error::from_raw_os_error(110), ConnectFailure::TimedOut), // ETIMEDOUT
        (Error::from_raw_os_error(13), ConnectFailure::Other),    // EACCES
        (Error::from(ErrorKind::TimedOut), ConnectFailure::TimedOut),
    ];
    for (error, expected) in cases {
        assert_eq!(ConnectFailure::from_io_error(&error), expected, "{error}");
    }
}

#[test]
fn pool_failure_protocol_status_rows() {
    for (status, reason) in [
        (ProtocolStatus::Overloaded, PoolFailureReason::Overloaded),
        (ProtocolStatus::CantMpxConn, PoolFailureReason::CantMpxConn),
        (ProtocolStatus::UnknownRole, PoolFailureReason::UnknownRole),
    ] {
        let finished = ended(end(0, status), true);
        assert_eq!(of(&finished), pool(reason));
        // Not even an action header (there is none) or require_action_header changes it.
        assert_eq!(
            classify(Attempt::Finished(&finished), true, false),
            pool(reason)
        );
    }
}

#[test]
fn pool_failure_php_fpm_primary_script_unknown() {
    // What php-fpm 8.2 sends (tests/data/fastcgi/missing_script.response.bin).
    let finished = with_stderr(answer(Some(404)), b"Primary script unknown");
    assert_eq!(of(&finished), pool(PoolFailureReason::ScriptUnknown));
    // Also with require_action_header: php-fpm's own page never carries one.
    assert_eq!(
        classify(Attempt::Finished(&finished), true, false),
        pool(PoolFailureReason::ScriptUnknown)
    );
    let unopenable = with_stderr(
        answer(Some(404)),
        b"Unable to open primary script: /srv/w.php (No such file or directory)",
    );
    assert_eq!(of(&unopenable), pool(PoolFailureReason::ScriptUnknown));
}

#[test]
fn pool_failure_php_fpm_access_denied() {
    // Captured live: security.limit_extensions = .php, SCRIPT_FILENAME=…/w.txt.
    let finished = with_stderr(
        answer(Some(403)),
        b"Access to the script '/tmp/x/w.txt' has been denied (see security.limit_extensions)",
    );
    assert_eq!(of(&finished), pool(PoolFailureReason::AccessDenied));
    let unreadable = with_stderr(
        answer(Some(403)),
        b"Unable to open primary script: /srv/w.php (Permission denied)",
    );
    assert_eq!(of(&unreadable), pool(PoolFailureReason::AccessDenied));
}

#[test]
fn a_scripts_own_404_and_403_stay_permanent() {
    let permanent = Outcome::Permanent {
        reason: Reason::ClientError,
    };
    assert_eq!(of(&answer(Some(404))), permanent);
    assert_eq!(of(&answer(Some(403))), permanent);
    // The marker with another status is the script's business.
    let odd = with_stderr(answer(Some(200)), b"Primary script unknown");
    assert_eq!(of(&odd), Outcome::Success);
    let odd = with_stderr(answer(Some(403)), b"Primary script unknown");
    assert_eq!(of(&odd), permanent);
    // Some other PHP message.
    let odd = with_stderr(answer(Some(404)), b"PHP message: user not found");
    assert_eq!(of(&odd), permanent);
}

// ---- row 5: EOF/reset on a reused kept connection before any response byte ----

#[test]
fn resend_once_on_a_reused_kept_connection() {
    let finished = ended(Ending::ClosedBeforeResponse, false);
    let outcome = classify(Attempt::Finished(&finished), false, true);
    assert_eq!(outcome, Outcome::ResendOnce);
    assert_eq!(outcome.attempt_result(), None);
    assert_eq!(
        classify(Attempt::Finished(&finished), true, true),
        Outcome::ResendOnce
    );
}

// ---- response headers win over the table ----

#[test]
fn ack_wins_even_over_a_5xx_and_an_app_status() {
    let finished = with_action(answer(Some(500)), FerryAction::Ack, None);
    assert_eq!(of(&finished), Outcome::Success);
    let mut finished = with_action(answer(Some(422)), FerryAction::Ack, None);
    assert_eq!(of(&finished), Outcome::Success);
    finished.ending = end(3, ProtocolStatus::RequestComplete);
    assert_eq!(of(&finished), Outcome::Success);
}

#[test]
fn retry_with_retry_after() {
    let finished = with_action(answer(None), FerryAction::Retry, Some(30));
    assert_eq!(
        of(&finished),
        Outcome::Retryable {
            reason: Reason::RetryRequested,
            retry_after: Some(Duration::from_secs(30)),
        }
    );
    let finished = with_action(answer(Some(422)), FerryAction::Retry, None);
    assert_eq!(of(&finished), retryable(Reason::RetryRequested));
}

#[test]
fn retry_after_without_action_applies_to_a_retryable_status() {
    let mut finished = answer(Some(503));
    finished.retry_after_s = Some(5);
    assert_eq!(
        of(&finished),
        Outcome::Retryable {
            reason: Reason::ServerError,
            retry_after: Some(Duration::from_secs(5)),
        }
    );
    // …and is meaningless on a success.
    let mut finished = answer(Some(200));
    finished.retry_after_s = Some(5);
    assert_eq!(of(&finished), Outcome::Success);
}

#[test]
fn dead_letter_wins_over_a_2xx() {
    let finished = with_action(answer(Some(200)), FerryAction::DeadLetter, None);
    assert_eq!(
        of(&finished),
        Outcome::Permanent {
            reason: Reason::DeadLetterRequested
        }
    );
}

#[test]
fn require_action_header() {
    for status in [None, Some(200), Some(404), Some(500)] {
        let finished = answer(status);
        assert_eq!(
            classify(Attempt::Finished(&finished), true, false),
            retryable(Reason::MissingActionHeader),
            "{status:?}"
        );
    }
    let finished = with_action(answer(None), FerryAction::Ack, None);
    assert_eq!(
        classify(Attempt::Finished(&finished), true, false),
        Outcome::Success
    );
}

#[test]
fn labels_are_metric_safe() {
    let reasons = [
        Reason::ClientError,
        Reason::DeadLetterRequested,
        Reason::InvalidMessage,
        Reason::ServerError,
        Reason::RequestTimeoutStatus,
        Reason::TooManyRequests,
        Reason::AppStatus,
        Reason::ConnectionClosed,
        Reason::Timeout,
        Reason::MalformedResponse,
        Reason::RetryRequested,
        Reason::MissingActionHeader,
    ];
    let pools = [
        PoolFailureReason::ConnectRefused,
        PoolFailureReason::SocketNotFound,
        PoolFailureReason::BacklogFull,
        PoolFailureReason::ConnectTimeout,
        PoolFailureReason::ConnectError,
        PoolFailureReason::Overloaded,
        PoolFailureReason::CantMpxConn,
        PoolFailureReason::UnknownRole,
        PoolFailureReason::ScriptUnknown,
        PoolFailureReason::AccessDenied,
    ];
    let results = [
        AttemptResult::Ok,
        AttemptResult::Retryable,
        AttemptResult::Permanent,
        AttemptResult::Timeout,
    ];
    let labels: Vec<&str> = reasons
        .iter()
        .map(|r| r.as_str())
        .chain(pools.iter().map(|p| p.as_str()))
        .chain(results.iter().map(|r| r.as_str()))
        .collect();
    for label in &labels {
        assert!(
            label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{label}"
        );
    }
    let mut unique = labels[..reasons.len()].to_vec();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), reasons.len());
    assert_eq!(
        results.map(AttemptResult::as_str),
        ["ok", "retryable", "permanent", "timeout"]
    );
}
