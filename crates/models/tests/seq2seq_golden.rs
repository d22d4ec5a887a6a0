//! `Seq2Seq` loads a PyTorch twin's state_dict unchanged and gives its logits and attention weights to 1e-5,
//! through the whole-sequence forward pass and step by step through `StepModel`, and its training loss and the
//! gradient of every parameter to 1e-6. Fixtures:
//! tests/reference/make_seq2seq_fixture.py.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use seqlab_decode::StepModel;
use seqlab_models::{Mode, Seq2Seq, Seq2SeqConfig, TeacherForcing};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

struct Case {
    model: Seq2Seq,
    src: Tensor,
    lengths: Vec<usize>,
    tgt_in: Tensor,
    logits: Tensor,
    attention: Option<Tensor>,
}

/// Fixture `name`: its configuration (seq2seq_cases.json), its tensors and its source lengths.
fn fixture(name: &str) -> (Seq2SeqConfig, HashMap<String, Tensor>, Vec<usize>) {
    let configs: HashMap<String, Seq2SeqConfig> = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("seq2seq_cases.json")).unwrap(),
    )
    .unwrap();
    let tensors = candle_core::safetensors::load(
        fixtures().join(format!("seq2seq_{name}.safetensors")),
        &Device::Cpu,
    )
    .unwrap();
    let lengths: Vec<usize> = tensors["input.lengths"]
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|l| l as usize)
        .collect();
    (configs[name].clone(), tensors, lengths)
}

