//! `seqlab data list|fetch`: the catalogue of real datasets on the Hugging Face Hub.

use std::io::Write;

use anyhow::bail;
use seqlab_data::{catalogue, find_dataset, CatalogueEntry, Columns, Hub, HubDataset};

/// The catalogue of named datasets, and their download into the hub cache.
#[derive(clap::Subcommand, Debug)]
pub enum DataCommand {
    /// Show the catalogue: each dataset's hub address, splits, columns and licence, and what the cache holds.
    List,
    /// Download a catalogue dataset (or any hf://datasets/OWNER/NAME[:[CONFIG/]SPLIT]) into the hub cache, with
    /// a progress bar, and print where it lies. Files already in the cache are not downloaded again.
    Fetch(FetchArgs),
    /// Draw a synthetic captioning set (two coloured shapes per image, "a red circle above a blue square")
    /// into DIR/images/ and DIR/captions.txt, in the Flickr8k layout: no download needed.
    Shapes(ShapesArgs),
}

/// Arguments of `seqlab data fetch`.
#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// A catalogue name (see `seqlab data list`) or a hub address.
    #[arg(value_name = "NAME")]
    name: String,
    /// Only this split [default: every split of a catalogue dataset; the address's own split].
    #[arg(long, value_name = "SPLIT")]
    split: Option<String>,
}

/// Runs a `seqlab data` command.
pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::List => list(),
        DataCommand::Fetch(args) => fetch(args),
        DataCommand::Shapes(args) => shapes(args),
    }
}

fn columns(entry: &CatalogueEntry) -> String {
    entry
        .columns
        .iter()
        .map(|(role, column)| format!("{} {column}", Columns::flag(role)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn list() -> anyhow::Result<()> {
    let hub = Hub::from_env();
    let mut out = std::io::stdout().lock();
    for entry in catalogue() {
        let cached: Vec<&str> = entry
            .splits
            .iter()
            .copied()
            .filter(|split| matches!(hub.cached_split(&entry.dataset(split)), Ok(Some(_))))
            .collect();
        writeln!(
            out,
            "{}  (seqlab {})  {}",
            entry.name, entry.command, entry.description
        )?;
        writeln!(
            out,
            "    --data {}   splits: {}   in the cache: {}",
            entry.address(),
            entry.splits.join(", "),
            if cached.is_empty() {
                "none".to_string()
            } else {
                cached.join(", ")
            }
        )?;
        writeln!(out, "    columns: {}", columns(entry))?;
        writeln!(out, "    licence: {}", entry.licence)?;
    }
    writeln!(
        out,
        "hub cache: {} (download with: seqlab data fetch NAME)",
        hub.cache_dir().display()
    )?;
    Ok(())
}

fn fetch(args: FetchArgs) -> anyhow::Result<()> {
    let (entry, splits): (Option<&CatalogueEntry>, Vec<HubDataset>) =
        if args.name.starts_with(seqlab_data::HUB_SCHEME) {
            let mut dataset = HubDataset::parse(&args.name)?;
            if let Some(split) = &args.split {
                dataset.split = split.clone();
            }
            (seqlab_data::entry_for(&dataset), vec![dataset])
        } else {
            let entry = find_dataset(&args.name)?;
            let splits = match &args.split {
                Some(split) if !entry.splits.contains(&split.as_str()) => bail!(
                    "{} has no split \"{split}\" (it has: {})",
                    entry.name,
                    entry.splits.join(", ")
                ),
                Some(split) => vec![entry.dataset(split)],
                None => entry.splits.iter().map(|s| entry.dataset(s)).collect(),
            };
            (Some(entry), splits)
        };
    let hub = Hub::from_env().with_progress(true);
    let mut out = std::io::stdout().lock();
    for dataset in &splits {
        let files = hub.split(dataset)?;
        let bytes: u64 = files
            .files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        let folder = files
            .files
            .first()
            .and_then(|f| f.parent())
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        writeln!(
            out,
            "{dataset}: {} parquet file(s), {:.1} MB, {} {folder}",
            files.files.len(),
            bytes as f64 / 1e6,
            if files.from_cache {
                "already in the cache at"
            } else {
                "downloaded to"
            }
        )?;
    }
    if let (Some(entry), Some(first)) = (entry, splits.first()) {
        writeln!(
            out,
            "train on it: seqlab {} train --data {first} ...",
            entry.command
        )?;
    }
    Ok(())
}

/// Arguments of `seqlab data shapes`.
#[derive(clap::Args, Debug)]
pub struct ShapesArgs {
    /// The folder to write (images/ and captions.txt).
    #[arg(long, value_name = "DIR")]
    out: std::path::PathBuf,
    /// Images to draw (two reference captions each).
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = crate::ranges::at_least_one("--count"))]
    count: usize,
    /// Seed of the drawing: the same seed gives the same files.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Side of the square images in pixels.
    #[arg(long, value_name = "N", default_value_t = 64)]
    size: usize,
    /// Draw only held-out combinations (each image has a (colour, shape, position) that a set drawn
    /// without --holdout never has): the test of composition.
    #[arg(long)]
    holdout: bool,
}

fn shapes(args: ShapesArgs) -> anyhow::Result<()> {
    let config = seqlab_data::ShapesConfig {
        count: args.count,
        size: args.size,
        seed: args.seed,
        split: if args.holdout {
            seqlab_data::ShapesSplit::Holdout
        } else {
            seqlab_data::ShapesSplit::Train
        },
    };
    let captions = seqlab_data::generate_shapes(&args.out, &config)?;
    println!(
        "{} images ({}) and {captions} captions written to {} (images/, captions.txt)",
        args.count,
        if args.holdout {
            "held-out combinations"
        } else {
            "training combinations"
        },
        args.out.display()
    );
    Ok(())
}
