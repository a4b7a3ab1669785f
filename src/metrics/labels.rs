//! The closed label sets of ferry's counters (`docs/OPERATIONS.md` "Counters"), each an
//! enum that indexes a fixed array in [`super::SourceMetrics`] or [`super::PoolMetrics`].
//!
//! `AttemptResult` and `PoolFailureReason` belong to `dispatch::outcome`, which decides
//! them; this module only lists their variants in label order and maps each to its slot.

use crate::dispatch::outcome::{AttemptResult, PoolFailureReason};

/// Why a received message was dropped (`ferry_messages_dropped_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A Redis source's backlog (`backlog`/`backlog_bytes`) was full.
    BacklogFull,
    /// The source was paused through the control endpoint (pub/sub cannot hold messages).
    Paused,
    /// ferry was shutting down (or drained the source) and would not start it.
    Shutdown,
    /// Larger than `max_message_bytes`.
    TooLarge,
}

impl DropReason {
    /// Every reason, in rendering order.
    pub const ALL: [DropReason; 4] = [
        DropReason::BacklogFull,
        DropReason::Paused,
        DropReason::Shutdown,
        DropReason::TooLarge,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::BacklogFull => "backlog_full",
            DropReason::Paused => "paused",
            DropReason::Shutdown => "shutdown",
            DropReason::TooLarge => "too_large",
        }
    }

    /// Slot in the counter array.
    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// Why a RESP endpoint closed a client (`ferry_endpoint_disconnects_total{reason}`); a
/// client that leaves by itself (EOF, `QUIT`) is not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// It sent bytes that are not a request (`-ERR Protocol error: …`, as Redis).
    ProtocolError,
    /// One command did not fit the query buffer (`max_message_bytes` + 1 MiB).
    QueryBuffer,
    /// Its unsent replies and messages exceeded `client_output_buffer_bytes` (a
    /// subscriber that does not read).
    OutputBuffer,
    /// `max_clients` were already connected.
    MaxClients,
}

impl DisconnectReason {
    /// Every reason, in rendering order.
    pub const ALL: [DisconnectReason; 4] = [
        DisconnectReason::ProtocolError,
        DisconnectReason::QueryBuffer,
        DisconnectReason::OutputBuffer,
        DisconnectReason::MaxClients,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ProtocolError => "protocol_error",
            DisconnectReason::QueryBuffer => "query_buffer",
            DisconnectReason::OutputBuffer => "output_buffer",
            DisconnectReason::MaxClients => "max_clients",
        }
    }

    /// Slot in the counter array.
    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// How a delivery was finally settled (`ferry_messages_settled_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Settlement {
    /// Done: acked to the broker (for Redis: the worker succeeded).
    Acked,
    /// Handed on to a later attempt: its retry copy was confirmed by the broker.
    Retried,
    /// Sent to the dead-letter target (published copy confirmed, or rejected).
    DeadLettered,
    /// Given up without a dead-letter target (Redis after the last attempt).
    Discarded,
}

impl Settlement {
    /// Every outcome, in rendering order.
    pub const ALL: [Settlement; 4] = [
        Settlement::Acked,
        Settlement::Retried,
        Settlement::DeadLettered,
        Settlement::Discarded,
    ];

    /// The `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Settlement::Acked => "acked",
            Settlement::Retried => "retried",
            Settlement::DeadLettered => "dead_lettered",
            Settlement::Discarded => "discarded",
        }
    }

    /// Slot in the counter array.
    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// Every attempt result, in rendering order (`ferry_attempts_total{result}`).
pub const ATTEMPT_RESULTS: [AttemptResult; 4] = [
    AttemptResult::Ok,
    AttemptResult::Retryable,
    AttemptResult::Permanent,
    AttemptResult::Timeout,
];

/// Slot of `result` in [`ATTEMPT_RESULTS`].
pub(super) fn attempt_index(result: AttemptResult) -> usize {
    match result {
        AttemptResult::Ok => 0,
        AttemptResult::Retryable => 1,
        AttemptResult::Permanent => 2,
        AttemptResult::Timeout => 3,
    }
}

/// Every pool failure reason, in rendering order (`ferry_pool_failures_total{reason}`).
pub const POOL_FAILURE_REASONS: [PoolFailureReason; 11] = [
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
    PoolFailureReason::NoProcess,
];

/// Slot of `reason` in [`POOL_FAILURE_REASONS`]. The match is exhaustive, so a new
/// variant in `dispatch::outcome` does not compile until it has a slot here.
pub(super) fn pool_failure_index(reason: PoolFailureReason) -> usize {
    match reason {
        PoolFailureReason::ConnectRefused => 0,
        PoolFailureReason::SocketNotFound => 1,
        PoolFailureReason::BacklogFull => 2,
        PoolFailureReason::ConnectTimeout => 3,
        PoolFailureReason::ConnectError => 4,
        PoolFailureReason::Overloaded => 5,
        PoolFailureReason::CantMpxConn => 6,
        PoolFailureReason::UnknownRole => 7,
        PoolFailureReason::ScriptUnknown => 8,
        PoolFailureReason::AccessDenied => 9,
        PoolFailureReason::NoProcess => 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_list_matches_its_index() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, s) in Settlement::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
        }
        for (i, r) in ATTEMPT_RESULTS.iter().enumerate() {
            assert_eq!(attempt_index(*r), i);
        }
        for (i, r) in POOL_FAILURE_REASONS.iter().enumerate() {
            assert_eq!(pool_failure_index(*r), i);
        }
    }
}
