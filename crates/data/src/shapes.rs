//! A synthetic captioning set: two coloured shapes per image, one above (or left of) the other, captioned
//! "a red circle above a blue square" — written as PNGs and a `captions.txt` in the Flickr8k layout, so a
//! first captioner trains with no download.
//!
//! Each image has two references, one from each shape ("a red circle above a blue square", "a blue square
//! below a red circle"), so the four relations *above*, *below*, *left of* and *right of* all occur.
//!
//! **Held-out combinations.** A shape's *combination* is its (colour, shape, position) triple, the position
//! being top, bottom, left or right. The triples with `(colour + shape + position) % 5 == 0` (indices into
//! [`COLOURS`], [`SHAPES`] and top/bottom/left/right) are held out: 12 of the 60. A training set
//! ([`ShapesSplit::Train`]) never draws a held-out triple; a held-out set ([`ShapesSplit::Holdout`]) always has
//! at least one in each image. Every colour, shape and position still occurs in training, only not together
//! in those triples: a captioner must compose what it learnt to caption the held-out set.

use std::path::Path;

use crate::error::{Error, Result};
use seqlab_base::SplitMix64;

/// The colours, their names in captions and their RGB values.
pub const COLOURS: [(&str, [u8; 3]); 5] = [
    ("red", [220, 40, 40]),
    ("green", [40, 170, 60]),
    ("blue", [40, 80, 220]),
    ("yellow", [230, 200, 40]),
    ("purple", [150, 60, 190]),
];

/// The shapes, as named in captions.
pub const SHAPES: [&str; 3] = ["circle", "square", "triangle"];

/// Which combinations a generated set draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShapesSplit {
    /// Only combinations that are not held out: a training set.
    #[default]
    Train,
    /// Images with at least one held-out combination: the test of composition.
    Holdout,
}

/// What [`generate_shapes`] writes: plain data.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapesConfig {
    /// Images to draw.
    pub count: usize,
    /// Side of each square image in pixels. 64: as the emoji set; shapes stay clear down to 32.
    pub size: usize,
    /// Seed of every random draw: the same seed gives the same files, byte for byte.
    pub seed: u64,
    /// Training combinations or held-out ones.
    pub split: ShapesSplit,
}

impl Default for ShapesConfig {
    fn default() -> Self {
        Self {
            count: 1000,
            size: 64,
            seed: 0,
            split: ShapesSplit::Train,
        }
    }
}

/// The positions a shape takes in its image, as [`is_held_out`] indexes them.
pub const POSITIONS: [&str; 4] = ["top", "bottom", "left", "right"];

/// Whether the (colour, shape, position) triple is held out of training sets (see the module doc).
pub fn is_held_out(colour: usize, shape: usize, position: usize) -> bool {
    (colour + shape + position).is_multiple_of(5)
}

/// One drawn shape.
#[derive(Debug, Clone, Copy)]
struct Placed {
    colour: usize,
    shape: usize,
    position: usize,
    cx: f64,
    cy: f64,
    radius: f64,
}

/// Draws one image's layout: a vertical or horizontal pair of shapes with jittered places and sizes.
fn draw_layout(rng: &mut SplitMix64, size: f64, split: ShapesSplit) -> [Placed; 2] {
    loop {
        let vertical = rng.below(2) == 0;
        let (first_pos, second_pos) = if vertical { (0, 1) } else { (2, 3) };
        let pick = |rng: &mut SplitMix64, position| {
            let (colour, shape) = (rng.below(COLOURS.len()), rng.below(SHAPES.len()));
            let radius = size * (0.12 + 0.05 * rng.unit());
            let along = size * (0.2 + 0.12 * rng.unit());
            let across = size * (0.3 + 0.4 * rng.unit());
            let along = if position % 2 == 0 {
                along
            } else {
                size - along
            };
            let (cx, cy) = if vertical {
                (across, along)
            } else {
                (along, across)
            };
            Placed {
                colour,
                shape,
                position,
                cx,
                cy,
                radius,
            }
        };
        let a = pick(rng, first_pos);
        let b = pick(rng, second_pos);
        if (a.colour, a.shape) == (b.colour, b.shape) {
            continue;
        }
        let held = [a, b]
            .iter()
            .any(|p| is_held_out(p.colour, p.shape, p.position));
        if held == (split == ShapesSplit::Holdout) {
            return [a, b];
        }
    }
}

