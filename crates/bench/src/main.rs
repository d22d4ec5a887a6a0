//! `seqlab-bench`: the training step and batch-1 generation of a char-level language model, timed the way
//! `../shared/bench/torch_rnn_bench.py` times PyTorch, printing the same CSV lines so that its driver
//! `run_all.py` compares the two directly.
//!
//! The work: one-hot input at hidden 64 (as in the lesson), an embedding of width hidden otherwise → LSTM or
//! GRU (hidden H, L layers, batch first) → linear to 96 → cross-entropy → Adam (lr 1e-3); random tokens from a
//! fixed seed.
//!
//! Run: `cargo run --release -p seqlab-bench -- [--only lstm-256-1] [--no-gen] [--no-train] [--rep N]`

use seqlab_base::SplitMix64;
use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{embedding, linear, Embedding, Linear, Module, VarBuilder, VarMap};
use clap::Parser;
use seqlab_cells::linear as fused_linear;
use seqlab_cells::{CellKind, Recurrent, RecurrentConfig, State};
use seqlab_train::{AdamW, AdamWConfig};

const VOCAB: usize = 96;
const IMPL: &str = "seqlab";
const HEADER: &str =
    "impl,rep,cell,H,L,batch,seq,input,mode,steps,tokens,seconds,tok_per_s,fwd_ms,bwd_ms,opt_ms";
/// (hidden, layers, batch, seq, train steps), as the PyTorch reference.
type Config = (usize, usize, usize, usize, usize);
const CONFIGS: [Config; 3] = [
    (64, 1, 64, 100, 60),
    (256, 1, 64, 100, 30),
    (512, 2, 32, 100, 6),
];
const WARMUP_STEPS: usize = 2;
const GEN_TOKENS: usize = 1000;
const GEN_WARMUP: usize = 50;
const PROMPT_LEN: usize = 20;

#[derive(Parser, Debug)]
#[command(about = "Char-level RNN LM training / generation throughput (seqlab, CPU)")]
struct Args {
    /// Repetition index written in the CSV.
    #[arg(long, default_value_t = 0)]
    rep: usize,
    /// Run one configuration only, e.g. lstm-256-1 (cell-hidden-layers).
    #[arg(long)]
    only: Option<String>,
    /// Cap of each training measurement, in seconds.
    #[arg(long, default_value_t = 8.0)]
    max_seconds: f64,
    /// Skip the generation measurements.
    #[arg(long)]
    no_gen: bool,
    /// Skip the training measurements.
    #[arg(long)]
    no_train: bool,
    /// Print the CSV header first.
    #[arg(long)]
    header: bool,
    /// Only probe the matrix-multiply rate (candle's matmul, i.e. the gemm crate) at the reference's shapes.
    #[arg(long)]
    gemm: bool,
    /// The cells to measure, comma-separated (any of the registry's).
    #[arg(long, value_delimiter = ',', default_value = "lstm,gru")]
    cells: Vec<CellKind>,
    /// Shapes HIDDEN-LAYERS instead of the reference's three (64-1, 256-1, 512-2), e.g. 256-1,512-2;
    /// batch 64 up to hidden 256, 32 above, as the reference.
    #[arg(long, value_delimiter = ',')]
    shapes: Vec<String>,
    /// Sequence length instead of 100 (the scaling table).
    #[arg(long)]
    seq: Option<usize>,
    /// Batch instead of the shape's.
    #[arg(long)]
    batch: Option<usize>,
}

