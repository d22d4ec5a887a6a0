//! Golden tests: seqlab's recurrent stack against PyTorch, values and gradients.
//!
//! The fixtures are written by `tests/reference/make_cells_fixtures.py` (its header says how to run it) and
//! hold PyTorch's weights under their own names, so these tests also pin the loading of a `state_dict`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use seqlab_cells::{CellKind, Recurrent, RecurrentConfig, State};

const TOLERANCE: f32 = 1e-5;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Route {
    /// `Recurrent::forward`: the fused kernels where they exist.
    Forward,
    /// `Recurrent::forward_composite`: the reference graph of candle ops.
    Composite,
}

struct Case {
    name: String,
    config: RecurrentConfig,
    lengths: Option<Vec<usize>>,
    init: bool,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(fixtures().join("cases.json")).expect("cases.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("cases.json parses");
    json["cases"]
        .as_array()
        .expect("cases array")
        .iter()
        .map(|c| {
            let cell: CellKind = c["cell"].as_str().unwrap().parse().unwrap();
            let config = RecurrentConfig {
                cell,
                input_size: c["input_size"].as_u64().unwrap() as usize,
                hidden_size: c["hidden_size"].as_u64().unwrap() as usize,
                num_layers: c["num_layers"].as_u64().unwrap() as usize,
                bidirectional: c["bidirectional"].as_bool().unwrap(),
                dropout: 0.0,
                bias: c["bias"].as_bool().unwrap(),
                ..RecurrentConfig::default()
            };
            let lengths = c["lengths"].as_array().map(|a| {
                a.iter()
                    .map(|v| v.as_u64().unwrap() as usize)
                    .collect::<Vec<_>>()
            });
            Case {
                name: c["name"].as_str().unwrap().to_string(),
                config,
                lengths,
                init: c["init"].as_bool().unwrap(),
            }
        })
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Runs one fixture through `path` and returns the worst absolute difference seen, asserting each tensor.
fn check_case(case: &Case, path: Route) -> f32 {
    let dev = Device::Cpu;
    let file = fixtures().join(format!("{}.safetensors", case.name));
    let t = candle_core::safetensors::load(&file, &dev).expect("fixture loads");
    let param_names: Vec<String> = t
        .keys()
        .filter(|k| k.starts_with("weight_") || k.starts_with("bias_"))
        .cloned()
        .collect();
    let vars: HashMap<String, Var> = param_names
        .iter()
        .map(|k| (k.clone(), Var::from_tensor(&t[k]).unwrap()))
        .collect();
    let vb = VarBuilder::from_tensors(
        vars.iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect(),
        DType::F32,
        &dev,
    );
    let rnn = Recurrent::new(&case.config, vb).expect("builds from PyTorch's names");
    let xs = Var::from_tensor(&t["input"]).unwrap();
    let h0 = case.init.then(|| Var::from_tensor(&t["h0"]).unwrap());
    let c0 = (case.init && case.config.cell == CellKind::Lstm)
        .then(|| Var::from_tensor(&t["c0"]).unwrap());
    let init = h0.as_ref().map(|h| State {
        h: h.as_tensor().clone(),
        memory: c0.iter().map(|c| c.as_tensor().clone()).collect(),
    });
    let (out, state) = match path {
        Route::Forward => rnn.forward(
            xs.as_tensor(),
            case.lengths.as_deref(),
            init.as_ref(),
            false,
        ),
        Route::Composite => rnn.forward_composite(
            xs.as_tensor(),
            case.lengths.as_deref(),
            init.as_ref(),
            false,
        ),
    }
    .expect("forward runs");

    let mut loss = ((&out * &t["r_output"]).unwrap().sum_all().unwrap()
        + (&state.h * &t["r_h"]).unwrap().sum_all().unwrap())
    .unwrap();
    if let Some(c) = state.memory.first() {
        loss = (loss + (c * &t["r_c"]).unwrap().sum_all().unwrap()).unwrap();
    }
    let grads = loss.backward().unwrap();

    let mut worst = 0f32;
    let mut check = |what: &str, got: &Tensor, want: &Tensor| {
        let d = max_abs_diff(got, want);
        assert!(
            d <= TOLERANCE,
            "{} ({path:?}): {what} differs from PyTorch by {d:e}",
            case.name
        );
        worst = worst.max(d);
    };
    check("output", &out, &t["output"]);
    check("h_n", &state.h, &t["h_n"]);
    if let Some(c) = state.memory.first() {
        check("c_n", c, &t["c_n"]);
    }
    check(
        "grad input",
        grads.get(xs.as_tensor()).expect("input gradient"),
        &t["grad.input"],
    );
    if let Some(h0) = &h0 {
        check(
            "grad h0",
            grads.get(h0.as_tensor()).expect("h0 gradient"),
            &t["grad.h0"],
        );
    }
    if let Some(c0) = &c0 {
        check(
            "grad c0",
            grads.get(c0.as_tensor()).expect("c0 gradient"),
            &t["grad.c0"],
        );
    }
    for name in &param_names {
        let g = grads
            .get(vars[name].as_tensor())
            .unwrap_or_else(|| panic!("{}: no gradient for {name}", case.name));
        check(&format!("grad {name}"), g, &t[&format!("grad.{name}")]);
    }
    worst
}

fn check_cell(cell: &str) {
    let cases: Vec<Case> = cases()
        .into_iter()
        .filter(|c| c.config.cell.as_str() == cell)
        .collect();
    assert!(cases.len() >= 8, "too few {cell} fixtures: {}", cases.len());
    for case in &cases {
        for path in [Route::Forward, Route::Composite] {
            let worst = check_case(case, path);
            eprintln!("{:32} {path:?}: worst |diff| {worst:.2e}", case.name);
        }
    }
}

#[test]
fn rnn_tanh_matches_torch() {
    check_cell("rnn");
}

#[test]
fn rnn_relu_matches_torch() {
    check_cell("rnn_relu");
}

#[test]
fn lstm_matches_torch() {
    check_cell("lstm");
}

#[test]
fn gru_matches_torch() {
    check_cell("gru");
}

#[test]
fn fixtures_cover_every_cell_layers_directions_and_lengths() {
    let cases = cases();
    assert!(cases.len() >= 24);
    for cell in ["rnn", "rnn_relu", "lstm", "gru"] {
        for layers in [1, 2] {
            for bi in [false, true] {
                for with_lengths in [false, true] {
                    assert!(
                        cases.iter().any(|c| c.config.cell.as_str() == cell
                            && c.config.num_layers == layers
                            && c.config.bidirectional == bi
                            && c.lengths.is_some() == with_lengths),
                        "no fixture for {cell} layers={layers} bidirectional={bi} lengths={with_lengths}"
                    );
                }
            }
        }
        assert!(cases
            .iter()
            .any(|c| c.config.cell.as_str() == cell && c.init));
    }
}
