//! Recognises a compressed stream by its magic bytes (never by file name: OE's
//! link names and users' renames make names unreliable) and decodes it.

use std::io::{self, BufRead, BufReader, Read};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Tar,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
    Lz4,
    Unknown,
}

impl Codec {
    pub fn name(self) -> &'static str {
        match self {
            Codec::Tar => "tar",
            Codec::Gzip => "gzip",
            Codec::Bzip2 => "bzip2",
            Codec::Xz => "xz",
            Codec::Zstd => "zstd",
            Codec::Lz4 => "lz4",
            Codec::Unknown => "unknown",
        }
    }
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const LZ4_MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];

/// Looks at the first bytes of a file (at least 262 to see a tar header's
/// `ustar` magic).
pub fn detect(head: &[u8]) -> Codec {
    if is_skippable(head) {
        return after_skippable(head);
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        Codec::Gzip
    } else if head.starts_with(b"BZh") {
        Codec::Bzip2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Codec::Xz
    } else if head.starts_with(&ZSTD_MAGIC) {
        Codec::Zstd
    } else if head.starts_with(&LZ4_MAGIC) {
        Codec::Lz4
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Codec::Tar
    } else {
        Codec::Unknown
    }
}

/// A skippable frame (magic 0x184D2A50-5F, little-endian), which zstd and
/// lz4 both define: metadata a decoder passes over.
fn is_skippable(head: &[u8]) -> bool {
    head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18]
}

/// The format of what follows leading skippable frames: zstd or lz4 (whose
/// frames they may precede), else unknown. Frames too long to see past are
/// taken as zstd's; its decoder then checks what comes.
fn after_skippable(mut head: &[u8]) -> Codec {
    while is_skippable(head) {
        let Some(len) = head.get(4..8) else {
            return Codec::Unknown;
        };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        match head.get(8..).and_then(|rest| rest.get(len..)) {
            Some(rest) => head = rest,
            None => return Codec::Zstd,
        }
    }
    if head.is_empty() || head.starts_with(&ZSTD_MAGIC) {
        Codec::Zstd
    } else if head.starts_with(&LZ4_MAGIC) {
        Codec::Lz4
    } else {
        Codec::Unknown
    }
}

/// Wraps `input` in the decoder for `format`. Every decoder reads all
/// concatenated members/streams (pigz, pbzip2 and parallel xz/zstd write
/// several).
pub fn decoder<'a, R: BufRead + 'a>(format: Codec, input: R) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match format {
        Codec::Tar => Box::new(input),
        Codec::Gzip => Box::new(GzipMembers::new(input)),
        Codec::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
        Codec::Xz => Box::new(BufReader::with_capacity(
            1 << 16,
            liblzma::bufread::XzDecoder::new_multi_decoder(input),
        )),
        Codec::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        Codec::Lz4 => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "lz4-compressed tarballs are not supported; use tar, tar.gz, tar.bz2, tar.xz or tar.zst",
            ));
        }
        Codec::Unknown => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a tar archive (no ustar magic) nor a gzip, bzip2, xz or zstd stream",
            ));
        }
    })
}

/// Every member of a gzip file, then only zero bytes to the end: padding
/// that tape and block devices add, which gzip and containerd accept.
/// Anything else after the last member is refused, as before.
struct GzipMembers<R> {
    member: Option<flate2::bufread::GzDecoder<R>>,
}

impl<R: BufRead> GzipMembers<R> {
    fn new(input: R) -> Self {
        GzipMembers {
            member: Some(flate2::bufread::GzDecoder::new(input)),
        }
    }
}

impl<R: BufRead> Read for GzipMembers<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(member) = self.member.as_mut() else {
                return Ok(0);
            };
            let n = member.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // The member ended, its CRC and size checked: what follows?
            let input = member.get_mut();
            let next = input.fill_buf()?;
            if next.is_empty() {
                self.member = None;
            } else if next[0] == 0 {
                skip_zeros(input)?;
                self.member = None;
            } else if let Some(member) = self.member.take() {
                self.member = Some(flate2::bufread::GzDecoder::new(member.into_inner()));
            }
        }
    }
}

