//! [`Decoding`]: how a decoder chooses its tokens, for every pipeline.

use crate::{BeamConfig, Sampling};

/// How a decoder chooses its tokens: token after token by a sampling rule (greedy is one) from a seeded
/// stream, or the most probable sequence found by beam search. What `lm generate`, `translate run` and
/// `caption run` (and a server) take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decoding {
    /// Token after token by a sampling rule (greedy, temperature, top-k, top-p), its random draws from
    /// `seed`: the same seed gives the same output. Many sequences decode as one batch.
    Sample {
        /// The rule.
        sampling: Sampling,
        /// Seed of the random draws.
        seed: u64,
    },
    /// Beam search with `width` hypotheses and GNMT length normalisation `alpha`, one sequence at a time.
    Beam {
        /// Hypotheses kept.
        width: usize,
        /// Length-penalty exponent (0.6 is the usual choice; 0 ranks by raw log-probability).
        alpha: f64,
    },
}

impl Decoding {
    /// The most likely token at every step.
    pub const GREEDY: Decoding = Decoding::Sample {
        sampling: Sampling::Greedy,
        seed: 0,
    };

    /// Beam search of `width` hypotheses with the default length penalty ([`BeamConfig`]'s).
    pub fn beam(width: usize) -> Decoding {
        Decoding::Beam {
            width,
            alpha: BeamConfig::default().alpha,
        }
    }

    /// Whether this is greedy decoding (a beam of width 1 is).
    pub fn is_greedy(&self) -> bool {
        matches!(
            self,
            Decoding::Sample {
                sampling: Sampling::Greedy,
                ..
            } | Decoding::Beam { width: 1, .. }
        )
    }
}

impl std::fmt::Display for Decoding {
    /// `greedy`, `sample (temperature 0.8, top-k 40, top-p 0.9)` or `beam 5`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decoding::Sample {
                sampling: Sampling::Greedy,
                ..
            } => f.write_str("greedy"),
            Decoding::Sample {
                sampling:
                    Sampling::Sample {
                        temperature,
                        top_k,
                        top_p,
                    },
                ..
            } => {
                write!(f, "sample (temperature {temperature}")?;
                if let Some(k) = top_k {
                    write!(f, ", top-k {k}")?;
                }
                if let Some(p) = top_p {
                    write!(f, ", top-p {p}")?;
                }
                f.write_str(")")
            }
            Decoding::Beam { width, .. } => write!(f, "beam {width}"),
        }
    }
}
