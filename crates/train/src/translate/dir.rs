//! A translator's directory: loading it, translating, and measuring BLEU.

use std::ops::ControlFlow;
use std::path::Path;

use candle_core::{Device, Tensor};
use seqlab_data::{sorted_batches, Columns, Pair};
use seqlab_decode::{beam_search, generate, BeamConfig, Decoding, GenerateConfig};
use seqlab_models::{Mode, Seq2Seq, TeacherForcing};
use seqlab_tokenize::Tokenizer;

use super::config::{check_columns, read_pairs_from, TranslateTrainConfig};
use super::data::encode_pairs;
use super::{TranslatePipeline, SOURCE_TOKENIZER, TARGET_TOKENIZER};
use crate::bleu::{corpus_bleu_with, Bleu, BleuOptions};
use crate::error::{Error, Result};
use crate::model_dir::{framing, read_model_dir, read_tokenizer, write_tokenizer, ModelDir};
use crate::pipeline::{load, Loaded};

/// A translator's `config.json`.
pub type TranslateDirConfig = ModelDir<TranslatePipeline>;

/// What a translator's directory holds beside `config.json` and the weights: one tokenizer per side.
#[derive(Debug, Clone)]
pub struct TranslatorFiles {
    /// `tokenizer.source.json`.
    pub source: Tokenizer,
    /// `tokenizer.target.json`.
    pub target: Tokenizer,
}

/// One translated sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    /// The translation, detokenized.
    pub text: String,
    /// Its target token ids (without `<eos>`).
    pub ids: Vec<u32>,
    /// The source tokens as the model read them (unknown words as `<unk>`).
    pub source_tokens: Vec<String>,
    /// The target tokens, then `<eos>` when decoding ended with it: the rows of `attention`.
    pub target_tokens: Vec<String>,
    /// Attention weights, one row per entry of `target_tokens`, one column per source token; `None` for a
    /// model without attention.
    pub attention: Option<Vec<Vec<f32>>>,
}

/// Corpus BLEU of a translator on pairs.
#[derive(Debug, Clone)]
pub struct TranslateEval {
    /// BLEU against the references (sacreBLEU's default; lowercased when the model is).
    pub bleu: Bleu,
    /// Sentences translated.
    pub sentences: usize,
    /// The translations, in the order of the pairs.
    pub hypotheses: Vec<String>,
}

/// A translator loaded from its directory.
#[derive(Debug)]
pub struct LoadedTranslator {
    /// Its `config.json`.
    pub config: TranslateDirConfig,
    /// `tokenizer.source.json`.
    pub source: Tokenizer,
    /// `tokenizer.target.json`.
    pub target: Tokenizer,
    /// The weights of `model.safetensors`.
    pub model: Seq2Seq,
}

/// Reads and checks `dir/config.json`: format `seqlab/1`, task `translate`.
pub fn read_config(dir: &Path) -> Result<TranslateDirConfig> {
    read_model_dir(dir)
}

/// The two tokenizers of a translator's directory, checked against its `config.json`.
pub(super) fn read_files(dir: &Path, config: &TranslateDirConfig) -> Result<TranslatorFiles> {
    Ok(TranslatorFiles {
        source: read_tokenizer(dir, SOURCE_TOKENIZER, config.model.source_vocab)?,
        target: read_tokenizer(dir, TARGET_TOKENIZER, config.model.target_vocab)?,
    })
}

/// Writes the two tokenizers into `dir`.
pub(super) fn write_files(files: &TranslatorFiles, dir: &Path) -> Result<()> {
    write_tokenizer(&files.source, &dir.join(SOURCE_TOKENIZER))?;
    write_tokenizer(&files.target, &dir.join(TARGET_TOKENIZER))
}

/// Loads a translator's directory, checking that the tokenizers and the weights agree with the config.
pub fn load_translator(dir: &Path, device: &Device) -> Result<LoadedTranslator> {
    let Loaded {
        config,
        artifacts,
        model,
    } = load::<TranslatePipeline>(dir, device)?;
    Ok(LoadedTranslator {
        config,
        source: artifacts.source,
        target: artifacts.target,
        model,
    })
}

/// Sentences decoded together by greedy decoding.
const GREEDY_BATCH: usize = 64;

