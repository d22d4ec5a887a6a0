//! minGRU, minLSTM and IndRNN, plain and in residual blocks: the fused scan against the composite reference
//! on random shapes with lengths and initial states (values and every gradient), decoding steps against the
//! whole sequence, padding that changes nothing, and the parameter names of the reference packages.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use seqlab_cells::{Block, CellKind, CellOptions, Recurrent, RecurrentConfig, State};

const CELLS: [CellKind; 3] = [CellKind::MinGru, CellKind::MinLstm, CellKind::IndRnn];

/// SplitMix64: the same cases on every machine.
struct Rng(seqlab_base::SplitMix64);

impl Rng {
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.0.below(hi - lo + 1)
    }
    fn coin(&mut self) -> bool {
        self.0.below(2) == 0
    }
    fn tensor(&mut self, shape: &[usize], lo: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| lo + (1.0 - lo) * self.0.unit() as f32)
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn options(block: Block, bound: Option<f32>) -> CellOptions {
    CellOptions {
        block,
        bound,
        ..CellOptions::default()
    }
}

#[test]
fn fused_scans_match_the_composite_path_on_random_shapes_with_lengths() {
    let mut rng = Rng(seqlab_base::SplitMix64::new(17));
    let mut worst = 0f32;
    for case in 0..36 {
        let cell = CELLS[case % 3];
        let block = if case % 6 < 3 {
            Block::Plain
        } else {
            Block::Residual
        };
        let config = RecurrentConfig {
            cell,
            input_size: rng.range(1, 9),
            hidden_size: rng.range(1, 20),
            num_layers: rng.range(1, 2),
            bidirectional: rng.coin(),
            bias: rng.coin(),
            options: options(block, rng.coin().then_some(0.9)),
            ..RecurrentConfig::default()
        };
        let (batch, seq) = (rng.range(1, 6), rng.range(1, 9));
        let lengths: Option<Vec<usize>> = rng
            .coin()
            .then(|| (0..batch).map(|_| rng.range(1, seq)).collect());
        let with_init = rng.coin();

        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let rnn = Recurrent::new(&config, vb).unwrap();
        let rows = config.state_rows();
        let xs = Var::from_tensor(&rng.tensor(&[batch, seq, config.input_size], -1.0)).unwrap();
        // States positive, as the log-space cells keep them (and as they come from zero).
        let h0 = Var::from_tensor(&rng.tensor(&[rows, batch, config.hidden_size], 0.0)).unwrap();
        let memory0: Vec<Var> = rnn
            .memory()
            .iter()
            .map(|slot| Var::from_tensor(&rng.tensor(&[rows, batch, slot.width], 0.0)).unwrap())
            .collect();
        let init = with_init.then(|| {
            State::new(
                h0.as_tensor().clone(),
                memory0.iter().map(|v| v.as_tensor().clone()).collect(),
            )
        });
        let r_out = rng.tensor(&[batch, seq, config.output_size()], -1.0);
        let r_h = rng.tensor(&[rows, batch, config.hidden_size], -1.0);

        let run = |fused: bool| {
            let (out, state) = if fused {
                rnn.forward(xs.as_tensor(), lengths.as_deref(), init.as_ref(), false)
            } else {
                rnn.forward_composite(xs.as_tensor(), lengths.as_deref(), init.as_ref(), false)
            }
            .unwrap();
            let mut loss = ((&out * &r_out).unwrap().sum_all().unwrap()
                + (&state.h * &r_h).unwrap().sum_all().unwrap())
            .unwrap();
            for m in &state.memory {
                loss = (loss + m.sum_all().unwrap()).unwrap();
            }
            let grads = loss.backward().unwrap();
            let mut tensors: HashMap<String, Tensor> = HashMap::new();
            tensors.insert("output".into(), out);
            tensors.insert("h_n".into(), state.h);
            for (k, m) in state.memory.into_iter().enumerate() {
                tensors.insert(format!("memory {k}"), m);
            }
            tensors.insert(
                "grad input".into(),
                grads.get(xs.as_tensor()).unwrap().clone(),
            );
            if with_init {
                // A residual block's h is its last output, which no step reads: no gradient then.
                if let Some(g) = grads.get(h0.as_tensor()) {
                    tensors.insert("grad h0".into(), g.clone());
                }
                for (k, m) in memory0.iter().enumerate() {
                    if let Some(g) = grads.get(m.as_tensor()) {
                        tensors.insert(format!("grad memory0 {k}"), g.clone());
                    }
                }
            }
            for (name, var) in varmap.data().lock().unwrap().iter() {
                if let Some(g) = grads.get(var.as_tensor()) {
                    tensors.insert(format!("grad {name}"), g.clone());
                }
            }
            tensors
        };
        let fused = run(true);
        let composite = run(false);
        assert_eq!(
            fused.keys().collect::<std::collections::BTreeSet<_>>(),
            composite.keys().collect(),
            "case {case}"
        );
        for (name, want) in &composite {
            let d = max_diff(&fused[name], want);
            let scale = want
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                .max(1.0);
            assert!(
                d <= 1e-5 * scale,
                "case {case} {config:?} batch {batch} seq {seq} lengths {lengths:?}: {name} differs by {d:e}"
            );
            worst = worst.max(d / scale);
        }
    }
    eprintln!("worst relative |fused - composite| over 36 random cases: {worst:.2e}");
}

