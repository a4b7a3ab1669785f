//! The control endpoint (`docs/OPERATIONS.md` "Control endpoint"): HTTP/1.1 on a TCP or
//! unix listener inside the same reactor. This module is its sans-IO half — parsing
//! requests from a connection's bytes, routing them, writing responses — so the reactor
//! only moves bytes (the listener and its connections arrive with the runtime wiring).
//!
//! # Layout
//! - `http.rs`: request parsing (httparse, capped), responses, keep-alive.
//! - `route.rs`: which request means what (`Route`), and the bearer-token check.

// Requests come from the network: nothing here may panic on them.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::unreachable,
        clippy::todo
    )
)]

pub mod http;
pub mod route;
