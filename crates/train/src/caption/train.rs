//! Training a captioner: the captioned images, the word tokenizer, the model, and the loop.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use seqlab_data::{
    images_tensor, is_labelled_table, load_images, read_captions, split_by_image, CaptionedImage,
    ColumnFlags, ImageOptions, LoadedImages, OnBadImage,
};
use seqlab_models::{Captioner, CaptionerConfig, Mode};
use seqlab_tokenize::{Tokenizer, WordOptions};
use serde::{Deserialize, Serialize};

use super::dir::{read_caption_config, CaptionDirConfig};
use super::CAPTION_TASK;
use crate::atomic::write_bytes_atomically;
use crate::error::{one_line, Error, Result};
use crate::init::{fnv1a, seeded_var_builder};
use crate::lm::FORMAT;
use crate::trainer::{train, LoopConfig, NonFinite, RunOptions, Task, TrainSummary};

/// How a captioner is trained: plain data, saved in `config.json` under `"train"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CaptionTrainConfig {
    /// The image folder.
    pub images: String,
    /// The `captions.txt` CSV (`image,caption`), or a table: a hub split or a `.parquet` file.
    pub captions: String,
    /// The image column (bytes) of a table; `None`: the catalogue's column for the dataset, else `image`.
    /// A `captions.txt` file does not use it.
    pub image_column: Option<String>,
    /// The caption column(s) of a table, comma-separated; `None`: the catalogue's columns for the dataset,
    /// else `caption`.
    pub caption_column: Option<String>,
    /// Images (not captions) held out for validation. 0.1: a tenth of the images, all their captions.
    pub valid_fraction: f64,
    /// Leave out listed images that are missing, corrupt or of another format (counted and reported)
    /// instead of stopping with an error naming the first one.
    pub skip_bad_images: bool,
    /// Lowercase the captions. Default true: "A dog" and "a dog" are one caption.
    pub lowercase: bool,
    /// Keep only words seen at least this often in the training captions; rarer ones become `<unk>`.
    pub min_freq: usize,
    /// Keep at most this many words, specials included.
    pub max_vocab: Option<usize>,
    /// Captions per batch. 32: the CNN's batch-norm statistics need a few dozen images; larger batches
    /// cost more per step on two cores than they gain.
    pub batch: usize,
    /// Words kept of each caption (longer ones are cut). 30: longer than any Flickr8k caption but a few.
    pub max_words: usize,
    /// The loop's settings.
    #[serde(flatten)]
    pub optim: LoopConfig,
}

impl Default for CaptionTrainConfig {
    fn default() -> Self {
        Self {
            images: String::new(),
            captions: String::new(),
            image_column: None,
            caption_column: None,
            valid_fraction: 0.1,
            skip_bad_images: false,
            lowercase: true,
            min_freq: 1,
            max_vocab: None,
            batch: 32,
            max_words: 30,
            optim: LoopConfig::default(),
        }
    }
}

impl CaptionTrainConfig {
    /// The columns a table is read by: `image_column`, and `caption_column` (as `text`).
    pub fn columns(&self) -> ColumnFlags {
        ColumnFlags {
            image: self.image_column.clone(),
            text: self.caption_column.clone(),
            ..ColumnFlags::default()
        }
    }

    /// The `captions.txt` file and image folder of this run's data: a table is written out once by its
    /// columns ([`seqlab_data::caption_files_with`]). Column settings for a `captions.txt` file are an error
    /// naming the flag and the file.
    pub fn caption_files(&self) -> Result<(PathBuf, PathBuf)> {
        self.caption_files_of(&self.captions, &self.images, &self.columns())
    }

    /// The `captions.txt` file and image folder of another source, e.g. for `caption eval`: a table is read
    /// by `columns` where they name a column, else by this run's columns. Columns named in `columns` for a
    /// `captions.txt` file are an error naming the flag and the file.
    pub fn caption_files_of(
        &self,
        captions: &str,
        images: &str,
        columns: &ColumnFlags,
    ) -> Result<(PathBuf, PathBuf)> {
        check_columns(columns, captions)?;
        let columns = ColumnFlags {
            image: columns.image.clone().or(self.image_column.clone()),
            text: columns.text.clone().or(self.caption_column.clone()),
            ..ColumnFlags::default()
        };
        Ok(seqlab_data::caption_files_with(captions, images, &columns)?)
    }
}