/// The configurations of a run: the reference's, or the `--shapes` asked for.
fn configs(args: &Args) -> Result<Vec<Config>> {
    let mut configs: Vec<Config> = if args.shapes.is_empty() {
        CONFIGS.to_vec()
    } else {
        args.shapes
            .iter()
            .map(|shape| {
                let parse = || -> Option<(usize, usize)> {
                    let (h, l) = shape.split_once('-')?;
                    Some((h.parse().ok()?, l.parse().ok()?))
                };
                let Some((hidden, layers)) = parse() else {
                    bail!("--shapes {shape}: expected HIDDEN-LAYERS such as 256-1");
                };
                let batch = if hidden <= 256 { 64 } else { 32 };
                Ok((hidden, layers, batch, 100, 1_000_000))
            })
            .collect::<Result<_>>()?
    };
    for c in &mut configs {
        if let Some(seq) = args.seq {
            c.3 = seq;
        }
        if let Some(batch) = args.batch {
            c.2 = batch;
        }
    }
    Ok(configs)
}

/// (M, K, N) of the PyTorch reference's probe: 1024³ and each configuration's per-step x(B×H)·Wᵀ(H×gH).
const GEMM_SHAPES: [(usize, usize, usize); 7] = [
    (1024, 1024, 1024),
    (64, 64, 256),
    (64, 256, 1024),
    (32, 512, 2048),
    (64, 64, 192),
    (64, 256, 768),
    (32, 512, 1536),
];

/// GFLOP/s of `a·bᵀ` for each shape, as `torch_rnn_bench.py --gemm` measures it.
fn gemm_bench() -> Result<()> {
    let dev = Device::Cpu;
    for (m, k, n) in GEMM_SHAPES {
        let a = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
        let b = Tensor::randn(0f32, 1.0, (n, k), &dev)?.t()?;
        for _ in 0..3 {
            a.matmul(&b)?;
        }
        let mut iters = 0;
        let t0 = Instant::now();
        while t0.elapsed().as_secs_f64() < 0.5 {
            for _ in 0..10 {
                a.matmul(&b)?;
            }
            iters += 10;
        }
        let gflops = 2.0 * (m * k * n * iters) as f64 / t0.elapsed().as_secs_f64() / 1e9;
        println!(
            "# seqlab gemm {m}x{k}x{n} f32 threads={}: {gflops:.1} GFLOP/s",
            candle_core::utils::get_num_threads()
        );
    }
    Ok(())
}

/// The benchmark's model: (one-hot | embedding) → recurrent stack → linear head.
struct CharModel {
    embedding: Option<Embedding>,
    rnn: Recurrent,
    head: Linear,
}

impl CharModel {
    fn new(cell: CellKind, hidden: usize, layers: usize, vb: VarBuilder) -> Result<Self> {
        let one_hot = hidden == 64;
        let embedding = if one_hot {
            None
        } else {
            Some(embedding(VOCAB, hidden, vb.pp("embedding"))?)
        };
        let input = if one_hot { VOCAB } else { hidden };
        let config = RecurrentConfig {
            num_layers: layers,
            ..RecurrentConfig::new(cell, input, hidden)
        };
        Ok(Self {
            embedding,
            rnn: Recurrent::new(&config, vb.pp("rnn"))?,
            head: linear(hidden, VOCAB, vb.pp("head"))?,
        })
    }

    /// ids (batch, seq) u32 → logits (batch, seq, vocab) and the final state.
    ///
    /// The input goes through `Recurrent::forward_one_hot` or `Recurrent::forward_embedded`, which fold the
    /// one-hot rows or the embedding lookup into layer 0's input projection (the same numbers; `seqlab lm
    /// train` does the same).
    fn forward(&self, ids: &Tensor, state: Option<&State>) -> Result<(Tensor, State)> {
        let (out, state) = match &self.embedding {
            Some(e) => self
                .rnn
                .forward_embedded(ids, e.embeddings(), None, state, true)?,
            None => self.rnn.forward_one_hot(ids, None, state, true)?,
        };
        let logits = fused_linear(&out, self.head.weight(), self.head.bias())?;
        Ok((logits, state))
    }
}

