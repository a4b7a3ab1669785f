//! The settlement table (`settle::decide`), row by row: every outcome × source kind ×
//! ack mode × first / middle / last attempt.

use std::time::Duration;

use crate::config::{AckMode, RetryMode};
use crate::dispatch::outcome::{Outcome, PoolFailureReason, Reason};
use crate::dispatch::request::SourceKind;
use crate::dispatch::retry::RetryPolicy;
use crate::engine::settle::{decide, DeadLetterTarget, RetryWait, Settlement, Situation};

const KINDS: [SourceKind; 4] = [
    SourceKind::Redis,
    SourceKind::Amqp,
    SourceKind::RespEndpoint,
    SourceKind::RedisStream,
];
const ACKS: [AckMode; 2] = [AckMode::AfterResponse, AckMode::OnDispatch];
/// With `max_attempts` 3: first, middle, last.
const ATTEMPTS: [u32; 3] = [1, 2, 3];

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

/// Every combination of the table's dimensions.
fn each(mut check: impl FnMut(SourceKind, AckMode, u32, Situation)) {
    for kind in KINDS {
        for ack in ACKS {
            for attempt in ATTEMPTS {
                check(kind, ack, attempt, situation(kind, ack, attempt));
            }
        }
    }
}

fn discard_or(kind: SourceKind) -> DeadLetterTarget {
    match kind {
        SourceKind::Amqp => DeadLetterTarget::Reject,
        _ => DeadLetterTarget::Discard,
    }
}

#[test]
fn success_acks_unless_acked_at_dispatch() {
    each(|_, _, _, s| {
        let expected = if s.dispatch_acked {
            Settlement::AlreadySettled
        } else {
            Settlement::Ack
        };
        assert_eq!(decide(Outcome::Success, s, &policy()), expected, "{s:?}");
    });
}

#[test]
fn permanent_dead_letters_at_any_attempt() {
    each(|kind, _, _, s| {
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
    });
}

#[test]
fn retryable_retries_until_the_last_attempt_then_gives_up() {
    each(|kind, _, attempt, s| {
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
    });
}

#[test]
fn a_timeout_is_retryable_like_any_failure() {
    each(|_, _, attempt, s| {
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
    });
}

#[test]
fn pool_failures_burn_no_attempt_at_any_attempt() {
    each(|_, _, _, s| {
        let got = decide(
            Outcome::PoolFailure {
                reason: PoolFailureReason::ConnectRefused,
            },
            s,
            &policy(),
        );
        assert_eq!(got, Settlement::RequeuePoolFailure, "{s:?}");
    });
}

#[test]
fn a_closed_kept_connection_resends_once_then_counts() {
    each(|_, _, attempt, s| {
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
    });
}

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
