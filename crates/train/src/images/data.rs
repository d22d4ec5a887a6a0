//! Image sets for the sequential image classifier, read by candle-datasets: a directory of MNIST-format IDX
//! files (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
//! `t10k-labels-idx1-ubyte`, each plain or gzipped as Debian's `dataset-fashion-mnist` ships them), or the
//! hub's MNIST and Fashion-MNIST (`hub:mnist`, `hub:fashion-mnist`), and batched by its `Batcher`.
//!
//! candle-datasets' IDX loader reads plain files of fixed names and flattens the images; this module checks
//! each file's header first (so that an error names the file, and the image size is known), and unpacks
//! gzipped files into a temporary directory for it.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_datasets::vision::Dataset;
use candle_datasets::Batcher;

use crate::error::{Error, Result};

/// A loader of candle-datasets: the whole set, from hf-hub's cache or the hub.
pub type HubLoader = fn() -> candle_core::Result<Dataset>;

/// The hub's image sets, by the name `--data hub:NAME` gives, and the loader candle-datasets has for each.
pub const HUB_SETS: &[(&str, HubLoader)] = &[
    ("mnist", candle_datasets::vision::mnist::load),
    (
        "fashion-mnist",
        candle_datasets::vision::fashion_mnist::load,
    ),
];

/// The prefix of a hub image set in `--data`.
pub const HUB_PREFIX: &str = "hub:";

/// Images with their classes.
#[derive(Debug, Clone)]
pub struct ImageSet {
    /// (n, height · width) f32 in [0, 1], row-major.
    pub images: Tensor,
    /// (n,) u32: the class of each image.
    pub labels: Tensor,
}

impl ImageSet {
    /// Images in the set.
    pub fn len(&self) -> usize {
        self.images.dims()[0]
    }

    /// Whether the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The images `start..start + len`.
    pub fn slice(&self, start: usize, len: usize) -> Result<ImageSet> {
        Ok(ImageSet {
            images: self.images.narrow(0, start, len)?,
            labels: self.labels.narrow(0, start, len)?,
        })
    }

    /// The images at `indices` stacked into one batch by candle-datasets' `Batcher`: (images (len,
    /// pixels), labels (len,)).
    pub fn batch(&self, indices: &[usize]) -> Result<(Tensor, Tensor)> {
        let examples = indices
            .iter()
            .map(|&i| Ok((self.images.get(i)?, self.labels.get(i)?)));
        let mut batcher = Batcher::new_r2(examples)
            .batch_size(indices.len().max(1))
            .return_last_incomplete_batch(true);
        match batcher.next() {
            Some(batch) => Ok(batch?),
            None => Err(Error::InvalidSetting(
                "an empty batch of images".to_string(),
            )),
        }
    }

    /// The set in batches of `batch` images, in order (the last may be smaller), by candle-datasets'
    /// `Batcher`.
    pub fn batches(&self, batch: usize) -> impl Iterator<Item = Result<(Tensor, Tensor)>> + '_ {
        let examples = (0..self.len()).map(|i| Ok((self.images.get(i)?, self.labels.get(i)?)));
        Batcher::new_r2(examples)
            .batch_size(batch.max(1))
            .return_last_incomplete_batch(true)
            .map(|b| b.map_err(Error::from))
    }
}

/// A source's training and test sets, the image size and the number of classes.
#[derive(Debug, Clone)]
pub struct Splits {
    /// The training images.
    pub train: ImageSet,
    /// The test images.
    pub test: ImageSet,
    /// Rows of every image.
    pub height: usize,
    /// Columns of every image.
    pub width: usize,
    /// One more than the largest label of either set.
    pub classes: usize,
}

/// The IDX files of an MNIST-format directory, in the order candle-datasets reads them.
const FILES: [(&str, u32); 4] = [
    ("train-images-idx3-ubyte", IMAGES_MAGIC),
    ("train-labels-idx1-ubyte", LABELS_MAGIC),
    ("t10k-images-idx3-ubyte", IMAGES_MAGIC),
    ("t10k-labels-idx1-ubyte", LABELS_MAGIC),
];
const IMAGES_MAGIC: u32 = 2051;
const LABELS_MAGIC: u32 = 2049;

