//! Data for seqlab's pipelines: text corpora, labelled and parallel text, captioned images, hub datasets, and
//! batching with padding and lengths.
//!
//! Design: every reader returns plain Rust values (strings, ids, labels) with errors that name the file and
//! line; batching turns them into tensors with per-row lengths, which the recurrent stack consumes directly
//! (PyTorch's packed sequences without the packing).
//!
//! This crate is still a skeleton: the readers land with their pipelines.
//!
//! ```
//! // Nothing to run yet; the crate compiles into every seqlab build.
//! ```
#![warn(missing_docs)]
