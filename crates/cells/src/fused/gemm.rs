//! A bounds-checked wrapper over the `gemm` crate for matrices that live in slices with arbitrary strides.

use gemm::Parallelism;

/// A read-only strided matrix view: element (r, c) is `data[r * rs + c * cs]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major matrix with row stride `rs`.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize, rs: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs,
            cs: 1,
        }
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// `dst = lhs·rhs` (or `dst += lhs·rhs` with `accumulate`), `dst` row-major (m × n) with row stride `dst_rs`.
///
/// Panics if a view does not fit its slice or the shapes disagree: callers build the views from sizes they
/// checked, so a failure here is a bug in this crate, never a user's input.
pub(crate) fn matmul(
    dst: &mut [f32],
    dst_rs: usize,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    accumulate: bool,
    threads: usize,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "inner dimensions differ");
    assert!(lhs.fits() && rhs.fits(), "matrix view outside its slice");
    assert!(
        m == 0 || n == 0 || (m - 1) * dst_rs + n <= dst.len(),
        "destination outside its slice"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_rs..r * dst_rs + n].fill(0.0);
            }
        }
        return;
    }
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the asserts above keep every element the strides address inside its slice; `dst` is borrowed
    // mutably and so aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_and_transposed_products() {
        // lhs 2x3, rhs given as its transpose 2x3 → product 2x2.
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0, 0.0, -1.0, 2.0, 1.0, 0.0];
        let mut c = [0.0; 4];
        matmul(
            &mut c,
            2,
            MatRef::rows(&a, 2, 3, 3),
            MatRef::rows(&b, 2, 3, 3).t(),
            false,
            1,
        );
        assert_eq!(c, [-2.0, 4.0, -2.0, 13.0]);
        matmul(
            &mut c,
            2,
            MatRef::rows(&a, 2, 3, 3),
            MatRef::rows(&b, 2, 3, 3).t(),
            true,
            1,
        );
        assert_eq!(c, [-4.0, 8.0, -4.0, 26.0]);
    }
}
