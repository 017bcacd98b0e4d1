//! A streaming reader of the "newc" cpio archives in rpm payloads.
//!
//! Each entry: a 110-byte ASCII header (`070701`, then thirteen 8-digit hex
//! fields: ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
//! rdevmajor, rdevminor, namesize, check), the NUL-terminated name padded so
//! header plus name is a multiple of 4, then the data padded to 4. The entry
//! named `TRAILER!!!` ends the archive. A symlink's data is its target. Hard
//! links share `ino`; rpm stores their content once, with the last of them,
//! and the others have size 0.

use std::io::{self, Read};

use super::{invalid, read_up_to};

const HEADER_LEN: usize = 110;
/// Longest name we accept (Linux's PATH_MAX).
pub const MAX_NAME: u64 = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpioHeader {
    pub name: Vec<u8>,
    pub ino: u32,
    pub mode: u32,
    pub nlink: u32,
    pub size: u32,
}

pub struct CpioReader<R> {
    inner: R,
    data_left: u64,
    pad: u64,
    done: bool,
}

impl<R: Read> CpioReader<R> {
    pub fn new(inner: R) -> CpioReader<R> {
        CpioReader {
            inner,
            data_left: 0,
            pad: 0,
            done: false,
        }
    }

    /// The stream after the trailer.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The next entry's header, skipping what is left of the current one's
    /// data; `None` after the trailer.
    pub fn next_entry(&mut self) -> io::Result<Option<CpioHeader>> {
        if self.done {
            return Ok(None);
        }
        let rest = self.data_left + self.pad;
        if io::copy(&mut (&mut self.inner).take(rest), &mut io::sink())? < rest {
            return Err(truncated());
        }
        self.data_left = 0;
        self.pad = 0;
        let mut raw = [0u8; HEADER_LEN];
        if read_up_to(&mut self.inner, &mut raw)? < HEADER_LEN {
            return Err(truncated());
        }
        match &raw[..6] {
            b"070701" | b"070702" => {}
            b"07070X" => {
                // rpm's "stripped" cpio, used when a file reaches 4 GiB: its
                // metadata lives only in the header.
                return Err(invalid(
                    "the payload is rpm's stripped cpio (a file of 4 GiB or more), which is not supported",
                ));
            }
            _ => return Err(invalid("payload entry has no cpio newc magic (070701)")),
        }
        let field = |i: usize| hex(&raw[6 + 8 * i..14 + 8 * i]);
        let (ino, mode, nlink, size, namesize) =
            (field(0)?, field(1)?, field(4)?, field(6)?, field(11)?);
        if namesize == 0 || u64::from(namesize) > MAX_NAME + 1 {
            return Err(invalid(format!(
                "cpio entry name of {namesize} bytes (at most {MAX_NAME})"
            )));
        }
        let mut name = vec![0u8; namesize as usize];
        if read_up_to(&mut self.inner, &mut name)? < name.len() {
            return Err(truncated());
        }
        if name.pop() != Some(0) || name.contains(&0) {
            return Err(invalid("cpio entry name is not NUL-terminated"));
        }
        let name_pad = pad4(HEADER_LEN as u64 + u64::from(namesize));
        let mut skip = [0u8; 3];
        if read_up_to(&mut self.inner, &mut skip[..name_pad as usize])? < name_pad as usize {
            return Err(truncated());
        }
        if name == b"TRAILER!!!" {
            self.done = true;
            return Ok(None);
        }
        self.data_left = u64::from(size);
        self.pad = pad4(u64::from(size));
        Ok(Some(CpioHeader {
            name,
            ino,
            mode,
            nlink,
            size,
        }))
    }
}

/// Reads the current entry's data and stops at its end.
impl<R: Read> Read for CpioReader<R> {
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
        Ok(n)
    }
}

fn pad4(n: u64) -> u64 {
    (4 - n % 4) % 4
}

fn hex(raw: &[u8]) -> io::Result<u32> {
    std::str::from_utf8(raw)
        .ok()
        .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|s| u32::from_str_radix(s, 16).ok())
        .ok_or_else(|| invalid("cpio header has a field that is not hex"))
}

fn truncated() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "cpio payload is truncated")
}

#[cfg(test)]
mod tests {
    use super::super::testutil::cpio_entry;
    use super::*;

    #[test]
    fn reads_entries_and_stops_at_the_trailer() {
        let mut a = cpio_entry(b"./usr/bin/x", 1, 0o100755, 1, b"hello");
        a.extend(cpio_entry(b"./usr/bin/y", 2, 0o120777, 1, b"x"));
        a.extend(cpio_entry(b"TRAILER!!!", 0, 0, 1, b""));
        a.extend(b"garbage after the trailer is rpm's block padding");
        let mut r = CpioReader::new(&a[..]);
        let h = r.next_entry().unwrap().unwrap();
        assert_eq!(
            (h.name.as_slice(), h.mode, h.size),
            (&b"./usr/bin/x"[..], 0o100755, 5)
        );
        let h = r.next_entry().unwrap().unwrap();
        let mut target = Vec::new();
        r.read_to_end(&mut target).unwrap();
        assert_eq!((h.ino, target.as_slice()), (2, &b"x"[..]));
        assert!(r.next_entry().unwrap().is_none());
        assert!(r.next_entry().unwrap().is_none());
    }

    #[test]
    fn refuses_bad_input() {
        let entry = cpio_entry(b"./a", 1, 0o100644, 1, b"data");
        // No trailer, cut anywhere: truncated.
        for cut in 0..entry.len() + 1 {
            let mut r = CpioReader::new(&entry[..cut]);
            let mut res = r.next_entry();
            if let Ok(Some(_)) = res {
                res = r.next_entry();
            }
            assert!(res.is_err(), "cut at {cut}");
        }
        let mut bad = entry.clone();
        bad[0] = b'1';
        assert!(CpioReader::new(&bad[..]).next_entry().is_err());
        let long = vec![b'a'; 5000];
        let e = CpioReader::new(&cpio_entry(&long, 1, 0o100644, 1, b"")[..])
            .next_entry()
            .unwrap_err();
        assert!(e.to_string().contains("at most 4096"), "{e}");
        let mut nohex = entry.clone();
        nohex[10] = b'g';
        assert!(CpioReader::new(&nohex[..]).next_entry().is_err());
        let mut stripped = entry;
        stripped[..6].copy_from_slice(b"07070X");
        let e = CpioReader::new(&stripped[..]).next_entry().unwrap_err();
        assert!(e.to_string().contains("stripped"), "{e}");
    }
}