/// Column settings name columns of tables only: given for a `captions.txt` file, they are an error rather
/// than ignored.
fn check_columns(columns: &ColumnFlags, captions: &str) -> Result<()> {
    let flag = match (&columns.image, &columns.text) {
        (Some(_), _) => "--image-column",
        (None, Some(_)) => "--caption-column",
        (None, None) => return Ok(()),
    };
    if is_labelled_table(captions) {
        return Ok(());
    }
    Err(Error::InvalidSetting(format!(
        "{flag} names a column of a table (a hub split or a .parquet file), but {captions} is read as an \
         image,caption CSV"
    )))
}

/// Which images of a captions file a command uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Split {
    /// Every image of the file.
    #[default]
    All,
    /// The training images of the model's split (its seed and validation fraction).
    Train,
    /// The validation images of the model's split: held-out images when the file is the training file.
    Valid,
}

impl std::str::FromStr for Split {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "all" => Ok(Split::All),
            "train" => Ok(Split::Train),
            "valid" => Ok(Split::Valid),
            other => Err(format!(
                "unknown split '{other}': expected all, train or valid"
            )),
        }
    }
}

impl Split {
    /// The images of `images` this split keeps, split as the model's training run split them.
    pub fn select(
        self,
        images: &[CaptionedImage],
        train: &CaptionTrainConfig,
    ) -> Result<Vec<CaptionedImage>> {
        if self == Split::All {
            return Ok(images.to_vec());
        }
        let (t, v) = split_by_image(images, train.valid_fraction, train.optim.seed)?;
        Ok(if self == Split::Train { t } else { v })
    }
}

/// Captioned images ready for batches: decoded pixels and tokenized captions.
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
    fn batch(&self, indices: &[usize], specials: &Specials, size: usize) -> Result<Batch> {
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

/// The token ids a captioner trains and decodes with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Specials {
    pub pad: u32,
    pub bos: u32,
    pub eos: u32,
}

impl Specials {
    pub(crate) fn of(tokenizer: &Tokenizer) -> Result<Self> {
        match (tokenizer.pad_id(), tokenizer.bos_id(), tokenizer.eos_id()) {
            (Some(pad), Some(bos), Some(eos)) => Ok(Self { pad, bos, eos }),
            _ => Err(Error::InvalidSetting(
                "a captioner's tokenizer needs <pad>, <bos> and <eos> tokens".to_string(),
            )),
        }
    }
}

/// Mean cross-entropy per token of a batch (padding ignored), as a tensor attached to the graph.
fn batch_loss(model: &Captioner, batch: &Batch, specials: &Specials, mode: Mode) -> Result<Tensor> {
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
struct CaptionTask<'a> {
    model: &'a Captioner,
    train: Examples,
    valid: Option<Examples>,
    specials: Specials,
    size: usize,
    batch: usize,
    seed: u64,
    order: Vec<usize>,
}

/// A permutation of `0..n` drawn from the seed and the epoch (Fisher–Yates on SplitMix64).
fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut state = seed ^ (epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 0xCA97;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    order
}

impl Task for CaptionTask<'_> {
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
        let loss = batch_loss(self.model, &batch, &self.specials, Mode::Train { seed })?;
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
            let loss = batch_loss(self.model, &batch, &self.specials, Mode::Eval)?;
            sum += loss.to_scalar::<f32>()? as f64 * batch.tokens as f64;
            tokens += batch.tokens;
        }
        Ok(Some(sum / tokens.max(1) as f64))
    }

    fn carry(&self) -> Result<HashMap<String, Tensor>> {
        Ok(HashMap::new())
    }

    fn restore_carry(&mut self, _carry: &HashMap<String, Tensor>) -> Result<()> {
        Ok(())
    }
}

/// What [`train_captioner`] reports beside the loop's summary.
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
pub(crate) struct PreparedImages {
    pub train: LoadedImages,
    pub valid: LoadedImages,
}

