//! Any bytes as a Flickr8k `captions.txt` (CSV `image,caption`). Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let _ = seqlab_data::parse_captions(text, std::path::Path::new("captions.txt"));
});
