//! Where a language model's text comes from: local files, hub files, or the default book.

use std::path::PathBuf;

use crate::error::{one_line, Error, Result};
use crate::hub::{HubFile, HUB_SCHEME};
use crate::hub_dataset::{is_hub_dataset, Hub};
use crate::rows::{text_rows, Columns};

/// The book `seqlab lm train` learns when no `--data` is given.
pub const DEFAULT_BOOK: &str = "Around the World in 80 Days (Jules Verne, public domain)";

/// The crate that ships the default book, and the book's path inside it. `esaxx-rs` is a dependency of the
/// `tokenizers` crate, so it lies unpacked in the cargo registry of every machine that builds seqlab.
const REGISTRY_CRATE: &str = "esaxx-rs-0.1.10";
const REGISTRY_FILE: &str = "data/eighty.txt";

/// The hub dataset tried when the registry has no copy: a public-domain text of the same kind (Shakespeare),
/// as the first `.txt` file of the repository.
const HUB_FALLBACK_REPO: &str = "karpathy/tiny_shakespeare";

/// A text for a language model, read and normalised (no byte-order mark, `\n` line ends).
#[derive(Debug, Clone)]
pub struct Corpus {
    /// The text, files joined in order.
    pub text: String,
    /// Where it came from, for messages: file paths, hub addresses, or the default book.
    pub description: String,
}

/// Reads the corpus named by `sources`: local files and `hf://datasets/OWNER/NAME[@REVISION]/FILE` addresses,
/// joined in order with [`seqlab_tokenize::read_corpus`]'s rules (BOM and CRLF tolerated). With no sources,
/// reads the default book ([`default_book`]). Tables (hub splits, `.parquet`, `.csv`, `.tsv` files) give
/// the rows of their `text` column: see [`load_corpus_with`].
pub fn load_corpus(sources: &[String]) -> Result<Corpus> {
    load_corpus_with(&Hub::from_env(), sources, None)
}

/// [`load_corpus`] through a given hub, with a chosen text column. A hub split
/// (`hf://datasets/OWNER/NAME[@REVISION][:[CONFIG/]SPLIT]`) or a `.parquet`, `.csv` or `.tsv` file gives the
/// rows of its text column (`text_column`, else the catalogue's, else `text`), one per line; any other file
/// is read as text.
pub fn load_corpus_with(
    hub: &Hub,
    sources: &[String],
    text_column: Option<&str>,
) -> Result<Corpus> {
    if sources.is_empty() {
        return default_book();
    }
    let mut text = String::new();
    for source in sources {
        let part = if is_table(source) {
            let columns = Columns::new().with("text", text_column);
            let rows = text_rows(hub, source, &columns)?;
            let mut joined = rows.join("\n").replace("\r\n", "\n");
            if !joined.ends_with('\n') {
                joined.push('\n');
            }
            joined
        } else {
            let path = if source.starts_with(HUB_SCHEME) {
                hub.file(&HubFile::parse(source)?)?
            } else {
                PathBuf::from(source)
            };
            seqlab_tokenize::read_text(&path)?
        };
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&part);
    }
    Ok(Corpus {
        text,
        description: sources.join(", "),
    })
}

/// Whether a data source is read as a table: a hub split, or a parquet, CSV or TSV file.
pub fn is_table(source: &str) -> bool {
    if is_hub_dataset(source) {
        return true;
    }
    let extension = source
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    matches!(extension.as_str(), "parquet" | "csv" | "tsv")
}

/// The local path of one data source: a file path as it is, a hub address fetched through the cache.
pub fn resolve_source(source: &str) -> Result<PathBuf> {
    if source.starts_with(HUB_SCHEME) {
        HubFile::parse(source)?.fetch()
    } else {
        Ok(PathBuf::from(source))
    }
}

/// The default book, with its Project Gutenberg header and licence footer removed.
///
/// Found, in order: in the cargo registry (`$CARGO_HOME/registry/src/*/esaxx-rs-0.1.10/data/eighty.txt`,
/// `CARGO_HOME` defaulting to `~/.cargo`), which needs no network and gives the same book on every machine;
/// else on the Hugging Face Hub (cache first); else [`Error::NoDefaultCorpus`] says how to pass `--data`.
pub fn default_book() -> Result<Corpus> {
    let registries = registry_dirs();
    if let Some(path) = find_in_registries(&registries) {
        let text = seqlab_tokenize::read_text(&path)?;
        return Ok(Corpus {
            text: strip_gutenberg(&text).to_string(),
            description: format!("{DEFAULT_BOOK}, from {}", path.display()),
        });
    }
    let searched = registries
        .iter()
        .map(|dir| dir.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    match hub_fallback() {
        Ok((path, spec)) => {
            let text = seqlab_tokenize::read_text(&path)?;
            Ok(Corpus {
                text: strip_gutenberg(&text).to_string(),
                description: format!("{spec} (the registry copy of the default book is missing)"),
            })
        }
        Err(hub) => Err(Error::NoDefaultCorpus { searched, hub }),
    }
}

/// `$CARGO_HOME/registry/src` (every index's folder lies below it), and `~/.cargo/registry/src` too.
fn registry_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(home) = std::env::var_os("CARGO_HOME").filter(|h| !h.is_empty()) {
        dirs.push(PathBuf::from(home).join("registry").join("src"));
    }
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        let dir = PathBuf::from(home)
            .join(".cargo")
            .join("registry")
            .join("src");
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs
}

