//! Captioned images in the Flickr8k layout: a `captions.txt` CSV with the header `image,caption` and one
//! row per caption (several per image), beside a folder of images.
//!
//! ```text
//! image,caption
//! 1000268201_693b08cb0e.jpg,A child in a pink dress is climbing up a set of stairs .
//! 1000268201_693b08cb0e.jpg,"A girl going into a wooden building, near a tree ."
//! ```

use seqlab_base::SplitMix64;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::images::{load_image, ImageOptions};

/// One image and all its reference captions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptionedImage {
    /// The file name as the captions file gives it, relative to the image folder.
    pub image: String,
    /// Its captions, in file order.
    pub captions: Vec<String>,
}

/// Reads a captions CSV: header `image,caption` (any case), fields separated by commas, optionally quoted
/// with `"` (a quote inside a quoted field doubled, commas and line breaks allowed inside quotes). A UTF-8
/// BOM and CRLF line ends are tolerated; blank lines are skipped. Rows are grouped by image in the order
/// of each image's first row. Errors name the file and the line.
pub fn read_captions(path: &Path) -> Result<Vec<CaptionedImage>> {
    let text = std::fs::read(path).map_err(|error| Error::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let text = String::from_utf8(text).map_err(|e| Error::Captions {
        path: path.to_path_buf(),
        line: 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count(),
        reason: "the file is not UTF-8 text".to_string(),
    })?;
    parse_captions(&text, path)
}

/// [`read_captions`] on text already read; `path` names it in errors.
pub fn parse_captions(text: &str, path: &Path) -> Result<Vec<CaptionedImage>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let bad = |line: usize, reason: String| Error::Captions {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let rows = csv_rows(text).map_err(|(line, reason)| bad(line, reason))?;
    let mut rows = rows.into_iter();
    let Some((line, header)) = rows.next() else {
        return Err(bad(
            1,
            "the file is empty; expected the header image,caption".to_string(),
        ));
    };
    let names: Vec<String> = header.iter().map(|f| f.trim().to_lowercase()).collect();
    if names != ["image", "caption"] {
        return Err(bad(
            line,
            format!(
                "expected the header image,caption, found {}",
                header.join(",")
            ),
        ));
    }
    let mut order: Vec<CaptionedImage> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (line, fields) in rows {
        if fields.len() != 2 {
            return Err(bad(
                line,
                format!(
                    "expected 2 fields (image,caption), found {} (quote a caption that holds a comma)",
                    fields.len()
                ),
            ));
        }
        let image = fields[0].trim();
        let caption = fields[1].trim();
        if image.is_empty() {
            return Err(bad(line, "the image name is empty".to_string()));
        }
        if caption.is_empty() {
            return Err(bad(line, format!("the caption of {image} is empty")));
        }
        let at = *index.entry(image.to_string()).or_insert_with(|| {
            order.push(CaptionedImage {
                image: image.to_string(),
                captions: Vec::new(),
            });
            order.len() - 1
        });
        order[at].captions.push(caption.to_string());
    }
    if order.is_empty() {
        return Err(bad(
            line + 1,
            "the file has a header but no captions".to_string(),
        ));
    }
    Ok(order)
}

/// Rows of CSV fields, each with the 1-based line it starts on.
type Rows = Vec<(usize, Vec<String>)>;

/// Splits CSV text into rows of fields; blank lines are skipped. Errors: the line and what is wrong.
fn csv_rows(text: &str) -> std::result::Result<Rows, (usize, String)> {
    let mut rows = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let start = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted_field = false;
        loop {
            match chars.next() {
                None => break,
                Some('\n') => {
                    line += 1;
                    break;
                }
                Some('\r') if chars.peek() == Some(&'\n') => {}
                Some(',') => {
                    fields.push(std::mem::take(&mut field));
                    quoted_field = false;
                }
                Some('"') if field.trim().is_empty() && !quoted_field => {
                    field.clear();
                    quoted_field = true;
                    loop {
                        match chars.next() {
                            None => return Err((start, "a quoted field is never closed".into())),
                            Some('"') if chars.peek() == Some(&'"') => {
                                chars.next();
                                field.push('"');
                            }
                            Some('"') => break,
                            Some(c) => {
                                if c == '\n' {
                                    line += 1;
                                }
                                field.push(c);
                            }
                        }
                    }
                }
                Some(c) if quoted_field && !c.is_whitespace() => {
                    return Err((
                        line,
                        format!("unexpected {c:?} after a closing quote (a quote inside a quoted field is written \"\")"),
                    ));
                }
                Some(c) => field.push(c),
            }
        }
        fields.push(field);
        if !(fields.len() == 1 && fields[0].trim().is_empty()) {
            rows.push((start, fields));
        }
    }
    Ok(rows)
}

