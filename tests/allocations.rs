//! The tests that count allocations, in one binary of their own: it installs the counting
//! global allocator (`support/alloc.rs`), which no other test binary should carry.
//!
//! - `resp_alloc`, `amqp_alloc`, `fastcgi_alloc`, `metrics_alloc`: the hot paths allocate
//!   nothing (`BENCHMARKS.md` "Allocations").
//! - `resp_hostile`, `amqp_hostile`: hostile input gets its typed error without an
//!   allocation sized by the peer (`docs/ARCHITECTURE.md` "Limits before allocation").

#[path = "support/alloc.rs"]
mod alloc_count;

mod allocations {
    mod amqp_alloc;
    mod amqp_hostile;
    mod fastcgi_alloc;
    mod metrics_alloc;
    mod resp_alloc;
    mod resp_hostile;
}
