//! Block compression. A layer's tar stream is cut into blocks of a pinned
//! size and each block is compressed on its own into a complete gzip member
//! or zstd frame; the members concatenated form a valid stream that every
//! client reads. Because the cut points depend only on the stream, the bytes
//! are the same whatever the number of threads, and a single big layer still
//! uses every core.

use std::io;
use std::sync::Mutex;

use super::Compression;

/// Buffers are recycled between blocks so that a build allocates a few
/// block-sized buffers in all, not two per block.
#[derive(Default)]
pub struct BufPool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl BufPool {
    pub fn get(&self, capacity: usize) -> Vec<u8> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let mut buf = free.pop().unwrap_or_default();
        buf.clear();
        buf.reserve(capacity);
        buf
    }

    pub fn put(&self, buf: Vec<u8>) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        free.push(buf);
    }
}

/// One compressor per worker thread, reused for every block.
pub struct Compressor {
    kind: Compression,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    gzip: Option<libdeflater::Compressor>,
}

impl Compressor {
    pub fn new(kind: Compression, level: i32) -> io::Result<Self> {
        let zstd = match kind {
            Compression::Zstd => {
                let mut c = zstd::bulk::Compressor::new(level)?;
                // Pin every frame-header choice so the bytes never move.
                c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(true))?;
                c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(false))?;
                c.set_parameter(zstd::zstd_safe::CParameter::DictIdFlag(false))?;
                Some(c)
            }
            _ => None,
        };
        // libdeflate compresses whole buffers, which is what a block is:
        // 1.4 times zlib's speed at a smaller size, level for level.
        let gzip = match kind {
            Compression::Gzip => Some(libdeflater::Compressor::new(
                libdeflater::CompressionLvl::new(level)
                    .map_err(|_| io::Error::other(format!("gzip level {level} out of range")))?,
            )),
            _ => None,
        };
        Ok(Compressor { kind, zstd, gzip })
    }

    /// Compresses one block into `out` (cleared first).
    pub fn block(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        out.clear();
        match self.kind {
            Compression::None => out.extend_from_slice(data),
            Compression::Gzip => {
                // libdeflate's gzip header has no name, mtime 0 and a fixed
                // OS byte: the same on every machine.
                let c = self
                    .gzip
                    .as_mut()
                    .ok_or_else(|| io::Error::other("gzip compressor missing"))?;
                out.resize(c.gzip_compress_bound(data.len()), 0);
                let n = c
                    .gzip_compress(data, out)
                    .map_err(|e| io::Error::other(format!("gzip: {e:?}")))?;
                out.truncate(n);
            }
            Compression::Zstd => {
                let c = self
                    .zstd
                    .as_mut()
                    .ok_or_else(|| io::Error::other("zstd compressor missing"))?;
                out.reserve(zstd::zstd_safe::compress_bound(data.len()));
                c.compress_to_buffer(data, out)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn stream(kind: Compression, level: i32, data: &[u8], block: usize) -> Vec<u8> {
        let mut c = Compressor::new(kind, level).unwrap();
        let mut all = Vec::new();
        for chunk in data.chunks(block) {
            let mut out = Vec::new();
            c.block(chunk, &mut out).unwrap();
            all.extend(out);
        }
        all
    }

    #[test]
    fn members_concatenate_into_one_valid_stream() {
        let data: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let gz = stream(Compression::Gzip, 6, &data, 100_000);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        // gzip header: no name flag, mtime 0, a fixed OS byte.
        assert_eq!(&gz[3..8], &[0, 0, 0, 0, 0]);
        let again = stream(Compression::Gzip, 6, &data, 100_000);
        assert_eq!(gz, again);

        let zs = stream(Compression::Zstd, 3, &data, 100_000);
        assert_eq!(zstd::decode_all(&zs[..]).unwrap(), data);
    }
}
