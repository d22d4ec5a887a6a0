//! Chunks of [`W`] lanes for the element-wise row math of the fused kernels.
//!
//! The rows are processed in chunks copied into local arrays: with a fixed trip count and no aliasing to
//! prove, LLVM turns each chunk's arithmetic into whole-vector instructions (a plain loop over a dozen slices
//! stayed scalar: 33% of a small LSTM's training step in profiles). Each cell's row math
//! ([`crate::cells`]) is written with [`chunks!`], [`load`] and [`store`].

/// Lanes per chunk: one AVX-512 register of f32.
pub(crate) const W: usize = 16;

/// One chunk.
pub(crate) type Lane = [f32; W];

/// Element `j..j + w` of `src` into a zero-padded chunk.
#[inline(always)]
pub(crate) fn load(src: &[f32], j: usize, w: usize) -> Lane {
    let mut a = [0.0; W];
    if w == W {
        a.copy_from_slice(&src[j..j + W]);
    } else {
        a[..w].copy_from_slice(&src[j..j + w]);
    }
    a
}

/// The first `w` lanes of `a` into `dst[j..j + w]`.
#[inline(always)]
pub(crate) fn store(dst: &mut [f32], j: usize, w: usize, a: &Lane) {
    if w == W {
        dst[j..j + W].copy_from_slice(a);
    } else {
        dst[j..j + w].copy_from_slice(&a[..w]);
    }
}

/// Runs `$body` for each chunk `$j..$j + $w` of `0..$n`. A macro rather than a function taking a closure:
/// closures are not inlined into the `#[target_feature]` callers, and then run without their vector width.
macro_rules! chunks {
    ($n:expr, |$j:ident, $w:ident| $body:block) => {{
        let n = $n;
        let mut $j = 0;
        while $j < n {
            let $w = (n - $j).min($crate::fused::lanes::W);
            $body
            $j += $w;
        }
    }};
}

pub(crate) use chunks;