impl CharModel {
    /// One generation step: ids (batch,) u32 → logits (batch, vocab) and the next state.
    fn step(&self, ids: &Tensor, state: &State) -> Result<(Tensor, State)> {
        let xs = match &self.embedding {
            Some(e) => e.forward(ids)?,
            None => one_hot(&ids.unsqueeze(1)?)?.squeeze(1)?,
        };
        let (out, state) = self.rnn.step(&xs, state)?;
        let logits = fused_linear(&out, self.head.weight(), self.head.bias())?;
        Ok((logits, state))
    }
}

fn one_hot(ids: &Tensor) -> Result<Tensor> {
    let (b, t) = ids.dims2()?;
    let ids = ids.flatten_all()?.to_vec1::<u32>()?;
    let mut v = vec![0f32; b * t * VOCAB];
    for (i, id) in ids.iter().enumerate() {
        v[i * VOCAB + *id as usize] = 1.0;
    }
    Ok(Tensor::from_vec(v, (b, t, VOCAB), &Device::Cpu)?)
}

/// A small deterministic generator (SplitMix64), so the token pool is the same on every run.
struct Rng(SplitMix64);

impl Rng {
    fn below(&mut self, n: usize) -> u32 {
        self.0.below(n) as u32
    }
    fn unit(&mut self) -> f32 {
        (self.0.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn input_name(hidden: usize) -> &'static str {
    if hidden == 64 {
        "onehot"
    } else {
        "embed"
    }
}

#[allow(clippy::too_many_arguments)]
fn train_bench(
    cell: CellKind,
    hidden: usize,
    layers: usize,
    batch: usize,
    seq: usize,
    steps: usize,
    rep: usize,
    max_seconds: f64,
) -> Result<()> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = CharModel::new(cell, hidden, layers, vb)?;
    // The optimizer `seqlab lm train` uses: AdamW on the parameters' raw buffers (weight decay 0 = Adam, as
    // the reference's torch.optim.Adam).
    let params = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("the parameter map is poisoned"))?
        .clone();
    let mut opt = AdamW::new(
        params,
        AdamWConfig {
            lr: 1e-3,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut rng = Rng(SplitMix64::new(1234));
    let pool: Vec<Tensor> = (0..4)
        .map(|_| {
            let v: Vec<u32> = (0..batch * (seq + 1)).map(|_| rng.below(VOCAB)).collect();
            Tensor::from_vec(v, (batch, seq + 1), &Device::Cpu)
        })
        .collect::<candle_core::Result<_>>()?;
    let mut one_step = |i: usize| -> Result<(f64, f64, f64)> {
        let data = &pool[i % pool.len()];
        let xs = data.narrow(1, 0, seq)?;
        let ys = data.narrow(1, 1, seq)?.flatten_all()?;
        let t0 = Instant::now();
        let (logits, _) = model.forward(&xs, None)?;
        let loss = seqlab_cells::cross_entropy(&logits.reshape((batch * seq, VOCAB))?, &ys, None)?;
        let t1 = Instant::now();
        let grads = loss.backward()?;
        let t2 = Instant::now();
        opt.step(&grads, 1e-3, 1.0)?;
        let t3 = Instant::now();
        Ok((
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t3 - t2).as_secs_f64(),
        ))
    };
    for i in 0..WARMUP_STEPS {
        one_step(i)?;
    }
    let (mut fwd, mut bwd, mut optt) = (0.0, 0.0, 0.0);
    let mut n = 0;
    let start = Instant::now();
    while n < steps {
        let (a, b, c) = one_step(n)?;
        fwd += a;
        bwd += b;
        optt += c;
        n += 1;
        if start.elapsed().as_secs_f64() > max_seconds {
            break;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let tokens = batch * seq * n;
    let nf = n as f64;
    println!(
        "{IMPL},{rep},{cell},{hidden},{layers},{batch},{seq},{},train,{n},{tokens},{elapsed:.4},{:.1},{:.3},{:.3},{:.3}",
        input_name(hidden),
        tokens as f64 / elapsed,
        1e3 * fwd / nf,
        1e3 * bwd / nf,
        1e3 * optt / nf
    );
    Ok(())
}

fn gen_bench(cell: CellKind, hidden: usize, layers: usize, rep: usize) -> Result<()> {
    // Generation needs no gradients: plain tensors (not variables), as a model loaded from a file has, which
    // lets the recurrent stack take its fused step (PyTorch's side runs under `torch.no_grad()`).
    let varmap = VarMap::new();
    CharModel::new(
        cell,
        hidden,
        layers,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )?;
    let plain = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("the parameter map is poisoned"))?
        .iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().detach()))
        .collect();
    let model = CharModel::new(
        cell,
        hidden,
        layers,
        VarBuilder::from_tensors(plain, DType::F32, &Device::Cpu),
    )?;
    let mut rng = Rng(SplitMix64::new(42));
    let prompt: Vec<u32> = (0..PROMPT_LEN).map(|_| rng.below(VOCAB)).collect();
    let prompt = Tensor::from_vec(prompt, (1, PROMPT_LEN), &Device::Cpu)?;
    let mut run = |ntok: usize| -> Result<Vec<u32>> {
        let (logits, mut state) = model.forward(&prompt, None)?;
        let mut logits = logits.get(0)?.get(PROMPT_LEN - 1)?;
        let mut tokens = Vec::with_capacity(ntok);
        for _ in 0..ntok {
            let probs = candle_nn::ops::softmax(&(logits / 0.8)?, D::Minus1)?.to_vec1::<f32>()?;
            let u = rng.unit();
            let mut acc = 0.0;
            let mut next = (VOCAB - 1) as u32;
            for (i, p) in probs.iter().enumerate() {
                acc += p;
                if u < acc {
                    next = i as u32;
                    break;
                }
            }
            tokens.push(next);
            let ids = Tensor::new(&[next], &Device::Cpu)?;
            let (out, s) = model.step(&ids, &state)?;
            state = s;
            logits = out.get(0)?;
        }
        Ok(tokens)
    };
    run(GEN_WARMUP)?;
    let t0 = Instant::now();
    run(GEN_TOKENS)?;
    let elapsed = t0.elapsed().as_secs_f64();
    println!(
        "{IMPL},{rep},{cell},{hidden},{layers},1,1,{},gen,{GEN_TOKENS},{GEN_TOKENS},{elapsed:.4},{:.1},,,",
        input_name(hidden),
        GEN_TOKENS as f64 / elapsed
    );
    Ok(())
}

