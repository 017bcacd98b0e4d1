//! Recognises a compressed stream by its magic bytes (never by file name: OE's
//! link names and users' renames make names unreliable) and decodes it.

use std::io::{self, BufRead, BufReader, Read};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tar,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
    Lz4,
    Unknown,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Tar => "tar",
            Format::Gzip => "gzip",
            Format::Bzip2 => "bzip2",
            Format::Xz => "xz",
            Format::Zstd => "zstd",
            Format::Lz4 => "lz4",
            Format::Unknown => "unknown",
        }
    }
}

/// Looks at the first bytes of a file (at least 262 to see a tar header's
/// `ustar` magic).
pub fn detect(head: &[u8]) -> Format {
    if head.starts_with(&[0x1f, 0x8b]) {
        Format::Gzip
    } else if head.starts_with(b"BZh") {
        Format::Bzip2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Format::Xz
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Format::Zstd
    } else if head.starts_with(&[0x04, 0x22, 0x4d, 0x18]) {
        Format::Lz4
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Format::Tar
    } else {
        Format::Unknown
    }
}

/// Wraps `input` in the decoder for `format`. Every decoder reads all
/// concatenated members/streams (pigz, pbzip2 and parallel xz/zstd write
/// several).
pub fn decoder<'a, R: BufRead + 'a>(format: Format, input: R) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match format {
        Format::Tar => Box::new(input),
        Format::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Format::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
        Format::Xz => Box::new(BufReader::with_capacity(
            1 << 16,
            liblzma::bufread::XzDecoder::new_multi_decoder(input),
        )),
        Format::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        Format::Lz4 => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "lz4-compressed tarballs are not supported; use tar, tar.gz, tar.bz2, tar.xz or tar.zst",
            ));
        }
        Format::Unknown => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a tar archive (no ustar magic) nor a gzip, bzip2, xz or zstd stream",
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn roundtrip(format: Format, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        decoder(format, data)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn reads_concatenated_streams() {
        let mut gz = Vec::new();
        for part in [&b"hello "[..], b"world"] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(part).unwrap();
            gz.extend(e.finish().unwrap());
        }
        assert_eq!(detect(&gz), Format::Gzip);
        assert_eq!(roundtrip(Format::Gzip, &gz), b"hello world");

        let mut bz = Vec::new();
        for part in [&b"hello "[..], b"world"] {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(part).unwrap();
            bz.extend(e.finish().unwrap());
        }
        assert_eq!(detect(&bz), Format::Bzip2);
        assert_eq!(roundtrip(Format::Bzip2, &bz), b"hello world");

        let mut xz = Vec::new();
        for part in [&b"hello "[..], b"world"] {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(part).unwrap();
            xz.extend(e.finish().unwrap());
        }
        assert_eq!(detect(&xz), Format::Xz);
        assert_eq!(roundtrip(Format::Xz, &xz), b"hello world");

        let mut zst = Vec::new();
        for part in [&b"hello "[..], b"world"] {
            zst.extend(zstd::encode_all(part, 3).unwrap());
        }
        assert_eq!(detect(&zst), Format::Zstd);
        assert_eq!(roundtrip(Format::Zstd, &zst), b"hello world");
    }

    #[test]
    fn unknown_bytes_are_refused() {
        assert_eq!(detect(b"random bytes"), Format::Unknown);
        assert!(decoder(Format::Unknown, &b"x"[..]).is_err());
    }
}
