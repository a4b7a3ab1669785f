//! The single-threaded mio reactor (issue 3): connections in a slab, timers, signals.
//! See `docs/ARCHITECTURE.md`.
