//! Splits of Hugging Face Hub datasets, read as the parquet files the hub serves, cache first.
//!
//! The hub converts every public dataset to parquet and publishes the files in the dataset repository under
//! the revision `refs/convert/parquet`, laid out as `<config>/<split>/NNNN.parquet` (`partial-<split>` when
//! only the first gigabytes of a large split were converted). A split is read through hf-hub's cache: the
//! files are looked for in `<cache>/datasets--OWNER--NAME/snapshots/<commit>/<config>/<split>/` first, where
//! `<commit>` is the content of `refs/refs/convert/parquet`, and only what is missing is downloaded.
//!
//! Files are downloaded from the last to the first, so a split whose `0000.parquet` is in the cache with no
//! gap in the numbers after it is complete: an interrupted download is finished, never read half.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiRepo};
use hf_hub::{Repo, RepoType};

use crate::error::{one_line, Error, Result};
use crate::hub::{HubFile, HUB_SCHEME};

/// The revision under which the hub publishes its parquet conversion of a dataset.
pub const PARQUET_REVISION: &str = "refs/convert/parquet";
/// The config a dataset address means when it names none (the hub's name for a dataset's only config).
pub const DEFAULT_CONFIG: &str = "default";
/// The split a dataset address means when it names none.
pub const DEFAULT_SPLIT: &str = "train";

/// A split of a dataset on the Hugging Face Hub: `hf://datasets/OWNER/NAME[@REVISION][:[CONFIG/]SPLIT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubDataset {
    /// `OWNER/NAME`.
    pub repo: String,
    /// The revision holding the parquet files; [`PARQUET_REVISION`] unless the address names another.
    pub revision: String,
    /// The config; `None` means [`DEFAULT_CONFIG`], or the only config that has the split.
    pub config: Option<String>,
    /// The split: `train`, `validation`, `test`, ...
    pub split: String,
}

impl HubDataset {
    /// A split of `repo` (`OWNER/NAME`) in the hub's parquet conversion.
    pub fn new(repo: &str, config: Option<&str>, split: &str) -> HubDataset {
        HubDataset {
            repo: repo.to_string(),
            revision: PARQUET_REVISION.to_string(),
            config: config.map(str::to_string),
            split: split.to_string(),
        }
    }

    /// Parses `hf://datasets/OWNER/NAME[@REVISION][:[CONFIG/]SPLIT]`; the split defaults to `train`.
    pub fn parse(spec: &str) -> Result<HubDataset> {
        let bad = |reason| Error::BadHubAddress {
            spec: spec.to_string(),
            reason,
        };
        let rest = spec
            .strip_prefix(HUB_SCHEME)
            .ok_or(bad("it does not start with hf://"))?
            .strip_prefix("datasets/")
            .ok_or(bad("only dataset repositories are supported"))?;
        let (owner, rest) = rest.split_once('/').ok_or(bad("it names no dataset"))?;
        let (name, selector) = match rest.split_once(':') {
            Some((name, selector)) => (name, Some(selector)),
            None => (rest, None),
        };
        if name.contains('/') {
            return Err(bad("it names a file, not a split"));
        }
        let (name, revision) = match name.split_once('@') {
            Some((name, revision)) => (name, revision),
            None => (name, PARQUET_REVISION),
        };
        let (config, split) = match selector {
            None => (None, DEFAULT_SPLIT),
            Some(selector) => match selector.split_once('/') {
                Some((config, split)) => (Some(config), split),
                None => (None, selector),
            },
        };
        if owner.is_empty() || name.is_empty() || revision.is_empty() {
            return Err(bad("the owner, name or revision is empty"));
        }
        if split.is_empty() || split.contains('/') || config.is_some_and(str::is_empty) {
            return Err(bad("the config or split is empty or malformed"));
        }
        Ok(HubDataset {
            repo: format!("{owner}/{name}"),
            revision: revision.to_string(),
            config: config.map(str::to_string),
            split: split.to_string(),
        })
    }

    /// The parquet files of the split, from the hub cache of the environment ([`Hub::from_env`]) or
    /// downloaded into it.
    pub fn files(&self) -> Result<SplitFiles> {
        Hub::from_env().split(self)
    }

    fn hf_repo(&self) -> Repo {
        Repo::with_revision(self.repo.clone(), RepoType::Dataset, self.revision.clone())
    }
}

