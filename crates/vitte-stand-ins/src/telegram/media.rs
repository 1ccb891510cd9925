//! Just enough understanding of uploaded media to answer like Telegram:
//! image dimensions (PNG, JPEG, GIF, WebP) for photo sizes, and the audio
//! container and length for voice notes.

/// Width and height of an image, or `None` if the bytes are not an image
/// format Telegram can process.
pub(crate) fn image_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    png(bytes)
        .or_else(|| jpeg(bytes))
        .or_else(|| gif(bytes))
        .or_else(|| webp(bytes))
        .filter(|(w, h)| *w > 0 && *h > 0)
}

fn be16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
    ])))
}

fn le16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_le_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
    ])))
}

fn png(b: &[u8]) -> Option<(u32, u32)> {
    if !b.starts_with(b"\x89PNG\r\n\x1a\n") || b.get(12..16)? != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(b.get(16..20)?.try_into().ok()?);
    let h = u32::from_be_bytes(b.get(20..24)?.try_into().ok()?);
    Some((w, h))
}

fn jpeg(b: &[u8]) -> Option<(u32, u32)> {
    if !b.starts_with(&[0xff, 0xd8]) {
        return None;
    }
    let mut i = 2;
    while i + 4 <= b.len() {
        if b[i] != 0xff {
            return None;
        }
        let marker = b[i + 1];
        if marker == 0xff {
            i += 1;
            continue;
        }
        let length = usize::try_from(be16(b, i + 2)?).ok()?;
        let is_sof = matches!(marker, 0xc0..=0xcf) && !matches!(marker, 0xc4 | 0xc8 | 0xcc);
        if is_sof {
            let h = be16(b, i + 5)?;
            let w = be16(b, i + 7)?;
            return Some((w, h));
        }
        i += 2 + length;
    }
    None
}

fn gif(b: &[u8]) -> Option<(u32, u32)> {
    if !(b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a")) {
        return None;
    }
    Some((le16(b, 6)?, le16(b, 8)?))
}

fn webp(b: &[u8]) -> Option<(u32, u32)> {
    if b.get(0..4)? != b"RIFF" || b.get(8..12)? != b"WEBP" {
        return None;
    }
    let le24 = |at: usize| -> Option<u32> {
        Some(
            u32::from(*b.get(at)?)
                | u32::from(*b.get(at + 1)?) << 8
                | u32::from(*b.get(at + 2)?) << 16,
        )
    };
    match b.get(12..16)? {
        b"VP8X" => Some((le24(24)? + 1, le24(27)? + 1)),
        b"VP8L" => {
            let bits = u32::from_le_bytes(b.get(21..25)?.try_into().ok()?);
            Some(((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1))
        }
        b"VP8 " => Some((le16(b, 26)? & 0x3fff, le16(b, 28)? & 0x3fff)),
        _ => None,
    }
}

/// The media type of a stored file, judged by its bytes first (the stand-in
/// keeps photos as uploaded, so a `.jpg` path may hold a PNG) and by the
/// extension of its `file_path` otherwise.
pub(crate) fn mime_type(bytes: &[u8], file_path: &str) -> &'static str {
    if png(bytes).is_some() {
        return "image/png";
    }
    if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        return "image/jpeg";
    }
    if gif(bytes).is_some() {
        return "image/gif";
    }
    if webp(bytes).is_some() {
        return "image/webp";
    }
    if let Some(kind) = AudioKind::sniff(bytes) {
        return kind.mime_type();
    }
    match file_path.rsplit('.').next() {
        Some("jpg") => "image/jpeg",
        Some("oga") => "audio/ogg",
        Some("mp3") => "audio/mpeg",
        Some("m4a") => "audio/mp4",
        _ => "application/octet-stream",
    }
}

/// The sizes Telegram makes of a photo: each standard box side smaller than
/// the photo, then the photo itself capped at 2560 on its longer side.
pub(crate) fn photo_sizes(width: u32, height: u32) -> Vec<(u32, u32)> {
    let longest = width.max(height);
    let scale = |side: u32| -> (u32, u32) {
        if longest <= side {
            return (width, height);
        }
        let f = f64::from(side) / f64::from(longest);
        // Rounded, never zero; the values are small so the casts are exact.
        let w = (f64::from(width) * f).round().max(1.0) as u32;
        let h = (f64::from(height) * f).round().max(1.0) as u32;
        (w, h)
    };
    let mut sizes: Vec<(u32, u32)> = [90, 320, 800, 1280]
        .into_iter()
        .filter(|side| *side < longest)
        .map(scale)
        .collect();
    sizes.push(scale(2560));
    sizes
}

