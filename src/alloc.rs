//! The process's allocator: mimalloc, entered through its plain `malloc` whenever that already
//! gives the alignment asked for.
//!
//! The `mimalloc` crate sends every allocation through `mi_malloc_aligned`, which takes
//! mimalloc's generic aligned path for any block over 1 KiB (request bodies, JSON buffers,
//! connection buffers): several hundred instructions each, where `mi_malloc` finds a block in a
//! few dozen (BENCHMARKS.md, "mimalloc entered through plain `malloc`"). Which entry serves
//! which layout is the rule the standard library keeps for the system allocator.
//!
//! The one place outside the wasm host that allows `unsafe`: a global allocator is an unsafe
//! trait over C calls, and nothing else here is unsafe.
#![allow(unsafe_code)]

use libmimalloc_sys as mi;
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// mimalloc as the global allocator.
pub struct Mimalloc;

/// The alignment of every `mi_malloc` block over 8 bytes (`MI_MAX_ALIGN_SIZE`: mimalloc's size
/// classes are whole multiples of 16 bytes from there, and a page's first block is aligned to
/// 16); blocks of 8 bytes or less are aligned to 8.
const PLAIN_ALIGN: usize = 16;

/// Whether plain `malloc` aligns a block of `size` bytes to `align`.
fn plain(align: usize, size: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

// SAFETY: every pointer handed out comes from mimalloc with at least the layout's size and
// alignment, and mimalloc frees and resizes any block it handed out, however it was asked for.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain C allocation calls; a null result is passed on as the failure it is.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (the caller's promise).
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout` (the caller's promise).
        unsafe {
            if plain(layout.align(), new_size) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a pattern into `size` bytes at `block`.
    unsafe fn fill(block: *mut u8, size: usize) {
        for i in 0..size {
            unsafe { *block.add(i) = i as u8 };
        }
    }

    /// Every layout comes back aligned as asked, zeroed memory is zero, and a block keeps its
    /// bytes when it grows or shrinks.
    #[test]
    fn blocks_are_aligned_as_asked_and_keep_their_bytes() {
        let allocator = Mimalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in [1, 3, 8, 15, 16, 17, 100, 1024, 1025, 5000, 70_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                unsafe {
                    let zeroed = allocator.alloc_zeroed(layout);
                    assert_eq!(zeroed as usize % align, 0, "zeroed {size} by {align}");
                    assert!(
                        std::slice::from_raw_parts(zeroed, size)
                            .iter()
                            .all(|&b| b == 0)
                    );
                    allocator.dealloc(zeroed, layout);

                    for new_size in [size * 3, size.div_ceil(2)] {
                        let block = allocator.alloc(layout);
                        assert_eq!(block as usize % align, 0, "{size} by {align}");
                        fill(block, size);
                        let moved = allocator.realloc(block, layout, new_size);
                        assert_eq!(moved as usize % align, 0, "{size} to {new_size} by {align}");
                        for i in 0..size.min(new_size) {
                            assert_eq!(*moved.add(i), i as u8, "byte {i}, {size} to {new_size}");
                        }
                        let resized = Layout::from_size_align(new_size, align).unwrap();
                        allocator.dealloc(moved, resized);
                    }
                }
            }
        }
    }
}