#[test]
fn decoding_steps_compose_to_the_whole_sequence() {
    for cell in CELLS {
        for block in [Block::Plain, Block::Residual] {
            let config = RecurrentConfig {
                num_layers: 2,
                options: options(block, None),
                ..RecurrentConfig::new(cell, 5, 6)
            };
            let varmap = VarMap::new();
            let rnn = Recurrent::new(
                &config,
                VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
            )
            .unwrap();
            let mut rng = Rng(seqlab_base::SplitMix64::new(3));
            let xs = rng.tensor(&[3, 7, 5], -1.0);
            let (out, last) = rnn.forward(&xs, None, None, false).unwrap();
            let mut state = rnn.zero_state(3, DType::F32, &Device::Cpu).unwrap();
            for t in 0..7 {
                let x = xs.narrow(1, t, 1).unwrap().squeeze(1).unwrap();
                // The weights are variables here: the composite step (with autograd).
                let (y, next) = rnn.step(&x, &state).unwrap();
                let want = out.narrow(1, t, 1).unwrap().squeeze(1).unwrap();
                assert!(max_diff(&y, &want) < 1e-5, "{cell} {block:?} step {t}");
                state = next;
            }
            assert!(max_diff(&state.h, &last.h) < 1e-5);
            for (a, b) in state.memory.iter().zip(&last.memory) {
                assert!(max_diff(a, b) < 1e-5);
            }
            // Detached weights take the fused decoding step: the same numbers.
            let frozen = Recurrent::new(
                &config,
                VarBuilder::from_tensors(
                    varmap
                        .data()
                        .lock()
                        .unwrap()
                        .iter()
                        .map(|(n, v)| (n.clone(), v.as_tensor().detach()))
                        .collect(),
                    DType::F32,
                    &Device::Cpu,
                ),
            )
            .unwrap();
            let mut state = frozen.zero_state(3, DType::F32, &Device::Cpu).unwrap();
            for t in 0..7 {
                let x = xs.narrow(1, t, 1).unwrap().squeeze(1).unwrap();
                let (y, next) = frozen.step(&x, &state).unwrap();
                let want = out.narrow(1, t, 1).unwrap().squeeze(1).unwrap();
                assert!(
                    max_diff(&y, &want) < 1e-5,
                    "{cell} {block:?} fused step {t}"
                );
                state = next;
            }
        }
    }
}

