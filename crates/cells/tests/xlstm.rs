//! xLSTM blocks against their oracle, the authors' package `xlstm` (`tests/reference/make_xlstm_fixtures.py`:
//! an sLSTM block, an mLSTM block and a stack [m, s, m], float64), and against themselves: the fused sLSTM
//! kernel against the composite graph, the mLSTM's parallel form against its recurrent step, a sequence in
//! pieces against the whole, rows of different lengths against each row alone.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use seqlab_base::SplitMix64;
use seqlab_cells::{CellKind, CellOptions, Recurrent, RecurrentConfig, State};

fn fixture(name: &str) -> HashMap<String, Tensor> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/xlstm")
        .join(format!("{name}.safetensors"));
    candle_core::safetensors::load(&path, &Device::Cpu).expect("fixture loads")
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap())
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

fn scale(a: &Tensor) -> f64 {
    a.to_dtype(DType::F64)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
        .max(1.0)
}

fn config(cell: CellKind, width: usize, layers: usize, pattern: Option<&str>) -> RecurrentConfig {
    RecurrentConfig {
        num_layers: layers,
        options: CellOptions {
            heads: 4,
            pattern: pattern.map(str::to_string),
            ..CellOptions::default()
        },
        ..RecurrentConfig::new(cell, width, width)
    }
}

/// Runs fixture `name` through `config` in `dtype` on the fused or composite path; returns the worst
/// difference relative to each tensor's scale, over the output and every gradient.
fn golden(name: &str, config: &RecurrentConfig, dtype: DType, fused: bool) -> f64 {
    let t = fixture(name);
    let reserved = ["input", "output", "r_output"];
    let vars: HashMap<String, Var> = t
        .iter()
        .filter(|(k, _)| !k.starts_with("grad.") && !reserved.contains(&k.as_str()))
        .map(|(k, v)| {
            (
                k.clone(),
                Var::from_tensor(&v.to_dtype(dtype).unwrap()).unwrap(),
            )
        })
        .collect();
    let vb = VarBuilder::from_tensors(
        vars.iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect(),
        dtype,
        &Device::Cpu,
    );
    let rnn = Recurrent::new(config, vb).expect("builds from the package's names");
    let xs = Var::from_tensor(&t["input"].to_dtype(dtype).unwrap()).unwrap();
    let (out, _) = if fused {
        rnn.forward(xs.as_tensor(), None, None, false)
    } else {
        rnn.forward_composite(xs.as_tensor(), None, None, false)
    }
    .unwrap();
    let r = t["r_output"].to_dtype(dtype).unwrap();
    let grads = (&out * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let mut worst = 0f64;
    let mut compare = |what: &str, got: &Tensor, want: &Tensor| {
        let d = max_diff(got, want) / scale(want);
        if std::env::var_os("SEQLAB_XLSTM_DEBUG").is_some() {
            eprintln!("{name} {dtype:?} fused={fused} {what}: {d:.1e}");
        }
        worst = worst.max(d);
        d
    };
    compare("output", &out, &t["output"]);
    let gx = grads.get(xs.as_tensor()).expect("input gradient");
    compare("grad.input", gx, &t["grad.input"]);
    for (k, v) in &vars {
        let g = grads
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient for {k}"));
        let d = compare(k, g, &t[&format!("grad.{k}")]);
        assert!(d.is_finite(), "{name}: gradient of {k} is not finite");
    }
    worst
}

#[test]
fn blocks_match_the_xlstm_package() {
    let cases = [
        ("slstm_block", config(CellKind::Slstm, 16, 1, None)),
        ("mlstm_block", config(CellKind::Mlstm, 16, 1, None)),
        ("stack_msm", config(CellKind::Xlstm, 16, 3, Some("m,s,m"))),
    ];
    for (name, config) in &cases {
        let f64_composite = golden(name, config, DType::F64, false);
        let f32_fused = golden(name, config, DType::F32, true);
        let f32_composite = golden(name, config, DType::F32, false);
        eprintln!(
            "{name}: f64 composite {f64_composite:.1e}, f32 fused {f32_fused:.1e}, f32 composite {f32_composite:.1e}"
        );
        assert!(
            f64_composite < 1e-5,
            "{name}: f64 composite off by {f64_composite:e}"
        );
        assert!(f32_fused < 1e-4, "{name}: f32 fused off by {f32_fused:e}");
        assert!(
            f32_composite < 1e-4,
            "{name}: f32 composite off by {f32_composite:e}"
        );
    }
}

struct Rng(SplitMix64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        (self.0.next_u64() % n as u64) as usize
    }
    fn tensor(&mut self, shape: &[usize], lo: f32, hi: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| lo + (hi - lo) * (self.0.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }
}

/// A stack of `config` with every parameter moved off its initial value (zeros hide terms).
fn random_stack(config: &RecurrentConfig, rng: &mut Rng) -> (Recurrent, VarMap) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let rnn = Recurrent::new(config, vb).unwrap();
    // Every value from the seeded generator (candle's own initialisers are not seeded): around the
    // initial value's scale, off every zero.
    for var in sorted_vars(&varmap) {
        var.set(&rng.tensor(var.dims(), -0.5, 0.5)).unwrap();
    }
    (rnn, varmap)
}

