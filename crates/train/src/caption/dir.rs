//! A captioner's directory: reading it, and captioning images with it.

use std::ops::ControlFlow;
use std::path::Path;

use candle_core::{Device, Tensor};
use seqlab_data::{images_tensor, load_image, ImageOptions};
use seqlab_decode::{beam_search, generate, BeamConfig, Decoding, GenerateConfig, StepModel};
use seqlab_models::{Captioner, Mode};
use seqlab_tokenize::Tokenizer;

use super::CaptionPipeline;
use crate::error::Result;
use crate::model_dir::{framing, read_model_dir, ModelDir};
use crate::pipeline::{load, Loaded};

/// A captioner's `config.json`.
pub type CaptionDirConfig = ModelDir<CaptionPipeline>;

/// Reads and checks `dir/config.json`: format `seqlab/1`, task `caption`.
pub fn read_caption_config(dir: &Path) -> Result<CaptionDirConfig> {
    read_model_dir(dir)
}

/// A captioner loaded from its directory.
#[derive(Debug)]
pub struct LoadedCaptioner {
    /// Its `config.json`.
    pub config: CaptionDirConfig,
    /// Its `tokenizer.json`.
    pub tokenizer: Tokenizer,
    /// The weights of `model.safetensors` (batch-norm running statistics included).
    pub model: Captioner,
}

/// Loads a captioner's directory: `config.json`, `tokenizer.json` and `model.safetensors`, checking that
/// they agree. Errors name the file and, for weights, the tensor.
pub fn load_captioner(dir: &Path, device: &Device) -> Result<LoadedCaptioner> {
    let Loaded {
        config,
        artifacts,
        model,
    } = load::<CaptionPipeline>(dir, device)?;
    Ok(LoadedCaptioner {
        config,
        tokenizer: artifacts,
        model,
    })
}

/// Images captioned per forward pass of the encoder when decoding.
const DECODE_BATCH: usize = 64;

impl LoadedCaptioner {
    /// How images are prepared for this model (its image size).
    pub fn image_options(&self) -> ImageOptions {
        ImageOptions {
            size: self.config.model.encoder.image_size,
            ..ImageOptions::default()
        }
    }

    /// Reads and prepares the image at `path` (errors name the file).
    pub fn load_image(&self, path: &Path) -> Result<Vec<f32>> {
        Ok(load_image(path, &self.image_options())?)
    }

    /// Captions images given as prepared pixels ([`LoadedCaptioner::load_image`]), free-running from
    /// `<bos>` until `<eos>` or `max_words` words; `<pad>`, `<bos>` and `<unk>` are never produced.
    pub fn caption(
        &self,
        pixels: &[Vec<f32>],
        decoding: Decoding,
        max_words: usize,
    ) -> Result<Vec<String>> {
        let specials = framing(&self.tokenizer, "a captioner's tokenizer")?;
        // A beam of one is greedy decoding, batched.
        let decoding = if decoding.is_greedy() {
            Decoding::GREEDY
        } else {
            decoding
        };
        let mut banned = vec![specials.pad, specials.bos];
        banned.extend(self.tokenizer.unk_id());
        let size = self.config.model.encoder.image_size;
        let device = Device::Cpu;
        let mut out = Vec::with_capacity(pixels.len());
        for chunk in pixels.chunks(DECODE_BATCH) {
            let refs: Vec<&[f32]> = chunk.iter().map(Vec::as_slice).collect();
            let images = images_tensor(&refs, size, &device)?;
            let state = self.model.initial_state(&images, Mode::Eval)?;
            let rows: Vec<Vec<u32>> = match decoding {
                Decoding::Sample { sampling, seed } => {
                    let first =
                        Tensor::from_vec(vec![specials.bos; chunk.len()], chunk.len(), &device)?;
                    let config = GenerateConfig {
                        sampling,
                        seed,
                        max_len: max_words + 1,
                        eos: vec![specials.eos],
                        banned: banned.clone(),
                        ..GenerateConfig::default()
                    };
                    generate(&self.model, &first, state, &config, |_, _| {
                        ControlFlow::Continue(())
                    })?
                    .into_iter()
                    .map(|g| g.tokens)
                    .collect()
                }
                Decoding::Beam { width, alpha } => {
                    let config = BeamConfig {
                        width,
                        alpha,
                        max_len: max_words + 1,
                        eos: vec![specials.eos],
                        banned: banned.clone(),
                        ..BeamConfig::default()
                    };
                    let first = Tensor::from_vec(vec![specials.bos], 1, &device)?;
                    let mut rows = Vec::with_capacity(chunk.len());
                    for row in 0..chunk.len() {
                        let index = Tensor::from_vec(vec![row as u32], 1, &device)?;
                        let one = self.model.select(&state, &index)?;
                        let best = beam_search(&self.model, &first, one, &config)?;
                        rows.push(
                            best.into_iter()
                                .next()
                                .map(|h| h.tokens)
                                .unwrap_or_default(),
                        );
                    }
                    rows
                }
            };
            for tokens in rows {
                out.push(self.tokenizer.decode(&tokens)?);
            }
        }
        Ok(out)
    }
}
