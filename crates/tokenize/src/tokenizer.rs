//! The `Tokenizer` type: building, loading, saving, encoding and decoding.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use tokenizers::models::ModelWrapper;

use crate::chars::{self, CharOptions};
use crate::corpus::read_utf8;
use crate::detokenize;
use crate::error::{one_line, Error, Result};
use crate::specials::{Specials, BOS_SPELLINGS, EOS_SPELLINGS, PAD_SPELLINGS, UNK_SPELLINGS};
use crate::words::{self, WordOptions};

/// What a tokenizer splits text into; it decides how [`Tokenizer::decode`] joins tokens back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// seqlab's character-level tokenizer: tokens are concatenated.
    Char,
    /// seqlab's word-level tokenizer: tokens are joined into readable text.
    Word,
    /// Any other tokenizer.json (BPE, WordPiece, Unigram, ...): its own decoder joins the tokens.
    Other,
}

/// The vocabulary settings that the `char` and `word` tokenizers share (see [`Tokenizer::build_named`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VocabOptions {
    /// Lowercase the text first.
    pub lowercase: bool,
    /// Keep only tokens that occur at least this often; rarer ones become `<unk>`.
    pub min_freq: usize,
    /// The largest vocabulary, the four special tokens included.
    pub max_size: Option<usize>,
}

/// A tokenizer: text to ids and back, saved and loaded as a standard `tokenizer.json`.
///
/// It wraps a [`tokenizers::Tokenizer`], reachable through [`Tokenizer::as_hf`], so that every
/// tokenizer built here encodes identically in Python's `tokenizers`, and every `tokenizer.json`
/// made elsewhere works here as it is.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    kind: Kind,
    specials: Specials,
    /// One more than the largest id.
    vocab_size: usize,
    /// Special tokens that `decode` leaves out: every special token but the unknown one.
    hidden: HashSet<u32>,
}

impl Tokenizer {
    /// Builds a character-level tokenizer from a corpus: `<pad>` = 0, `<unk>` = 1, `<bos>` = 2,
    /// `<eos>` = 3, then the characters of `texts`, most frequent first (ties in code-point order).
    ///
    /// Errors: [`Error::EmptyCorpus`] when `texts` hold only whitespace, [`Error::NoTokens`] when
    /// no character is frequent enough, [`Error::MaxSizeTooSmall`].
    pub fn build_char(texts: &[&str], options: &CharOptions) -> Result<Tokenizer> {
        Ok(Self::from_hf(chars::build(texts, options)?))
    }

    /// Builds a word-level tokenizer from a corpus: `<pad>` = 0, `<unk>` = 1, `<bos>` = 2, `<eos>` = 3,
    /// then the words, numbers, punctuation marks and `"\n"` of `texts`, most frequent first (ties in
    /// code-point order).
    ///
    /// Errors as for [`Tokenizer::build_char`].
    pub fn build_word(texts: &[&str], options: &WordOptions) -> Result<Tokenizer> {
        Ok(Self::from_hf(words::build(texts, options)?))
    }

    /// The tokenizer a setting names: `char` and `word` build one from `texts` with `vocab`'s options
    /// (see [`Tokenizer::build_char`] and [`Tokenizer::build_word`]); anything else is the path of a
    /// `tokenizer.json` to load ([`Tokenizer::from_file`]). What every pipeline's `--tokenizer` means.
    pub fn build_named(name: &str, texts: &[&str], vocab: &VocabOptions) -> Result<Tokenizer> {
        match name {
            "char" => Tokenizer::build_char(
                texts,
                &CharOptions {
                    lowercase: vocab.lowercase,
                    min_freq: vocab.min_freq,
                    max_size: vocab.max_size,
                    ..CharOptions::default()
                },
            ),
            "word" => Tokenizer::build_word(
                texts,
                &WordOptions {
                    lowercase: vocab.lowercase,
                    min_freq: vocab.min_freq,
                    max_size: vocab.max_size,
                    ..WordOptions::default()
                },
            ),
            path => Tokenizer::from_file(Path::new(path)),
        }
    }

