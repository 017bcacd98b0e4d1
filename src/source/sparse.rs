//! Sparse files in tarballs. GNU tar and bsdtar store a file with holes as
//! its data segments plus a map of where they go; an image layer holds the
//! plain file (as Docker's and umoci's do), so the scan expands it, holes as
//! zeros, while it spools. Only the map is held in memory; data streams.
//!
//! The four encodings (GNU tar manual, "Sparse Formats"):
//! - old GNU, entry type 'S': the map in the header and its extension
//!   blocks, which the reader ([`super::tarread`]) collects.
//! - PAX 0.0: repeated `GNU.sparse.offset` / `GNU.sparse.numbytes` records.
//! - PAX 0.1: one `GNU.sparse.map` record, `off,len,off,len,...`; the real
//!   name is in `GNU.sparse.name`, the header has `GNUSparseFile.N/name`.
//! - PAX 1.0 (also bsdtar's): `GNU.sparse.major=1`, `GNU.sparse.minor=0`,
//!   `GNU.sparse.name`, `GNU.sparse.realsize`; the map is decimal lines at the
//!   start of the entry's data (count, then offset and length of each
//!   segment), padded with NULs to a 512-byte block.
//!
//! In every encoding the map ends with a zero-length segment at the real
//! size when the file ends in a hole.

use std::io::{self, Read};

/// Most bytes a PAX 1.0 map may take. Maps in pax records (0.0, 0.1) and old
/// GNU extension blocks are held to the reader's 1 MiB header limit already;
/// real maps are a few lines.
const MAX_MAP_BYTES: usize = 1 << 20;
const BLOCK: usize = 512;

/// One run of data in the expanded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub len: u64,
}

/// Why a sparse member can't be read.
#[derive(Debug)]
pub enum MapError {
    /// Reading the archive failed (truncated, corrupt).
    Io(io::Error),
    /// The map itself is wrong.
    Bad(String),
}

impl From<io::Error> for MapError {
    fn from(e: io::Error) -> Self {
        MapError::Io(e)
    }
}

/// The `GNU.sparse.*` records of one entry's pax header, kept as they come.
#[derive(Debug, Default)]
pub struct Records {
    major: Option<Vec<u8>>,
    minor: Option<Vec<u8>>,
    size: Option<Vec<u8>>,
    realsize: Option<Vec<u8>>,
    numblocks: Option<Vec<u8>>,
    map: Option<Vec<u8>>,
    /// 0.0's records in order: (true for offset, false for numbytes, value).
    pairs: Vec<(bool, Vec<u8>)>,
    name: Option<Vec<u8>>,
}

/// What a pax header says about a sparse member.
#[derive(Debug, PartialEq, Eq)]
pub struct Sparse {
    pub real_size: u64,
    /// The map (0.0, 0.1), or `None` when it starts the entry's data (1.0).
    pub map: Option<Vec<Segment>>,
}

impl Records {
    /// Takes a record if it is one of GNU tar's sparse keywords; returns
    /// whether it was.
    pub fn add(&mut self, key: &[u8], value: &[u8]) -> bool {
        let Some(word) = key.strip_prefix(b"GNU.sparse.") else {
            return false;
        };
        let v = Some(value.to_vec());
        match word {
            b"major" => self.major = v,
            b"minor" => self.minor = v,
            b"size" => self.size = v,
            b"realsize" => self.realsize = v,
            b"numblocks" => self.numblocks = v,
            b"map" => self.map = v,
            b"name" => self.name = v,
            b"offset" => self.pairs.push((true, value.to_vec())),
            b"numbytes" => self.pairs.push((false, value.to_vec())),
            // GNU tar ignores keywords it does not know.
            _ => {}
        }
        true
    }

    /// Whether any sparse record was seen.
    pub fn any(&self) -> bool {
        self.major.is_some()
            || self.minor.is_some()
            || self.size.is_some()
            || self.realsize.is_some()
            || self.numblocks.is_some()
            || self.map.is_some()
            || self.name.is_some()
            || !self.pairs.is_empty()
    }

