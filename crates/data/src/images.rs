//! Images for the captioner: PNG and JPEG files decoded with the `image` crate, converted to RGB, resized
//! to a fixed square and normalised, as `(3, size, size)` channel-major `f32` values.

use std::path::Path;

use candle_core::{Device, Tensor};
use image::{imageops::FilterType, ImageFormat};

use crate::error::{one_line, Error, Result};

/// How an image becomes the encoder's input: plain data.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageOptions {
    /// Side of the square every image is resized to (without keeping the aspect ratio). 64: the emoji
    /// set's own size, and small enough for a CNN trained on two cores.
    pub size: usize,
    /// Per-channel mean subtracted after scaling to [0, 1]. 0.5: puts a white background at +1.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by after the mean. 0.5: values in [-1, 1].
    pub std: [f32; 3],
}

impl Default for ImageOptions {
    fn default() -> Self {
        Self {
            size: 64,
            mean: [0.5; 3],
            std: [0.5; 3],
        }
    }
}

impl ImageOptions {
    /// Values of one image: `3 * size * size`.
    pub fn values_per_image(&self) -> usize {
        3 * self.size * self.size
    }
}

/// Reads the image at `path` and returns its `3 * size * size` values, channel-major (`[c][y][x]`).
///
/// PNG and JPEG are decoded whatever the file's extension (the format is read from the content). Grayscale
/// becomes RGB; an alpha channel is composited onto a white background (emoji are drawn on transparency).
/// The image is resized to `size × size` with a triangle filter, scaled to [0, 1] and normalised with
/// `mean` and `std`. A missing file, a corrupt one, or another format is an [`Error::Image`] naming the file.
pub fn load_image(path: &Path, options: &ImageOptions) -> Result<Vec<f32>> {
    if options.size == 0 {
        return Err(Error::Image {
            path: path.to_path_buf(),
            reason: "the image size must be at least 1".to_string(),
        });
    }
    let bad = |reason: String| Error::Image {
        path: path.to_path_buf(),
        reason,
    };
    if !path.exists() {
        return Err(bad("no such image file".to_string()));
    }
    let bytes =
        std::fs::read(path).map_err(|e| bad(format!("cannot read the image: {}", one_line(e))))?;
    decode_image(&bytes, options, path)
}

/// [`load_image`] of an image's bytes already read (an upload): errors name `source`.
pub fn decode_image(bytes: &[u8], options: &ImageOptions, source: &Path) -> Result<Vec<f32>> {
    let bad = |reason: String| Error::Image {
        path: source.to_path_buf(),
        reason,
    };
    if options.size == 0 {
        return Err(bad("the image size must be at least 1".to_string()));
    }
    // The format comes from the content, never from the extension.
    let format = match image::guess_format(bytes) {
        Ok(format @ (ImageFormat::Png | ImageFormat::Jpeg)) => format,
        Ok(other) => {
            return Err(bad(format!(
                "unsupported image format {other:?}; seqlab decodes PNG and JPEG"
            )))
        }
        Err(_) => {
            return Err(bad(
                "not a PNG or JPEG image (its content has no known image signature)".to_string(),
            ))
        }
    };
    let decoded = image::load_from_memory_with_format(bytes, format).map_err(|e| {
        bad(format!(
            "corrupt {format:?} image: {}",
            one_line(e).trim_end_matches('.')
        ))
    })?;
    let rgba = decoded.to_rgba8();
    let resized = if rgba.width() as usize == options.size && rgba.height() as usize == options.size
    {
        rgba
    } else {
        let side = options.size as u32;
        image::imageops::resize(&rgba, side, side, FilterType::Triangle)
    };
    let plane = options.size * options.size;
    let mut values = vec![0f32; 3 * plane];
    for (i, pixel) in resized.pixels().enumerate() {
        let [r, g, b, a] = pixel.0;
        let alpha = a as f32 / 255.0;
        for (c, v) in [r, g, b].into_iter().enumerate() {
            // Composited onto white: c·α + 1·(1 − α), in [0, 1].
            let x = v as f32 / 255.0 * alpha + (1.0 - alpha);
            values[c * plane + i] = (x - options.mean[c]) / options.std[c];
        }
    }
    Ok(values)
}

/// Stacks images of `3 * size * size` values each into one `(batch, 3, size, size)` tensor.
pub fn images_tensor(images: &[&[f32]], size: usize, device: &Device) -> Result<Tensor> {
    let per = 3 * size * size;
    let mut flat = Vec::with_capacity(images.len() * per);
    for image in images {
        if image.len() != per {
            return Err(Error::Candle(candle_core::Error::Msg(format!(
                "an image of {} values is not 3 x {size} x {size}",
                image.len()
            ))));
        }
        flat.extend_from_slice(image);
    }
    Ok(Tensor::from_vec(
        flat,
        (images.len(), 3, size, size),
        device,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transparent_pixels_become_white_and_opaque_ones_keep_their_colour() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("two.png");
        let mut img = image::RgbaImage::new(2, 2);
        for y in 0..2 {
            img.put_pixel(0, y, image::Rgba([0, 0, 0, 0]));
            img.put_pixel(1, y, image::Rgba([255, 0, 0, 255]));
        }
        img.save(&path).unwrap();
        let options = ImageOptions {
            size: 2,
            ..ImageOptions::default()
        };
        let values = load_image(&path, &options).unwrap();
        assert_eq!(values.len(), 12);
        // Red channel: white (1) on the left, red (1) on the right; green: white (1), then -1.
        assert!((values[0] - 1.0).abs() < 1e-6, "{values:?}");
        assert!((values[4] - 1.0).abs() < 1e-6, "{values:?}");
        assert!((values[5] + 1.0).abs() < 1e-6, "{values:?}");
    }
}
