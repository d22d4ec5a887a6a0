//! The captioner against PyTorch (eval mode, batch-norm running statistics included), and the decoder's
//! step-by-step path against its whole-sequence path.
//!
//! Fixtures: `tests/reference/make_captioner_fixture.py` builds the same module in PyTorch (`encoder.blocks[i]`
//! with `conv` and `bn`, `project`, `decoder.{embedding,rnn,head}`) and saves its state_dict as it is with
//! the images, the padded ids, the lengths and the logits. Here the state_dict loads into `Captioner`
//! unchanged.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use seqlab_cells::CellKind;
use seqlab_decode::StepModel;
use seqlab_models::{AttentionKind, Captioner, CaptionerConfig, CnnConfig, Inject, Mode};

fn fixture(name: &str) -> HashMap<String, Tensor> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures"]
        .iter()
        .collect::<PathBuf>()
        .join(format!("{name}.safetensors"));
    candle_core::safetensors::load(&path, &Device::Cpu).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
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

fn config(
    inject: Inject,
    cell: CellKind,
    channels: &[usize],
    embed: usize,
    hidden: usize,
    layers: usize,
) -> CaptionerConfig {
    CaptionerConfig {
        encoder: CnnConfig {
            image_size: 8,
            channels: channels.to_vec(),
            ..CnnConfig::default()
        },
        inject,
        attention: AttentionKind::None,
        coordinates: false,
        vocab_size: 9,
        embed,
        cell,
        hidden,
        layers,
        dropout: 0.0,
        ..CaptionerConfig::default()
    }
}

/// Loads fixture `name` and checks the teacher-forced logits against PyTorch's, then that decoding step by
/// step from `initial_state` gives the same logits at every valid position.
fn matches_torch(name: &str, config: &CaptionerConfig) {
    let tensors = fixture(name);
    let images = tensors["images"].clone();
    let ids = tensors["ids"].to_dtype(DType::U32).unwrap();
    let lengths: Vec<usize> = tensors["lengths"]
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|l| l as usize)
        .collect();
    let want = tensors["logits"].clone();
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let model = Captioner::new(config, vb).unwrap();
    let got = model
        .forward(&images, &ids, Some(&lengths), Mode::Eval)
        .unwrap();
    assert_eq!(got.dims(), &[2, 5, 9]);
    let diff = max_diff(&got, &want);
    assert!(diff < 1e-4, "{name}: max |seqlab - torch| = {diff}");

    let mut state = model.initial_state(&images, Mode::Eval).unwrap();
    for t in 0..lengths[1] {
        let tokens = ids.i((.., t)).unwrap().contiguous().unwrap();
        let (logits, next) = model.step(&tokens, &state).unwrap();
        for (row, &length) in lengths.iter().enumerate() {
            if t < length {
                let d = max_diff(&logits.i(row).unwrap(), &want.i((row, t)).unwrap());
                assert!(d < 1e-4, "{name}: step {t} row {row}: {d}");
            }
        }
        state = next;
    }
}

#[test]
fn captioner_init_lstm_two_layers_matches_torch() {
    matches_torch(
        "captioner_init_lstm_2layers",
        &config(Inject::Init, CellKind::Lstm, &[4, 6], 5, 6, 2),
    );
}

#[test]
fn captioner_first_gru_matches_torch() {
    matches_torch(
        "captioner_first_gru",
        &config(Inject::First, CellKind::Gru, &[3, 5], 6, 5, 1),
    );
}

/// Attention over the last map's cells: `general` with the cells' coordinates (init, LSTM), `additive`
/// without (first, two GRU layers).
fn attention_cases() -> [(&'static str, CaptionerConfig); 2] {
    [
        (
            "captioner_init_lstm_general_coords",
            CaptionerConfig {
                attention: AttentionKind::General,
                coordinates: true,
                ..config(Inject::Init, CellKind::Lstm, &[4, 6], 5, 6, 1)
            },
        ),
        (
            "captioner_first_gru_additive",
            CaptionerConfig {
                attention: AttentionKind::Additive,
                ..config(Inject::First, CellKind::Gru, &[3, 5], 6, 5, 2)
            },
        ),
    ]
}

#[test]
fn captioners_with_attention_over_the_map_match_torch() {
    for (name, config) in attention_cases() {
        matches_torch(name, &config);
    }
}

#[test]
fn a_wrongly_sized_image_is_an_error_naming_the_expected_shape() {
    let tensors = fixture("captioner_first_gru");
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let model =
        Captioner::new(&config(Inject::First, CellKind::Gru, &[3, 5], 6, 5, 1), vb).unwrap();
    let images = Tensor::zeros((1, 3, 16, 16), DType::F32, &Device::Cpu).unwrap();
    let err = model
        .initial_state(&images, Mode::Eval)
        .unwrap_err()
        .to_string();
    assert!(err.contains("(batch, 3, 8, 8)"), "{err}");
}

/// Training mode (batch norm on the batch's statistics): the logits and the gradient of
/// sum(logits · probe) for every parameter, against PyTorch's autograd.
fn gradients_match_torch(name: &str, config: &CaptionerConfig) {
    let tensors = fixture(name);
    let varmap = candle_nn::VarMap::new();
    let model = Captioner::new(
        config,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let vars = varmap.data().lock().unwrap().clone();
    for (key, var) in &vars {
        var.set(&tensors[key.as_str()]).unwrap();
    }
    let ids = tensors["ids"].to_dtype(DType::U32).unwrap();
    let lengths: Vec<usize> = tensors["lengths"]
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|l| l as usize)
        .collect();
    let logits = model
        .forward(
            &tensors["images"],
            &ids,
            Some(&lengths),
            Mode::Train { seed: 0 },
        )
        .unwrap();
    let diff = max_diff(&logits, &tensors["train_logits"]);
    assert!(diff < 1e-4, "{name}: training-mode logits differ by {diff}");
    let grads = (&logits * &tensors["probe"])
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let mut checked = 0;
    for (key, var) in &vars {
        if key.ends_with("running_mean") || key.ends_with("running_var") {
            assert!(grads.get(var.as_tensor()).is_none(), "{key} got a gradient");
            continue;
        }
        let got = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient reaches {key}"));
        let diff = max_diff(got, &tensors[format!("grad.{key}").as_str()]);
        assert!(
            diff < 1e-4,
            "{name}: the gradient of {key} differs by {diff}"
        );
        checked += 1;
    }
    assert!(checked >= 10, "{name}: only {checked} parameters checked");
}

#[test]
fn captioner_gradients_match_torch_in_training_mode() {
    gradients_match_torch(
        "captioner_init_lstm_2layers",
        &config(Inject::Init, CellKind::Lstm, &[4, 6], 5, 6, 2),
    );
    gradients_match_torch(
        "captioner_first_gru",
        &config(Inject::First, CellKind::Gru, &[3, 5], 6, 5, 1),
    );
    for (name, config) in attention_cases() {
        gradients_match_torch(name, &config);
    }
}