/// Reads `source`: `hub:mnist` or `hub:fashion-mnist` (candle-datasets' hub loaders; the files are cached
/// by hf-hub and read from the cache when present), or a directory of MNIST-format IDX files.
pub fn load(source: &str) -> Result<Splits> {
    let dataset = match source.strip_prefix(HUB_PREFIX) {
        Some(name) => {
            let (_, loader) = HUB_SETS.iter().find(|(n, _)| *n == name).ok_or_else(|| {
                Error::InvalidSetting(format!(
                    "unknown hub image set '{name}' in --data {source}: expected {}",
                    HUB_SETS
                        .iter()
                        .map(|(n, _)| format!("{HUB_PREFIX}{n}"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ))
            })?;
            let dataset = loader().map_err(|e| {
                Error::InvalidSetting(format!(
                    "cannot load {source} from the hub: {}",
                    crate::error::one_line(e)
                ))
            })?;
            return splits(dataset, 28, 28, source);
        }
        None => load_dir(Path::new(source))?,
    };
    Ok(dataset)
}

/// Reads a directory of IDX files, plain or gzipped (`NAME` or `NAME.gz`).
fn load_dir(dir: &Path) -> Result<Splits> {
    if !dir.is_dir() {
        return Err(Error::InvalidSetting(format!(
            "{} is not a directory of MNIST-format IDX files (train-images-idx3-ubyte[.gz], ...)",
            dir.display()
        )));
    }
    let mut paths = Vec::new();
    for (name, _) in FILES {
        let plain = dir.join(name);
        let gz = dir.join(format!("{name}.gz"));
        paths.push(if plain.is_file() {
            plain
        } else if gz.is_file() {
            gz
        } else {
            return Err(Error::InvalidSetting(format!(
                "{} has no {name} (nor {name}.gz): an MNIST-format directory holds {}",
                dir.display(),
                FILES.map(|(n, _)| n).join(", ")
            )));
        });
    }
    // candle-datasets reads the plain files of one directory: gzipped ones are unpacked for it.
    let unpacked;
    let plain_dir = if paths.iter().any(|p| is_gz(p)) {
        unpacked = tempfile::tempdir().map_err(Error::write(std::env::temp_dir()))?;
        for ((name, _), path) in FILES.iter().zip(&paths) {
            let target = unpacked.path().join(name);
            if is_gz(path) {
                let mut reader = flate2::read::GzDecoder::new(BufReader::new(
                    File::open(path).map_err(Error::read(path))?,
                ));
                let mut out = File::create(&target).map_err(Error::write(&target))?;
                std::io::copy(&mut reader, &mut out).map_err(|e| {
                    Error::InvalidSetting(format!("{} is not a gzip file: {e}", path.display()))
                })?;
            } else {
                std::fs::copy(path, &target).map_err(Error::read(path))?;
            }
        }
        unpacked.path().to_path_buf()
    } else {
        dir.to_path_buf()
    };
    let headers = FILES
        .iter()
        .zip(&paths)
        .map(|((name, magic), path)| read_header(&plain_dir.join(name), *magic, path))
        .collect::<Result<Vec<_>>>()?;
    let (height, width) = (headers[0][1], headers[0][2]);
    if headers[2][1..] != headers[0][1..] {
        return Err(Error::InvalidSetting(format!(
            "{} holds images of {}×{} but {} of {height}×{width}",
            paths[2].display(),
            headers[2][1],
            headers[2][2],
            paths[0].display()
        )));
    }
    for (images, labels) in [(0, 1), (2, 3)] {
        if headers[images][0] != headers[labels][0] {
            return Err(Error::InvalidSetting(format!(
                "{} holds {} images but {} holds {} labels",
                paths[images].display(),
                headers[images][0],
                paths[labels].display(),
                headers[labels][0]
            )));
        }
    }
    let dataset = candle_datasets::vision::mnist::load_dir(&plain_dir).map_err(|e| {
        Error::InvalidSetting(format!(
            "cannot read the IDX files of {}: {}",
            dir.display(),
            crate::error::one_line(e)
        ))
    })?;
    splits(dataset, height, width, &dir.display().to_string())
}

/// candle-datasets' dataset as [`Splits`]: labels as u32, the class count checked.
fn splits(dataset: Dataset, height: usize, width: usize, source: &str) -> Result<Splits> {
    let labels = |t: &Tensor| -> Result<Tensor> { Ok(t.to_dtype(DType::U32)?) };
    let train = ImageSet {
        images: dataset.train_images,
        labels: labels(&dataset.train_labels)?,
    };
    let test = ImageSet {
        images: dataset.test_images,
        labels: labels(&dataset.test_labels)?,
    };
    let pixels = train.images.dims().get(1).copied().unwrap_or(0);
    if pixels != height * width {
        return Err(Error::InvalidSetting(format!(
            "{source}: images of {pixels} pixels, expected {height}×{width}"
        )));
    }
    if train.is_empty() {
        return Err(Error::InvalidSetting(format!(
            "{source} holds no training image"
        )));
    }
    let mut classes = 0;
    for set in [&train, &test] {
        if !set.is_empty() {
            classes = classes.max(set.labels.max(0)?.to_scalar::<u32>()? as usize + 1);
        }
    }
    Ok(Splits {
        train,
        test,
        height,
        width,
        classes,
    })
}

fn is_gz(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// The dimensions of the plain IDX file `path` (images: count, rows, columns; labels: count), its magic
/// number checked against `magic` and its length against its dimensions; errors name `shown`, the file the
/// user gave.
fn read_header(path: &Path, magic: u32, shown: &Path) -> Result<Vec<usize>> {
    let bad = |reason: String| {
        Error::InvalidSetting(format!("{} is not an IDX file: {reason}", shown.display()))
    };
    let mut file = File::open(path).map_err(Error::read(shown))?;
    let length = file.metadata().map_err(Error::read(shown))?.len() as usize;
    let dims = if magic == IMAGES_MAGIC { 3 } else { 1 };
    let mut header = vec![0u8; 4 + 4 * dims];
    file.read_exact(&mut header).map_err(|_| {
        bad(format!(
            "it is shorter than its {}-byte header",
            header.len()
        ))
    })?;
    let word =
        |i: usize| u32::from_be_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    if word(0) != magic {
        let kind = if magic == IMAGES_MAGIC {
            "an image"
        } else {
            "a label"
        };
        return Err(bad(format!(
            "magic number {} where {kind} file has {magic}",
            word(0)
        )));
    }
    let shape: Vec<usize> = (0..dims).map(|d| word(4 + 4 * d) as usize).collect();
    let expected: usize = shape.iter().product();
    if length - header.len() != expected {
        return Err(bad(format!(
            "its header promises {expected} bytes of {shape:?} after it, the file holds {}",
            length - header.len()
        )));
    }
    Ok(shape)
}

/// PNG or JPEG files as rows of `side · side` pixels in [0, 1], for prediction: decoded and resized as the
/// captioner's images are (`seqlab_data::load_image`), then made grey (the mean of the colour channels,
/// as an MNIST-format image has one). Errors name the file.
pub fn read_image_files(paths: &[PathBuf], height: usize, width: usize) -> Result<Tensor> {
    if height != width {
        return Err(Error::InvalidSetting(format!(
            "the model reads images of {height}×{width}; image files are read for square models only"
        )));
    }
    let options = seqlab_data::ImageOptions {
        size: height,
        mean: [0.0; 3],
        std: [1.0; 3],
    };
    let plane = height * width;
    let mut pixels = Vec::with_capacity(paths.len() * plane);
    for path in paths {
        let rgb = seqlab_data::load_image(path, &options)?;
        pixels.extend((0..plane).map(|i| (rgb[i] + rgb[plane + i] + rgb[2 * plane + i]) / 3.0));
    }
    Ok(Tensor::from_vec(
        pixels,
        (paths.len(), plane),
        &Device::Cpu,
    )?)
}

/// Writes the IDX file `path` of unsigned bytes with dimensions `dims` (images: count, rows, columns;
/// labels: count), gzipped when `path` ends in `.gz`: the format [`load`] reads, for exporting image sets
/// and for tests that make their own.
pub fn write_idx(path: &Path, dims: &[usize], bytes: &[u8]) -> Result<()> {
    let magic = match dims.len() {
        3 => IMAGES_MAGIC,
        1 => LABELS_MAGIC,
        n => {
            return Err(Error::InvalidSetting(format!(
                "an IDX file of images has 3 dimensions and one of labels 1, not {n}"
            )))
        }
    };
    if dims.iter().product::<usize>() != bytes.len() {
        return Err(Error::InvalidSetting(format!(
            "{} bytes are not {dims:?}",
            bytes.len()
        )));
    }
    let mut content = magic.to_be_bytes().to_vec();
    for &d in dims {
        content.extend((d as u32).to_be_bytes());
    }
    content.extend_from_slice(bytes);
    let content = if is_gz(path) {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&content).map_err(Error::write(path))?;
        encoder.finish().map_err(Error::write(path))?
    } else {
        content
    };
    crate::write_bytes_atomically(path, &content).map_err(Error::write(path))
}