/// The process's peak resident memory in MiB (VmHWM), where /proc exists.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() -> Result<()> {
    let args = Args::parse();
    seqlab_cells::runtime::configure();
    println!(
        "# seqlab {} threads={} avx512f={}",
        env!("CARGO_PKG_VERSION"),
        candle_core::utils::get_num_threads(),
        cfg!(target_arch = "x86_64") && std::is_x86_feature_detected!("avx512f"),
    );
    if args.gemm {
        return gemm_bench();
    }
    if args.header {
        println!("{HEADER}");
    }
    let mut matched = false;
    let configs = configs(&args)?;
    for &cell in &args.cells {
        for &(hidden, layers, batch, seq, steps) in &configs {
            let name = format!("{cell}-{hidden}-{layers}");
            if args.only.as_ref().is_some_and(|o| *o != name) {
                continue;
            }
            matched = true;
            if !args.no_train {
                train_bench(
                    cell,
                    hidden,
                    layers,
                    batch,
                    seq,
                    steps,
                    args.rep,
                    args.max_seconds,
                )?;
            }
            if !args.no_gen {
                gen_bench(cell, hidden, layers, args.rep)?;
            }
            if let Some(mib) = peak_rss_mib() {
                println!("# {name} peak_rss_mib={mib:.1}");
            }
        }
    }
    if !matched {
        bail!(
            "--only {}: no such configuration (expected lstm|gru-64-1, -256-1 or -512-2)",
            args.only.unwrap_or_default()
        );
    }
    Ok(())
}
