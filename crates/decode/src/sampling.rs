//! Sampling as data: the [`Sampling`] rule, and a seeded [`Sampler`] that applies it to rows of logits.

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::pick::Picker;
use crate::{Error, Result};

/// How the next token is chosen from the model's logits.
///
/// Always taking the most likely token ([`Sampling::Greedy`]) makes text loop; sampling with a temperature
/// around 0.7–1.0 fixes that; a high temperature flattens the distribution into noise.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// The most likely token; ties go to the lower token id.
    Greedy,
    /// A random token from `softmax(logits / temperature)`, optionally truncated to the `top_k` most likely
    /// tokens and then to the smallest set whose probability mass reaches `top_p`, and renormalised.
    Sample {
        /// Divides the logits: below 1 sharpens the distribution, above 1 flattens it. 0 means greedy;
        /// negative, NaN and infinite values are errors.
        temperature: f64,
        /// Keep only the `k` most likely tokens (ties to the lower id); `None` keeps all. 0 is an error.
        top_k: Option<usize>,
        /// Keep only the smallest set of most likely tokens whose mass is at least `p` (never fewer than
        /// one token); `None` keeps all. Values outside (0, 1] are errors.
        top_p: Option<f64>,
    },
}

impl Sampling {
    /// Plain temperature sampling, without truncation.
    pub fn temperature(temperature: f64) -> Sampling {
        Sampling::Sample {
            temperature,
            top_k: None,
            top_p: None,
        }
    }

    /// Checks the parameters: temperature finite and >= 0, top-k >= 1, top-p in (0, 1].
    pub fn validate(&self) -> Result<()> {
        if let Sampling::Sample {
            temperature,
            top_k,
            top_p,
        } = *self
        {
            if !(temperature.is_finite() && temperature >= 0.0) {
                return Err(Error::InvalidTemperature(temperature));
            }
            if top_k == Some(0) {
                return Err(Error::InvalidTopK(0));
            }
            if let Some(p) = top_p {
                if !(p > 0.0 && p <= 1.0) {
                    return Err(Error::InvalidTopP(p));
                }
            }
        }
        Ok(())
    }

    /// Whether this always picks the most likely token (greedy, or temperature 0).
    pub fn is_greedy(&self) -> bool {
        match *self {
            Sampling::Greedy => true,
            Sampling::Sample { temperature, .. } => temperature == 0.0,
        }
    }
}

impl Default for Sampling {
    /// Temperature 1: the model's own distribution. Greedy is the wrong default for text, it loops.
    fn default() -> Self {
        Sampling::temperature(1.0)
    }
}

/// A seeded token sampler over rows of logits, for callers that run their own decoding loop.
///
/// It draws exactly what [`crate::generate()`] draws for row 0 with the same seed, sampling and banned tokens.
///
/// ```
/// use seqlab_decode::{Sampler, Sampling};
///
/// # fn main() -> seqlab_decode::Result<()> {
/// let logits = [2.0f32, 1.0, 0.5, -1.0];
/// let mut sampler = Sampler::new(Sampling::temperature(0.8), 42, &[0])?; // token 0 is never produced
/// let tokens: Vec<u32> = (0..8).map(|_| sampler.sample(&logits)).collect::<Result<_, _>>()?;
/// assert!(tokens.iter().all(|&t| t != 0));
/// // The same seed gives the same tokens.
/// let mut again = Sampler::new(Sampling::temperature(0.8), 42, &[0])?;
/// assert_eq!(tokens, (0..8).map(|_| again.sample(&logits)).collect::<Result<Vec<_>, _>>()?);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Sampler {
    picker: Picker,
    rng: ChaCha8Rng,
    row: Vec<f32>,
}

impl Sampler {
    /// A sampler with the given parameters and seed that never produces the `banned` token ids.
    pub fn new(sampling: Sampling, seed: u64, banned: &[u32]) -> Result<Sampler> {
        Ok(Sampler {
            picker: Picker::new(sampling, banned)?,
            rng: row_rng(seed, 0),
            row: Vec::new(),
        })
    }

    /// Chooses one token id from a row of logits (one per token of the vocabulary). Logits may be -inf
    /// (masked); NaN and +inf are errors, and so is a row where every token is banned or masked.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32> {
        self.row.clear();
        self.row.extend_from_slice(logits);
        self.picker.pick(&mut self.row, 0, &mut self.rng)
    }
}

/// The random stream of batch row `row`: ChaCha8 seeded from `seed`, stream number `row`. Rows draw
/// independently, so a row's tokens do not depend on when other rows finish.
pub(crate) fn row_rng(seed: u64, row: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(row as u64);
    rng
}
