//! A captioning table (a hub split or a parquet file, images stored as bytes) laid out once as the folder the
//! caption pipeline reads: `captions.txt` (CSV `image,caption`) and `images/`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::hub_dataset::Hub;
use crate::rows::{captioned_images, is_labelled_table, Columns};
use crate::table::source_files;

/// The captions file and image folder of a captioning source.
///
/// A table source (a hub split `hf://datasets/...`, or a `.parquet` file) is written out once, by
/// [`extract_captions`], below `<hub cache>/seqlab-extracted/`, and the same files are returned afterwards;
/// any other `captions` is a `captions.txt` file and is returned as it is, with `images`.
pub fn caption_files(captions: &str, images: &str) -> Result<(PathBuf, PathBuf)> {
    caption_files_with(captions, images, &Columns::new())
}

/// [`caption_files`] reading a table by `columns`: role `image` names the image column, `caption` the
/// caption column(s), comma-separated (a column not named is the catalogue's, else `image` and `caption`).
/// The columns do not apply to a `captions.txt` file.
pub fn caption_files_with(
    captions: &str,
    images: &str,
    columns: &Columns,
) -> Result<(PathBuf, PathBuf)> {
    if is_labelled_table(captions) {
        let hub = Hub::from_env();
        let dir = extracted_dir_with(&hub, captions, columns)?;
        return extract_captions(&hub, captions, columns, &dir);
    }
    Ok((PathBuf::from(captions), PathBuf::from(images)))
}

/// Where [`caption_files`] writes a table source: `<hub cache>/seqlab-extracted/<source>-<hash>`, the hash
/// of the source's files (their paths name the hub commit), so that a new conversion gets a new folder.
pub fn extracted_dir(hub: &Hub, source: &str) -> Result<PathBuf> {
    extracted_dir_with(hub, source, &Columns::new())
}

/// [`extracted_dir`] of a table read by `columns`: columns named there are part of the hash, so that
/// other columns of the same files get their own folder.
fn extracted_dir_with(hub: &Hub, source: &str, columns: &Columns) -> Result<PathBuf> {
    let files = source_files(hub, source)?;
    let mut key = Vec::new();
    for file in &files {
        key.extend(file.display().to_string().bytes());
        let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        key.extend(size.to_le_bytes());
    }
    // Nothing is added for the default columns, so folders written before the flags existed still match.
    for role in ["image", "caption"] {
        if let Some(column) = columns.get(role) {
            key.extend(format!("\0{role}={column}").bytes());
        }
    }
    let name: String = source
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    Ok(hub.cache_dir().join("seqlab-extracted").join(format!(
        "{}-{:016x}",
        name.trim_matches('_'),
        fnv1a(&key)
    )))
}

/// Writes the images of a captioning table as `dir/images/NNNNNN.png` (or `.jpg`, `.gif`, `.bmp`, `.webp`
/// by their first bytes; `.bin` when unknown) and its captions as `dir/captions.txt`, one line per caption;
/// returns `(captions.txt, images folder)`. `captions.txt` is written last (through a temporary file), so a
/// folder that has it is complete and is reused as it is.
pub fn extract_captions(
    hub: &Hub,
    source: &str,
    columns: &Columns,
    dir: &Path,
) -> Result<(PathBuf, PathBuf)> {
    let captions_path = dir.join("captions.txt");
    let images_dir = dir.join("images");
    if captions_path.is_file() {
        return Ok((captions_path, images_dir));
    }
    let rows = captioned_images(hub, source, columns)?;
    std::fs::create_dir_all(&images_dir).map_err(|error| Error::Write {
        path: images_dir.clone(),
        error,
    })?;
    let mut csv = String::from("image,caption\n");
    for (i, (image, captions)) in rows.iter().enumerate() {
        let name = format!("{i:06}.{}", image_extension(image));
        let path = images_dir.join(&name);
        std::fs::write(&path, image).map_err(|error| Error::Write { path, error })?;
        for caption in captions {
            csv.push_str(&name);
            csv.push(',');
            csv.push_str(&csv_field(caption));
            csv.push('\n');
        }
    }
    let tmp = dir.join("captions.txt.tmp");
    std::fs::write(&tmp, csv).map_err(|error| Error::Write {
        path: tmp.clone(),
        error,
    })?;
    std::fs::rename(&tmp, &captions_path).map_err(|error| Error::Write {
        path: captions_path.clone(),
        error,
    })?;
    Ok((captions_path, images_dir))
}

/// The usual extension of an image file, from its first bytes.
fn image_extension(bytes: &[u8]) -> &'static str {
    match bytes {
        [0x89, b'P', b'N', b'G', ..] => "png",
        [0xff, 0xd8, ..] => "jpg",
        [b'G', b'I', b'F', ..] => "gif",
        [b'B', b'M', ..] => "bmp",
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => "webp",
        _ => "bin",
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(text: &str) -> String {
    let text = text.replace(['\r', '\n'], " ");
    if text.contains([',', '"']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{Column, Table};

    #[test]
    fn a_caption_table_is_written_once_as_captions_txt_and_images() {
        let dir = tempfile::tempdir().unwrap();
        let parquet = dir.path().join("caps.parquet");
        Table::new(
            "caps",
            vec![
                Column::bytes("image", vec![b"\x89PNG....".to_vec(), vec![0xff, 0xd8, 1]]),
                Column::text("caption", vec!["a cat, \"sitting\"".into(), "a dog".into()]),
            ],
        )
        .unwrap()
        .write_parquet(&parquet)
        .unwrap();
        let hub = Hub::new(dir.path()).with_offline(true);
        let source = parquet.display().to_string();
        let out = extracted_dir(&hub, &source).unwrap();
        assert!(out.starts_with(dir.path().join("seqlab-extracted")));
        let (captions, images) = extract_captions(&hub, &source, &Columns::new(), &out).unwrap();
        assert_eq!(
            std::fs::read_to_string(&captions).unwrap(),
            "image,caption\n000000.png,\"a cat, \"\"sitting\"\"\"\n000001.jpg,a dog\n"
        );
        assert_eq!(
            std::fs::read(images.join("000001.jpg")).unwrap(),
            [0xff, 0xd8, 1]
        );
        // Reused as it is: the table is not read again.
        std::fs::remove_file(&parquet).unwrap();
        assert_eq!(
            extract_captions(&hub, &source, &Columns::new(), &out).unwrap(),
            (captions, images)
        );
    }
}
