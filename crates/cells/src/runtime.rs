//! Process-wide settings that the fused kernels' speed depends on.

/// Asks glibc's allocator to keep freed memory for reuse instead of returning it to the kernel.
///
/// A training step allocates and frees the same large buffers (activations, gradients: megabytes each) every
/// step. By default glibc serves such sizes with fresh `mmap`s and unmaps them on free, so every step pays
/// page faults and zeroing for all of them: 14–30% of a char model's step in profiles here. Raising the
/// mmap and trim thresholds makes the heap keep and reuse them. Call it once at the start of a program (the
/// `seqlab` binary and the benchmark do); elsewhere than Linux with glibc it does nothing.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // M_TRIM_THRESHOLD = -1, M_MMAP_THRESHOLD = -3 (malloc.h).
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // SAFETY: mallopt only changes allocator tunables; both values are valid for these parameters
        // (32 MiB is the largest mmap threshold glibc accepts on 64-bit; larger buffers are still mapped).
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
            mallopt(M_TRIM_THRESHOLD, i32::MAX);
        }
    }
}