impl std::fmt::Display for HubDataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{HUB_SCHEME}datasets/{}", self.repo)?;
        if self.revision != PARQUET_REVISION {
            write!(f, "@{}", self.revision)?;
        }
        match &self.config {
            Some(config) => write!(f, ":{config}/{}", self.split),
            None => write!(f, ":{}", self.split),
        }
    }
}

/// Whether `spec` is a hub address of a split (as opposed to a file, or a local path).
pub fn is_hub_dataset(spec: &str) -> bool {
    spec.starts_with(HUB_SCHEME) && HubFile::parse(spec).is_err() && HubDataset::parse(spec).is_ok()
}

/// The parquet files of one split, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitFiles {
    /// The config they belong to (resolved when the address named none).
    pub config: String,
    /// Their local paths, in the hub cache, in the order of their names.
    pub files: Vec<PathBuf>,
    /// Whether all of them were in the cache already (nothing was downloaded).
    pub from_cache: bool,
}

/// Where hub files come from: a cache folder, a server, and whether the network may be used.
#[derive(Debug, Clone)]
pub struct Hub {
    cache_dir: PathBuf,
    endpoint: Option<String>,
    offline: bool,
    progress: bool,
}

impl Hub {
    /// The environment's hub: cache [`crate::hub_cache_dir`], server `HF_ENDPOINT` (else huggingface.co),
    /// offline when `HF_HUB_OFFLINE` is `1`, `true`, `yes` or `on`; no progress bars.
    pub fn from_env() -> Hub {
        let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        });
        Hub {
            cache_dir: crate::hub::cache_dir(),
            endpoint: std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty()),
            offline,
            progress: false,
        }
    }

    /// A hub with an explicit cache folder (no `HF_*` variable is read), online, at huggingface.co.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Hub {
        Hub {
            cache_dir: cache_dir.into(),
            endpoint: None,
            offline: false,
            progress: false,
        }
    }

    /// Uses another server.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Hub {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Never touches the network: only the cache answers.
    pub fn with_offline(mut self, offline: bool) -> Hub {
        self.offline = offline;
        self
    }

    /// Shows a progress bar on stderr for each downloaded file.
    pub fn with_progress(mut self, progress: bool) -> Hub {
        self.progress = progress;
        self
    }

    /// The cache folder.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// The split's files if the cache holds all of them; never touches the network.
    ///
    /// `Ok(None)` when the cache lacks the split or holds only part of it; an error when the address names no
    /// config and the cache holds the split in several.
    pub fn cached_split(&self, dataset: &HubDataset) -> Result<Option<SplitFiles>> {
        let Some(snapshot) = self.snapshot(dataset) else {
            return Ok(None);
        };
        let config = match &dataset.config {
            Some(config) => config.clone(),
            None => {
                let candidates: Vec<String> = subdirs(&snapshot)
                    .into_iter()
                    .filter(|config| split_dir(&snapshot.join(config), &dataset.split).is_some())
                    .collect();
                match choose_config(&candidates) {
                    Ok(Some(config)) => config,
                    Ok(None) => return Ok(None),
                    Err(several) => return Err(ambiguous(dataset, &several)),
                }
            }
        };
        let Some(dir) = split_dir(&snapshot.join(&config), &dataset.split) else {
            return Ok(None);
        };
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|error| Error::Read {
                path: dir.clone(),
                error,
            })?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.ends_with(".parquet"))
            .collect();
        names.sort();
        if names.is_empty() || !complete(&names) {
            return Ok(None);
        }
        Ok(Some(SplitFiles {
            config,
            files: names.iter().map(|name| dir.join(name)).collect(),
            from_cache: true,
        }))
    }

    /// The split's files: from the cache when it holds all of them, else listed on the hub and the missing
    /// ones downloaded into the cache (each file at most once).
    pub fn split(&self, dataset: &HubDataset) -> Result<SplitFiles> {
        if let Some(files) = self.cached_split(dataset)? {
            return Ok(files);
        }
        let not_cached = |reason: String| Error::NotCached {
            spec: dataset.to_string(),
            cache: self.cache_dir.clone(),
            reason,
        };
        let repo = self.api_repo(dataset.hf_repo()).map_err(not_cached)?;
        let info = repo.info().map_err(|e| not_cached(one_line(e)))?;
        let names: Vec<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
        let config = match &dataset.config {
            Some(config) => config.clone(),
            None => {
                let candidates = configs_with_split(&names, &dataset.split);
                match choose_config(&candidates) {
                    Ok(Some(config)) => config,
                    Ok(None) => return Err(no_split(dataset, &names)),
                    Err(several) => return Err(ambiguous(dataset, &several)),
                }
            }
        };
        let mut files: Vec<&str> = names
            .iter()
            .copied()
            .filter(|name| in_split(name, &config, &dataset.split))
            .collect();
        if files.is_empty() {
            return Err(no_split(dataset, &names));
        }
        files.sort_unstable();
        let mut paths = Vec::with_capacity(files.len());
        // Last to first: a cache holding 0000.parquet holds every file after it.
        for name in files.iter().rev() {
            let path = repo.get(name).map_err(|e| Error::Hub {
                spec: format!("{dataset} ({name})"),
                reason: one_line(e),
            })?;
            paths.push(path);
        }
        paths.reverse();
        Ok(SplitFiles {
            config,
            files: paths,
            from_cache: false,
        })
    }

    /// A file of a dataset repository: from the cache when it is there, else downloaded into it.
    pub fn file(&self, file: &HubFile) -> Result<PathBuf> {
        let repo = Repo::with_revision(file.repo.clone(), RepoType::Dataset, file.revision.clone());
        if let Some(path) = hf_hub::Cache::new(self.cache_dir.clone())
            .repo(repo.clone())
            .get(&file.path)
        {
            return Ok(path);
        }
        let not_cached = |reason: String| Error::NotCached {
            spec: file.to_string(),
            cache: self.cache_dir.clone(),
            reason,
        };
        self.api_repo(repo)
            .map_err(not_cached)?
            .get(&file.path)
            .map_err(|e| not_cached(one_line(e)))
    }

    fn api_repo(&self, repo: Repo) -> std::result::Result<ApiRepo, String> {
        if self.offline {
            return Err("HF_HUB_OFFLINE is set".to_string());
        }
        let mut builder = ApiBuilder::new()
            .with_cache_dir(self.cache_dir.clone())
            .with_progress(self.progress);
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        Ok(builder.build().map_err(one_line)?.repo(repo))
    }

    /// `<cache>/datasets--OWNER--NAME/snapshots/<commit>` for the dataset's revision, if the cache has it.
    fn snapshot(&self, dataset: &HubDataset) -> Option<PathBuf> {
        let folder = self
            .cache_dir
            .join(format!("datasets--{}", dataset.repo.replace('/', "--")));
        let commit = match std::fs::read_to_string(folder.join("refs").join(&dataset.revision)) {
            Ok(commit) => commit.trim().to_string(),
            // A commit hash needs no ref.
            Err(_) => dataset.revision.clone(),
        };
        let snapshot = folder.join("snapshots").join(commit);
        snapshot.is_dir().then_some(snapshot)
    }
}