/// Reads the captions file, splits it by image and decodes the images.
pub(crate) fn prepare_images(config: &CaptionTrainConfig, size: usize) -> Result<PreparedImages> {
    // A hub split or parquet file (issue 11) is written out once as captions.txt and images/.
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

fn build_tokenizer(config: &CaptionTrainConfig, train: &LoadedImages) -> Result<Tokenizer> {
    let text: Vec<&str> = train
        .items
        .iter()
        .flat_map(|item| item.captions.iter().map(String::as_str))
        .collect();
    let text = text.join("\n");
    Ok(Tokenizer::build_word(
        &[text.as_str()],
        &WordOptions {
            lowercase: config.lowercase,
            min_freq: config.min_freq,
            max_size: config.max_vocab,
            ..WordOptions::default()
        },
    )?)
}

/// Trains a captioner into the model directory `out` (created if needed): writes `tokenizer.json` (words of
/// the training captions) and `config.json`, then runs the loop ([`train`]). `model.vocab_size` is set from
/// the tokenizer; `model.encoder.image_size` decides the size images are resized to.
///
/// Without `options.resume`, `out` must not hold a model yet. With it, settings, tokenizer and data come from
/// `out/`; only `config.optim.steps` / `epochs`, the columns (`image_column`, `caption_column`; when set)
/// and `--skip-nonfinite` are taken from `config`.
pub fn train_captioner(
    model: &CaptionerConfig,
    config: &CaptionTrainConfig,
    out: &Path,
    options: RunOptions<'_>,
) -> Result<CaptionTrainReport> {
    let config_path = out.join("config.json");
    let (dir_config, tokenizer, images) = if options.resume {
        let mut saved = read_caption_config(out)?;
        let optim = &mut saved.train.optim;
        optim.steps = config.optim.steps.or(optim.steps);
        optim.epochs = config.optim.epochs.or(optim.epochs);
        if config.optim.on_nonfinite == NonFinite::Skip {
            optim.on_nonfinite = NonFinite::Skip;
        }
        // The saved columns, unless others are given.
        if config.image_column.is_some() {
            saved.train.image_column = config.image_column.clone();
        }
        if config.caption_column.is_some() {
            saved.train.caption_column = config.caption_column.clone();
        }
        let tokenizer = Tokenizer::from_file(&out.join("tokenizer.json"))?;
        let images = prepare_images(&saved.train, saved.model.encoder.image_size)?;
        (saved, tokenizer, images)
    } else {
        if config_path.exists() {
            return Err(Error::OutputExists {
                dir: out.to_path_buf(),
            });
        }
        config.optim.validate()?;
        if config.batch == 0 || config.max_words == 0 {
            return Err(Error::InvalidSetting(
                "--batch and --max-words must be at least 1".to_string(),
            ));
        }
        let config = CaptionTrainConfig {
            images: absolute(&config.images),
            captions: absolute(&config.captions),
            ..config.clone()
        };
        let images = prepare_images(&config, model.encoder.image_size)?;
        if images.train.items.is_empty() {
            return Err(Error::InvalidSetting(format!(
                "{} leaves no training image (all {} skipped)",
                config.captions,
                images.train.skipped.len()
            )));
        }
        let tokenizer = build_tokenizer(&config, &images.train)?;
        let model = CaptionerConfig {
            vocab_size: tokenizer.vocab_size(),
            ..model.clone()
        };
        let dir_config = CaptionDirConfig {
            format: FORMAT.to_string(),
            task: CAPTION_TASK.to_string(),
            model,
            train: config,
        };
        (dir_config, tokenizer, images)
    };
    std::fs::create_dir_all(out).map_err(Error::write(out))?;
    // config.json last: it marks a directory as holding a model, so everything it refers to exists first.
    let tokenizer_path = out.join("tokenizer.json");
    let tokenizer_json = tokenizer
        .as_hf()
        .to_string(true)
        .map_err(|e| Error::InvalidSetting(one_line(e)))?;
    write_bytes_atomically(&tokenizer_path, tokenizer_json.as_bytes())
        .map_err(Error::write(&tokenizer_path))?;
    let json = serde_json::to_string_pretty(&dir_config)
        .map_err(|e| Error::InvalidSetting(e.to_string()))?;
    write_bytes_atomically(&config_path, json.as_bytes()).map_err(Error::write(&config_path))?;

    let train_config = &dir_config.train;
    let specials = Specials::of(&tokenizer)?;
    let train_examples = Examples::new(&images.train, &tokenizer, train_config.max_words)?;
    let valid_examples = if images.valid.items.is_empty() {
        None
    } else {
        Some(Examples::new(
            &images.valid,
            &tokenizer,
            train_config.max_words,
        )?)
    };
    let mut bytes = Vec::new();
    for item in images.train.items.iter().chain(&images.valid.items) {
        bytes.extend_from_slice(item.image.as_bytes());
        bytes.push(0);
    }
    for (image, ids) in &train_examples.pairs {
        bytes.extend_from_slice(&(*image as u32).to_le_bytes());
        bytes.extend(ids.iter().flat_map(|id| id.to_le_bytes()));
    }
    let fingerprint = format!("{:016x}-{}", fnv1a(&bytes), train_examples.pairs.len());
    let skipped: Vec<_> = images
        .train
        .skipped
        .iter()
        .chain(&images.valid.skipped)
        .cloned()
        .collect();
    if options.progress {
        eprintln!(
            "data: {} training images ({} captions), {} validation images, {} skipped; vocabulary {}; model: {} parameters",
            images.train.items.len(),
            train_examples.pairs.len(),
            images.valid.items.len(),
            skipped.len(),
            tokenizer.vocab_size(),
            dir_config.model.num_parameters()
        );
    }
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let model = Captioner::new(
        &dir_config.model,
        seeded_var_builder(&varmap, train_config.optim.seed, &device),
    )?;
    let mut task = CaptionTask {
        model: &model,
        train: train_examples,
        valid: valid_examples,
        specials,
        size: dir_config.model.encoder.image_size,
        batch: train_config.batch,
        seed: train_config.optim.seed,
        order: Vec::new(),
    };
    let train_captions = task.train.pairs.len();
    let summary = train(
        &mut task,
        &varmap,
        &train_config.optim,
        out,
        &fingerprint,
        options,
    )?;
    Ok(CaptionTrainReport {
        summary,
        train_images: images.train.items.len(),
        train_captions,
        valid_images: images.valid.items.len(),
        skipped,
        vocab_size: tokenizer.vocab_size(),
        parameters: dir_config.model.num_parameters(),
    })
}

/// A local path made absolute (canonical when it exists), so that `--resume` works from any directory.
fn absolute(path: &str) -> String {
    if path.starts_with(seqlab_data::HUB_SCHEME) {
        return path.to_string();
    }
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .map_or_else(|_| path.to_string(), |p| p.display().to_string())
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

    #[test]
    fn a_config_without_the_column_settings_still_loads() {
        // config.json files written before --image-column and --caption-column existed.
        let config: CaptionTrainConfig =
            serde_json::from_str(r#"{"captions": "captions.txt", "images": "images"}"#).unwrap();
        assert_eq!(config.columns(), ColumnFlags::default());
    }

    #[test]
    fn column_settings_for_a_captions_file_are_refused() {
        let config = CaptionTrainConfig {
            captions: "captions.txt".into(),
            caption_column: Some("text".into()),
            ..CaptionTrainConfig::default()
        };
        let error = config.caption_files().unwrap_err().to_string();
        assert!(
            error.contains("--caption-column") && error.contains("captions.txt"),
            "{error}"
        );
        // Saved columns do not make another captions file an error; given ones do.
        let (file, _) = config
            .caption_files_of("other.txt", "images", &ColumnFlags::default())
            .unwrap();
        assert_eq!(file, PathBuf::from("other.txt"));
        let given = ColumnFlags {
            image: Some("picture".into()),
            ..ColumnFlags::default()
        };
        let error = config
            .caption_files_of("other.txt", "images", &given)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--image-column") && error.contains("other.txt"),
            "{error}"
        );
    }
}