/// The same stack in float64, with the same parameters.
fn twin_f64(config: &RecurrentConfig, varmap: &VarMap) -> (Recurrent, VarMap) {
    let twin = VarMap::new();
    let vb = VarBuilder::from_varmap(&twin, DType::F64, &Device::Cpu);
    let rnn = Recurrent::new(config, vb).unwrap();
    {
        let src = varmap.data().lock().unwrap();
        let dst = twin.data().lock().unwrap();
        for (name, var) in dst.iter() {
            var.set(&src[name].as_tensor().to_dtype(DType::F64).unwrap())
                .unwrap();
        }
    }
    (rnn, twin)
}

fn state_f64(s: &State) -> State {
    let f = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
    State::new(f(&s.h), s.memory.iter().map(f).collect())
}

/// The variables in the order of their names (a `VarMap` keeps them in a hash map).
fn sorted_vars(varmap: &VarMap) -> Vec<Var> {
    let data = varmap.data().lock().unwrap();
    let mut named: Vec<(&String, &Var)> = data.iter().collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    named.into_iter().map(|(_, v)| v.clone()).collect()
}

/// A random initial state a stack could have reached: positive normalisers.
fn random_state(rnn: &Recurrent, batch: usize, rng: &mut Rng) -> State {
    let rows = rnn.config().state_rows();
    let h = rng.tensor(&[rows, batch, rnn.config().hidden_size], -1.0, 1.0);
    let memory = rnn
        .memory()
        .iter()
        .map(|slot| {
            let shape = [rows, batch, slot.width];
            if slot.name.ends_with("_n") {
                rng.tensor(&shape, 0.5, 2.0)
            } else {
                rng.tensor(&shape, -1.0, 1.0)
            }
        })
        .collect();
    State::new(h, memory)
}

/// Outputs, final state and the gradients (input, parameters, initial state) of a random loss.
fn run(
    rnn: &Recurrent,
    varmap: &VarMap,
    xs: &Tensor,
    lengths: Option<&[usize]>,
    init: Option<&State>,
    fused: bool,
) -> (Tensor, State, Vec<Tensor>) {
    let xs = Var::from_tensor(xs).unwrap();
    let init_vars = init.map(|s| {
        (
            Var::from_tensor(&s.h).unwrap(),
            s.memory
                .iter()
                .map(|m| Var::from_tensor(m).unwrap())
                .collect::<Vec<_>>(),
        )
    });
    let init = init_vars.as_ref().map(|(h, m)| {
        State::new(
            h.as_tensor().clone(),
            m.iter().map(|v| v.as_tensor().clone()).collect(),
        )
    });
    let (out, state) = if fused {
        rnn.forward(xs.as_tensor(), lengths, init.as_ref(), false)
    } else {
        rnn.forward_composite(xs.as_tensor(), lengths, init.as_ref(), false)
    }
    .unwrap();
    let weights = Tensor::ones_like(&out)
        .unwrap()
        .cumsum(1)
        .unwrap()
        .sin()
        .unwrap();
    let mut loss = (&out * &weights).unwrap().sum_all().unwrap();
    for m in &state.memory {
        loss = (loss + (m.sin().unwrap()).sum_all().unwrap()).unwrap();
    }
    let grads = loss.backward().unwrap();
    let mut all = vec![grads.get(xs.as_tensor()).unwrap().clone()];
    for v in sorted_vars(varmap) {
        all.push(
            grads
                .get(v.as_tensor())
                .cloned()
                .unwrap_or_else(|| v.zeros_like().unwrap()),
        );
    }
    if let Some((h, m)) = &init_vars {
        for v in std::iter::once(h).chain(m) {
            all.push(
                grads
                    .get(v.as_tensor())
                    .cloned()
                    .unwrap_or_else(|| v.zeros_like().unwrap()),
            );
        }
    }
    (out, state, all)
}