    /// Loads a `tokenizer.json`: one saved by seqlab, or any other (BPE, WordPiece, ...), as it is.
    ///
    /// Errors name the file: [`Error::Read`], [`Error::NotUtf8`], [`Error::InvalidTokenizerFile`].
    pub fn from_file(path: &Path) -> Result<Tokenizer> {
        let json = read_utf8(path)?;
        let json = json.strip_prefix('\u{feff}').unwrap_or(&json);
        let invalid = |reason: String| Error::InvalidTokenizerFile {
            path: path.to_path_buf(),
            reason,
        };
        let inner = parse_without_panicking(json.as_bytes())
            .ok_or_else(|| {
                invalid(match serde_json::from_str::<serde_json::Value>(json) {
                    Err(error) => one_line(error),
                    Ok(_) => {
                        "its decoder section is not one the tokenizers crate knows".to_string()
                    }
                })
            })?
            .map_err(|error| invalid(one_line(error)))?;
        Ok(Self::from_hf(inner))
    }

    /// Wraps a tokenizer of the `tokenizers` crate.
    pub fn from_hf(inner: tokenizers::Tokenizer) -> Tokenizer {
        let kind = kind_of(&inner);
        let specials = specials_of(&inner);
        let hidden = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(id, token)| token.special && Some(*id) != specials.unk)
            .map(|(id, _)| id)
            .collect();
        let vocab_size = inner
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |&id| id as usize + 1);
        Tokenizer {
            inner,
            kind,
            specials,
            vocab_size,
            hidden,
        }
    }

    /// The wrapped tokenizer of the `tokenizers` crate.
    pub fn as_hf(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Saves as a standard `tokenizer.json`, atomically: the JSON goes to a temporary file in the same
    /// directory, which is then renamed over `path`, so that a crash never leaves half a file.
    ///
    /// Errors: [`Error::Write`] naming the file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = self.inner.to_string(true).map_err(Error::tokenizers)?;
        write_atomically(path, json.as_bytes()).map_err(|error| Error::Write {
            path: path.to_path_buf(),
            error,
        })
    }

    /// Encodes text into ids, without adding special tokens: what Python's
    /// `encode(text, add_special_tokens=False).ids` gives. Characters or words outside the
    /// vocabulary become `<unk>`.
    ///
    /// Special tokens spelled out in the text (`<eos>`) are recognised as such, as in every
    /// `tokenizers` tokenizer.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(Error::tokenizers)?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Decodes ids into text, leaving out special tokens except `<unk>`, which stays visible as
    /// `<unk>` (it stands for a real word or character).
    ///
    /// A char tokenizer concatenates its tokens, so `decode(encode(text)) == text` for text within its
    /// vocabulary (after NFC and lowercasing, when they are on). A word tokenizer joins its tokens into
    /// readable text (`He said, "no."`; see the rules in the crate documentation); Python's `decode`
    /// of the same tokenizer.json joins them with spaces instead. Other tokenizers use their own
    /// decoder.
    ///
    /// Errors: [`Error::UnknownId`] for an id outside the vocabulary.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut kept = Vec::with_capacity(ids.len());
        for &id in ids {
            if self.inner.id_to_token(id).is_none() {
                return Err(Error::UnknownId {
                    id,
                    vocab_size: self.vocab_size(),
                });
            }
            if !self.hidden.contains(&id) {
                kept.push(id);
            }
        }
        match self.kind {
            Kind::Char | Kind::Word => {
                let tokens: Vec<String> = kept
                    .iter()
                    .filter_map(|&id| self.inner.id_to_token(id))
                    .collect();
                let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
                Ok(match self.kind {
                    Kind::Word => detokenize::join(&tokens),
                    _ => tokens.concat(),
                })
            }
            // Some decoders of `tokenizers` 0.23 (`BPEDecoder`) overflow on no tokens at all.
            Kind::Other if kept.is_empty() => Ok(String::new()),
            Kind::Other => self.inner.decode(&kept, false).map_err(Error::tokenizers),
        }
    }

    /// What the tokenizer splits text into.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The number of ids, special tokens included (one more than the largest id): the size of a
    /// model's embedding and output layer.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The ids of the special tokens.
    pub fn specials(&self) -> Specials {
        self.specials
    }

    /// The id of the padding token (`<pad>` = 0 in seqlab's tokenizers).
    pub fn pad_id(&self) -> Option<u32> {
        self.specials.pad
    }

    /// The id of the unknown token (`<unk>` = 1 in seqlab's tokenizers).
    pub fn unk_id(&self) -> Option<u32> {
        self.specials.unk
    }

    /// The id of the beginning-of-sequence token (`<bos>` = 2 in seqlab's tokenizers).
    pub fn bos_id(&self) -> Option<u32> {
        self.specials.bos
    }

    /// The id of the end-of-sequence token (`<eos>` = 3 in seqlab's tokenizers).
    pub fn eos_id(&self) -> Option<u32> {
        self.specials.eos
    }

    /// The token of an id; `None` outside the vocabulary.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id of a token; `None` when it is not in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

