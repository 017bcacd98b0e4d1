//! A streaming reader of the Unix `ar` archives that hold ipk and deb
//! packages.
//!
//! Layout: the magic `!<arch>\n`, then members, each a 60-byte text header
//! (name 16, mtime 12, uid 6, gid 6, mode 8, decimal size 10, "`\n") and its
//! data padded to an even length. GNU ar ends names with `/`
//! (`debian-binary/`), dpkg pads with spaces; BSD ar writes `#1/<len>` and
//! puts the name before the data. Members are read in place, one after the
//! other, so a data.tar of any size is never held in memory.

use std::io::{self, Read};

use super::{invalid, read_up_to};

pub const MAGIC: &[u8; 8] = b"!<arch>\n";
const HEADER_LEN: usize = 60;
/// Longest BSD-style name we accept: member names here are a few bytes.
const MAX_NAME: u64 = 1024;

pub struct ArReader<R> {
    inner: R,
    /// Bytes of the archive after the current position.
    left: u64,
    /// Unread data of the current member, then its padding byte.
    data_left: u64,
    pad: u64,
}

impl<R: Read> ArReader<R> {
    /// Checks the magic. `len` is the archive's length: no member may claim
    /// to reach past it.
    pub fn new(mut inner: R, len: u64) -> io::Result<ArReader<R>> {
        let mut magic = [0u8; 8];
        if read_up_to(&mut inner, &mut magic)? < magic.len() || &magic != MAGIC {
            return Err(invalid("not an ar archive (no !<arch> magic)"));
        }
        Ok(ArReader {
            inner,
            left: len.saturating_sub(8),
            data_left: 0,
            pad: 0,
        })
    }

    /// Moves to the next member, skipping what is left of the current one;
    /// returns its name and data size, or `None` at the end.
    pub fn next_member(&mut self) -> io::Result<Option<(String, u64)>> {
        let rest = self.data_left + self.pad;
        if rest > 0 {
            let skipped = io::copy(&mut (&mut self.inner).take(rest), &mut io::sink())?;
            self.left = self.left.saturating_sub(skipped);
            if skipped < self.data_left {
                return Err(truncated());
            }
            self.data_left = 0;
            self.pad = 0;
        }
        let mut header = [0u8; HEADER_LEN];
        let n = read_up_to(&mut self.inner, &mut header)?;
        if n == 0 {
            return Ok(None);
        }
        if n < HEADER_LEN {
            return Err(truncated());
        }
        self.left = self.left.saturating_sub(HEADER_LEN as u64);
        if &header[58..60] != b"`\n" {
            return Err(invalid("ar member header is corrupt (no `\\n terminator)"));
        }
        let mut size =
            field(&header[48..58]).ok_or_else(|| invalid("ar member header has no valid size"))?;
        if size > self.left {
            return Err(invalid(format!(
                "ar member claims {size} bytes but only {} remain in the file",
                self.left
            )));
        }
        let raw_name = trim(&header[0..16]);
        let name = if let Some(len) = raw_name.strip_prefix(b"#1/") {
            // BSD: the name is the first `len` bytes of the data.
            let len = field(len)
                .filter(|&l| l <= MAX_NAME && l <= size)
                .ok_or_else(|| invalid("ar member has a bad BSD name length"))?;
            let mut name = vec![0u8; len as usize];
            if read_up_to(&mut self.inner, &mut name)? < name.len() {
                return Err(truncated());
            }
            self.left -= len;
            size -= len;
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            name.truncate(end);
            name
        } else {
            match raw_name {
                // GNU symbol and long-name tables are no package members.
                b"/" | b"//" => raw_name.to_vec(),
                _ => raw_name.strip_suffix(b"/").unwrap_or(raw_name).to_vec(),
            }
        };
        self.data_left = size;
        // The padding byte may be missing after the last member.
        self.pad = (size % 2).min(self.left - size);
        Ok(Some((String::from_utf8_lossy(&name).into_owned(), size)))
    }
}

/// Reads the current member's data, and stops at its end.
impl<R: Read> Read for ArReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.data_left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.data_left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(truncated());
        }
        self.data_left -= n as u64;
        self.left = self.left.saturating_sub(n as u64);
        Ok(n)
    }
}

fn truncated() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "ar archive is truncated")
}

fn trim(field: &[u8]) -> &[u8] {
    let end = field.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    &field[..end]
}

/// A space-padded decimal header field.
fn field(raw: &[u8]) -> Option<u64> {
    let digits = trim(raw);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::super::testutil::ar_archive;
    use super::*;

    fn members(bytes: &[u8]) -> io::Result<Vec<(String, Vec<u8>)>> {
        let mut r = ArReader::new(bytes, bytes.len() as u64)?;
        let mut out = Vec::new();
        while let Some((name, _)) = r.next_member()? {
            let mut data = Vec::new();
            r.read_to_end(&mut data)?;
            out.push((name, data));
        }
        Ok(out)
    }

    #[test]
    fn reads_gnu_dpkg_and_bsd_names() {
        let mut bytes = ar_archive(&[("debian-binary/", b"2.0\n"), ("odd", b"x")]);
        // A BSD member: "#1/14", 14 name bytes then the data.
        let name = b"control.tar.gz";
        let data = b"abc";
        let header = format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            "#1/14",
            0,
            0,
            0,
            644,
            name.len() + data.len()
        );
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(data);
        bytes.push(b'\n');
        let got = members(&bytes).unwrap();
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["debian-binary", "odd", "control.tar.gz"]);
        assert_eq!(got[0].1, b"2.0\n");
        assert_eq!(got[1].1, b"x");
        assert_eq!(got[2].1, b"abc");
    }

    #[test]
    fn skips_unread_members() {
        let bytes = ar_archive(&[("a", b"12345"), ("b", b"xy")]);
        let mut r = ArReader::new(&bytes[..], bytes.len() as u64).unwrap();
        assert_eq!(r.next_member().unwrap().unwrap(), ("a".into(), 5));
        let mut one = [0u8; 1];
        r.read_exact(&mut one).unwrap();
        assert_eq!(r.next_member().unwrap().unwrap(), ("b".into(), 2));
        assert!(r.next_member().unwrap().is_none());
    }

    #[test]
    fn refuses_bad_magic_truncation_and_absurd_sizes() {
        assert!(ArReader::new(&b"!<arch"[..], 6).is_err());
        assert!(ArReader::new(&b"PK\x03\x04xxxx"[..], 8).is_err());
        let bytes = ar_archive(&[("debian-binary", b"2.0\n"), ("data.tar", &[7u8; 100])]);
        // Cutting anywhere but between members must fail, never panic.
        let boundary = 8 + 60 + 4;
        for cut in (9..bytes.len()).filter(|&c| c != boundary) {
            let part = &bytes[..cut];
            assert!(members(part).is_err(), "cut at {cut} was accepted");
        }
        let mut huge = ar_archive(&[("a", b"x")]);
        huge[8 + 48..8 + 58].copy_from_slice(b"9999999999");
        let e = members(&huge).unwrap_err().to_string();
        assert!(e.contains("only"), "{e}");
        let mut bad = ar_archive(&[("a", b"x")]);
        bad[8 + 48..8 + 58].copy_from_slice(b"-1        ");
        assert!(members(&bad).is_err());
    }
}
