//! What the fuzz targets share: an allocator that refuses any single allocation above
//! [`LIMIT`]. The targets run without a sanitizer (stable Rust), so libFuzzer's
//! `-malloc_limit_mb` cannot see allocations, and an oversized `Vec::with_capacity` that the
//! kernel's overcommit grants (and that is never touched) would go unnoticed; refused here, it
//! aborts as "memory allocation of N bytes failed" and libFuzzer saves the input.

use std::alloc::{GlobalAlloc, Layout, System};

/// No input of these targets (at most a few hundred KB) justifies more in one allocation.
pub const LIMIT: usize = 64 << 20;

pub struct LimitAlloc;

// SAFETY: every call is passed to `System` unchanged, or refused with a null pointer, which
// `GlobalAlloc` allows for any request.
unsafe impl GlobalAlloc for LimitAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > LIMIT { std::ptr::null_mut() } else { unsafe { System.alloc(layout) } }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > LIMIT { std::ptr::null_mut() } else { unsafe { System.alloc_zeroed(layout) } }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > LIMIT { std::ptr::null_mut() } else { unsafe { System.realloc(ptr, layout, new_size) } }
    }
}
