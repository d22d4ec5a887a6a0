//! Per-token overhead of decoding, beside the model's own step: batch-1 generation with a 64-unit LSTM-like
//! candle model (embedding, two (1,64) matrix products into four gates, a head onto the vocabulary).
//!
//! ```text
//! cargo bench -p seqlab-decode --bench overhead [-- --steps N --repeats R]
//! ```
//!
//! For a character-sized vocabulary and a word-sized one (nearly flat logits, and logits with a Zipf
//! prior like a trained word model) it prints the median microseconds per token of the bare step loop (the
//! model alone) and of `generate` with each sampling rule, their difference (the overhead: logits copy,
//! sampling, stop checks, the next token's tensor; runs are interleaved and the overhead is the median of
//! per-repeat differences), and the `Sampler` alone on one logits row.
//!
//! Measured on one core of an Intel Xeon (`RAYON_NUM_THREADS=1 taskset -c 5`, `--steps 2000
//! --repeats 9`, two runs), microseconds per token:
//!
//! ```text
//! vocab 96:              step 13.6-14.4   overhead: greedy 0.9-1.1, T 0.8 1.0-1.4, top-k 40 1.5-2.1, top-p 0.9 2.1-2.6
//! vocab 10000 (flat):    step 148-151     overhead: greedy 2.8-4.7, T 0.8 44-45,   top-k 40 48,      top-p 0.9 100-109
//! vocab 10000 (Zipf 1):  step 135-141     overhead: greedy 2.0-4.1, T 0.8 40-41,   top-k 40 40-44,   top-p 0.9 63-69
//! ```

use std::hint::black_box;
use std::ops::ControlFlow;
use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor};
use seqlab_decode::{generate, GenerateConfig, Sampler, Sampling, StepModel};

const HIDDEN: usize = 64;

/// An LSTM cell (PyTorch's gate order i, f, g, o) with an embedding and an output head; deterministic
/// weights, as in candle's tests.
struct TinyLstm {
    embedding: Tensor,
    w_ih_t: Tensor,
    w_hh_t: Tensor,
    bias: Tensor,
    head_t: Tensor,
    head_bias: Tensor,
}

#[derive(Clone)]
struct LstmState {
    /// (batch, hidden)
    h: Tensor,
    /// (batch, hidden)
    c: Tensor,
}

/// A (rows, cols) matrix of `cos(k) * scale`.
fn weights(rows: usize, cols: usize, offset: usize, scale: f64, device: &Device) -> Result<Tensor> {
    let n = (rows * cols) as u32;
    let k = Tensor::arange(offset as u32, offset as u32 + n, device)?.to_dtype(DType::F32)?;
    (k.cos()? * scale)?.reshape((rows, cols))
}

impl TinyLstm {
    /// `zipf` adds `-zipf * ln(1 + id)` to the head's bias: 0 leaves the nearly flat logits of an untrained
    /// model (the worst case for top-p), about 1 gives the long-tailed distribution of a trained word
    /// model (Zipf's law).
    fn new(vocab: usize, zipf: f64, device: &Device) -> Result<TinyLstm> {
        let ranks = Tensor::arange(1u32, vocab as u32 + 1, device)?.to_dtype(DType::F32)?;
        let prior = (ranks.log()? * -zipf)?;
        let scale = 1.0 / (HIDDEN as f64).sqrt();
        Ok(TinyLstm {
            embedding: weights(vocab, HIDDEN, 0, 1.0, device)?,
            w_ih_t: weights(HIDDEN, 4 * HIDDEN, 1, scale, device)?,
            w_hh_t: weights(HIDDEN, 4 * HIDDEN, 2, scale, device)?,
            bias: weights(1, 4 * HIDDEN, 3, scale, device)?.squeeze(0)?,
            head_t: weights(HIDDEN, vocab, 4, 3.0 * scale, device)?,
            head_bias: (weights(1, vocab, 5, 0.1, device)?.squeeze(0)? + prior)?,
        })
    }

    fn zero_state(&self, batch: usize, device: &Device) -> Result<LstmState> {
        let zeros = Tensor::zeros((batch, HIDDEN), DType::F32, device)?;
        Ok(LstmState {
            h: zeros.clone(),
            c: zeros,
        })
    }
}

fn sigmoid(xs: &Tensor) -> Result<Tensor> {
    ((xs * 0.5)?.tanh()? * 0.5)? + 0.5
}

impl StepModel for TinyLstm {
    type State = LstmState;

    fn step(&self, tokens: &Tensor, state: &LstmState) -> Result<(Tensor, LstmState)> {
        let xs = self.embedding.index_select(tokens, 0)?;
        let gates = (xs.matmul(&self.w_ih_t)? + state.h.matmul(&self.w_hh_t)?)?
            .broadcast_add(&self.bias)?;
        let gates = gates.chunk(4, 1)?;
        let (i, f) = (sigmoid(&gates[0])?, sigmoid(&gates[1])?);
        let (g, o) = (gates[2].tanh()?, sigmoid(&gates[3])?);
        let c = ((f * &state.c)? + (i * g)?)?;
        let h = (o * c.tanh()?)?;
        let logits = h.matmul(&self.head_t)?.broadcast_add(&self.head_bias)?;
        Ok((logits, LstmState { h, c }))
    }

