//! Training a captioner: the captioned images, the word tokenizer, the loop's task, and what a run reports.

use candle_core::{Device, Tensor};
use seqlab_base::SplitMix64;
use seqlab_data::{
    images_tensor, load_images, read_captions, split_by_image, ImageOptions, LoadedImages,
    OnBadImage,
};
use seqlab_models::{Captioner, CaptionerConfig, Mode};
use seqlab_tokenize::{Framing, Tokenizer, VocabOptions};

use super::config::CaptionTrainConfig;
use super::CaptionPipeline;
use crate::error::{Error, Result};
use crate::init::fnv1a;
use crate::model_dir::framing;
use crate::pipeline::{Prepared, Trained};
use crate::trainer::{Task, TrainSummary};

/// Captioned images ready for batches: decoded pixels and tokenized captions.
#[derive(Debug)]
pub(crate) struct Examples {
    /// Pixels of each image.
    pub pixels: Vec<Vec<f32>>,
    /// (image index, caption tokens without specials), one per caption.
    pub pairs: Vec<(usize, Vec<u32>)>,
}

impl Examples {
    fn new(images: &LoadedImages, tokenizer: &Tokenizer, max_words: usize) -> Result<Self> {
        let mut pairs = Vec::new();
        for (i, item) in images.items.iter().enumerate() {
            for caption in &item.captions {
                let mut ids = tokenizer.encode(caption)?;
                ids.truncate(max_words);
                pairs.push((i, ids));
            }
        }
        Ok(Self {
            pixels: images.pixels.clone(),
            pairs,
        })
    }

    /// The batch of pairs `indices`: images (n, 3, S, S), inputs `<bos> w1..wk` and targets `w1..wk <eos>`
    /// (n, T) padded with `<pad>`, the lengths, and the number of predicted tokens.
    fn batch(&self, indices: &[usize], specials: &Framing, size: usize) -> Result<Batch> {
        let seq = indices
            .iter()
            .map(|&i| self.pairs[i].1.len() + 1)
            .max()
            .unwrap_or(1);
        let n = indices.len();
        let mut inputs = vec![specials.pad; n * seq];
        let mut targets = vec![specials.pad; n * seq];
        let mut lengths = Vec::with_capacity(n);
        let mut images: Vec<&[f32]> = Vec::with_capacity(n);
        for (row, &i) in indices.iter().enumerate() {
            let (image, ids) = &self.pairs[i];
            images.push(&self.pixels[*image]);
            let at = row * seq;
            inputs[at] = specials.bos;
            inputs[at + 1..at + 1 + ids.len()].copy_from_slice(ids);
            targets[at..at + ids.len()].copy_from_slice(ids);
            targets[at + ids.len()] = specials.eos;
            lengths.push(ids.len() + 1);
        }
        let device = Device::Cpu;
        Ok(Batch {
            images: images_tensor(&images, size, &device)?,
            inputs: Tensor::from_vec(inputs, (n, seq), &device)?,
            targets: Tensor::from_vec(targets, n * seq, &device)?,
            tokens: lengths.iter().sum(),
            lengths,
        })
    }
}

struct Batch {
    images: Tensor,
    inputs: Tensor,
    targets: Tensor,
    lengths: Vec<usize>,
    tokens: usize,
}

/// Mean cross-entropy per token of a batch (padding ignored), as a tensor attached to the graph.
fn batch_loss(model: &Captioner, batch: &Batch, specials: &Framing, mode: Mode) -> Result<Tensor> {
    Ok(model.loss(
        &batch.images,
        &batch.inputs,
        Some(&batch.lengths),
        &batch.targets,
        mode,
        specials.pad,
    )?)
}

/// The captioner as a [`Task`] of the training loop.
pub struct CaptionTask {
    model: Captioner,
    train: Examples,
    valid: Option<Examples>,
    specials: Framing,
    /// Images of each split, and those left out as missing, corrupt or unsupported.
    train_images: usize,
    valid_images: usize,
    skipped: Vec<(std::path::PathBuf, String)>,
    size: usize,
    batch: usize,
    seed: u64,
    order: Vec<usize>,
}