/// The audio container of a voice upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AudioKind {
    /// OGG (Opus), what Telegram clients record.
    Ogg,
    /// MP3.
    Mp3,
    /// MPEG-4 audio.
    M4a,
}

impl AudioKind {
    pub(crate) fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(b"OggS") {
            Some(Self::Ogg)
        } else if bytes.starts_with(b"ID3")
            || (bytes.len() > 1 && bytes[0] == 0xff && bytes[1] & 0xe0 == 0xe0)
        {
            Some(Self::Mp3)
        } else if bytes.get(4..8) == Some(b"ftyp") {
            Some(Self::M4a)
        } else {
            None
        }
    }

    pub(crate) fn mime_type(self) -> &'static str {
        match self {
            Self::Ogg => "audio/ogg",
            Self::Mp3 => "audio/mpeg",
            Self::M4a => "audio/mp4",
        }
    }

    pub(crate) fn extension(self) -> &'static str {
        match self {
            Self::Ogg => "oga",
            Self::Mp3 => "mp3",
            Self::M4a => "m4a",
        }
    }
}

/// Seconds of an Ogg Opus stream, from the granule position of its last page
/// (Opus always counts 48 kHz samples).
pub(crate) fn ogg_opus_seconds(bytes: &[u8]) -> Option<u64> {
    let start = bytes.windows(4).rposition(|w| w == b"OggS")?;
    let granule = u64::from_le_bytes(bytes.get(start + 6..start + 14)?.try_into().ok()?);
    if granule == u64::MAX {
        return None;
    }
    Some(granule.div_ceil(48_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        b.extend_from_slice(&w.to_be_bytes());
        b.extend_from_slice(&h.to_be_bytes());
        b
    }

    #[test]
    fn reads_dimensions() {
        assert_eq!(image_dimensions(&png_header(640, 480)), Some((640, 480)));
        assert_eq!(image_dimensions(b"GIF89a\x10\x00\x20\x00"), Some((16, 32)));
        let jpeg = [
            0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 0x00, 0x00, 0xff, 0xc0, 0x00, 0x11, 0x08, 0x01,
            0x00, 0x02, 0x00,
        ];
        assert_eq!(image_dimensions(&jpeg), Some((512, 256)));
        assert_eq!(image_dimensions(b"not an image"), None);
    }

    #[test]
    fn mime_type_trusts_the_bytes_over_the_path() {
        assert_eq!(
            mime_type(&png_header(2, 2), "photos/file_1.jpg"),
            "image/png"
        );
        assert_eq!(mime_type(b"GIF89a\x01\x00\x01\x00", "x.bin"), "image/gif");
        assert_eq!(mime_type(b"OggS\0\x02", "voice/file_2.oga"), "audio/ogg");
        assert_eq!(mime_type(b"", "photos/file_3.jpg"), "image/jpeg");
        assert_eq!(
            mime_type(b"plain", "documents/file_4.bin"),
            "application/octet-stream"
        );
    }

    #[test]
    fn photo_sizes_follow_the_boxes() {
        assert_eq!(
            photo_sizes(512, 256),
            vec![(90, 45), (320, 160), (512, 256)]
        );
        assert_eq!(photo_sizes(50, 40), vec![(50, 40)]);
        assert_eq!(photo_sizes(4000, 2000).last(), Some(&(2560, 1280)));
    }

    #[test]
    fn audio_kinds_and_ogg_length() {
        let mut ogg = b"OggS\0\x02".to_vec();
        ogg.extend_from_slice(&0u64.to_le_bytes());
        ogg.extend_from_slice(b"....OggS\0\x04");
        ogg.extend_from_slice(&(48_000u64 * 3 + 10).to_le_bytes());
        assert_eq!(AudioKind::sniff(&ogg), Some(AudioKind::Ogg));
        assert_eq!(ogg_opus_seconds(&ogg), Some(4));
        assert_eq!(AudioKind::sniff(b"ID3\x04"), Some(AudioKind::Mp3));
        assert_eq!(AudioKind::sniff(b"hello"), None);
    }
}
