//! seqlab-decode: being written (see the issue tracker).
#![warn(missing_docs)]
