//! A counting global allocator for the tests that prove a path allocates nothing (or
//! nothing sized by the peer): it counts the allocations and the bytes asked for by the
//! current thread (libtest runs each test on its own thread, so tests do not see each
//! other's allocations), then hands the request to the system allocator.
//!
//! Including this module installs the allocator for the whole test binary, so only
//! `tests/allocations.rs` includes it: `#[path = "support/alloc.rs"] mod alloc_count;`.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The allocator: counts, then delegates to [`System`].
pub struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    static BYTES: Cell<usize> = const { Cell::new(0) };
}

fn count(size: usize) {
    // `try_with`: the thread-locals may be gone while a thread is being torn down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    let _ = BYTES.try_with(|n| n.set(n.get() + size));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A reallocation is an allocation of `new_size` bytes, as the default
        // `realloc` (alloc, copy, dealloc) would count it.
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (and reallocations) made by this thread so far.
pub fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

/// Bytes this thread asked the allocator for so far.
pub fn allocated_bytes() -> usize {
    BYTES.with(Cell::get)
}

/// How many allocations `f` made on this thread.
pub fn allocations_during(f: impl FnOnce()) -> usize {
    let before = allocations();
    f();
    allocations() - before
}