    fn select(&self, state: &LstmState, indices: &Tensor) -> Result<LstmState> {
        Ok(LstmState {
            h: state.h.index_select(indices, 0)?,
            c: state.c.index_select(indices, 0)?,
        })
    }
}

/// Microseconds per step of `run(steps)`.
fn time_us(steps: usize, run: impl FnOnce(usize) -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let start = Instant::now();
    run(steps)?;
    Ok(start.elapsed().as_secs_f64() * 1e6 / steps as f64)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn arg(name: &str, default: usize) -> anyhow::Result<usize> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => {
            let value = args
                .get(i + 1)
                .ok_or_else(|| anyhow::anyhow!("{name} needs a value"))?;
            Ok(value.parse()?)
        }
        None => Ok(default),
    }
}

fn main() -> anyhow::Result<()> {
    let steps = arg("--steps", 2000)?;
    let repeats = arg("--repeats", 7)?;
    let device = Device::Cpu;
    let rules = [
        ("greedy", Sampling::Greedy),
        ("temperature 0.8", Sampling::temperature(0.8)),
        (
            "T 0.8, top-k 40",
            Sampling::Sample {
                temperature: 0.8,
                top_k: Some(40),
                top_p: None,
            },
        ),
        (
            "T 0.8, top-p 0.9",
            Sampling::Sample {
                temperature: 0.8,
                top_k: None,
                top_p: Some(0.9),
            },
        ),
    ];
    println!("batch 1, hidden {HIDDEN}, {steps} steps x {repeats} repeats, median microseconds per token");

    for (vocab, zipf) in [(96, 0.0), (10_000, 0.0), (10_000, 1.0)] {
        let model = TinyLstm::new(vocab, zipf, &device)?;
        let first = Tensor::new(&[1u32], &device)?;
        let (logits, _) = model.step(&first, &model.zero_state(1, &device)?)?;
        let row = logits.squeeze(0)?.to_vec1::<f32>()?;
        // exp(entropy) of softmax(logits): how many tokens the first step's distribution is spread over.
        let perplexity = {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let ws: Vec<f64> = row.iter().map(|&l| f64::from(l - max).exp()).collect();
            let total: f64 = ws.iter().sum();
            let entropy: f64 = ws
                .iter()
                .map(|w| w / total)
                .filter(|&p| p > 0.0)
                .map(|p| -p * p.ln())
                .sum();
            entropy.exp()
        };
        // The bare loop (`None`) and `generate` with each rule, interleaved within every repeat so that a
        // slow moment of the machine hits all alike; overheads are medians of per-repeat differences.
        let run = |sampling: Option<Sampling>, n: usize| {
            time_us(n, |n| {
                let state = model.zero_state(1, &device)?;
                match sampling {
                    None => {
                        let mut state = state;
                        for _ in 0..n {
                            let (logits, next) = model.step(&first, &state)?;
                            black_box(&logits);
                            state = next;
                        }
                    }
                    Some(sampling) => {
                        let config = GenerateConfig {
                            sampling,
                            seed: 1,
                            max_len: n,
                            banned: vec![0],
                            ..Default::default()
                        };
                        let out = generate(&model, &first, state, &config, |_, token| {
                            black_box(token);
                            ControlFlow::Continue(())
                        })?;
                        black_box(out);
                    }
                }
                Ok(())
            })
        };
        let variants: Vec<Option<Sampling>> = std::iter::once(None)
            .chain(rules.iter().map(|&(_, s)| Some(s)))
            .collect();
        for &variant in &variants {
            run(variant, steps.min(100))?; // warm up
        }
        let mut times = vec![Vec::with_capacity(repeats); variants.len()];
        for _ in 0..repeats {
            for (times, &variant) in times.iter_mut().zip(&variants) {
                times.push(run(variant, steps)?);
            }
        }
        let bare = median(times[0].clone());
        println!(
            "\nvocab {vocab}, first-step perplexity {perplexity:.0}: model step alone {bare:.2} us/token"
        );
        println!(
            "{:<18} {:>10} {:>10} {:>10} {:>12}",
            "sampling", "generate", "overhead", "share", "sampler only"
        );
        for ((name, sampling), rule_times) in rules.iter().zip(&times[1..]) {
            let total = median(rule_times.clone());
            let differences = rule_times.iter().zip(&times[0]).map(|(t, b)| t - b);
            let overhead = median(differences.collect());
            let mut sampler = Sampler::new(*sampling, 1, &[0])?;
            let sampler_only = median(
                (0..repeats)
                    .map(|_| {
                        time_us(steps, |n| {
                            for _ in 0..n {
                                black_box(sampler.sample(black_box(&row))?);
                            }
                            Ok(())
                        })
                    })
                    .collect::<anyhow::Result<Vec<f64>>>()?,
            );
            println!(
                "{name:<18} {total:>10.2} {overhead:>10.2} {:>9.1}% {sampler_only:>12.2}",
                100.0 * overhead / total
            );
        }
    }
    Ok(())
}