/// Whether pixel centre (x, y) lies inside `p`.
fn inside(p: &Placed, x: f64, y: f64) -> bool {
    let (dx, dy, r) = (x - p.cx, y - p.cy, p.radius);
    match SHAPES[p.shape] {
        "circle" => dx * dx + dy * dy <= r * r,
        "square" => dx.abs() <= 0.85 * r && dy.abs() <= 0.85 * r,
        // An upward triangle: apex at the top, base at the bottom, width growing linearly.
        _ => dy >= -r && dy <= 0.8 * r && dx.abs() <= (dy + r) / 1.8 * 1.1,
    }
}

/// The two references of a layout: from the first shape, and from the second.
fn captions(pair: &[Placed; 2]) -> [String; 2] {
    let name = |p: &Placed| format!("{} {}", COLOURS[p.colour].0, SHAPES[p.shape]);
    let vertical = pair[0].position == 0;
    let (forward, backward) = if vertical {
        ("above", "below")
    } else {
        ("left of", "right of")
    };
    [
        format!("a {} {forward} a {}", name(&pair[0]), name(&pair[1])),
        format!("a {} {backward} a {}", name(&pair[1]), name(&pair[0])),
    ]
}

/// Writes `config.count` images `shape_00000.png`, ... into `dir/images/` and their captions into
/// `dir/captions.txt` (creating `dir`). Deterministic: the same config gives the same files.
///
/// Returns the number of captions written.
pub fn generate_shapes(dir: &Path, config: &ShapesConfig) -> Result<usize> {
    if config.count == 0 || config.size < 16 {
        return Err(Error::Captions {
            path: dir.join("captions.txt"),
            line: 1,
            reason: format!(
                "a shapes set needs at least 1 image of at least 16 pixels, got {} of {}",
                config.count, config.size
            ),
        });
    }
    let images = dir.join("images");
    std::fs::create_dir_all(&images).map_err(|error| Error::Write {
        path: images.clone(),
        error,
    })?;
    let salt = match config.split {
        ShapesSplit::Train => 0x7261_696E,
        ShapesSplit::Holdout => 0x686F_6C64,
    };
    let mut rng = SplitMix64::new(config.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ salt);
    let size = config.size;
    let mut csv = String::from("image,caption\n");
    let mut written = 0;
    for i in 0..config.count {
        let pair = draw_layout(&mut rng, size as f64, config.split);
        let mut pixels = vec![255u8; size * size * 3];
        for y in 0..size {
            for x in 0..size {
                let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
                for p in &pair {
                    if inside(p, px, py) {
                        let at = 3 * (y * size + x);
                        pixels[at..at + 3].copy_from_slice(&COLOURS[p.colour].1);
                    }
                }
            }
        }
        let name = format!("shape_{i:05}.png");
        let path = images.join(&name);
        let tmp = images.join(format!("{name}.tmp"));
        image::save_buffer_with_format(
            &tmp,
            &pixels,
            size as u32,
            size as u32,
            image::ExtendedColorType::Rgb8,
            image::ImageFormat::Png,
        )
        .map_err(|e| Error::Write {
            path: tmp.clone(),
            error: std::io::Error::other(e.to_string()),
        })?;
        rename(&tmp, &path)?;
        for caption in captions(&pair) {
            csv.push_str(&format!("{name},{caption}\n"));
            written += 1;
        }
    }
    // Written last, like each image through a temporary file: an interrupted run leaves no captions file
    // (and no half-written picture) behind, never a set that looks whole.
    let path = dir.join("captions.txt");
    let tmp = dir.join("captions.txt.tmp");
    std::fs::write(&tmp, csv).map_err(|error| Error::Write {
        path: tmp.clone(),
        error,
    })?;
    rename(&tmp, &path)?;
    Ok(written)
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|error| Error::Write {
        path: to.to_path_buf(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twelve_of_sixty_triples_are_held_out_and_every_pair_is_still_seen() {
        let mut held = 0;
        for c in 0..5 {
            for s in 0..3 {
                for p in 0..4 {
                    held += usize::from(is_held_out(c, s, p));
                }
                // Each (colour, shape) is seen in training at some position.
                assert!((0..4).any(|p| !is_held_out(c, s, p)));
            }
        }
        assert_eq!(held, 12);
    }

    #[test]
    fn captions_name_both_shapes_in_both_directions() {
        let mut rng = SplitMix64::new(3);
        for _ in 0..50 {
            let pair = draw_layout(&mut rng, 64.0, ShapesSplit::Holdout);
            assert!(pair
                .iter()
                .any(|p| is_held_out(p.colour, p.shape, p.position)));
            let [a, b] = captions(&pair);
            assert!(a.starts_with("a ") && b.starts_with("a "));
            assert_eq!(a.split(' ').count(), b.split(' ').count());
        }
    }
}
