//! Small `StepModel`s with known probabilities, shared by the integration tests.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};

use candle_core::{Device, Result, Tensor};
use seqlab_decode::StepModel;

/// A bigram model: the logits of the next token are row `t` of a table, `t` the token fed.
pub struct Bigram {
    pub table: Vec<Vec<f32>>,
    pub steps: Cell<usize>,
}

impl Bigram {
    /// From next-token probabilities (row t: after token t); a probability 0 becomes logit -inf.
    pub fn from_probs(probs: &[&[f64]]) -> Bigram {
        let table = probs
            .iter()
            .map(|row| row.iter().map(|&p| p.ln() as f32).collect())
            .collect();
        Bigram {
            table,
            steps: Cell::new(0),
        }
    }

    /// Every step returns the same `logits`, whatever the token.
    pub fn fixed(logits: &[f32]) -> Bigram {
        Bigram {
            table: vec![logits.to_vec(); 1],
            steps: Cell::new(0),
        }
    }

    /// Next-token log-probabilities after `token`, computed independently of the crate.
    pub fn log_probs(&self, token: u32) -> Vec<f64> {
        log_softmax(self.row(token))
    }

    fn row(&self, token: u32) -> &[f32] {
        &self.table[(token as usize).min(self.table.len() - 1)]
    }
}

impl StepModel for Bigram {
    type State = ();

    fn step(&self, tokens: &Tensor, _state: &()) -> Result<(Tensor, ())> {
        self.steps.set(self.steps.get() + 1);
        let tokens = tokens.to_vec1::<u32>()?;
        let vocab = self.table[0].len();
        let logits: Vec<f32> = tokens.iter().flat_map(|&t| self.row(t).to_vec()).collect();
        Ok((
            Tensor::from_vec(logits, (tokens.len(), vocab), tokens_device())?,
            (),
        ))
    }

    fn select(&self, _state: &(), _indices: &Tensor) -> Result<()> {
        Ok(())
    }
}

fn tokens_device() -> &'static Device {
    &Device::Cpu
}

/// A model whose logits are a fixed pseudo-random function of the whole history: the state of each row is
/// a hash of everything fed so far, so wrong row bookkeeping (a bad `select`) changes the output.
pub struct HashTree {
    pub vocab: usize,
    /// Logits are uniform in [-spread, spread].
    pub spread: f32,
    pub steps: Cell<usize>,
    /// The `indices` of every `select` call.
    pub selects: RefCell<Vec<Vec<u32>>>,
}

impl HashTree {
    pub fn new(vocab: usize, spread: f32) -> HashTree {
        HashTree {
            vocab,
            spread,
            steps: Cell::new(0),
            selects: RefCell::new(Vec::new()),
        }
    }

    /// A state of `batch` rows starting from the given history hashes.
    pub fn state(starts: &[u32]) -> Tensor {
        Tensor::new(starts, &Device::Cpu).expect("a u32 vector is a tensor")
    }

    /// The history hash after feeding `token` in history `hash`.
    pub fn next_hash(hash: u32, token: u32) -> u32 {
        mix(u64::from(hash) << 32 | u64::from(token)) as u32
    }

    /// The logits after history `hash`.
    pub fn logits(&self, hash: u32) -> Vec<f32> {
        (0..self.vocab as u64)
            .map(|v| {
                let bits = mix(u64::from(hash) << 20 ^ v.wrapping_mul(0x9E37_79B9));
                let unit = (bits >> 40) as f32 / (1u64 << 24) as f32;
                self.spread * (2.0 * unit - 1.0)
            })
            .collect()
    }

    /// Replays `tokens` from `start` (feeding `first` first) with batch-1 arithmetic of our own, returning
    /// the log-probability of each token given its history.
    pub fn replay(&self, start: u32, first: u32, tokens: &[u32]) -> Vec<f64> {
        let mut hash = HashTree::next_hash(start, first);
        tokens
            .iter()
            .map(|&t| {
                let lp = log_softmax(&self.logits(hash))[t as usize];
                hash = HashTree::next_hash(hash, t);
                lp
            })
            .collect()
    }
}

impl StepModel for HashTree {
    type State = Tensor;

    fn step(&self, tokens: &Tensor, state: &Tensor) -> Result<(Tensor, Tensor)> {
        self.steps.set(self.steps.get() + 1);
        let tokens = tokens.to_vec1::<u32>()?;
        let hashes = state.to_vec1::<u32>()?;
        assert_eq!(tokens.len(), hashes.len(), "tokens and state rows differ");
        let next: Vec<u32> = hashes
            .iter()
            .zip(&tokens)
            .map(|(&h, &t)| HashTree::next_hash(h, t))
            .collect();
        let logits: Vec<f32> = next.iter().flat_map(|&h| self.logits(h)).collect();
        let batch = next.len();
        Ok((
            Tensor::from_vec(logits, (batch, self.vocab), state.device())?,
            Tensor::new(next.as_slice(), state.device())?,
        ))
    }

    fn select(&self, state: &Tensor, indices: &Tensor) -> Result<Tensor> {
        self.selects.borrow_mut().push(indices.to_vec1::<u32>()?);
        state.index_select(indices, 0)
    }
}

/// SplitMix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// log(softmax(logits)) in f64, with std's exp and ln (an oracle independent of the crate's arithmetic).
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let log_sum = logits
        .iter()
        .map(|&l| (l as f64 - max).exp())
        .sum::<f64>()
        .ln();
    logits.iter().map(|&l| l as f64 - max - log_sum).collect()
}

/// A (n,) u32 tensor on the CPU.
pub fn tokens(ids: &[u32]) -> Tensor {
    Tensor::new(ids, &Device::Cpu).expect("a u32 vector is a tensor")
}
