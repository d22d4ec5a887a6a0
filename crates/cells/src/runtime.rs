//! Process-wide settings that the fused kernels' speed depends on.

/// Applies every setting below. Call it once, first thing in `main`, before any thread starts.
pub fn configure() {
    keep_freed_memory();
    short_candle_spin();
}

/// Makes candle's CPU worker threads park soon after each operation instead of spinning.
///
/// candle 0.11 runs element-wise ops on its own pool whose workers spin 25,000 times after each op before
/// they sleep. Between candle's ops the fused kernels and gemm want both cores, and a spinning worker takes
/// one from them (4% of a training step in profiles here). A user's own `CANDLE_BARRIER_POOL_SPIN_LIMIT`
/// wins. Must run before candle's first CPU op (the pool reads the variable when it starts).
pub fn short_candle_spin() {
    const VAR: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(VAR).is_none() {
        // Called at the start of `main`, before any other thread reads the environment.
        std::env::set_var(VAR, "500");
    }
}

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
