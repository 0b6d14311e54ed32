//! What a `no_std` plugin needs from the SDK: an allocator, a panic handler,
//! `cabi_realloc`, and the C memory routines.

// `no_std` code on wasm32-wasip2 still calls `memcpy`, `memcmp`, `memset` and `memmove`,
// which `compiler_builtins` leaves to the C library on WASI targets. Link wasi-libc (it
// ships with the target, and std links it anyway): only those pure routines are pulled
// from the archive, and they import nothing.
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
#[link(name = "c")]
unsafe extern "C" {}

/// Install a global allocator (dlmalloc over a first heap in the plugin's own memory,
/// see [`Allocator`]), a panic handler that traps, and the
/// `cabi_realloc` export the component model calls to hand the plugin its arguments, for
/// a plugin that is `#![no_std]` on WebAssembly (on `wasm32-wasip2`, `std` defines
/// `cabi_realloc`; without `std` someone must). Invoke it once at the plugin's crate root:
///
/// ```ignore
/// #![cfg_attr(target_arch = "wasm32", no_std)]
/// extern crate alloc;
///
/// #[cfg(target_arch = "wasm32")]
/// tessera_plugin_sdk::no_std_runtime!();
/// ```
///
/// Why: Rust's `std` on `wasm32-wasip2` brings its runtime along: the panic machinery
/// prints to `wasi:cli/stderr`, and process start-up reads `wasi:cli/environment`, so
/// a `std` component imports WASI interfaces that Tessera worlds do not grant, and the
/// host refuses to load it. A `no_std` plugin imports only what it calls.
///
/// A panic becomes a trap (`unreachable`): the host fails that one call and, for a
/// router, rebuilds the instance. The panic message is not reported; return a
/// `PluginError` for anything a person should read.
#[macro_export]
macro_rules! no_std_runtime {
    () => {
        const _: () = {
            #[unsafe(no_mangle)]
            unsafe extern "C" fn cabi_realloc(
                old_ptr: *mut u8,
                old_len: usize,
                align: usize,
                new_len: usize,
            ) -> *mut u8 {
                unsafe { $crate::__private::cabi_realloc(old_ptr, old_len, align, new_len) }
            }
        };

        #[global_allocator]
        static TESSERA_PLUGIN_ALLOCATOR: $crate::__private::Allocator =
            $crate::__private::Allocator;

        #[panic_handler]
        fn tessera_plugin_panic(_info: &::core::panic::PanicInfo<'_>) -> ! {
            ::core::arch::wasm32::unreachable()
        }
    };
}

/// The body of the `cabi_realloc` that [`no_std_runtime!`] exports: the canonical ABI's
/// allocation entry point, over the global allocator.
///
/// # Safety
/// As `cabi_realloc` in the component model's canonical ABI: `old_ptr`/`old_len`/`align`
/// describe an allocation this function returned (or `old_len` is 0), and `align` is a
/// power of two.
#[doc(hidden)]
pub unsafe fn cabi_realloc(
    old_ptr: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    use alloc::alloc::{Layout, alloc, realloc};

    let ptr = unsafe {
        if old_len == 0 {
            if new_len == 0 {
                return align as *mut u8;
            }
            alloc(Layout::from_size_align_unchecked(new_len, align))
        } else {
            realloc(
                old_ptr,
                Layout::from_size_align_unchecked(old_len, align),
                new_len,
            )
        }
    };
    if ptr.is_null() {
        // Out of memory (the host's cap): trap, without pulling in formatting code.
        #[cfg(target_arch = "wasm32")]
        core::arch::wasm32::unreachable();
        #[cfg(not(target_arch = "wasm32"))]
        unreachable!("cabi_realloc: out of memory");
    }
    ptr
}

/// The global allocator [`no_std_runtime!`] installs: dlmalloc (the allocator `std` uses on
/// wasm), whose first 256 KiB of heap are a zeroed static of the plugin (so part of the
/// memory the instance starts with) instead of memory grown on the first allocation.
///
/// Why: the host runs routers on fresh or pooled instances, and growing memory is the
/// single most expensive thing a short call does there. A grown memory must be made
/// accessible (`mprotect`) and, when the pooled slot is reused, inaccessible again, which
/// flushes the TLB of every core the host process runs on. Measured with wasmtime 48 on
/// a fresh instance per call (1 task x 16 targets): 13.9 µs with dlmalloc growing memory,
/// about a third less with this first heap. Calls that need more than the first heap
/// grow memory as before.
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub struct Allocator;