/// A model of `config` whose parameters are fresh `Var`s holding the fixture's weights, so that the
/// gradients reach them; returns the `Var`s by name too.
fn trainable(
    config: &Seq2SeqConfig,
    tensors: &HashMap<String, Tensor>,
) -> (Seq2Seq, HashMap<String, Var>) {
    let varmap = VarMap::new();
    let model = Seq2Seq::new(
        config,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let vars = varmap.data().lock().unwrap().clone();
    for (key, var) in &vars {
        var.set(&tensors[key.as_str()]).unwrap();
    }
    (model, vars)
}

fn load(name: &str) -> Case {
    let (config, tensors, lengths) = fixture(name);
    let ids = |key: &str| tensors[key].to_dtype(DType::U32).unwrap();
    let case = Case {
        src: ids("input.src"),
        tgt_in: ids("input.tgt_in"),
        lengths,
        logits: tensors["expected.logits"].clone(),
        attention: tensors.get("expected.attention").cloned(),
        model: Seq2Seq::new(
            &config,
            VarBuilder::from_tensors(tensors.clone(), DType::F32, &Device::Cpu),
        )
        .unwrap(),
    };
    case
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    a.sub(b)
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

fn check(name: &str) {
    let case = load(name);
    let out = case
        .model
        .forward(
            &case.src,
            &case.lengths,
            &case.tgt_in,
            Mode::Eval,
            TeacherForcing::default(),
        )
        .unwrap();
    let diff = max_diff(&out.logits, &case.logits);
    assert!(diff < 1e-5, "{name}: logits differ from PyTorch by {diff}");
    match (&out.attention, &case.attention) {
        (Some(got), Some(want)) => {
            let diff = max_diff(got, want);
            assert!(
                diff < 1e-5,
                "{name}: attention differs from PyTorch by {diff}"
            );
        }
        (None, None) => {}
        _ => panic!("{name}: attention present on one side only"),
    }

    // Step by step through StepModel, as decoding runs it.
    let decoder = case.model.decoder();
    let mut state = case
        .model
        .encode(&case.src, &case.lengths, Mode::Eval)
        .unwrap();
    let (_, tgt_len) = case.tgt_in.dims2().unwrap();
    for t in 0..tgt_len {
        let tokens = case
            .tgt_in
            .narrow(1, t, 1)
            .unwrap()
            .squeeze(1)
            .unwrap()
            .contiguous()
            .unwrap();
        let (logits, next) = decoder.step(&tokens, &state).unwrap();
        let want = case.logits.narrow(1, t, 1).unwrap().squeeze(1).unwrap();
        let diff = max_diff(&logits, &want);
        assert!(
            diff < 1e-5,
            "{name}: step {t} logits differ from PyTorch by {diff}"
        );
        if let Some(want) = &case.attention {
            let want = want.narrow(1, t, 1).unwrap().squeeze(1).unwrap();
            let diff = max_diff(next.attention.as_ref().unwrap(), &want);
            assert!(diff < 1e-5, "{name}: step {t} attention differs by {diff}");
        }
        state = next;
    }
}

#[test]
fn seq2seq_without_attention_gru_matches_torch() {
    check("none_gru");
}

#[test]
fn seq2seq_general_attention_bidirectional_lstm_matches_torch() {
    check("general_lstm_bidirectional");
}

#[test]
fn seq2seq_additive_attention_input_feeding_two_layers_matches_torch() {
    check("additive_lstm_input_feeding_2_layers");
}

#[test]
fn seq2seq_dot_attention_gru_matches_torch() {
    check("dot_gru");
}

/// The training loss (mean cross-entropy over the non-padding targets, in training mode, teacher-forced as
/// training runs it) and the gradient of every parameter, against PyTorch's autograd.
fn check_gradients(name: &str) {
    let (config, tensors, lengths) = fixture(name);
    let (model, vars) = trainable(&config, &tensors);
    let ids = |key: &str| tensors[key].to_dtype(DType::U32).unwrap();
    // The loss as training computes it (`Seq2Seq::loss`: head and loss fused without input feeding), and as
    // `forward`'s logits give it.
    let loss = model
        .loss(
            &ids("input.src"),
            &lengths,
            &ids("input.tgt_in"),
            &ids("input.tgt_out"),
            Mode::Train { seed: 1 },
            TeacherForcing::default(),
            0,
        )
        .unwrap();
    let out = model
        .forward(
            &ids("input.src"),
            &lengths,
            &ids("input.tgt_in"),
            Mode::Train { seed: 1 },
            TeacherForcing::default(),
        )
        .unwrap();
    let (batch, tgt_len, vocab) = out.logits.dims3().unwrap();
    let from_logits = seqlab_cells::cross_entropy(
        &out.logits.reshape((batch * tgt_len, vocab)).unwrap(),
        &ids("input.tgt_out").flatten_all().unwrap(),
        Some(0),
    )
    .unwrap();
    let diff = max_diff(&loss, &from_logits);
    assert!(
        diff < 1e-6,
        "{name}: loss and forward's logits disagree by {diff}"
    );
    let diff = max_diff(&loss.reshape(1).unwrap(), &tensors["expected.loss"]);
    assert!(diff < 1e-5, "{name}: loss differs from PyTorch by {diff}");
    let grads = loss.backward().unwrap();
    assert!(!vars.is_empty());
    for (key, var) in &vars {
        let got = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient reaches {key}"));
        let want = &tensors[format!("grad.{key}").as_str()];
        let diff = max_diff(got, want);
        assert!(
            diff < 1e-6,
            "{name}: the gradient of {key} differs from PyTorch's by {diff}"
        );
    }
}

#[test]
fn seq2seq_gradients_match_torch_in_every_case() {
    for name in [
        "none_gru",
        "general_lstm_bidirectional",
        "additive_lstm_input_feeding_2_layers",
        "dot_gru",
    ] {
        check_gradients(name);
    }
}

#[test]
fn attention_ignores_padding_and_rows_sum_to_one() {
    let case = load("general_lstm_bidirectional");
    let out = case
        .model
        .forward(
            &case.src,
            &case.lengths,
            &case.tgt_in,
            Mode::Eval,
            TeacherForcing::default(),
        )
        .unwrap();
    let weights: Vec<Vec<Vec<f32>>> = out.attention.unwrap().to_vec3().unwrap();
    for (row, &len) in weights.iter().zip(&case.lengths) {
        for step in row {
            assert!(step[len..].iter().all(|&w| w == 0.0), "{step:?}");
            assert!((step.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }
}

#[test]
fn names_and_shapes_are_pytorch_style_and_scheduled_sampling_runs_step_by_step() {
    let config = Seq2SeqConfig {
        source_vocab: 9,
        target_vocab: 7,
        embed: 4,
        hidden: 6,
        bidirectional: true,
        dropout: 0.1,
        ..Default::default()
    };
    let varmap = VarMap::new();
    let model = Seq2Seq::new(
        &config,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let mut names: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
    names.sort();
    for name in [
        "bridge.c.weight",
        "bridge.h.bias",
        "decoder.attention.combine.weight",
        "decoder.attention.key.weight",
        "decoder.embedding.weight",
        "decoder.head.weight",
        "decoder.rnn.weight_ih_l0",
        "encoder.embedding.weight",
        "encoder.rnn.weight_hh_l0_reverse",
    ] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} missing from {names:?}"
        );
    }
    let src = Tensor::new(&[[4u32, 5, 6], [7, 8, 0]], &Device::Cpu).unwrap();
    let tgt = Tensor::new(&[[2u32, 4, 5, 6], [2, 3, 0, 0]], &Device::Cpu).unwrap();
    let train = Mode::Train { seed: 3 };
    let full = model
        .forward(&src, &[3, 2], &tgt, train, TeacherForcing::default())
        .unwrap();
    assert_eq!(full.logits.dims(), [2, 4, 7]);
    assert_eq!(full.attention.unwrap().dims(), [2, 4, 3]);
    let sampled = model
        .forward(
            &src,
            &[3, 2],
            &tgt,
            train,
            TeacherForcing {
                ratio: 0.5,
                seed: 1,
            },
        )
        .unwrap();
    assert_eq!(sampled.logits.dims(), [2, 4, 7]);
    // Gradients reach the encoder through the step-by-step path too.
    let loss = sampled.logits.sqr().unwrap().mean_all().unwrap();
    let grads = loss.backward().unwrap();
    let embedding = varmap.data().lock().unwrap()["encoder.embedding.weight"].clone();
    assert!(grads.get(embedding.as_tensor()).is_some());
}

/// With dropout the loss of a training step is still a deterministic function of the weights (the masks
/// come from the step's seed), so its gradient can be checked against central finite differences: a few
/// entries of every parameter, dropout 0 and 0.5.
#[test]
fn gradients_with_dropout_match_finite_differences() {
    let (case, tensors, lengths) = fixture("general_lstm_bidirectional");
    let device = Device::Cpu;
    let ids = |key: &str| tensors[key].to_dtype(DType::U32).unwrap();
    for p in [0.0f32, 0.5] {
        let config = Seq2SeqConfig {
            dropout: p,
            ..case.clone()
        };
        let (model, vars) = trainable(&config, &tensors);
        let loss = || {
            model
                .loss(
                    &ids("input.src"),
                    &lengths,
                    &ids("input.tgt_in"),
                    &ids("input.tgt_out"),
                    Mode::Train { seed: 7 },
                    TeacherForcing::default(),
                    0,
                )
                .unwrap()
        };
        let grads = loss().backward().unwrap();
        for (key, var) in &vars {
            let g = grads
                .get(var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let base = var
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let shape = var.as_tensor().shape().clone();
            let at = |values: Vec<f32>| {
                var.set(&Tensor::from_vec(values, shape.clone(), &device).unwrap())
                    .unwrap();
                loss().to_scalar::<f32>().unwrap()
            };
            for i in (0..base.len()).step_by((base.len() / 5).max(1)) {
                let eps = 1e-2;
                let mut plus = base.clone();
                plus[i] += eps;
                let mut minus = base.clone();
                minus[i] -= eps;
                let fd = (at(plus) - at(minus)) / (2.0 * eps);
                at(base.clone());
                assert!(
                    (fd - g[i]).abs() < 2e-3 + 0.05 * g[i].abs(),
                    "dropout {p}: {key}[{i}]: finite differences {fd}, gradient {}",
                    g[i]
                );
            }
        }
    }
}
