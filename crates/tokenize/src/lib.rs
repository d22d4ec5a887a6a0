//! Character- and word-level tokenizers for seqlab, saved and loaded as a standard `tokenizer.json`.
//!
//! The main design decision: every tokenizer is a [`tokenizers::Tokenizer`] (Hugging Face's library)
//! inside, assembled from components that exist in its Rust and Python versions alike. A tokenizer
//! built here therefore saves as a `tokenizer.json` that Python's `tokenizers.Tokenizer.from_file`
//! loads and encodes to the same ids, and any `tokenizer.json` made elsewhere (BPE, WordPiece,
//! Unigram, ...) loads here as it is. seqlab adds only what the library lacks: building a vocabulary
//! from a corpus with the lesson's conventions, and readable decoding for word tokens.
//!
//! Both of seqlab's tokenizers are the same pipeline with different parts:
//!
//! 1. normalizer: Unicode NFC (on by default), then lowercasing (off by default);
//! 2. pre-tokenizer: a `Split` on a regular expression — every character for [`Kind::Char`]; words
//!    (with inner apostrophes and hyphens), numbers, single punctuation marks and newlines for
//!    [`Kind::Word`], other whitespace dropped;
//! 3. model: `WordLevel`, one id per token, `<unk>` for anything outside the vocabulary;
//! 4. special tokens `<pad>` = 0, `<unk>` = 1, `<bos>` = 2, `<eos>` = 3, registered as special added
//!    tokens; encoding never adds them ([`Tokenizer::encode`] is Python's
//!    `encode(text, add_special_tokens=False)`), the pipelines insert them by id;
//! 5. decoding: characters are concatenated (the `Fuse` decoder, so Python agrees); words are joined
//!    by seqlab's own typographic rules (no space before `,` or after `(`, quotes attached to what
//!    they enclose, newlines restored), which no `tokenizers` decoder can express: Python's `decode`
//!    of a word tokenizer joins its tokens with spaces.
//!
//! ```
//! use seqlab_tokenize::{Tokenizer, WordOptions};
//!
//! let corpus = "The kettle sang. \"Tea?\" asked Mara; Jon didn't answer the cup.\n\nThe well-worn cup (blue) waited.";
//! let tokenizer = Tokenizer::build_word(&[corpus], &WordOptions::default())?;
//! assert_eq!(tokenizer.pad_id(), Some(0));
//!
//! let ids = tokenizer.encode("\"Tea?\" asked Jon.\n\nThe cup didn't answer;  the (blue) kettle sang.")?;
//! assert_eq!(tokenizer.id_to_token(ids[1]).as_deref(), Some("Tea"));
//! assert_eq!(
//!     tokenizer.decode(&ids)?,
//!     "\"Tea?\" asked Jon.\n\nThe cup didn't answer; the (blue) kettle sang."
//! );
//!
//! // Words outside the vocabulary become <unk>, which decoding shows.
//! let ids = tokenizer.encode("The blue kettle whistled.")?;
//! assert_eq!(ids[3], tokenizer.unk_id().unwrap());
//! assert_eq!(tokenizer.decode(&ids)?, "The blue kettle <unk>.");
//! # Ok::<(), seqlab_tokenize::Error>(())
//! ```
#![warn(missing_docs)]

mod chars;
mod corpus;
mod detokenize;
mod error;
mod specials;
mod tokenizer;
mod vocab;
mod words;

pub use crate::chars::CharOptions;
pub use crate::corpus::{read_corpus, read_text};
pub use crate::error::{Error, Result};
pub use crate::specials::{Framing, Specials, BOS, EOS, PAD, SPECIAL_TOKENS, UNK};
pub use crate::tokenizer::{Kind, Tokenizer, VocabOptions};
pub use crate::words::WordOptions;
