//! minGRU, minLSTM and IndRNN against their oracles (`tests/reference/make_min_fixtures.py`): the package
//! `mingru-pytorch`'s own modules — its minGRU and minLSTM, and the layers of its minLM as residual blocks —
//! and the IndRNN paper's cell in PyTorch. Outputs, final states and the gradients of a scalar loss with
//! respect to the input, the initial state and every parameter, through the fused and the composite paths.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use seqlab_cells::{Block, CellKind, CellOptions, Recurrent, RecurrentConfig, State};

const TOLERANCE: f32 = 1e-5;

fn fixture(name: &str) -> HashMap<String, Tensor> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/min")
        .join(format!("{name}.safetensors"));
    candle_core::safetensors::load(&path, &Device::Cpu).expect("fixture loads")
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

/// Runs `config` on fixture `name` through both paths and checks everything against it; returns the
/// worst difference.
fn check(name: &str, config: &RecurrentConfig) -> f32 {
    let t = fixture(name);
    let params: Vec<&String> = t
        .keys()
        .filter(|k| {
            !k.starts_with("grad.")
                && !["input", "output", "h_n", "h0", "r_output", "r_h"].contains(&k.as_str())
        })
        .collect();
    let mut worst = 0f32;
    for fused in [true, false] {
        let vars: HashMap<String, Var> = params
            .iter()
            .map(|k| (k.to_string(), Var::from_tensor(&t[*k]).unwrap()))
            .collect();
        let vb = VarBuilder::from_tensors(
            vars.iter()
                .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
                .collect(),
            DType::F32,
            &Device::Cpu,
        );
        let rnn = Recurrent::new(config, vb).expect("builds from the package's names");
        let xs = Var::from_tensor(&t["input"]).unwrap();
        let h0 = t
            .get("h0")
            .map(|h| Var::from_tensor(&h.unsqueeze(0).unwrap()).unwrap());
        let init = h0
            .as_ref()
            .map(|h| State::new(h.as_tensor().clone(), Vec::new()));
        let (out, state) = if fused {
            rnn.forward(xs.as_tensor(), None, init.as_ref(), false)
        } else {
            rnn.forward_composite(xs.as_tensor(), None, init.as_ref(), false)
        }
        .unwrap();
        // The last layer's final state (the package's stack reports its top).
        let h_n = state.h.get(config.num_layers - 1).unwrap();
        let loss = ((&out * &t["r_output"]).unwrap().sum_all().unwrap()
            + (&h_n * &t["r_h"]).unwrap().sum_all().unwrap())
        .unwrap();
        let grads = loss.backward().unwrap();
        let mut compare = |what: &str, got: &Tensor, want: &Tensor| {
            let d = max_diff(got, want);
            assert!(
                d <= TOLERANCE,
                "{name} (fused {fused}): {what} differs by {d:e}"
            );
            worst = worst.max(d);
        };
        compare("output", &out, &t["output"]);
        compare("h_n", &h_n, &t["h_n"]);
        compare(
            "grad input",
            grads.get(xs.as_tensor()).unwrap(),
            &t["grad.input"],
        );
        if let Some(h0) = &h0 {
            compare(
                "grad h0",
                &grads.get(h0.as_tensor()).unwrap().squeeze(0).unwrap(),
                &t["grad.h0"],
            );
        }
        for (k, v) in &vars {
            compare(
                &format!("grad {k}"),
                grads.get(v.as_tensor()).unwrap(),
                &t[&format!("grad.{k}")],
            );
        }
    }
    worst
}

fn plain(cell: CellKind, bias: bool, bound: Option<f32>) -> RecurrentConfig {
    RecurrentConfig {
        bias,
        options: CellOptions {
            bound,
            ..CellOptions::default()
        },
        ..RecurrentConfig::new(cell, 4, 5)
    }
}

#[test]
fn mingru_matches_mingru_pytorch() {
    for name in ["mingru", "mingru_init"] {
        let worst = check(name, &plain(CellKind::MinGru, false, None));
        eprintln!("{name}: worst {worst:.2e}");
    }
}

#[test]
fn minlstm_matches_mingru_pytorch() {
    for name in ["minlstm", "minlstm_init"] {
        let worst = check(name, &plain(CellKind::MinLstm, false, None));
        eprintln!("{name}: worst {worst:.2e}");
    }
}

#[test]
fn indrnn_matches_the_papers_cell() {
    check("indrnn", &plain(CellKind::IndRnn, true, None));
    check(
        "indrnn_init_bound",
        &plain(CellKind::IndRnn, true, Some(1.0)),
    );
}

#[test]
fn residual_blocks_match_the_layers_of_minlm() {
    for (name, cell) in [
        ("minlm_mingru", CellKind::MinGru),
        ("minlm_minlstm", CellKind::MinLstm),
    ] {
        let config = RecurrentConfig {
            num_layers: 2,
            bias: false,
            options: CellOptions {
                block: Block::Residual,
                expansion: 1.5,
                ..CellOptions::default()
            },
            ..RecurrentConfig::new(cell, 6, 6)
        };
        let worst = check(name, &config);
        eprintln!("{name}: worst {worst:.2e}");
    }
}
