//! The recurrent stack on its own: a two-layer LSTM learns a task that needs memory.
//!
//! Each input step is a random bit; the target at step t is `bit[t] XOR bit[t - delay]`. A network without
//! memory can do no better than chance (50%); the LSTM has to carry each bit for `delay` steps.
//!
//! Run: `cargo run --release --example recurrent_stack -- --delay 3 --steps 300`

use anyhow::Result;
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{linear, loss, AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use clap::Parser;
use seqlab::cells::{CellKind, Recurrent, RecurrentConfig};

#[derive(Parser, Debug)]
struct Args {
    /// Cell: rnn, lstm or gru.
    #[arg(long, default_value = "lstm")]
    cell: CellKind,
    /// How many steps back the second bit of the XOR lies.
    #[arg(long, default_value_t = 3)]
    delay: usize,
    /// Training steps.
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Units per layer.
    #[arg(long, default_value_t = 32)]
    hidden: usize,
    /// Seed of the data generator.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// A batch of random bits and their delayed-XOR targets, from a small deterministic generator.
fn batch(rng: &mut u64, batch: usize, seq_len: usize, delay: usize) -> Result<(Tensor, Tensor)> {
    let mut bits = Vec::with_capacity(batch * seq_len);
    for _ in 0..batch * seq_len {
        // SplitMix64
        *rng = rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        bits.push(((z ^ (z >> 31)) & 1) as u32);
    }
    let targets: Vec<u32> = (0..batch * seq_len)
        .map(|i| {
            let t = i % seq_len;
            if t >= delay {
                bits[i] ^ bits[i - delay]
            } else {
                bits[i]
            }
        })
        .collect();
    let xs = Tensor::from_vec(bits, (batch, seq_len), &Device::Cpu)?
        .to_dtype(DType::F32)?
        .unsqueeze(2)?;
    let ys = Tensor::from_vec(targets, batch * seq_len, &Device::Cpu)?;
    Ok((xs, ys))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let config = RecurrentConfig {
        num_layers: 2,
        ..RecurrentConfig::new(args.cell, 1, args.hidden)
    };
    let rnn = Recurrent::new(&config, vb.pp("rnn"))?;
    let head = linear(args.hidden, 2, vb.pp("head"))?;
    let mut opt = AdamW::new(
        varmap.all_vars(),
        ParamsAdamW {
            lr: 1e-2,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut rng = args.seed;
    let (batch_size, seq_len) = (32, 20);
    println!(
        "{} cell, 2 layers of {}, XOR with a delay of {}",
        args.cell, args.hidden, args.delay
    );
    for step in 1..=args.steps {
        let (xs, ys) = batch(&mut rng, batch_size, seq_len, args.delay)?;
        let (out, _) = rnn.forward(&xs, None, None, true)?;
        let logits = out
            .reshape((batch_size * seq_len, args.hidden))?
            .apply(&head)?;
        let loss = loss::cross_entropy(&logits, &ys)?;
        opt.backward_step(&loss)?;
        if step % 50 == 0 || step == 1 {
            let predicted = logits.argmax(D::Minus1)?;
            let correct = predicted.eq(&ys)?.to_dtype(DType::F32)?.mean_all()?;
            println!(
                "step {step:4}  loss {:.4}  accuracy {:5.1}%",
                loss.to_scalar::<f32>()?,
                100.0 * correct.to_scalar::<f32>()?
            );
        }
    }
    Ok(())
}
