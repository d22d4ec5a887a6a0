//! Bad parameters and malformed model outputs give clear errors that name the bad value.

mod common;

use std::ops::ControlFlow;

use candle_core::{DType, Device, Tensor};
use common::{tokens, Bigram};
use seqlab_decode::{
    beam_search, generate, BeamConfig, Error, GenerateConfig, Sampler, Sampling, StepModel,
};

fn sample(temperature: f64, top_k: Option<usize>, top_p: Option<f64>) -> Sampling {
    Sampling::Sample {
        temperature,
        top_k,
        top_p,
    }
}

fn generate_with(model: &Bigram, first: &Tensor, config: &GenerateConfig) -> Result<(), Error> {
    generate(model, first, (), config, |_, _| ControlFlow::Continue(())).map(drop)
}

fn model() -> Bigram {
    Bigram::fixed(&[0.0, 1.0, 2.0])
}

#[test]
fn bad_sampling_parameters_are_errors_naming_the_value() {
    let cases = [
        (
            sample(-0.5, None, None),
            "temperature must be a finite number >= 0 (0 means greedy), got -0.5",
        ),
        (sample(f64::NAN, None, None), "got NaN"),
        (sample(f64::INFINITY, None, None), "got inf"),
        (
            sample(1.0, Some(0), None),
            "top-k must be at least 1, got 0",
        ),
        (
            sample(1.0, None, Some(0.0)),
            "top-p must lie in (0, 1], got 0",
        ),
        (
            sample(1.0, None, Some(1.5)),
            "top-p must lie in (0, 1], got 1.5",
        ),
        (sample(1.0, None, Some(-0.1)), "got -0.1"),
        (
            sample(1.0, None, Some(f64::NAN)),
            "top-p must lie in (0, 1], got NaN",
        ),
        // Temperature 0 is greedy, but its other parameters are still checked.
        (sample(0.0, Some(0), None), "top-k must be at least 1"),
    ];
    for (sampling, message) in cases {
        let err = sampling.validate().unwrap_err();
        assert!(err.to_string().contains(message), "{err} lacks {message:?}");
        assert_eq!(
            Sampler::new(sampling, 0, &[]).unwrap_err().to_string(),
            err.to_string()
        );
        let config = GenerateConfig {
            sampling,
            ..Default::default()
        };
        let err = generate_with(&model(), &tokens(&[0]), &config).unwrap_err();
        assert!(err.to_string().contains(message), "{err} lacks {message:?}");
    }
    assert!(
        matches!(sample(-1.0, None, None).validate(), Err(Error::InvalidTemperature(t)) if t == -1.0)
    );
    assert!(sample(0.0, Some(1), Some(1.0)).validate().is_ok());
    assert!(sample(1e-30, Some(usize::MAX), Some(f64::MIN_POSITIVE))
        .validate()
        .is_ok());
}

#[test]
fn bad_beam_parameters_are_errors_naming_the_value() {
    let base = BeamConfig {
        width: 3,
        n_best: 2,
        ..Default::default()
    };
    let cases = [
        (
            BeamConfig {
                width: 0,
                ..base.clone()
            },
            "beam width must be at least 1, got 0",
        ),
        (
            BeamConfig {
                n_best: 0,
                ..base.clone()
            },
            "n-best must be between 1 and the beam width 3, got 0",
        ),
        (
            BeamConfig {
                n_best: 4,
                ..base.clone()
            },
            "n-best must be between 1 and the beam width 3, got 4",
        ),
        (
            BeamConfig {
                alpha: -0.6,
                ..base.clone()
            },
            "length-penalty alpha must be a finite number >= 0, got -0.6",
        ),
        (
            BeamConfig {
                alpha: f64::NAN,
                ..base.clone()
            },
            "got NaN",
        ),
    ];
    for (config, message) in cases {
        let err = beam_search(&model(), &tokens(&[0]), (), &config).unwrap_err();
        assert!(err.to_string().contains(message), "{err} lacks {message:?}");
        assert_eq!(config.validate().unwrap_err().to_string(), err.to_string());
    }
}

