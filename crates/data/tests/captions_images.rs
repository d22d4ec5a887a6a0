//! Captioned images: the Flickr8k reader, image decoding and its errors, the split by image, and the
//! synthetic shapes set.

use std::path::Path;

use seqlab_data::{
    generate_shapes, is_held_out, load_image, load_images, read_captions, CaptionedImage,
    ImageOptions, OnBadImage, ShapesConfig, ShapesSplit, COLOURS, SHAPES,
};

fn write_png(path: &Path, rgba: bool) {
    if rgba {
        let img = image::RgbaImage::from_pixel(5, 3, image::Rgba([10, 200, 30, 128]));
        img.save(path).unwrap();
    } else {
        let img = image::GrayImage::from_pixel(4, 4, image::Luma([64]));
        img.save(path).unwrap();
    }
}

fn item(image: &str) -> CaptionedImage {
    CaptionedImage {
        image: image.to_string(),
        captions: vec!["a thing".to_string()],
    }
}

#[test]
fn png_rgba_grayscale_and_jpeg_decode_to_normalised_rgb_of_the_asked_size() {
    let dir = tempfile::tempdir().unwrap();
    let options = ImageOptions {
        size: 8,
        ..ImageOptions::default()
    };
    write_png(&dir.path().join("rgba.png"), true);
    write_png(&dir.path().join("gray.png"), false);
    let jpeg = dir.path().join("photo.jpg");
    image::RgbImage::from_pixel(6, 6, image::Rgb([255, 0, 0]))
        .save(&jpeg)
        .unwrap();
    let rgba = load_image(&dir.path().join("rgba.png"), &options).unwrap();
    assert_eq!(rgba.len(), 3 * 8 * 8);
    // Half-transparent green on white: red = (10·a + 255·(1-a)) / 255 ≈ 0.54 → normalised ≈ 0.08.
    let a = 128.0 / 255.0;
    let red = (10.0 / 255.0 * a + (1.0 - a) - 0.5) / 0.5;
    assert!((rgba[0] - red).abs() < 0.02, "{} vs {red}", rgba[0]);
    let gray = load_image(&dir.path().join("gray.png"), &options).unwrap();
    assert_eq!(gray[0], gray[64]);
    assert_eq!(gray[0], gray[128]);
    let photo = load_image(&jpeg, &options).unwrap();
    assert!(
        photo[0] > 0.9 && photo[64] < -0.8,
        "{} {}",
        photo[0],
        photo[64]
    );
}

#[test]
fn missing_corrupt_and_unsupported_images_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let options = ImageOptions::default();
    let missing = dir.path().join("missing.png");
    let err = load_image(&missing, &options).unwrap_err().to_string();
    assert!(
        err.contains("missing.png") && err.contains("no such image"),
        "{err}"
    );

    let corrupt = dir.path().join("corrupt.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR garbage").unwrap();
    let err = load_image(&corrupt, &options).unwrap_err().to_string();
    assert!(
        err.contains("corrupt.png") && err.contains("corrupt Png"),
        "{err}"
    );

    let gif = dir.path().join("anim.gif");
    std::fs::write(&gif, b"GIF89a\x01\0\x01\0\0\0\0;").unwrap();
    let err = load_image(&gif, &options).unwrap_err().to_string();
    assert!(
        err.contains("anim.gif") && err.contains("unsupported image format Gif"),
        "{err}"
    );

    let text = dir.path().join("notes.png");
    std::fs::write(&text, b"just some text").unwrap();
    let err = load_image(&text, &options).unwrap_err().to_string();
    assert!(
        err.contains("notes.png") && err.contains("not a PNG or JPEG"),
        "{err}"
    );

    // Listed images: an error on the first bad one, or a skip with a count.
    write_png(&dir.path().join("good.png"), true);
    let items = [item("good.png"), item("missing.png"), item("anim.gif")];
    let err = load_images(dir.path(), &items, &options, OnBadImage::Fail)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.png"), "{err}");
    let loaded = load_images(dir.path(), &items, &options, OnBadImage::Skip).unwrap();
    assert_eq!(loaded.items, [item("good.png")]);
    assert_eq!(loaded.pixels.len(), 1);
    assert_eq!(loaded.skipped.len(), 2);
    assert!(loaded.skipped[1].0.ends_with("anim.gif"));
}