/// A permutation of `0..n` drawn from the seed and the epoch (Fisher–Yates on SplitMix64).
fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng =
        SplitMix64::new(seed ^ (epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 0xCA97);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    order
}

impl std::fmt::Debug for CaptionTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptionTask")
            .field("train_captions", &self.train.pairs.len())
            .finish_non_exhaustive()
    }
}

impl Task for CaptionTask {
    fn batches_per_epoch(&self) -> usize {
        self.train.pairs.len().div_ceil(self.batch)
    }

    fn start_epoch(&mut self, epoch: usize) -> Result<()> {
        self.order = epoch_order(self.train.pairs.len(), self.seed, epoch);
        Ok(())
    }

    fn train_batch(&mut self, index: usize, seed: u64) -> Result<(Tensor, usize)> {
        let start = index * self.batch;
        let indices = self
            .order
            .get(start..(start + self.batch).min(self.order.len()));
        let Some(indices) = indices.filter(|i| !i.is_empty()) else {
            return Err(Error::InvalidSetting(format!(
                "batch {index} is beyond the epoch's {} batches",
                self.batches_per_epoch()
            )));
        };
        let batch = self.train.batch(indices, &self.specials, self.size)?;
        let loss = batch_loss(&self.model, &batch, &self.specials, Mode::Train { seed })?;
        Ok((loss, batch.tokens))
    }

    fn validate(&mut self) -> Result<Option<f64>> {
        let Some(valid) = &self.valid else {
            return Ok(None);
        };
        let all: Vec<usize> = (0..valid.pairs.len()).collect();
        let (mut sum, mut tokens) = (0.0f64, 0usize);
        for indices in all.chunks(self.batch.max(1)) {
            let batch = valid.batch(indices, &self.specials, self.size)?;
            let loss = batch_loss(&self.model, &batch, &self.specials, Mode::Eval)?;
            sum += loss.to_scalar::<f32>()? as f64 * batch.tokens as f64;
            tokens += batch.tokens;
        }
        Ok(Some(sum / tokens.max(1) as f64))
    }
}

/// What [`super::train_captioner`] reports beside the loop's summary.
#[derive(Debug, Clone)]
pub struct CaptionTrainReport {
    /// The loop's summary.
    pub summary: TrainSummary,
    /// Training images and their captions.
    pub train_images: usize,
    /// Training captions.
    pub train_captions: usize,
    /// Validation images (0 without validation).
    pub valid_images: usize,
    /// Images left out as missing, corrupt or unsupported (with `skip_bad_images`): file and reason.
    pub skipped: Vec<(std::path::PathBuf, String)>,
    /// The word vocabulary's size.
    pub vocab_size: usize,
    /// Trainable parameters.
    pub parameters: usize,
}

/// The training and validation images of a run, decoded.
#[derive(Debug)]
pub(crate) struct PreparedImages {
    pub train: LoadedImages,
    pub valid: LoadedImages,
}

/// Reads the captions file, splits it by image and decodes the images.
pub(crate) fn prepare_images(config: &CaptionTrainConfig, size: usize) -> Result<PreparedImages> {
    // A hub split or parquet file is written out once as captions.txt and images/.
    let (captions, images_dir) = config.caption_files()?;
    let images = read_captions(&captions)?;
    let (train, valid) = split_by_image(&images, config.valid_fraction, config.optim.seed)?;
    let options = ImageOptions {
        size,
        ..ImageOptions::default()
    };
    let on_bad = if config.skip_bad_images {
        OnBadImage::Skip
    } else {
        OnBadImage::Fail
    };
    let dir = images_dir.as_path();
    Ok(PreparedImages {
        train: load_images(dir, &train, &options, on_bad)?,
        valid: load_images(dir, &valid, &options, on_bad)?,
    })
}

/// The word tokenizer of the training captions.
fn build_tokenizer(config: &CaptionTrainConfig, train: &LoadedImages) -> Result<Tokenizer> {
    let text: Vec<&str> = train
        .items
        .iter()
        .flat_map(|item| item.captions.iter().map(String::as_str))
        .collect();
    let text = text.join("\n");
    Ok(Tokenizer::build_named(
        "word",
        &[text.as_str()],
        &VocabOptions {
            lowercase: config.lowercase,
            min_freq: config.min_freq,
            max_size: config.max_vocab,
        },
    )?)
}