#[test]
fn bad_first_tokens_are_errors_naming_shape_and_dtype() {
    let device = Device::Cpu;
    let config = GenerateConfig::default();
    let err =
        generate_with(&model(), &Tensor::new(&[0i64], &device).unwrap(), &config).unwrap_err();
    assert_eq!(
        err.to_string(),
        "first tokens must be a (batch,) u32 tensor, got shape [1] of dtype I64"
    );
    let err =
        generate_with(&model(), &Tensor::new(&[[0u32]], &device).unwrap(), &config).unwrap_err();
    assert!(
        err.to_string().contains("got shape [1, 1] of dtype U32"),
        "{err}"
    );
    let err = generate_with(
        &model(),
        &Tensor::zeros(0, DType::U32, &device).unwrap(),
        &config,
    )
    .unwrap_err();
    assert!(err.to_string().contains("got shape [0]"), "{err}");

    let err = beam_search(&model(), &tokens(&[0, 0]), (), &BeamConfig::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "first tokens must be a (1,) u32 tensor, got shape [2] of dtype U32"
    );
}

#[test]
fn an_empty_stop_sequence_is_an_error() {
    let config = GenerateConfig {
        stop_sequences: vec![vec![1], vec![]],
        ..Default::default()
    };
    let err = generate_with(&model(), &tokens(&[0]), &config).unwrap_err();
    assert_eq!(err.to_string(), "stop sequence 1 is empty");
}

#[test]
fn bad_logits_from_the_model_are_errors() {
    let config = GenerateConfig::default();
    let err =
        generate_with(&Bigram::fixed(&[0.0, f32::NAN]), &tokens(&[0, 0]), &config).unwrap_err();
    assert_eq!(
        err.to_string(),
        "logit of token 1 in row 0 is NaN; logits must be finite or -inf"
    );
    let beam = BeamConfig::default();
    let err = beam_search(
        &Bigram::fixed(&[f32::INFINITY, 0.0]),
        &tokens(&[0]),
        (),
        &beam,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidLogit {
                row: 0,
                token: 0,
                ..
            }
        ),
        "{err}"
    );

    let banned_all = GenerateConfig {
        banned: vec![0, 1, 2],
        ..Default::default()
    };
    let err = generate_with(&model(), &tokens(&[0]), &banned_all).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no token can be produced in row 0: every token is banned or has logit -inf"
    );
    let beam_banned_all = BeamConfig {
        banned: vec![0, 1, 2],
        ..Default::default()
    };
    let err = beam_search(&model(), &tokens(&[0]), (), &beam_banned_all).unwrap_err();
    assert!(matches!(err, Error::NoTokenAllowed { row: 0 }), "{err}");
}

/// A model that returns logits of the wrong batch size.
struct WrongShape;

impl StepModel for WrongShape {
    type State = ();
    fn step(&self, _tokens: &Tensor, _state: &()) -> candle_core::Result<(Tensor, ())> {
        Ok((Tensor::zeros((3, 5), DType::F32, &Device::Cpu)?, ()))
    }
    fn select(&self, _state: &(), _indices: &Tensor) -> candle_core::Result<()> {
        Ok(())
    }
}

#[test]
fn logits_of_the_wrong_shape_are_an_error() {
    let err = generate(
        &WrongShape,
        &tokens(&[0, 0]),
        (),
        &GenerateConfig::default(),
        |_, _| ControlFlow::Continue(()),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "model step returned logits of shape [3, 5], expected (2, vocab)"
    );
}

/// A model whose step fails.
struct Failing;

impl StepModel for Failing {
    type State = ();
    fn step(&self, tokens: &Tensor, _state: &()) -> candle_core::Result<(Tensor, ())> {
        Ok((tokens.matmul(tokens)?, ()))
    }
    fn select(&self, _state: &(), _indices: &Tensor) -> candle_core::Result<()> {
        Ok(())
    }
}

#[test]
fn model_errors_pass_through() {
    let err = beam_search(&Failing, &tokens(&[0]), (), &BeamConfig::default()).unwrap_err();
    assert!(matches!(err, Error::Candle(_)), "{err}");
}
