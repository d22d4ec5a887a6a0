//! A small pool of f32 buffers reused from one training step to the next.
//!
//! The fused recurrence needs a few large scratch and saved buffers per layer and step (the projected inputs,
//! the gate activations, their gradients: tens of megabytes at hidden 256). Fresh zeroed allocations cost a
//! pass over memory each (or page faults); the pool hands back buffers of the last step instead, with stale
//! contents: every user overwrites what it reads (see the kernels' comments where rows are skipped).

use std::sync::Mutex;

/// Buffers kept at most; beyond that the smallest are freed.
const MAX_BUFFERS: usize = 64;

static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// A buffer of `len` elements with unspecified (but initialised) contents.
pub(crate) fn take(len: usize) -> Vec<f32> {
    let found = POOL.lock().ok().and_then(|mut pool| {
        // The smallest buffer that is large enough.
        let best = pool
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= len)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i)?;
        Some(pool.swap_remove(best))
    });
    match found {
        Some(mut v) => {
            v.truncate(len);
            v.resize(len, 0.0);
            v
        }
        None => vec![0.0; len],
    }
}

/// Returns a buffer to the pool.
pub(crate) fn give(v: Vec<f32>) {
    if v.capacity() == 0 {
        return;
    }
    if let Ok(mut pool) = POOL.lock() {
        pool.push(v);
        if pool.len() > MAX_BUFFERS {
            if let Some((i, _)) = pool.iter().enumerate().min_by_key(|(_, v)| v.capacity()) {
                pool.swap_remove(i);
            }
        }
    }
}