#[cfg(target_arch = "wasm32")]
mod heap {
    use core::alloc::{GlobalAlloc, Layout};
    use core::cell::UnsafeCell;
    use core::ptr;
    use core::sync::atomic::{AtomicBool, Ordering};

    /// Bytes of the first heap (a multiple of the 64 KiB WebAssembly page, the unit
    /// dlmalloc asks for).
    const FIRST_HEAP: usize = 256 << 10;
    const PAGE: usize = 64 << 10;

    #[repr(C, align(16))]
    struct FirstHeap(UnsafeCell<[u8; FIRST_HEAP]>);

    // SAFETY: wasm32 plugins are single-threaded; only `System::alloc` hands the bytes
    // out, once.
    unsafe impl Sync for FirstHeap {}

    // Zeroed, so it is .bss: in the instance's initial memory but not in its data image.
    static FIRST: FirstHeap = FirstHeap(UnsafeCell::new([0; FIRST_HEAP]));
    static FIRST_GIVEN: AtomicBool = AtomicBool::new(false);

    /// Where dlmalloc gets its segments: the first heap once, then `memory.grow`.
    struct System;

    // SAFETY: the regions handed out are owned by dlmalloc from then on: the first heap
    // is handed out once, and grown pages are new.
    unsafe impl dlmalloc::Allocator for System {
        fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
            if size != 0 && size <= FIRST_HEAP && !FIRST_GIVEN.swap(true, Ordering::Relaxed) {
                return (FIRST.0.get().cast(), FIRST_HEAP, 0);
            }
            let pages = size.div_ceil(PAGE);
            let prev = core::arch::wasm32::memory_grow(0, pages);
            if prev == usize::MAX {
                return (ptr::null_mut(), 0, 0);
            }
            // A 32-bit memory never reaches the top of the address space (at most
            // 65536 pages), so the region cannot wrap.
            ((prev * PAGE) as *mut u8, pages * PAGE, 0)
        }

        fn remap(&self, _: *mut u8, _: usize, _: usize, _: bool) -> *mut u8 {
            ptr::null_mut()
        }

        fn free_part(&self, _: *mut u8, _: usize, _: usize) -> bool {
            false
        }

        fn free(&self, _: *mut u8, _: usize) -> bool {
            false
        }

        fn can_release_part(&self, _: u32) -> bool {
            false
        }

        fn allocates_zeros(&self) -> bool {
            // The first heap is zeroed .bss and grown pages are zero.
            true
        }

        fn page_size(&self) -> usize {
            PAGE
        }
    }

    struct Heap(UnsafeCell<dlmalloc::Dlmalloc<System>>);

    // SAFETY: wasm32 plugins are single-threaded (no `atomics` target feature).
    unsafe impl Sync for Heap {}

    static HEAP: Heap = Heap(UnsafeCell::new(dlmalloc::Dlmalloc::new_with_allocator(
        System,
    )));

    #[allow(clippy::mut_from_ref)]
    fn heap() -> &'static mut dlmalloc::Dlmalloc<System> {
        // SAFETY: single-threaded, and the `GlobalAlloc` methods below neither re-enter
        // nor keep the reference.
        unsafe { &mut *HEAP.0.get() }
    }

    // SAFETY: dlmalloc implements the `GlobalAlloc` contract; this only forwards.
    unsafe impl GlobalAlloc for super::Allocator {
        #[inline]
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            unsafe { heap().malloc(layout.size(), layout.align()) }
        }

        #[inline]
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { heap().free(ptr, layout.size(), layout.align()) }
        }

        #[inline]
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            unsafe { heap().calloc(layout.size(), layout.align()) }
        }

        #[inline]
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            unsafe { heap().realloc(ptr, layout.size(), layout.align(), new_size) }
        }
    }
}