    /// The real name (0.1 and 1.0 put a made-up one in the header).
    pub fn name(&self) -> Option<&[u8]> {
        self.name.as_deref()
    }

    /// Decides the encoding and reads what the records hold.
    pub fn resolve(&self) -> Result<Option<Sparse>, String> {
        if !self.any() {
            return Ok(None);
        }
        let in_data = match (self.major.as_deref(), self.minor.as_deref()) {
            (Some(b"1"), Some(b"0")) => true,
            (Some(b"0"), Some(b"0" | b"1")) => false,
            (None, None) if self.map.is_some() || !self.pairs.is_empty() => false,
            (None, None) => return Err("GNU.sparse records without a sparse map".into()),
            (major, minor) => {
                return Err(format!(
                    "unsupported GNU sparse format version {}.{}",
                    lossy(major.unwrap_or(b"?")),
                    lossy(minor.unwrap_or(b"?"))
                ));
            }
        };
        let real_size = match (&self.size, &self.realsize) {
            (Some(a), Some(b)) if a != b => {
                return Err("GNU.sparse.size and GNU.sparse.realsize disagree".into());
            }
            (Some(v), _) | (None, Some(v)) => number(v, "GNU.sparse.realsize")?,
            (None, None) => return Err("a sparse member without GNU.sparse.realsize".into()),
        };
        let map = if in_data {
            if self.map.is_some() || !self.pairs.is_empty() {
                return Err("a sparse 1.0 member with a map in its pax records too".into());
            }
            None
        } else {
            let map = match &self.map {
                Some(_) if !self.pairs.is_empty() => {
                    return Err("GNU.sparse.map and GNU.sparse.offset records together".into());
                }
                Some(text) => map_0_1(text)?,
                None => map_0_0(&self.pairs)?,
            };
            if let Some(n) = &self.numblocks
                && number(n, "GNU.sparse.numblocks")? != map.len() as u64
            {
                return Err("GNU.sparse.numblocks does not match the map".into());
            }
            Some(map)
        };
        Ok(Some(Sparse { real_size, map }))
    }
}

/// 0.1: `off,len,off,len,...`.
fn map_0_1(text: &[u8]) -> Result<Vec<Segment>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let nums = text
        .split(|&b| b == b',')
        .map(|n| number(n, "GNU.sparse.map"))
        .collect::<Result<Vec<u64>, String>>()?;
    if !nums.len().is_multiple_of(2) {
        return Err("GNU.sparse.map has an odd count of numbers".into());
    }
    Ok(nums
        .chunks_exact(2)
        .map(|p| Segment {
            offset: p[0],
            len: p[1],
        })
        .collect())
}

/// 0.0: each `GNU.sparse.offset` followed by its `GNU.sparse.numbytes`.
fn map_0_0(pairs: &[(bool, Vec<u8>)]) -> Result<Vec<Segment>, String> {
    let bad = || "GNU.sparse.offset and GNU.sparse.numbytes records do not pair up".to_string();
    if !pairs.len().is_multiple_of(2) {
        return Err(bad());
    }
    pairs
        .chunks_exact(2)
        .map(|p| match p {
            [(true, off), (false, len)] => Ok(Segment {
                offset: number(off, "GNU.sparse.offset")?,
                len: number(len, "GNU.sparse.numbytes")?,
            }),
            _ => Err(bad()),
        })
        .collect()
}