/// `<config>/<split>`, else `<config>/partial-<split>`, if it is a folder.
fn split_dir(config: &Path, split: &str) -> Option<PathBuf> {
    [split.to_string(), format!("partial-{split}")]
        .into_iter()
        .map(|name| config.join(name))
        .find(|dir| dir.is_dir())
}

fn subdirs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            entry.file_type().ok()?.is_dir().then_some(())?;
            entry.file_name().into_string().ok()
        })
        .collect();
    names.sort();
    names
}

/// `default` when it is among the candidates, else the only one; `Err` with all of them when several.
fn choose_config(candidates: &[String]) -> std::result::Result<Option<String>, Vec<String>> {
    if candidates.iter().any(|c| c == DEFAULT_CONFIG) {
        return Ok(Some(DEFAULT_CONFIG.to_string()));
    }
    match candidates {
        [] => Ok(None),
        [only] => Ok(Some(only.clone())),
        several => Err(several.to_vec()),
    }
}

/// Whether a repository file is a parquet file of the split: `<config>/<split>/X.parquet` or
/// `<config>/partial-<split>/X.parquet`.
fn in_split(name: &str, config: &str, split: &str) -> bool {
    let Some(rest) = name
        .strip_prefix(config)
        .and_then(|rest| rest.strip_prefix('/'))
    else {
        return false;
    };
    let rest = rest.strip_prefix("partial-").unwrap_or(rest);
    rest.strip_prefix(split)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|file| !file.contains('/') && file.ends_with(".parquet"))
}

fn configs_with_split(names: &[&str], split: &str) -> Vec<String> {
    let mut configs: Vec<String> = names
        .iter()
        .filter_map(|name| name.split_once('/').map(|(config, _)| config))
        .filter(|config| names.iter().any(|name| in_split(name, config, split)))
        .map(str::to_string)
        .collect();
    configs.sort();
    configs.dedup();
    configs
}