#[test]
fn padding_does_not_change_a_row() {
    for cell in CELLS {
        for block in [Block::Plain, Block::Residual] {
            let config = RecurrentConfig {
                bidirectional: true,
                options: options(block, Some(1.0)),
                ..RecurrentConfig::new(cell, 4, 5)
            };
            let varmap = VarMap::new();
            let rnn = Recurrent::new(
                &config,
                VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
            )
            .unwrap();
            let mut rng = Rng(seqlab_base::SplitMix64::new(9));
            let xs = rng.tensor(&[2, 6, 4], -1.0);
            for fused in [true, false] {
                let run = |xs: &Tensor, lengths: Option<&[usize]>| {
                    if fused {
                        rnn.forward(xs, lengths, None, false).unwrap()
                    } else {
                        rnn.forward_composite(xs, lengths, None, false).unwrap()
                    }
                };
                let (padded, state) = run(&xs, Some(&[6, 3]));
                let (alone, alone_state) =
                    run(&xs.narrow(0, 1, 1).unwrap().narrow(1, 0, 3).unwrap(), None);
                let row = padded.narrow(0, 1, 1).unwrap().narrow(1, 0, 3).unwrap();
                assert!(
                    max_diff(&row, &alone) < 1e-5,
                    "{cell} {block:?} fused {fused}"
                );
                let rest = padded.narrow(0, 1, 1).unwrap().narrow(1, 3, 3).unwrap();
                assert_eq!(max_diff(&rest, &rest.zeros_like().unwrap()), 0.0);
                let h = state.h.narrow(1, 1, 1).unwrap();
                assert!(max_diff(&h, &alone_state.h) < 1e-5, "{cell} {block:?}");
            }
        }
    }
}

#[test]
fn parameters_are_named_as_the_reference_packages_name_them() {
    let names = |cell: CellKind, block: Block, bidirectional: bool| {
        let config = RecurrentConfig {
            bidirectional,
            options: options(block, None),
            ..RecurrentConfig::new(cell, 4, 6)
        };
        let varmap = VarMap::new();
        Recurrent::new(
            &config,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let data = varmap.data().lock().unwrap();
        let mut names: Vec<(String, Vec<usize>)> = data
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().dims().to_vec()))
            .collect();
        names.sort();
        names
    };
    let n = |s: &str, d: &[usize]| (s.to_string(), d.to_vec());
    assert_eq!(
        names(CellKind::MinGru, Block::Plain, true),
        [
            n("0.to_hidden_and_gate.weight", &[12, 4]),
            n("0_reverse.to_hidden_and_gate.weight", &[12, 4])
        ]
    );
    assert_eq!(
        names(CellKind::MinLstm, Block::Plain, false),
        [n("0.to_hidden_and_f_i_gate.weight", &[18, 4])]
    );
    assert_eq!(
        names(CellKind::IndRnn, Block::Plain, false),
        [
            n("bias_ih_l0", &[6]),
            n("weight_hh_l0", &[6]),
            n("weight_ih_l0", &[6, 4])
        ]
    );
    // minLM's layer: [conv, norm, cell, norm, mlp]; the cell 1.5 times as wide as the block (9 of 6).
    assert_eq!(
        names(CellKind::MinGru, Block::Residual, false),
        [
            n("0.1.weight", &[6]),
            n("0.2.to_hidden_and_gate.weight", &[18, 6]),
            n("0.2.to_out.weight", &[6, 9]),
            n("0.3.weight", &[6]),
            n("0.4.0.bias", &[24]),
            n("0.4.0.weight", &[24, 6]),
            n("0.4.2.bias", &[6]),
            n("0.4.2.weight", &[6, 24]),
            n("0.in_proj.weight", &[6, 4]),
        ]
    );
}

#[test]
fn indrnn_bound_clamps_the_recurrent_weights() {
    let config = RecurrentConfig {
        options: options(Block::Plain, Some(0.5)),
        ..RecurrentConfig::new(CellKind::IndRnn, 1, 1)
    };
    let tensors = HashMap::from([
        (
            "weight_ih_l0".to_string(),
            Tensor::new(&[[1f32]], &Device::Cpu).unwrap(),
        ),
        (
            "weight_hh_l0".to_string(),
            Tensor::new(&[3f32], &Device::Cpu).unwrap(),
        ),
        (
            "bias_ih_l0".to_string(),
            Tensor::new(&[0f32], &Device::Cpu).unwrap(),
        ),
    ]);
    let rnn = Recurrent::new(
        &config,
        VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let xs = Tensor::new(&[[[1f32], [0.0], [0.0]]], &Device::Cpu).unwrap();
    let (out, _) = rnn.forward(&xs, None, None, false).unwrap();
    // h = 1, then 0.5·1, then 0.5·0.5: u = 3 acts as 0.5.
    let v: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(v, [1.0, 0.5, 0.25]);
}
