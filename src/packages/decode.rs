//! Decompression of package members and payloads, chosen by magic bytes
//! (the same decoders as for rootfs tarballs).
//!
//! Member names (`data.tar.zst`) and rpm's PAYLOADCOMPRESSOR tag say what to
//! expect, but the bytes are the truth, so the magic decides. Only legacy
//! `.lzma` has no reliable magic; the caller's hint selects it.

use std::io::{self, BufReader, Cursor, Read};

use super::read_up_to;
use crate::source::decompress::{self, Codec};

/// Wraps `input` in the decoder its first bytes call for; input with no
/// known magic passes through as is (a plain tar or cpio, which their
/// parsers then check). `hint` is a member name or compressor name.
pub fn decoder<'a, R: Read + 'a>(mut input: R, hint: &str) -> io::Result<Box<dyn Read + 'a>> {
    let mut head = [0u8; 6];
    let n = read_up_to(&mut input, &mut head)?;
    let format = decompress::detect(&head[..n]);
    let input = BufReader::new(Cursor::new(head[..n].to_vec()).chain(input));
    match format {
        Codec::Gzip | Codec::Bzip2 | Codec::Xz | Codec::Zstd | Codec::Lz4 => {
            decompress::decoder(format, input)
        }
        _ if hint.ends_with("lzma") => {
            let stream = liblzma::stream::Stream::new_lzma_decoder(u64::MAX)
                .map_err(|e| io::Error::other(format!("lzma decoder: {e}")))?;
            Ok(Box::new(liblzma::read::XzDecoder::new_stream(
                input, stream,
            )))
        }
        _ => Ok(Box::new(input)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn unpack(data: &[u8], hint: &str) -> Vec<u8> {
        let mut out = Vec::new();
        decoder(data, hint).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn decodes_every_compressor_by_magic() {
        let text = b"hello, packages".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&text).unwrap();
        assert_eq!(unpack(&gz.finish().unwrap(), "data.tar.xz"), text);
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&text).unwrap();
        assert_eq!(unpack(&bz.finish().unwrap(), ""), text);
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&text).unwrap();
        assert_eq!(unpack(&xz.finish().unwrap(), ""), text);
        assert_eq!(unpack(&zstd::encode_all(&text[..], 3).unwrap(), ""), text);
        let opts = liblzma::stream::LzmaOptions::new_preset(1).unwrap();
        let stream = liblzma::stream::Stream::new_lzma_encoder(&opts).unwrap();
        let mut lz = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
        lz.write_all(&text).unwrap();
        assert_eq!(unpack(&lz.finish().unwrap(), "lzma"), text);
        assert_eq!(unpack(&text, "data.tar"), text);
        assert_eq!(unpack(b"", "data.tar"), b"");
    }

    #[test]
    fn corrupt_streams_fail_on_read() {
        let mut data = zstd::encode_all(&b"abc".repeat(1000)[..], 3).unwrap();
        data.truncate(data.len() / 2);
        let mut out = Vec::new();
        assert!(
            decoder(&data[..], "")
                .unwrap()
                .read_to_end(&mut out)
                .is_err()
        );
    }
}