fn worst_of(a: &(Tensor, State, Vec<Tensor>), b: &(Tensor, State, Vec<Tensor>)) -> f64 {
    let mut worst = max_diff(&a.0, &b.0) / scale(&b.0);
    for (x, y) in a.1.memory.iter().zip(&b.1.memory) {
        worst = worst.max(max_diff(x, y) / scale(y));
    }
    for (x, y) in a.2.iter().zip(&b.2) {
        worst = worst.max(max_diff(x, y) / scale(y));
    }
    worst
}

#[test]
fn fused_kernels_match_the_composite_graph_on_random_shapes() {
    let mut rng = Rng(SplitMix64::new(31));
    for cell in [CellKind::Slstm, CellKind::Mlstm] {
        let mut worst = 0f64;
        for case in 0..12 {
            let heads = [1, 2, 4][case % 3];
            let dh = [2, 3, 5, 8][rng.below(4)];
            let width = heads * dh;
            let mut config = config(cell, width, 1 + case % 2, None);
            config.options.heads = heads;
            config.input_size = 1 + rng.below(7);
            config.bidirectional = case % 4 == 3;
            let (batch, seq) = (1 + rng.below(4), 1 + rng.below(8));
            let (rnn, varmap) = random_stack(&config, &mut rng);
            let xs = rng.tensor(&[batch, seq, config.input_size], -1.5, 1.5);
            let init = (case % 2 == 1).then(|| random_state(&rnn, batch, &mut rng));
            let fused = run(&rnn, &varmap, &xs, None, init.as_ref(), true);
            // The reference: the composite graph in float64 with the same parameters.
            let (rnn64, varmap64) = twin_f64(&config, &varmap);
            let init64 = init.as_ref().map(state_f64);
            let xs64 = xs.to_dtype(DType::F64).unwrap();
            let composite = run(&rnn64, &varmap64, &xs64, None, init64.as_ref(), false);
            let d = worst_of(&fused, &composite);
            assert!(
                d < 1e-4,
                "{cell} case {case} (width {width}, heads {heads}, batch {batch}, seq {seq}): fused differs by {d:e}"
            );
            worst = worst.max(d);
        }
        eprintln!("fused {cell} vs composite: worst relative difference {worst:.1e}");
    }
}

#[test]
fn mlstm_parallel_form_equals_its_recurrent_steps() {
    let mut rng = Rng(SplitMix64::new(32));
    let mut worst = 0f64;
    for case in 0..6 {
        let heads = [1, 2, 4][case % 3];
        let width = [8, 16, 24][rng.below(3)];
        let mut config = config(CellKind::Mlstm, width, 1 + case % 2, None);
        config.options.heads = heads;
        let (batch, seq) = (1 + rng.below(3), 1 + rng.below(9));
        let (rnn, varmap) = random_stack(&config, &mut rng);
        let xs = rng.tensor(&[batch, seq, width], -1.5, 1.5);
        let init = (case % 2 == 0).then(|| random_state(&rnn, batch, &mut rng));
        let parallel = run(&rnn, &varmap, &xs, None, init.as_ref(), true);
        // Full lengths: every row's steps one at a time through the recurrent step.
        let lengths = vec![seq; batch];
        let steps = run(&rnn, &varmap, &xs, Some(&lengths), init.as_ref(), false);
        let d = worst_of(&parallel, &steps);
        assert!(
            d < 1e-4,
            "case {case}: parallel and recurrent differ by {d:e}"
        );
        worst = worst.max(d);
    }
    eprintln!("mLSTM parallel vs recurrent: worst relative difference {worst:.1e}");
}

