//! The settlement table (`settle::decide`): every outcome row × source kind (redis,
//! amqp, resp_endpoint, redis_stream) × ack mode × first / middle / last attempt, each
//! cell its own test (`<row>::<kind>::<ack mode>::<attempt>`: 144 of them), plus the
//! options that change a cell (hold, dead-letter publish, stream, Retry-After).

use std::time::Duration;

use crate::config::{AckMode, RetryMode};
use crate::dispatch::outcome::{Outcome, PoolFailureReason, Reason};
use crate::dispatch::request::SourceKind;
use crate::dispatch::retry::RetryPolicy;
use crate::engine::settle::{decide, DeadLetterTarget, RetryWait, Settlement, Situation};

fn policy() -> RetryPolicy {
    RetryPolicy::new(3, &[1000, 5000])
}

fn situation(kind: SourceKind, ack: AckMode, attempt: u32) -> Situation {
    Situation {
        kind,
        ack,
        retry: RetryMode::Republish,
        dead_letter_publish: false,
        attempt,
        // `ack: on_dispatch` applies to AMQP only: its job was acked when written.
        dispatch_acked: ack == AckMode::OnDispatch && kind == SourceKind::Amqp,
        resent: false,
    }
}

fn discard_or(kind: SourceKind) -> DeadLetterTarget {
    match kind {
        SourceKind::Amqp => DeadLetterTarget::Reject,
        _ => DeadLetterTarget::Discard,
    }
}

/// A row of the table, checked for one kind, ack mode and attempt.
fn success_acks_unless_acked_at_dispatch(kind: SourceKind, ack: AckMode, attempt: u32) {
    let s = situation(kind, ack, attempt);
    let expected = if s.dispatch_acked {
        Settlement::AlreadySettled
    } else {
        Settlement::Ack
    };
    assert_eq!(decide(Outcome::Success, s, &policy()), expected, "{s:?}");
}

/// A row of the table, checked for one kind, ack mode and attempt.
fn permanent_dead_letters_at_any_attempt(kind: SourceKind, ack: AckMode, attempt: u32) {
    let s = situation(kind, ack, attempt);
    let got = decide(
        Outcome::Permanent {
            reason: Reason::ClientError,
        },
        s,
        &policy(),
    );
    if s.dispatch_acked {
        assert_eq!(got, Settlement::AlreadySettled, "{s:?}");
        return;
    }
    assert_eq!(
        got,
        Settlement::DeadLetter {
            target: discard_or(kind),
            reason: Reason::ClientError.as_str(),
            exhausted: false
        },
        "{s:?}"
    );
}

/// A row of the table, checked for one kind, ack mode and attempt.
fn retryable_retries_until_the_last_attempt_then_gives_up(
    kind: SourceKind,
    ack: AckMode,
    attempt: u32,
) {
    let s = situation(kind, ack, attempt);
    let got = decide(
        Outcome::Retryable {
            reason: Reason::ServerError,
            retry_after: None,
        },
        s,
        &policy(),
    );
    if s.dispatch_acked {
        assert_eq!(
            got,
            Settlement::AlreadySettled,
            "never retried once acked: {s:?}"
        );
        return;
    }
    let expected = match attempt {
        3 => Settlement::DeadLetter {
            target: discard_or(kind),
            reason: Reason::ServerError.as_str(),
            exhausted: true,
        },
        n => Settlement::Retry {
            delay: Duration::from_millis(if n == 1 { 1000 } else { 5000 }),
            next_attempt: n + 1,
            wait: match kind {
                SourceKind::Amqp => RetryWait::Republish,
                // Stays pending in its group; claimed back after the delay.
                SourceKind::RedisStream => RetryWait::Pending,
                _ => RetryWait::InMemory,
            },
        },
    };
    assert_eq!(got, expected, "{s:?}");
}

/// A row of the table, checked for one kind, ack mode and attempt.
fn a_timeout_is_retryable_like_any_failure(kind: SourceKind, ack: AckMode, attempt: u32) {
    let s = situation(kind, ack, attempt);
    let got = decide(
        Outcome::Retryable {
            reason: Reason::Timeout,
            retry_after: None,
        },
        s,
        &policy(),
    );
    let retried = matches!(got, Settlement::Retry { .. });
    assert_eq!(retried, attempt < 3 && !s.dispatch_acked, "{s:?}");
}

/// A row of the table, checked for one kind, ack mode and attempt.
fn pool_failures_burn_no_attempt_at_any_attempt(kind: SourceKind, ack: AckMode, attempt: u32) {
    let s = situation(kind, ack, attempt);
    let got = decide(
        Outcome::PoolFailure {
            reason: PoolFailureReason::ConnectRefused,
        },
        s,
        &policy(),
    );
    assert_eq!(got, Settlement::RequeuePoolFailure, "{s:?}");
}

/// A row of the table, checked for one kind, ack mode and attempt.
fn a_closed_kept_connection_resends_once_then_counts(kind: SourceKind, ack: AckMode, attempt: u32) {
    let s = situation(kind, ack, attempt);
    assert_eq!(
        decide(Outcome::ResendOnce, s, &policy()),
        Settlement::Resend,
        "{s:?}"
    );
    let again = Situation { resent: true, ..s };
    let got = decide(Outcome::ResendOnce, again, &policy());
    if s.dispatch_acked {
        assert_eq!(got, Settlement::AlreadySettled);
    } else if attempt == 3 {
        assert!(matches!(
            got,
            Settlement::DeadLetter {
                exhausted: true,
                ..
            }
        ));
    } else {
        assert!(
            matches!(got, Settlement::Retry { next_attempt, .. } if next_attempt == attempt + 1)
        );
    }
}