/// The first `<registry>/<index>/esaxx-rs-0.1.10/data/eighty.txt` that exists, indexes in name order.
fn find_in_registries(registries: &[PathBuf]) -> Option<PathBuf> {
    registries.iter().find_map(|registry| {
        let mut indexes: Vec<PathBuf> = std::fs::read_dir(registry)
            .ok()?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .collect();
        indexes.sort();
        indexes
            .into_iter()
            .map(|index| index.join(REGISTRY_CRATE).join(REGISTRY_FILE))
            .find(|path| path.is_file())
    })
}

/// The first `.txt` file of [`HUB_FALLBACK_REPO`], fetched through the cache.
fn hub_fallback() -> std::result::Result<(PathBuf, String), String> {
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_cache_dir(crate::hub::cache_dir())
        .with_progress(false)
        .build()
        .map_err(one_line)?;
    let repo = api.dataset(HUB_FALLBACK_REPO.to_string());
    let info = repo.info().map_err(one_line)?;
    let file = info
        .siblings
        .iter()
        .map(|s| s.rfilename.as_str())
        .find(|name| name.ends_with(".txt"))
        .ok_or_else(|| format!("{HUB_FALLBACK_REPO} has no .txt file"))?;
    let path = repo.get(file).map_err(one_line)?;
    Ok((
        path,
        format!("{HUB_SCHEME}datasets/{HUB_FALLBACK_REPO}/{file}"),
    ))
}

/// The text between Project Gutenberg's `*** START OF ...` and `*** END OF ...` lines; the whole text when
/// it has no such markers.
pub fn strip_gutenberg(text: &str) -> &str {
    let start = text
        .find("*** START OF")
        .and_then(|at| text[at..].find('\n').map(|nl| at + nl + 1))
        .unwrap_or(0);
    let end = text[start..]
        .find("*** END OF")
        .map(|at| start + at)
        .unwrap_or(text.len());
    text[start..end].trim()
}

/// Splits `text` into training and validation parts: the validation part is the last `fraction` of the text,
/// starting at the beginning of a line (the first line break at or after the cut; at a character boundary
/// when the tail holds none).
pub fn split_tail(text: &str, fraction: f64) -> Result<(&str, &str)> {
    if !(0.0..1.0).contains(&fraction) {
        return Err(Error::InvalidFraction(fraction));
    }
    if fraction == 0.0 {
        return Ok((text, ""));
    }
    let mut cut = ((text.len() as f64) * (1.0 - fraction)) as usize;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    if let Some(nl) = text[cut..].find('\n') {
        cut += nl + 1;
    }
    Ok(text.split_at(cut))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gutenberg_boilerplate_is_removed() {
        let text = "The Project Gutenberg eBook\nlicence\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\n\n\nChapter 1\nText.\n\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\nmore licence\n";
        assert_eq!(strip_gutenberg(text), "Chapter 1\nText.");
        assert_eq!(strip_gutenberg("no markers"), "no markers");
    }

    #[test]
    fn the_tail_split_starts_at_a_line() {
        let text = "first line\nsecond line\nthird line\n";
        let (train, valid) = split_tail(text, 0.5).unwrap();
        assert_eq!(train, "first line\nsecond line\n");
        assert_eq!(valid, "third line\n");
        assert_eq!(split_tail(text, 0.0).unwrap(), (text, ""));
        assert!(matches!(
            split_tail(text, 1.0),
            Err(Error::InvalidFraction(_))
        ));
        // No line break in the tail: the cut stays at a character boundary.
        let (train, valid) = split_tail("ééééé", 0.5).unwrap();
        assert_eq!(format!("{train}{valid}"), "ééééé");
        assert!(!valid.is_empty());
    }

    #[test]
    fn local_files_are_joined_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.txt");
        std::fs::write(&a, "\u{feff}one\r\ntwo").unwrap();
        let b = dir.path().join("b.txt");
        std::fs::write(&b, "three\n").unwrap();
        let sources = [a.display().to_string(), b.display().to_string()];
        let corpus = load_corpus(&sources).unwrap();
        assert_eq!(corpus.text, "one\ntwo\nthree\n");
        assert!(corpus.description.contains("a.txt"));
    }
}