/// Splits images into training and validation sets *by image* (every caption of an image lands on the same
/// side): a shuffle drawn from `seed`, the first `round(fraction · n)` images to validation (at least one
/// when `fraction > 0`, never all). Each side keeps the file order.
pub fn split_by_image(
    images: &[CaptionedImage],
    fraction: f64,
    seed: u64,
) -> Result<(Vec<CaptionedImage>, Vec<CaptionedImage>)> {
    if !(0.0..1.0).contains(&fraction) {
        return Err(Error::InvalidFraction(fraction));
    }
    let n = images.len();
    let mut valid_count = (fraction * n as f64).round() as usize;
    if fraction > 0.0 {
        valid_count = valid_count.max(1);
    }
    valid_count = valid_count.min(n.saturating_sub(1));
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(seed ^ 0x5EED_CA97_1045_0000);
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let mut is_valid = vec![false; n];
    for &i in &order[..valid_count] {
        is_valid[i] = true;
    }
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for (image, v) in images.iter().zip(is_valid) {
        if v {
            valid.push(image.clone());
        } else {
            train.push(image.clone());
        }
    }
    Ok((train, valid))
}

/// What to do with an image that is listed but missing, corrupt, or of an unsupported format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnBadImage {
    /// Stop with an error naming the file.
    #[default]
    Fail,
    /// Leave the image (and its captions) out and count it.
    Skip,
}

/// Images decoded for the encoder, with their captions.
#[derive(Debug, Clone)]
pub struct LoadedImages {
    /// The images kept, in order, with their captions.
    pub items: Vec<CaptionedImage>,
    /// The values of each kept image (see [`load_image`]), in the same order.
    pub pixels: Vec<Vec<f32>>,
    /// Images left out with [`OnBadImage::Skip`]: the file and why.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Decodes every image of `items` from the folder `dir`.
pub fn load_images(
    dir: &Path,
    items: &[CaptionedImage],
    options: &ImageOptions,
    on_bad: OnBadImage,
) -> Result<LoadedImages> {
    if !dir.is_dir() {
        return Err(Error::Read {
            path: dir.to_path_buf(),
            error: std::io::Error::new(std::io::ErrorKind::NotFound, "no such image folder"),
        });
    }
    let mut loaded = LoadedImages {
        items: Vec::with_capacity(items.len()),
        pixels: Vec::with_capacity(items.len()),
        skipped: Vec::new(),
    };
    for item in items {
        let path = dir.join(&item.image);
        match load_image(&path, options) {
            Ok(pixels) => {
                loaded.items.push(item.clone());
                loaded.pixels.push(pixels);
            }
            Err(Error::Image { path, reason }) if on_bad == OnBadImage::Skip => {
                loaded.skipped.push((path, reason));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<CaptionedImage>> {
        parse_captions(text, Path::new("captions.txt"))
    }

    #[test]
    fn rows_group_by_image_and_quotes_hold_commas_and_quotes() {
        let text = "\u{feff}image,caption\r\na.png,\"family: adult, child\"\r\nb.jpg,a dog\n\na.png,\"say \"\"hi\"\"\"\n";
        let got = parse(text).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].image, "a.png");
        assert_eq!(got[0].captions, ["family: adult, child", "say \"hi\""]);
        assert_eq!(got[1].captions, ["a dog"]);
    }

    #[test]
    fn a_bad_header_an_extra_field_and_an_open_quote_name_the_line() {
        let err = parse("file,text\na.png,x\n").unwrap_err().to_string();
        assert!(
            err.contains("captions.txt, line 1") && err.contains("image,caption"),
            "{err}"
        );
        let err = parse("image,caption\na.png,x\nb.png,one, two\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3") && err.contains("found 3"), "{err}");
        let err = parse("image,caption\na.png,\"open\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("never closed"),
            "{err}"
        );
        let err = parse("image,caption\n").unwrap_err().to_string();
        assert!(err.contains("no captions"), "{err}");
        let err = parse("image,caption\na.png,  \n").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("empty"), "{err}");
    }

    #[test]
    fn the_split_is_by_image_seeded_and_never_empty() {
        let images: Vec<CaptionedImage> = (0..10)
            .map(|i| CaptionedImage {
                image: format!("{i}.png"),
                captions: vec!["x".into(), "y".into()],
            })
            .collect();
        let (train, valid) = split_by_image(&images, 0.2, 1).unwrap();
        assert_eq!((train.len(), valid.len()), (8, 2));
        let (train2, valid2) = split_by_image(&images, 0.2, 1).unwrap();
        assert_eq!((train, valid.clone()), (train2, valid2));
        let (_, other) = split_by_image(&images, 0.2, 2).unwrap();
        assert_ne!(valid, other);
        let (train, valid) = split_by_image(&images[..2], 0.01, 1).unwrap();
        assert_eq!((train.len(), valid.len()), (1, 1));
        assert!(split_by_image(&images, 1.0, 1).is_err());
    }
}