/// Files named `0000.parquet`, `0001.parquet`, ... must run from 0 without a gap; other names are taken as
/// they are.
fn complete(names: &[String]) -> bool {
    let numbers: Option<Vec<usize>> = names
        .iter()
        .map(|name| name.strip_suffix(".parquet")?.parse().ok())
        .collect();
    match numbers {
        Some(mut numbers) => {
            numbers.sort_unstable();
            numbers.iter().enumerate().all(|(i, &n)| i == n)
        }
        None => true,
    }
}

fn ambiguous(dataset: &HubDataset, configs: &[String]) -> Error {
    Error::Hub {
        spec: dataset.to_string(),
        reason: format!(
            "the split \"{}\" exists in several configs ({}); name one as hf://datasets/{}:CONFIG/{}",
            dataset.split,
            configs.join(", "),
            dataset.repo,
            dataset.split
        ),
    }
}

fn no_split(dataset: &HubDataset, names: &[&str]) -> Error {
    let mut splits: Vec<&str> = names
        .iter()
        .filter(|name| name.ends_with(".parquet"))
        .filter_map(|name| name.rsplit_once('/').map(|(dir, _)| dir))
        .collect();
    splits.sort_unstable();
    splits.dedup();
    let have = if splits.is_empty() {
        "none".to_string()
    } else {
        splits.join(", ")
    };
    Error::Hub {
        spec: dataset.to_string(),
        reason: format!(
            "revision {} has no parquet files for this split (it has CONFIG/SPLIT: {have})",
            dataset.revision
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_addresses_parse_with_defaults() {
        let d = HubDataset::parse("hf://datasets/fancyzhx/ag_news").unwrap();
        assert_eq!(d, HubDataset::new("fancyzhx/ag_news", None, "train"));
        assert_eq!(d.to_string(), "hf://datasets/fancyzhx/ag_news:train");
        let d = HubDataset::parse("hf://datasets/Helsinki-NLP/opus_books:en-es/train").unwrap();
        assert_eq!(d.config.as_deref(), Some("en-es"));
        assert_eq!(d.split, "train");
        assert_eq!(
            d.to_string(),
            "hf://datasets/Helsinki-NLP/opus_books:en-es/train"
        );
        let d = HubDataset::parse("hf://datasets/a/b@0123abc:test").unwrap();
        assert_eq!(d.revision, "0123abc");
        assert_eq!(d.to_string(), "hf://datasets/a/b@0123abc:test");
        assert!(is_hub_dataset("hf://datasets/a/b:test"));
        assert!(!is_hub_dataset("hf://datasets/a/b/file.txt"));
        assert!(!is_hub_dataset("local.parquet"));
    }

    #[test]
    fn malformed_split_addresses_are_errors_naming_the_address() {
        for spec in [
            "hf://models/gpt2:train",
            "hf://datasets/ag_news",
            "hf://datasets/a/b:",
            "hf://datasets/a/b:cfg/",
            "hf://datasets/a/b:/train",
            "hf://datasets/a/b/c.txt",
            "hf://datasets//b:train",
        ] {
            let error = HubDataset::parse(spec).unwrap_err();
            assert!(error.to_string().contains(spec), "{error}");
        }
    }

    #[test]
    fn split_files_are_recognised_and_numbered_without_gaps() {
        assert!(in_split("default/train/0000.parquet", "default", "train"));
        assert!(in_split(
            "en-es/partial-train/0003.parquet",
            "en-es",
            "train"
        ));
        assert!(!in_split("default/train/index.duckdb", "default", "train"));
        assert!(!in_split("default/test/0000.parquet", "default", "train"));
        assert!(!in_split(
            "default/train/x/0000.parquet",
            "default",
            "train"
        ));
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(complete(&names(&["0000.parquet", "0001.parquet"])));
        assert!(!complete(&names(&["0001.parquet", "0002.parquet"])));
        assert!(!complete(&names(&["0000.parquet", "0002.parquet"])));
        assert!(complete(&names(&["train-a.parquet"])));
        assert_eq!(
            configs_with_split(
                &["en-es/train/0000.parquet", "en-fr/train/0000.parquet"],
                "train"
            ),
            ["en-es", "en-fr"]
        );
        assert_eq!(
            choose_config(&["a".into(), "default".into()]),
            Ok(Some("default".into()))
        );
        assert!(choose_config(&["a".into(), "b".into()]).is_err());
    }
}