impl LoadedTranslator {
    /// Translates `sentences`. A sentence longer than the model's `max_source_tokens` is an error naming it;
    /// an empty one translates to nothing.
    pub fn translate(&self, sentences: &[String], decoding: Decoding) -> Result<Vec<Translation>> {
        let max = self.config.train.max_source_tokens;
        let mut sources = Vec::with_capacity(sentences.len());
        for (i, sentence) in sentences.iter().enumerate() {
            let ids = self.source.encode(sentence)?;
            if ids.len() > max {
                return Err(Error::InvalidSetting(format!(
                    "sentence {} has {} source tokens, more than the {max} this model reads \
                     (max_source_tokens in its config.json)",
                    i + 1,
                    ids.len()
                )));
            }
            sources.push(ids);
        }
        let outputs = self.decode_ids(&sources, decoding)?;
        sources
            .iter()
            .zip(outputs)
            .map(|(src, ids)| self.describe(src, ids))
            .collect()
    }

    /// Decodes token-id sources (each within the model's limit): the target ids of each, without `<eos>`,
    /// and whether it ended with `<eos>`.
    fn decode_ids(
        &self,
        sources: &[Vec<u32>],
        decoding: Decoding,
    ) -> Result<Vec<(Vec<u32>, bool)>> {
        let specials = framing(&self.target, "the target tokenizer")?;
        let device = self.model.decoder().device().clone();
        let max_len =
            |src_len: usize| (2 * src_len + 10).min(self.config.train.max_target_tokens + 1);
        let mut outputs: Vec<(Vec<u32>, bool)> = vec![(Vec::new(), false); sources.len()];
        let present: Vec<usize> = (0..sources.len())
            .filter(|&i| !sources[i].is_empty())
            .collect();
        let lengths: Vec<usize> = present.iter().map(|&i| sources[i].len()).collect();
        let batch = match decoding {
            Decoding::Sample { .. } => GREEDY_BATCH,
            Decoding::Beam { .. } => 1,
        };
        for chunk in sorted_batches(&lengths, batch)? {
            let rows: Vec<usize> = chunk.iter().map(|&k| present[k]).collect();
            let src_len = rows.iter().map(|&i| sources[i].len()).max().unwrap_or(1);
            let mut ids = Vec::with_capacity(rows.len() * src_len);
            for &i in &rows {
                ids.extend_from_slice(&sources[i]);
                ids.extend(std::iter::repeat_n(
                    specials.pad,
                    src_len - sources[i].len(),
                ));
            }
            let src = Tensor::from_vec(ids, (rows.len(), src_len), &device)?;
            let row_lengths: Vec<usize> = rows.iter().map(|&i| sources[i].len()).collect();
            let state = self.model.encode(&src, &row_lengths, Mode::Eval)?;
            // `<unk>` is never written: it is no translation, and it would cost three words of BLEU (`< unk >`).
            let mut banned = vec![specials.pad, specials.bos];
            banned.extend(self.target.unk_id());
            match decoding {
                Decoding::Sample { sampling, seed } => {
                    let config = GenerateConfig {
                        sampling,
                        seed,
                        max_len: max_len(src_len),
                        eos: vec![specials.eos],
                        banned,
                        ..GenerateConfig::default()
                    };
                    let bos = Tensor::new(vec![specials.bos; rows.len()], &device)?;
                    let generated =
                        generate(self.model.decoder(), &bos, state, &config, |_, _| {
                            ControlFlow::Continue(())
                        })?;
                    for (&i, g) in rows.iter().zip(generated) {
                        let ended = matches!(g.stop, seqlab_decode::StopReason::EndToken(_));
                        outputs[i] = (g.tokens, ended);
                    }
                }
                Decoding::Beam { width, alpha } => {
                    let config = BeamConfig {
                        width,
                        max_len: max_len(src_len),
                        alpha,
                        eos: vec![specials.eos],
                        n_best: 1,
                        banned,
                    };
                    let bos = Tensor::new(&[specials.bos], &device)?;
                    let best = beam_search(self.model.decoder(), &bos, state, &config)?;
                    if let Some(h) = best.into_iter().next() {
                        outputs[rows[0]] = (h.tokens, h.ended);
                    }
                }
            }
        }
        Ok(outputs)
    }

    /// The text, tokens and attention matrix of one decoded sentence.
    fn describe(&self, src: &[u32], (ids, ended): (Vec<u32>, bool)) -> Result<Translation> {
        let token = |tokenizer: &Tokenizer, id: u32| {
            tokenizer
                .id_to_token(id)
                .unwrap_or_else(|| "<unk>".to_string())
        };
        let source_tokens: Vec<String> = src.iter().map(|&id| token(&self.source, id)).collect();
        let mut target_tokens: Vec<String> =
            ids.iter().map(|&id| token(&self.target, id)).collect();
        if ended {
            target_tokens.push(seqlab_tokenize::EOS.to_string());
        }
        let attention = if src.is_empty() || target_tokens.is_empty() {
            None
        } else {
            self.attention_matrix(src, &ids, target_tokens.len())?
        };
        Ok(Translation {
            text: self.target.decode(&ids)?,
            ids,
            source_tokens,
            target_tokens,
            attention,
        })
    }

