//! seqlab-tokenize: being written (see the issue tracker).
#![warn(missing_docs)]
