//! The few things every seqlab crate shares, with no dependency of their own: a seeded random stream
//! ([`SplitMix64`]) and one-line error messages ([`one_line`]).
//!
//! The main design decision: every random draw of seqlab — initial orders, dropout masks, a step's seed,
//! sampling — comes from one small, value-stable generator, so that the same seed gives the same numbers on
//! every platform and version, and a run is a pure function of its seed. SplitMix64 (Steele, Lea and
//! Flood 2014, the seeding generator of Java's `SplittableRandom`) is that generator: 64 bits of state,
//! a Weyl sequence through a 64-bit finaliser, and a stream that can be read at any index without
//! stepping through the ones before ([`SplitMix64::at`]).
//!
//! ```
//! use seqlab_base::SplitMix64;
//!
//! let mut a = SplitMix64::new(7);
//! let first = a.next_u64();
//! assert_eq!(first, SplitMix64::at(7, 1));
//! assert_eq!(a.next_u64(), SplitMix64::at(7, 2));
//! assert!((0.0..1.0).contains(&a.unit()));
//! ```
#![warn(missing_docs)]

/// SplitMix64: a tiny, value-stable random stream (the same numbers on every platform and version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

/// The Weyl increment: 2⁶⁴ divided by the golden ratio, odd.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl SplitMix64 {
    /// The stream from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix(self.state)
    }

    /// A uniform draw in [0, 1) with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A draw in `0..n` (n > 0) by the remainder (its bias, below n / 2⁶⁴, is negligible for the small n
    /// seqlab draws).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Output `index` (1-based) of the stream from `seed`, without stepping through the others:
    /// `SplitMix64::new(seed)`'s `index`-th [`SplitMix64::next_u64`]. `at(x, 1)` is a well-mixed 64-bit
    /// hash of `x`.
    pub fn at(seed: u64, index: u64) -> u64 {
        mix(seed.wrapping_add(index.wrapping_mul(GOLDEN)))
    }
}

/// SplitMix64's finaliser (a variant of MurmurHash3's): every input bit reaches every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A message flattened onto one line (runs of whitespace, line breaks included, become one space): how
/// every error of seqlab reaches a terminal.
pub fn one_line(message: impl std::fmt::Display) -> String {
    message
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_splitmix64() {
        // The first outputs of SplitMix64 from seed 1234567, as the reference C code gives them
        // (Vigna's splitmix64.c): 6457827717110365317, 3203168211198807973, 9817491932198370423.
        let mut rng = SplitMix64::new(1234567);
        assert_eq!(rng.next_u64(), 6457827717110365317);
        assert_eq!(rng.next_u64(), 3203168211198807973);
        assert_eq!(rng.next_u64(), 9817491932198370423);
        assert_eq!(SplitMix64::at(1234567, 3), 9817491932198370423);
    }

    #[test]
    fn messages_fold_onto_one_line() {
        assert_eq!(one_line("a\n  b\tc "), "a b c");
    }
}