// One `#[test]` per cell: `<row>::<kind>::<ack mode>::{first, middle, last}` (attempts
// 1, 2 and 3 of `max_attempts` 3), so a failing cell names itself.
macro_rules! attempts {
    ($check:path, $kind:expr, $ack:expr) => {
        #[test]
        fn first() {
            $check($kind, $ack, 1)
        }
        #[test]
        fn middle() {
            $check($kind, $ack, 2)
        }
        #[test]
        fn last() {
            $check($kind, $ack, 3)
        }
    };
}

macro_rules! acks {
    ($check:path, $kind:expr) => {
        mod after_response {
            attempts!($check, $kind, crate::config::AckMode::AfterResponse);
        }
        mod on_dispatch {
            attempts!($check, $kind, crate::config::AckMode::OnDispatch);
        }
    };
}

macro_rules! row {
    ($row:ident) => {
        mod $row {
            mod redis {
                acks!(
                    crate::engine::tests::settle::$row,
                    crate::dispatch::request::SourceKind::Redis
                );
            }
            mod amqp {
                acks!(
                    crate::engine::tests::settle::$row,
                    crate::dispatch::request::SourceKind::Amqp
                );
            }
            mod resp_endpoint {
                acks!(
                    crate::engine::tests::settle::$row,
                    crate::dispatch::request::SourceKind::RespEndpoint
                );
            }
            mod redis_stream {
                acks!(
                    crate::engine::tests::settle::$row,
                    crate::dispatch::request::SourceKind::RedisStream
                );
            }
        }
    };
}

row!(success_acks_unless_acked_at_dispatch);
row!(permanent_dead_letters_at_any_attempt);
row!(retryable_retries_until_the_last_attempt_then_gives_up);
row!(a_timeout_is_retryable_like_any_failure);
row!(pool_failures_burn_no_attempt_at_any_attempt);
row!(a_closed_kept_connection_resends_once_then_counts);

#[test]
fn retry_after_rounds_up_to_a_step() {
    let s = situation(SourceKind::Amqp, AckMode::AfterResponse, 1);
    let got = decide(
        Outcome::Retryable {
            reason: Reason::ServerError,
            retry_after: Some(Duration::from_millis(1500)),
        },
        s,
        &policy(),
    );
    assert!(matches!(got, Settlement::Retry { delay, .. } if delay == Duration::from_millis(5000)));
}

#[test]
fn amqp_hold_waits_in_memory_and_publish_dead_letters_publish() {
    let s = Situation {
        retry: RetryMode::Hold,
        dead_letter_publish: true,
        ..situation(SourceKind::Amqp, AckMode::AfterResponse, 1)
    };
    let retry = decide(
        Outcome::Retryable {
            reason: Reason::ServerError,
            retry_after: None,
        },
        s,
        &policy(),
    );
    assert!(matches!(
        retry,
        Settlement::Retry {
            wait: RetryWait::InMemory,
            ..
        }
    ));
    let dead = decide(
        Outcome::Permanent {
            reason: Reason::ClientError,
        },
        s,
        &policy(),
    );
    assert!(matches!(
        dead,
        Settlement::DeadLetter {
            target: DeadLetterTarget::Publish,
            ..
        }
    ));
    // The pub/sub kinds never publish: there is no broker to publish to.
    let redis = Situation {
        kind: SourceKind::Redis,
        ..s
    };
    let dead = decide(
        Outcome::Permanent {
            reason: Reason::ClientError,
        },
        redis,
        &policy(),
    );
    assert!(matches!(
        dead,
        Settlement::DeadLetter {
            target: DeadLetterTarget::Discard,
            ..
        }
    ));
}

#[test]
fn stream_entries_stay_pending_for_retries_and_go_to_the_dead_letter_stream() {
    let s = Situation {
        dead_letter_publish: true,
        ..situation(SourceKind::RedisStream, AckMode::AfterResponse, 1)
    };
    let failed = Outcome::Retryable {
        reason: Reason::Timeout,
        retry_after: None,
    };
    assert_eq!(
        decide(failed, s, &policy()),
        Settlement::Retry {
            delay: Duration::from_millis(1000),
            next_attempt: 2,
            wait: RetryWait::Pending
        }
    );
    assert_eq!(
        decide(failed, Situation { attempt: 3, ..s }, &policy()),
        Settlement::DeadLetter {
            target: DeadLetterTarget::Stream,
            reason: "timeout",
            exhausted: true
        }
    );
    assert_eq!(
        decide(
            Outcome::Permanent {
                reason: Reason::ClientError
            },
            s,
            &policy()
        ),
        Settlement::DeadLetter {
            target: DeadLetterTarget::Stream,
            reason: "client_error",
            exhausted: false
        }
    );
    // `"dead_letter": "discard"`: acked and counted as discarded.
    let discard = Situation {
        dead_letter_publish: false,
        ..s
    };
    assert!(matches!(
        decide(
            failed,
            Situation {
                attempt: 3,
                ..discard
            },
            &policy()
        ),
        Settlement::DeadLetter {
            target: DeadLetterTarget::Discard,
            ..
        }
    ));
    // A pool failure burns no attempt: the job waits in ferry, the entry stays pending.
    assert_eq!(
        decide(
            Outcome::PoolFailure {
                reason: PoolFailureReason::ConnectRefused
            },
            s,
            &policy()
        ),
        Settlement::RequeuePoolFailure
    );
}