/// Reads zero bytes to the end of `input`; anything else is an error.
fn skip_zeros(input: &mut impl BufRead) -> io::Result<()> {
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        if buf.iter().any(|&b| b != 0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "data after the zero padding that follows the gzip stream",
            ));
        }
        let n = buf.len();
        input.consume(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn roundtrip(format: Codec, data: &[u8]) -> Vec<u8> {
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
        assert_eq!(detect(&gz), Codec::Gzip);
        assert_eq!(roundtrip(Codec::Gzip, &gz), b"hello world");

        let mut bz = Vec::new();
        for part in [&b"hello "[..], b"world"] {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(part).unwrap();
            bz.extend(e.finish().unwrap());
        }
        assert_eq!(detect(&bz), Codec::Bzip2);
        assert_eq!(roundtrip(Codec::Bzip2, &bz), b"hello world");

        let mut xz = Vec::new();
        for part in [&b"hello "[..], b"world"] {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(part).unwrap();
            xz.extend(e.finish().unwrap());
        }
        assert_eq!(detect(&xz), Codec::Xz);
        assert_eq!(roundtrip(Codec::Xz, &xz), b"hello world");

        let mut zst = Vec::new();
        for part in [&b"hello "[..], b"world"] {
            zst.extend(zstd::encode_all(part, 3).unwrap());
        }
        assert_eq!(detect(&zst), Codec::Zstd);
        assert_eq!(roundtrip(Codec::Zstd, &zst), b"hello world");
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn skippable(magic_low: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x50 | magic_low, 0x2a, 0x4d, 0x18];
        v.extend((payload.len() as u32).to_le_bytes());
        v.extend(payload);
        v
    }

    #[test]
    fn zstd_may_start_with_skippable_frames() {
        let mut zst = skippable(0, b"metadata");
        zst.extend(skippable(0xf, b""));
        zst.extend(zstd::encode_all(&b"hello"[..], 3).unwrap());
        assert_eq!(detect(&zst), Codec::Zstd);
        assert_eq!(roundtrip(Codec::Zstd, &zst), b"hello");
        // Longer than what detection sees: zstd's decoder decides.
        assert_eq!(detect(&skippable(3, &[0; 100])[..50]), Codec::Zstd);

        let mut lz4 = skippable(1, b"x");
        lz4.extend(LZ4_MAGIC);
        assert_eq!(detect(&lz4), Codec::Lz4);
        let mut junk = skippable(1, b"x");
        junk.extend(b"junk");
        assert_eq!(detect(&junk), Codec::Unknown);
        assert_eq!(detect(&[0x50, 0x2a, 0x4d, 0x18, 1]), Codec::Unknown);
        // 0x184D2A60 is not a skippable frame.
        assert_eq!(
            detect(&[0x60, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]),
            Codec::Unknown
        );
    }

    #[test]
    fn gzip_may_end_in_zero_padding_only() {
        let mut padded = gzip(b"hello ");
        padded.extend(gzip(b"world"));
        padded.extend([0; 3000]);
        assert_eq!(roundtrip(Codec::Gzip, &padded), b"hello world");
        // Read through a small buffer, so the zeros span many reads.
        let mut out = Vec::new();
        decoder(Codec::Gzip, io::BufReader::with_capacity(7, &padded[..]))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"hello world");

        let read_all = |data: &[u8]| {
            let mut out = Vec::new();
            decoder(Codec::Gzip, data)
                .unwrap()
                .read_to_end(&mut out)
                .map(|_| out)
        };
        let mut zeros_then_junk = gzip(b"a");
        zeros_then_junk.extend([0, 0, 1]);
        let err = read_all(&zeros_then_junk).unwrap_err().to_string();
        assert!(err.contains("after the zero padding"), "{err}");
        let mut junk = gzip(b"a");
        junk.extend(b"junk");
        assert!(read_all(&junk).is_err());
        let mut bad_crc = gzip(b"abc");
        let n = bad_crc.len();
        bad_crc[n - 8] ^= 1;
        assert!(read_all(&bad_crc).is_err());
    }

    #[test]
    fn unknown_bytes_are_refused() {
        assert_eq!(detect(b"random bytes"), Codec::Unknown);
        assert!(decoder(Codec::Unknown, &b"x"[..]).is_err());
    }
}