#[test]
fn a_captions_file_with_a_bad_row_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("captions.txt");
    std::fs::write(&path, "image,caption\na.png,\"one, two\"\nb.png\n").unwrap();
    let err = read_captions(&path).unwrap_err().to_string();
    assert!(
        err.contains("captions.txt, line 3") && err.contains("found 1"),
        "{err}"
    );
    let err = read_captions(&dir.path().join("none.txt"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("none.txt"), "{err}");
}

#[test]
fn the_shapes_set_is_deterministic_from_its_seed() {
    let dir = tempfile::tempdir().unwrap();
    let config = ShapesConfig {
        count: 6,
        size: 32,
        seed: 4,
        split: ShapesSplit::Train,
    };
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    assert_eq!(generate_shapes(&a, &config).unwrap(), 12);
    generate_shapes(&b, &config).unwrap();
    generate_shapes(
        &c,
        &ShapesConfig {
            seed: 5,
            ..config.clone()
        },
    )
    .unwrap();
    let read = |d: &Path, f: &str| std::fs::read(d.join(f)).unwrap();
    assert_eq!(read(&a, "captions.txt"), read(&b, "captions.txt"));
    assert_eq!(
        read(&a, "images/shape_00005.png"),
        read(&b, "images/shape_00005.png")
    );
    assert_ne!(read(&a, "captions.txt"), read(&c, "captions.txt"));
    let images = read_captions(&a.join("captions.txt")).unwrap();
    assert_eq!(images.len(), 6);
    assert!(images.iter().all(|i| i.captions.len() == 2));
    let options = ImageOptions {
        size: 32,
        ..ImageOptions::default()
    };
    assert_eq!(
        load_image(&a.join("images/shape_00000.png"), &options)
            .unwrap()
            .len(),
        3 * 32 * 32
    );
}

/// The (colour, shape, position) triples named by a caption "a C S REL a C S".
fn triples(caption: &str) -> Vec<(usize, usize, usize)> {
    let words: Vec<&str> = caption.split(' ').collect();
    let colour = |w: &str| COLOURS.iter().position(|c| c.0 == w).unwrap();
    let shape = |w: &str| SHAPES.iter().position(|s| *s == w).unwrap();
    let (relation, rest) = if words[3] == "left" || words[3] == "right" {
        (format!("{} of", words[3]), &words[5..])
    } else {
        (words[3].to_string(), &words[4..])
    };
    let (first, second) = match relation.as_str() {
        "above" => (0, 1),
        "below" => (1, 0),
        "left of" => (2, 3),
        "right of" => (3, 2),
        other => panic!("relation {other}"),
    };
    vec![
        (colour(words[1]), shape(words[2]), first),
        (colour(rest[1]), shape(rest[2]), second),
    ]
}

#[test]
fn training_sets_never_hold_a_held_out_combination_and_holdout_sets_always_do() {
    let dir = tempfile::tempdir().unwrap();
    for (split, name) in [
        (ShapesSplit::Train, "train"),
        (ShapesSplit::Holdout, "hold"),
    ] {
        let out = dir.path().join(name);
        let config = ShapesConfig {
            count: 200,
            size: 16,
            seed: 1,
            split,
        };
        generate_shapes(&out, &config).unwrap();
        for image in read_captions(&out.join("captions.txt")).unwrap() {
            for caption in &image.captions {
                let held = triples(caption)
                    .iter()
                    .any(|&(c, s, p)| is_held_out(c, s, p));
                assert_eq!(held, split == ShapesSplit::Holdout, "{caption}");
            }
        }
    }
}
