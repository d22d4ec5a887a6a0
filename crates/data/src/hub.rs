//! Files of Hugging Face Hub dataset repositories, cache first.

use std::path::PathBuf;

use hf_hub::{Repo, RepoType};

use crate::error::{Error, Result};

/// The scheme of hub addresses.
pub const HUB_SCHEME: &str = "hf://";

/// A file of a dataset repository on the Hugging Face Hub: `hf://datasets/OWNER/NAME[@REVISION]/FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubFile {
    /// `OWNER/NAME`.
    pub repo: String,
    /// A branch, tag or commit; `main` when the address names none.
    pub revision: String,
    /// The file's path inside the repository.
    pub path: String,
}

impl HubFile {
    /// Parses `hf://datasets/OWNER/NAME[@REVISION]/FILE`.
    pub fn parse(spec: &str) -> Result<HubFile> {
        let bad = |reason| Error::BadHubAddress {
            spec: spec.to_string(),
            reason,
        };
        let rest = spec
            .strip_prefix(HUB_SCHEME)
            .ok_or(bad("it does not start with hf://"))?;
        let rest = rest
            .strip_prefix("datasets/")
            .ok_or(bad("only dataset repositories are supported"))?;
        let mut parts = rest.splitn(3, '/');
        let (owner, name, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(owner), Some(name), Some(path)) => (owner, name, path),
            _ if rest.contains(':') => {
                return Err(bad("it names a split of the dataset, not a file"))
            }
            _ => return Err(bad("it names no file")),
        };
        let (name, revision) = match name.split_once('@') {
            Some((name, revision)) => (name, revision),
            None => (name, "main"),
        };
        if name.contains(':') || revision.contains(':') {
            return Err(bad("it names a split of the dataset, not a file"));
        }
        if owner.is_empty() || name.is_empty() || revision.is_empty() {
            return Err(bad("the owner, name or revision is empty"));
        }
        if path.is_empty() || path.ends_with('/') {
            return Err(bad("it names no file"));
        }
        Ok(HubFile {
            repo: format!("{owner}/{name}"),
            revision: revision.to_string(),
            path: path.to_string(),
        })
    }

    fn hf_repo(&self) -> Repo {
        Repo::with_revision(self.repo.clone(), RepoType::Dataset, self.revision.clone())
    }

    /// The file in the local hub cache, if it is there; never touches the network.
    pub fn cached(&self) -> Option<PathBuf> {
        hf_hub::Cache::new(cache_dir())
            .repo(self.hf_repo())
            .get(&self.path)
    }

    /// The local path of the file: from the cache when it is there, else downloaded into the cache (the
    /// environment's hub, [`crate::Hub::from_env`]).
    pub fn fetch(&self) -> Result<PathBuf> {
        crate::hub_dataset::Hub::from_env().file(self)
    }
}

impl std::fmt::Display for HubFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{HUB_SCHEME}datasets/{}", self.repo)?;
        if self.revision != "main" {
            write!(f, "@{}", self.revision)?;
        }
        write!(f, "/{}", self.path)
    }
}

/// The hub cache: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`, as Python's
/// `huggingface_hub` resolves it.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(home) = std::env::var_os("HF_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join("hub");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache").join("huggingface").join("hub")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_and_without_revision() {
        let file = HubFile::parse("hf://datasets/someone/books/texts/alice.txt").unwrap();
        assert_eq!(file.repo, "someone/books");
        assert_eq!(file.revision, "main");
        assert_eq!(file.path, "texts/alice.txt");
        assert_eq!(
            file.to_string(),
            "hf://datasets/someone/books/texts/alice.txt"
        );
        let file = HubFile::parse("hf://datasets/someone/books@v2/a.txt").unwrap();
        assert_eq!(file.revision, "v2");
        assert_eq!(file.to_string(), "hf://datasets/someone/books@v2/a.txt");
    }

    #[test]
    fn malformed_addresses_are_errors_naming_the_address() {
        for spec in [
            "hf://models/gpt2/config.json",
            "hf://datasets/someone/books",
            "hf://datasets/someone/books:train",
            "hf://datasets/someone/books:en-es/train",
            "hf://datasets/someone/books/",
            "hf://datasets//books/a.txt",
        ] {
            let error = HubFile::parse(spec).unwrap_err();
            assert!(
                matches!(error, Error::BadHubAddress { .. }),
                "{spec}: {error:?}"
            );
            assert!(error.to_string().contains(spec), "{error}");
        }
    }
}
