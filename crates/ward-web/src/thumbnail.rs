//! Thumbnails of image attachments (docs/attachments.md): made once, right after the
//! upload, from the file read back decrypted; stored encrypted as an object of their
//! own. Decoding runs on a blocking thread with bounded memory; a thumbnail that cannot
//! be made is simply not there (the upload has already succeeded).

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::{ImageFormat, ImageReader, Limits, Rgb, RgbImage};

/// The longest side of a thumbnail, in pixels.
pub const MAX_SIDE: u32 = 256;
/// The largest image decoded, per side.
pub const MAX_DIMENSION: u32 = 12_000;
/// The most memory the decoder may allocate.
pub const MAX_DECODER_BYTES: u64 = 256 * 1024 * 1024;

/// Whether a file of this (sniffed) type gets a thumbnail.
pub fn applies(content_type: &str) -> bool {
    matches!(content_type, "image/jpeg" | "image/png" | "image/webp")
}

/// A JPEG of at most [`MAX_SIDE`] pixels a side showing the image `bytes` (a JPEG, PNG
/// or WebP), transparent parts on white. Blocking: call it off the async workers.
pub fn make(content_type: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let format = match content_type {
        "image/jpeg" => ImageFormat::Jpeg,
        "image/png" => ImageFormat::Png,
        "image/webp" => ImageFormat::WebP,
        _ => return Err("not an image".into()),
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    limits.max_alloc = Some(MAX_DECODER_BYTES);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| e.to_string())?;
    let small = image.thumbnail(MAX_SIDE, MAX_SIDE).to_rgba8();
    let flat = RgbImage::from_fn(small.width(), small.height(), |x, y| {
        let p = small.get_pixel(x, y);
        let a = u16::from(p[3]);
        let over_white =
            |c: u8| u8::try_from((u16::from(c) * a + 255 * (255 - a)) / 255).unwrap_or(255);
        Rgb([over_white(p[0]), over_white(p[1]), over_white(p[2])])
    });
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&flat)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbaImage::from_fn(w, h, |x, _| image::Rgba([(x % 256) as u8, 0, 0, 128]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn a_thumbnail_is_a_small_jpeg_keeping_the_shape() {
        let t = make("image/png", &png(1000, 500)).unwrap();
        let back = image::load_from_memory_with_format(&t, ImageFormat::Jpeg).unwrap();
        assert_eq!((back.width(), back.height()), (256, 128));
    }

    #[test]
    fn a_broken_or_huge_image_gives_no_thumbnail() {
        let mut broken = png(64, 64);
        broken.truncate(60);
        assert!(make("image/png", &broken).is_err());
        assert!(make("application/pdf", b"%PDF-1.4").is_err());
        // A header claiming 50,000 pixels a side is refused before any allocation.
        let mut huge = png(1, 1);
        huge[16..20].copy_from_slice(&50_000u32.to_be_bytes());
        huge[20..24].copy_from_slice(&50_000u32.to_be_bytes());
        assert!(make("image/png", &huge).is_err());
    }
}