/// The examples of a run: captions encoded, images decoded.
#[derive(Debug)]
pub struct CaptionData {
    train: Examples,
    valid: Option<Examples>,
    train_images: usize,
    valid_images: usize,
    skipped: Vec<(std::path::PathBuf, String)>,
}

/// Reads the captions and images of a run (at the model's image size), builds the word tokenizer unless
/// one is `saved`, and encodes the captions.
pub(super) fn prepare(
    model: &CaptionerConfig,
    config: &CaptionTrainConfig,
    saved: Option<Tokenizer>,
) -> Result<Prepared<CaptionPipeline>> {
    let images = prepare_images(config, model.encoder.image_size)?;
    let tokenizer = match saved {
        Some(tokenizer) => tokenizer,
        None => {
            if images.train.items.is_empty() {
                return Err(Error::InvalidSetting(format!(
                    "{} leaves no training image (all {} skipped)",
                    config.captions,
                    images.train.skipped.len()
                )));
            }
            build_tokenizer(config, &images.train)?
        }
    };
    let train = Examples::new(&images.train, &tokenizer, config.max_words)?;
    let valid = if images.valid.items.is_empty() {
        None
    } else {
        Some(Examples::new(&images.valid, &tokenizer, config.max_words)?)
    };
    let mut bytes = Vec::new();
    for item in images.train.items.iter().chain(&images.valid.items) {
        bytes.extend_from_slice(item.image.as_bytes());
        bytes.push(0);
    }
    for (image, ids) in &train.pairs {
        bytes.extend_from_slice(&(*image as u32).to_le_bytes());
        bytes.extend(ids.iter().flat_map(|id| id.to_le_bytes()));
    }
    let skipped: Vec<_> = images
        .train
        .skipped
        .iter()
        .chain(&images.valid.skipped)
        .cloned()
        .collect();
    let description = format!(
        "{} training images ({} captions), {} validation images, {} skipped; vocabulary {}",
        images.train.items.len(),
        train.pairs.len(),
        images.valid.items.len(),
        skipped.len(),
        tokenizer.vocab_size(),
    );
    Ok(Prepared {
        fingerprint: format!("{:016x}-{}", fnv1a(&bytes), train.pairs.len()),
        artifacts: tokenizer,
        description,
        data: CaptionData {
            train,
            valid,
            train_images: images.train.items.len(),
            valid_images: images.valid.items.len(),
            skipped,
        },
    })
}

/// The task of a run.
pub(super) fn task(
    model: Captioner,
    config: &crate::model_dir::ModelDir<CaptionPipeline>,
    tokenizer: &Tokenizer,
    data: CaptionData,
) -> Result<CaptionTask> {
    Ok(CaptionTask {
        model,
        train: data.train,
        valid: data.valid,
        specials: framing(tokenizer, "a captioner's tokenizer")?,
        train_images: data.train_images,
        valid_images: data.valid_images,
        skipped: data.skipped,
        size: config.model.encoder.image_size,
        batch: config.train.batch,
        seed: config.train.optim.seed,
        order: Vec::new(),
    })
}

/// The report of a finished run.
pub(super) fn report(run: Trained<'_, CaptionPipeline>) -> Result<CaptionTrainReport> {
    let task = run.task;
    Ok(CaptionTrainReport {
        summary: run.summary,
        train_images: task.train_images,
        train_captions: task.train.pairs.len(),
        valid_images: task.valid_images,
        skipped: task.skipped,
        vocab_size: run.artifacts.vocab_size(),
        parameters: run.parameters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_orders_are_permutations_that_depend_on_seed_and_epoch() {
        let a = epoch_order(50, 1, 0);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(50, 1, 0));
        assert_ne!(a, epoch_order(50, 1, 1));
        assert_ne!(a, epoch_order(50, 2, 0));
    }
}
