//! Data for seqlab's pipelines: the text corpus of a language model (local files, Hugging Face Hub files,
//! or a default book), its validation split, and contiguous batches for stateful truncated backpropagation
//! through time.
//!
//! The main design decision: a language model's text is one token stream laid out as `batch` parallel rows,
//! and batch `k + 1` continues batch `k` row by row ([`StreamBatches`]). A model carries its recurrent state
//! from one batch to the next (detached), so it learns dependencies longer than one batch while
//! backpropagation stays truncated at `seq_len` steps. Every row starts with `<bos>` and the zero state, the
//! way generation starts. The only randomness is where each epoch's stream begins ([`epoch_offset`],
//! [`StreamBatches::for_epoch`]), a pure function of the seed and the epoch, so a resumed run sees exactly the batches an uninterrupted one would.
//!
//! The default corpus needs no network: the book *Around the World in 80 Days* ships inside the `esaxx-rs`
//! crate, a dependency of `tokenizers`, so it lies in the cargo registry of every machine that builds
//! seqlab ([`default_book`]).
//!
//! ```
//! use seqlab_data::StreamBatches;
//!
//! # fn main() -> seqlab_data::Result<()> {
//! let ids: Vec<u32> = (10..30).collect(); // a stream of 20 tokens
//! let batches = StreamBatches::new(&ids, Some(2), 2, 4, 0, "text")?; // 2 rows, 4 steps, <bos> = 2
//! let first = batches.get(0).unwrap();
//! let second = batches.get(1).unwrap();
//! assert_eq!(first.inputs, [2, 10, 11, 12, /* row 1: */ 2, 20, 21, 22]);
//! assert_eq!(first.targets, [10, 11, 12, 13, 20, 21, 22, 23]);
//! assert_eq!(second.inputs[..4], [13, 14, 15, 16]); // row 0 goes on where it stopped
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod corpus;
mod error;
mod hub;
mod stream;

pub use corpus::{
    default_book, load_corpus, resolve_source, split_tail, strip_gutenberg, Corpus, DEFAULT_BOOK,
};
pub use error::{Error, Result};
pub use hub::{cache_dir as hub_cache_dir, HubFile, HUB_SCHEME};
pub use stream::{epoch_offset, Batch, StreamBatches};