/// Reads a 1.0 map from the start of an entry's data (at most `stored`
/// bytes); returns the map and how many bytes it took (whole blocks).
pub fn read_map(r: &mut impl Read, stored: u64) -> Result<(Vec<Segment>, u64), MapError> {
    let mut text = Vec::new();
    // Where the next number starts, and how far the text holds no newline.
    let mut pos = 0;
    let mut searched = 0;
    let mut next = |r: &mut dyn Read| -> Result<u64, MapError> {
        loop {
            let from = pos.max(searched);
            if let Some(nl) = text[from..].iter().position(|&b| b == b'\n') {
                let end = from + nl;
                let n = number(&text[pos..end], "sparse map").map_err(MapError::Bad)?;
                pos = end + 1;
                return Ok(n);
            }
            searched = text.len();
            if text.len() >= MAX_MAP_BYTES {
                return Err(MapError::Bad("the sparse map is over 1 MiB".into()));
            }
            if (text.len() + BLOCK) as u64 > stored {
                return Err(MapError::Bad(
                    "the sparse map runs past the entry's data".into(),
                ));
            }
            let at = text.len();
            text.resize(at + BLOCK, 0);
            r.read_exact(&mut text[at..])?;
        }
    };
    let count = next(r)?;
    // Never sized by the count: a hostile one is caught by the byte limit.
    let mut map = Vec::new();
    for _ in 0..count {
        let offset = next(r)?;
        let len = next(r)?;
        map.push(Segment { offset, len });
    }
    Ok((map, text.len() as u64))
}

/// Checks that the segments are in order, apart, within the real size, and
/// that they hold exactly the `data` bytes the archive stores.
pub fn check(map: &[Segment], real_size: u64, data: u64) -> Result<(), String> {
    let mut end = 0u64;
    let mut sum = 0u64;
    for s in map {
        if s.offset < end {
            return Err("the sparse map's segments overlap or are out of order".into());
        }
        end = s
            .offset
            .checked_add(s.len)
            .filter(|&e| e <= real_size)
            .ok_or_else(|| {
                format!("the sparse map has a segment beyond the file's size of {real_size} bytes")
            })?;
        // Cannot overflow: the segments are apart and within real_size.
        sum += s.len;
    }
    if sum != data {
        return Err(format!(
            "the sparse map lists {sum} bytes of data, the archive holds {data}"
        ));
    }
    Ok(())
}

/// The expanded file: `inner`'s bytes placed by a checked map, zeros
/// between and after them, `real_size` bytes in all.
pub struct Expand<R> {
    inner: R,
    map: std::vec::IntoIter<Segment>,
    seg: Option<Segment>,
    pos: u64,
    real_size: u64,
}

impl<R: Read> Expand<R> {
    pub fn new(inner: R, map: Vec<Segment>, real_size: u64) -> Self {
        let mut map = map.into_iter();
        let seg = map.next();
        Expand {
            inner,
            map,
            seg,
            pos: 0,
            real_size,
        }
    }
}

impl<R: Read> Read for Expand<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(s) = self.seg
            && self.pos >= s.offset.saturating_add(s.len)
        {
            self.seg = self.map.next();
        }
        let room = buf.len() as u64;
        let n = match self.seg {
            Some(s) if self.pos >= s.offset => {
                let want = room.min(s.offset.saturating_add(s.len) - self.pos) as usize;
                // Short data ends the file early; the caller checks the size.
                self.inner.read(&mut buf[..want])?
            }
            hole => {
                let end = hole.map_or(self.real_size, |s| s.offset);
                let n = room.min(end.saturating_sub(self.pos)) as usize;
                buf[..n].fill(0);
                n
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

/// A decimal number as tar writes them: digits only.
fn number(v: &[u8], what: &str) -> Result<u64, String> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(format!("{what}: '{}' is not a number", lossy(v)));
    }
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{what}: {} is out of range", lossy(v)))
}

