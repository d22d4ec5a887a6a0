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
//! Real datasets come from the Hugging Face Hub by address (`hf://datasets/OWNER/NAME[:[CONFIG/]SPLIT]`):
//! the parquet files the hub serves under `refs/convert/parquet`, through hf-hub's cache, cache first
//! ([`Hub`], [`HubDataset`]). Every pipeline gets its rows through one reader, [`Table`] (parquet, CSV, TSV,
//! text), by column role ([`text_rows`], [`labelled_rows`], [`translation_pairs`], [`caption_rows`]); a
//! small [`catalogue`] names the usual datasets with their columns and licences.
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

mod captions;
mod catalogue;
mod corpus;
mod delimited;
mod error;
mod extract;
mod hub;
mod hub_dataset;
mod images;
mod labelled;
mod padded;
mod parallel;
mod parquet_io;
mod rows;
mod shapes;
mod stream;
mod table;

pub use captions::{
    load_images, parse_captions, read_captions, split_by_image, CaptionedImage, LoadedImages,
    OnBadImage,
};
pub use catalogue::{catalogue, entry_for, find_dataset, CatalogueEntry};
pub use corpus::{
    default_book, is_table, load_corpus, load_corpus_with, resolve_source, split_tail,
    strip_gutenberg, Corpus, DEFAULT_BOOK,
};
pub use error::{Error, Result};
pub use extract::{caption_files, caption_files_with, extract_captions, extracted_dir};
pub use hub::{cache_dir as hub_cache_dir, HubFile, HUB_SCHEME};
pub use hub_dataset::{
    is_hub_dataset, Hub, HubDataset, SplitFiles, DEFAULT_CONFIG, DEFAULT_SPLIT, PARQUET_REVISION,
};
pub use images::{decode_image, images_tensor, load_image, ImageOptions};
pub use labelled::{
    agnews_rows, assign_labels, infer_labels, parse_csv, parse_tsv, read_label_names,
    read_labelled, CsvRecord, Example, LabelKind, Labelled, LabelledFormat, LabelledRow, TextField,
};
pub use padded::{bucket_batches, sorted_batches, PaddedBatch, BUCKET_POOL};
pub use parallel::{parse_parallel, read_parallel, BadLine, Pair, Parallel, ParallelOptions};
pub use rows::{
    caption_rows, catalogue_columns, is_labelled_table, labelled_rows, labelled_table_rows,
    parallel_text, text_rows, translation_pairs, CaptionRow, Columns, LabelledRows,
};
pub use shapes::{
    generate_shapes, is_held_out, ShapesConfig, ShapesSplit, COLOURS, POSITIONS, SHAPES,
};
pub use stream::{epoch_offset, Batch, StreamBatches};
pub use table::{source_files, Column, Table, Values};
