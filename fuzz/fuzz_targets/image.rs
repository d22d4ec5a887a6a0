//! Any bytes as an image file (PNG, JPEG or anything else): decoded, converted and resized. Must never
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|bytes: &[u8]| {
    let path = common::write("image.png", bytes);
    let options = seqlab_data::ImageOptions {
        size: 8,
        ..Default::default()
    };
    let _ = seqlab_data::load_image(&path, &options);
});