/// A seqlab tokenizer is recognised by its model and its pre-tokenizer's exact pattern.
fn kind_of(inner: &tokenizers::Tokenizer) -> Kind {
    if !matches!(inner.get_model(), ModelWrapper::WordLevel(_)) {
        return Kind::Other;
    }
    let pre_tokenizer = inner.get_pre_tokenizer();
    if pre_tokenizer.is_some() && pre_tokenizer == chars::pre_tokenizer().ok().as_ref() {
        Kind::Char
    } else if pre_tokenizer.is_some() && pre_tokenizer == words::pre_tokenizer().ok().as_ref() {
        Kind::Word
    } else {
        Kind::Other
    }
}

fn specials_of(inner: &tokenizers::Tokenizer) -> Specials {
    let first = |spellings: &[&str]| spellings.iter().find_map(|token| inner.token_to_id(token));
    let model_unk = match inner.get_model() {
        ModelWrapper::WordLevel(model) => Some(model.unk_token.as_str()),
        ModelWrapper::WordPiece(model) => Some(model.unk_token.as_str()),
        ModelWrapper::BPE(model) => model.unk_token.as_deref(),
        _ => None,
    };
    Specials {
        pad: first(PAD_SPELLINGS),
        unk: model_unk
            .and_then(|token| inner.token_to_id(token))
            .or_else(|| first(UNK_SPELLINGS)),
        bos: first(BOS_SPELLINGS),
        eos: first(EOS_SPELLINGS),
    }
}

/// Writes `bytes` to a temporary file beside `path`, flushes it to disk and renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = temporary_path(path).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file")
    })?;
    let written = std::fs::File::create(&temporary).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    let renamed = written.and_then(|()| std::fs::rename(&temporary, path));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    renamed
}

/// `dir/.name.PID.tmp` for `dir/name`: hidden, in the same directory (a rename never crosses file
/// systems), unique to the process.
fn temporary_path(path: &Path) -> Option<PathBuf> {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name()?);
    name.push(format!(".{}.tmp", std::process::id()));
    Some(path.with_file_name(name))
}

/// `tokenizers::Tokenizer::from_bytes`, with its panics caught: the `tokenizers` crate (0.23) unwraps the
/// result of parsing a `decoder` section (`expect("Helper")`), so a malformed one panics instead of returning
/// an error (found by the `tokenizer_json` fuzz target). `None` means it panicked; the panic message is kept
/// off stderr so the user sees one error line.
fn parse_without_panicking(bytes: &[u8]) -> Option<tokenizers::Result<tokenizers::Tokenizer>> {
    use std::sync::Mutex;
    static HOOK: Mutex<()> = Mutex::new(());
    let _guard = HOOK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(|| tokenizers::Tokenizer::from_bytes(bytes));
    std::panic::set_hook(previous);
    result.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_temporary_file_sits_beside_the_target() {
        let suffix = format!(".{}.tmp", std::process::id());
        assert_eq!(
            temporary_path(Path::new("models/lm/tokenizer.json")),
            Some(PathBuf::from(format!("models/lm/.tokenizer.json{suffix}")))
        );
        assert_eq!(
            temporary_path(Path::new("tokenizer.json")),
            Some(PathBuf::from(format!(".tokenizer.json{suffix}")))
        );
        assert_eq!(temporary_path(Path::new("..")), None);
        assert_eq!(temporary_path(Path::new("/")), None);
    }
}
