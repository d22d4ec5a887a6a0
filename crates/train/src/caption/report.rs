//! An HTML page of images beside their generated captions: one self-contained file (the images embedded as
//! data URIs), to open in any browser.

use std::path::PathBuf;

use super::eval::CaptionedOutput;

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The `<img>` source of an image file: a data URI of its bytes, or `None` when it cannot be read.
fn data_uri(path: &PathBuf) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let mime = if bytes.starts_with(&[0xFF, 0xD8]) {
        "image/jpeg"
    } else {
        "image/png"
    };
    Some(format!("data:{mime};base64,{}", base64(&bytes)))
}

/// An HTML page titled `title`, with the lines of `summary` under the title, then one row per image:
/// the image (`paths[i]`, embedded), its generated caption, and its references (when it has any).
pub fn html_report(
    title: &str,
    summary: &[String],
    paths: &[PathBuf],
    outputs: &[CaptionedOutput],
) -> String {
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{0}</title>\n<style>\
         body{{font-family:sans-serif;margin:2em}}td{{padding:6px 12px;vertical-align:middle;\
         border-bottom:1px solid #ddd}}img{{width:96px;height:96px;image-rendering:pixelated}}\
         .refs{{color:#666;font-size:90%}}.hit{{color:#070}}</style></head><body>\n<h1>{0}</h1>\n",
        escape(title)
    );
    for line in summary {
        html.push_str(&format!("<p>{}</p>\n", escape(line)));
    }
    html.push_str(
        "<table>\n<tr><th>image</th><th>generated caption</th><th>references</th></tr>\n",
    );
    for (path, output) in paths.iter().zip(outputs) {
        let img = match data_uri(path) {
            Some(src) => format!("<img src=\"{src}\" alt=\"{}\">", escape(&output.image)),
            None => format!("({} unreadable)", escape(&output.image)),
        };
        let hit = output
            .references
            .iter()
            .any(|r| r.trim() == output.caption.trim());
        html.push_str(&format!(
            "<tr><td>{img}<br><small>{}</small></td><td{}>{}</td><td class=\"refs\">{}</td></tr>\n",
            escape(&output.image),
            if hit { " class=\"hit\"" } else { "" },
            escape(&output.caption),
            output
                .references
                .iter()
                .map(|r| escape(r))
                .collect::<Vec<_>>()
                .join("<br>")
        ));
    }
    html.push_str("</table>\n</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn captions_are_escaped_and_missing_images_are_named() {
        let out = CaptionedOutput {
            image: "a<b>.png".into(),
            caption: "x & y".into(),
            references: vec!["x & y".into()],
        };
        let html = html_report("t", &[], &[PathBuf::from("/nonexistent/a.png")], &[out]);
        assert!(html.contains("x &amp; y") && html.contains("a&lt;b&gt;.png unreadable"));
        assert!(html.contains("class=\"hit\""));
    }
}