    /// The attention of the decoder producing `ids` (and `<eos>` when `rows` is one more) from `src`: the
    /// teacher-forced pass over its own output, which equals what decoding computed.
    fn attention_matrix(
        &self,
        src: &[u32],
        ids: &[u32],
        rows: usize,
    ) -> Result<Option<Vec<Vec<f32>>>> {
        let specials = framing(&self.target, "the target tokenizer")?;
        let device = self.model.decoder().device().clone();
        let mut tgt_in = vec![specials.bos];
        tgt_in.extend_from_slice(&ids[..rows.saturating_sub(1).min(ids.len())]);
        let src_t = Tensor::from_slice(src, (1, src.len()), &device)?;
        let tgt_t = Tensor::from_slice(&tgt_in, (1, tgt_in.len()), &device)?;
        let out = self.model.forward(
            &src_t,
            &[src.len()],
            &tgt_t,
            Mode::Eval,
            TeacherForcing::default(),
        )?;
        match out.attention {
            Some(weights) => {
                let mut matrix: Vec<Vec<f32>> = weights.squeeze(0)?.to_vec2()?;
                matrix.truncate(rows);
                Ok(Some(matrix))
            }
            None => Ok(None),
        }
    }

    /// Corpus BLEU of free-running decodes of `pairs`' sources against their targets. With `strict`, a
    /// source longer than the model's `max_source_tokens` is an error naming `file` and the line; without,
    /// such pairs are left out (as in training). [`TranslateEval::sentences`] counts the pairs scored.
    pub fn evaluate(
        &self,
        pairs: &[Pair],
        file: &str,
        strict: bool,
        decoding: Decoding,
    ) -> Result<TranslateEval> {
        let max_source = self.config.train.max_source_tokens;
        let encoded = encode_pairs(
            pairs,
            &self.source,
            &self.target,
            max_source,
            usize::MAX,
            strict.then_some(file),
        )?;
        let outputs = self.decode_ids(&encoded.sources, decoding)?;
        let hypotheses: Vec<String> = outputs
            .iter()
            .map(|(ids, _)| self.target.decode(ids))
            .collect::<std::result::Result<_, _>>()?;
        let references: Vec<Vec<String>> = encoded
            .indices
            .iter()
            .map(|&i| vec![pairs[i].target.clone()])
            .collect();
        let options = BleuOptions {
            lowercase: self.config.train.lowercase,
            ..BleuOptions::default()
        };
        Ok(TranslateEval {
            bleu: corpus_bleu_with(&hypotheses, &references, &options),
            sentences: hypotheses.len(),
            hypotheses,
        })
    }

    /// [`LoadedTranslator::evaluate`] on a parallel file read with the model's own settings (direction,
    /// `--strict`; no length filter), or, when `path` is `None`, on the held-out pairs of its training data.
    /// A table is read by the training run's columns.
    pub fn evaluate_file(&self, path: Option<&Path>, decoding: Decoding) -> Result<TranslateEval> {
        self.evaluate_file_with_columns(path, decoding, &Columns::new())
    }

    /// [`LoadedTranslator::evaluate_file`] reading a table by `columns`: a column they do not name is the
    /// training run's (`source_column`, `target_column` of `config.json`), else the catalogue's, else
    /// `source` and `target`. Columns given for a file that is not a table are an error.
    pub fn evaluate_file_with_columns(
        &self,
        path: Option<&Path>,
        decoding: Decoding,
        columns: &Columns,
    ) -> Result<TranslateEval> {
        let train = TranslateTrainConfig {
            source_column: columns.get("source").map(str::to_string).or(self
                .config
                .train
                .source_column
                .clone()),
            target_column: columns.get("target").map(str::to_string).or(self
                .config
                .train
                .target_column
                .clone()),
            ..self.config.train.clone()
        };
        match path {
            Some(path) => {
                let file = path.display().to_string();
                check_columns(columns, &[&file])?;
                let options = seqlab_data::ParallelOptions {
                    max_source_words: None,
                    max_target_words: None,
                    ..train.parallel_options()
                };
                let parallel = read_pairs_from(path, &options, &train.columns())?;
                self.evaluate(&parallel.pairs, &file, true, decoding)
            }
            None => {
                let (_, held_out, _, _) = train.read_pairs()?;
                if held_out.is_empty() {
                    return Err(Error::InvalidSetting(
                        "the model was trained without held-out pairs; pass --data FILE"
                            .to_string(),
                    ));
                }
                let source = train.valid.as_deref().unwrap_or(&train.data);
                self.evaluate(&held_out, source, false, decoding)
            }
        }
    }
}