#[test]
fn a_sequence_in_pieces_equals_the_whole() {
    let mut rng = Rng(SplitMix64::new(33));
    for (cell, pattern) in [
        (CellKind::Slstm, None),
        (CellKind::Mlstm, None),
        (CellKind::Xlstm, Some("m,s")),
    ] {
        let config = config(cell, 16, 2, pattern);
        let (rnn, _) = random_stack(&config, &mut rng);
        let xs = rng.tensor(&[2, 9, 16], -1.0, 1.0);
        let (whole, end) = rnn.forward(&xs, None, None, false).unwrap();
        let (a, mid) = rnn
            .forward(&xs.narrow(1, 0, 4).unwrap(), None, None, false)
            .unwrap();
        let (b, end2) = rnn
            .forward(&xs.narrow(1, 4, 5).unwrap(), None, Some(&mid), false)
            .unwrap();
        let pieces = Tensor::cat(&[a, b], 1).unwrap();
        let d = max_diff(&whole, &pieces);
        assert!(d < 1e-4, "{cell}: pieces differ from the whole by {d:e}");
        for (x, y) in end.memory.iter().zip(&end2.memory) {
            assert!(
                max_diff(x, y) < 1e-3 * scale(x),
                "{cell}: final states differ"
            );
        }
    }
}

#[test]
fn rows_of_different_lengths_equal_each_row_alone() {
    let mut rng = Rng(SplitMix64::new(34));
    let mut config = config(CellKind::Xlstm, 8, 2, Some("s,m"));
    config.bidirectional = true;
    config.input_size = 5;
    let (rnn, _) = random_stack(&config, &mut rng);
    let xs = rng.tensor(&[3, 6, 5], -1.0, 1.0);
    let lengths = [6, 2, 4];
    let (out, _) = rnn.forward(&xs, Some(&lengths), None, false).unwrap();
    for (row, &len) in lengths.iter().enumerate() {
        let alone = xs.narrow(0, row, 1).unwrap().narrow(1, 0, len).unwrap();
        let (want, _) = rnn.forward(&alone, None, None, false).unwrap();
        let got = out.narrow(0, row, 1).unwrap().narrow(1, 0, len).unwrap();
        let d = max_diff(&got, &want);
        assert!(d < 1e-4 * scale(&want), "row {row} differs by {d:e}");
        if len < 6 {
            let pad = out
                .narrow(0, row, 1)
                .unwrap()
                .narrow(1, len, 6 - len)
                .unwrap();
            let zero = Tensor::zeros_like(&pad).unwrap();
            assert_eq!(
                max_diff(&pad, &zero),
                0.0,
                "outputs past a row's length are zero"
            );
        }
    }
}

#[test]
fn xlstm_options_are_checked() {
    let vb = || {
        let varmap = VarMap::new();
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)
    };
    let bad = config(CellKind::Xlstm, 16, 2, Some("m,x"));
    let err = Recurrent::new(&bad, vb()).unwrap_err().to_string();
    assert!(err.contains("'x'") && err.contains("m,m,s,m"), "{err}");
    let mut odd = config(CellKind::Slstm, 10, 1, None);
    odd.options.heads = 4;
    let err = Recurrent::new(&odd, vb()).unwrap_err().to_string();
    assert!(err.contains("heads"), "{err}");
    let mut residual = config(CellKind::Mlstm, 16, 1, None);
    residual.options.block = seqlab_cells::Block::Residual;
    let err = Recurrent::new(&residual, vb()).unwrap_err().to_string();
    assert!(err.contains("--block residual"), "{err}");
}