fn lossy(v: &[u8]) -> String {
    String::from_utf8_lossy(&v[..v.len().min(40)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(offset: u64, len: u64) -> Segment {
        Segment { offset, len }
    }

    fn records(recs: &[(&str, &str)]) -> Records {
        let mut r = Records::default();
        for (k, v) in recs {
            assert!(r.add(k.as_bytes(), v.as_bytes()));
        }
        r
    }

    #[test]
    fn reads_the_three_pax_encodings() {
        // As GNU tar 1.34 writes them.
        let v00 = records(&[
            ("GNU.sparse.size", "1048576"),
            ("GNU.sparse.numblocks", "2"),
            ("GNU.sparse.offset", "196608"),
            ("GNU.sparse.numbytes", "4096"),
            ("GNU.sparse.offset", "1048576"),
            ("GNU.sparse.numbytes", "0"),
        ]);
        let want = Sparse {
            real_size: 1048576,
            map: Some(vec![seg(196608, 4096), seg(1048576, 0)]),
        };
        assert_eq!(v00.resolve().unwrap(), Some(want));
        let v01 = records(&[
            ("GNU.sparse.size", "65536"),
            ("GNU.sparse.numblocks", "2"),
            ("GNU.sparse.name", "./tailhole"),
            ("GNU.sparse.map", "0,4096,65536,0"),
        ]);
        assert_eq!(v01.name(), Some(&b"./tailhole"[..]));
        let s = v01.resolve().unwrap().unwrap();
        assert_eq!(s.map, Some(vec![seg(0, 4096), seg(65536, 0)]));
        let v10 = records(&[
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.name", "./holes"),
            ("GNU.sparse.realsize", "1048576"),
        ]);
        let s = v10.resolve().unwrap().unwrap();
        assert_eq!((s.real_size, s.map), (1048576, None));
        assert_eq!(Records::default().resolve().unwrap(), None);
        assert!(!Records::default().add(b"SCHILY.xattr.user.a", b"x"));
    }

    #[test]
    fn refuses_inconsistent_records() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("GNU.sparse.major", "2"), ("GNU.sparse.minor", "0")],
                "unsupported GNU sparse format version 2.0",
            ),
            (&[("GNU.sparse.name", "x")], "without a sparse map"),
            (&[("GNU.sparse.map", "0,1")], "without GNU.sparse.realsize"),
            (
                &[("GNU.sparse.size", "5"), ("GNU.sparse.map", "0,1,2")],
                "odd count",
            ),
            (
                &[("GNU.sparse.size", "5"), ("GNU.sparse.map", "0,-1")],
                "'-1' is not a number",
            ),
            (
                &[
                    ("GNU.sparse.size", "5"),
                    ("GNU.sparse.map", "0,99999999999999999999999"),
                ],
                "out of range",
            ),
            (
                &[
                    ("GNU.sparse.size", "5"),
                    ("GNU.sparse.numblocks", "3"),
                    ("GNU.sparse.map", "0,1"),
                ],
                "numblocks does not match",
            ),
            (
                &[
                    ("GNU.sparse.size", "5"),
                    ("GNU.sparse.numbytes", "1"),
                    ("GNU.sparse.offset", "0"),
                ],
                "do not pair up",
            ),
            (
                &[
                    ("GNU.sparse.major", "1"),
                    ("GNU.sparse.minor", "0"),
                    ("GNU.sparse.realsize", "5"),
                    ("GNU.sparse.map", "0,1"),
                ],
                "map in its pax records too",
            ),
            (
                &[
                    ("GNU.sparse.size", "5"),
                    ("GNU.sparse.realsize", "6"),
                    ("GNU.sparse.map", "0,1"),
                ],
                "disagree",
            ),
        ];
        for (recs, needle) in cases {
            let err = records(recs).resolve().unwrap_err();
            assert!(err.contains(needle), "{recs:?}: {err}");
        }
    }

    #[test]
    fn checks_maps() {
        assert!(check(&[seg(0, 10), seg(20, 5), seg(100, 0)], 100, 15).is_ok());
        assert!(check(&[], 1 << 40, 0).is_ok());
        let bad: &[(&[Segment], u64, u64, &str)] = &[
            (&[seg(10, 10), seg(15, 1)], 100, 11, "overlap"),
            (&[seg(20, 1), seg(10, 1)], 100, 2, "out of order"),
            (&[seg(95, 10)], 100, 10, "beyond the file's size"),
            (&[seg(u64::MAX, 2)], u64::MAX, 2, "beyond the file's size"),
            (&[seg(0, 10)], 100, 11, "lists 10 bytes of data"),
        ];
        for (map, size, data, needle) in bad {
            let err = check(map, *size, *data).unwrap_err();
            assert!(err.contains(needle), "{map:?}: {err}");
        }
    }

    fn padded(text: &str, data: &[u8]) -> Vec<u8> {
        let mut v = text.as_bytes().to_vec();
        v.resize(text.len().div_ceil(512) * 512, 0);
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn reads_a_1_0_map_from_the_data() {
        let raw = padded("3\n196608\n4096\n696320\n4096\n1048576\n0\n", b"data");
        let mut r = &raw[..];
        let (map, used) = read_map(&mut r, raw.len() as u64).unwrap();
        assert_eq!(
            map,
            vec![seg(196608, 4096), seg(696320, 4096), seg(1048576, 0)]
        );
        assert_eq!(used, 512);
        assert_eq!(r, b"data");

        // A map over three blocks, numbers cut by the block boundaries.
        let mut text = "100\n".to_string();
        for i in 0..100u64 {
            text += &format!("{}\n1\n", i * 1_000_000_000);
        }
        assert!(text.len() > 1024);
        let raw = padded(&text, &[7; 100]);
        let (map, used) = read_map(&mut &raw[..], raw.len() as u64).unwrap();
        assert_eq!(map.len(), 100);
        assert_eq!(map[99], seg(99_000_000_000, 1));
        assert_eq!(used, 1536);
    }

    #[test]
    fn refuses_bad_1_0_maps() {
        let huge = padded("99999999999999999\n", &[]);
        let mut endless = huge.clone();
        endless.extend(std::iter::repeat_n(b'1', 2 << 20));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (padded("2\n0\n", &[]), "runs past the entry's data"),
            (padded("1\n0\nx\n", &[]), "'x' is not a number"),
            (padded("1\n0\n5", &[]), "runs past the entry's data"),
            (endless, "over 1 MiB"),
        ];
        for (raw, needle) in cases {
            let stored = raw.len() as u64;
            let err = match read_map(&mut &raw[..], stored) {
                Err(MapError::Bad(e)) => e,
                other => panic!("{needle}: {other:?}"),
            };
            assert!(err.contains(needle), "{err}");
        }
        // The archive ending inside the map is a read error.
        let raw = padded("2\n0\n", &[]);
        assert!(matches!(
            read_map(&mut &raw[..], 4096),
            Err(MapError::Io(_))
        ));
    }

    #[test]
    fn expands_holes_as_zeros() {
        let map = vec![seg(2, 3), seg(5, 0), seg(8, 2), seg(12, 0)];
        let mut out = Vec::new();
        // One byte at a time, to cross every boundary.
        let mut r = Expand::new(&b"abcde"[..], map.clone(), 12);
        let mut b = [0u8; 1];
        while r.read(&mut b).unwrap() == 1 {
            out.push(b[0]);
        }
        assert_eq!(out, b"\0\0abc\0\0\0de\0\0");
        let mut all = Vec::new();
        Expand::new(&b"abcde"[..], map, 12)
            .read_to_end(&mut all)
            .unwrap();
        assert_eq!(all, out);
        // No data at all: only zeros.
        let mut z = Vec::new();
        Expand::new(io::empty(), vec![], 5)
            .read_to_end(&mut z)
            .unwrap();
        assert_eq!(z, [0; 5]);
        // Data that stops short ends the file early.
        let mut short = Vec::new();
        Expand::new(&b"ab"[..], vec![seg(0, 5)], 10)
            .read_to_end(&mut short)
            .unwrap();
        assert_eq!(short, b"ab");
    }
}
