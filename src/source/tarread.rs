//! A streaming reader of tar archives: the members of a rootfs tarball, one
//! at a time, each with its content read straight from the stream.
//!
//! Why our own: the `tar` crate splits pax records at newlines instead of
//! framing them by their length, so any value holding byte 0x0a (a
//! capability mask of cap_dac_override + cap_fowner, a binary ACL naming id
//! 10, a user xattr with a newline) made GNU tar `--xattrs --acls` archives
//! unreadable, and it gave up on the records after such a value, `size`
//! included.
//!
//! ## The format
//!
//! An archive is a sequence of 512-byte blocks. Each member is a header
//! block followed by its data, padded with zeros to a whole block. The end
//! is marked by zero blocks (two by POSIX; GNU tar and the `tar` crate stop
//! at the first, and so do we: what follows is read to the end of the
//! stream by the caller but not interpreted). Input that ends without that
//! marker was cut short and is refused.
//!
//! Header block (byte offsets; numbers are octal text, NUL- or
//! space-terminated, or GNU base-256 binary when the first byte has bit 7
//! set, bit 6 then being the sign):
//!
//! ```text
//!   0 name[100]   100 mode[8]   108 uid[8]   116 gid[8]   124 size[12]
//! 136 mtime[12]   148 chksum[8] 156 typeflag 157 linkname[100]
//! 257 magic[6]    263 version[2] 265 uname[32] 297 gname[32]
//! 329 devmajor[8] 337 devminor[8]
//! 345 prefix[155]                         (ustar: "ustar\0" "00")
//! 345 atime, ctime, offset, longnames; 386 sparse[4] of (offset[12],
//!     numbytes[12]); 482 isextended; 483 realsize[12]  (GNU: "ustar " " \0")
//! ```
//!
//! Anything else in the magic field is a v7 header: name and linkname
//! only, no device numbers. The checksum is the sum of the header's bytes
//! with the checksum field taken as spaces; old writers summed signed
//! chars, so either sum is accepted, as GNU tar does.
//!
//! Headers that describe the next member rather than being one:
//! - `L` / `K` (GNU): the data is the long name / link target.
//! - `x` (pax): the data is records `"%d %s=%s\n"`, the decimal length
//!   counting the whole record, its own digits and newline included. Values
//!   are arbitrary bytes (newlines, `=`, NUL), so records are framed by that
//!   length only. `path`, `linkpath` and `size` override the header here
//!   (the last record of a keyword wins, an empty value leaves the header's,
//!   and pax wins over GNU long names); the caller reads the rest (owners,
//!   mtime, xattrs, sparse maps, ACLs) from [`Member::pax`].
//! - `g` (pax global): records for every later member. They are skipped, as
//!   the scan always did (git archive's commit id is the usual content),
//!   and drop any extension headers before them, as the `tar` crate and
//!   Go's archive/tar do.
//!
//! These are recognised whatever the magic field says, as GNU tar does.
//!
//! Old GNU sparse members (`S`) carry their map in the header and, when
//! `isextended` is 1, in extension blocks of 21 entries each, which
//! follow the header before the data. The map is returned with the member;
//! the caller expands the holes. The pax sparse encodings are pax records
//! (and, for 1.0, a map at the start of the data) and are the caller's too.
//!
//! Limits: a member's header blocks and extension data together may not
//! exceed [`MAX_HEADER_BYTES`]; nothing is ever sized by a number read from
//! the archive beyond that. Data is never buffered: [`Archive::data`] reads
//! it from the stream as the caller asks.

use std::io::{self, Read};
use std::ops::Range;

use super::sparse::Segment;

const BLOCK: usize = 512;
/// Header data (header blocks, pax records, GNU long names, old GNU sparse
/// maps) one member may carry. Real ones are a few hundred bytes; a bigger
/// one is hostile or broken.
const MAX_HEADER_BYTES: u64 = 1 << 20;
const TOO_MUCH_HEADER: &str =
    "an entry carries over 1 MiB of header data (pax or long-name records)";

/// Why an archive can't be read.
#[derive(Debug)]
pub enum TarError {
    /// Reading the stream failed or it ended early.
    Io(io::Error),
    /// The bytes are not a well-formed archive.
    Corrupt(String),
    /// A hard limit was reached.
    Limit(&'static str),
}

impl From<io::Error> for TarError {
    fn from(e: io::Error) -> Self {
        TarError::Io(e)
    }
}

/// What a member is, by its typeflag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `0`, NUL (pre-POSIX) or `7` (contiguous, which Linux doesn't have).
    File,
    HardLink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
    /// `S`: an old GNU sparse file; see [`Member::old_sparse`].
    OldSparse,
    Other(u8),
}

impl Kind {
    fn of(typeflag: u8) -> Kind {
        match typeflag {
            b'0' | b'\0' | b'7' => Kind::File,
            b'1' => Kind::HardLink,
            b'2' => Kind::Symlink,
            b'3' => Kind::Char,
            b'4' => Kind::Block,
            b'5' => Kind::Dir,
            b'6' => Kind::Fifo,
            b'S' => Kind::OldSparse,
            other => Kind::Other(other),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    V7,
    Ustar,
    Gnu,
}

/// One header block, its fields read on demand.
#[derive(Clone)]
pub struct Header {
    block: [u8; BLOCK],
}

impl Header {
    fn format(&self) -> Format {
        match (&self.block[257..263], &self.block[263..265]) {
            (b"ustar\0", b"00") => Format::Ustar,
            (b"ustar ", b" \0") => Format::Gnu,
            _ => Format::V7,
        }
    }

    fn typeflag(&self) -> u8 {
        self.block[156]
    }

    /// The name fields: ustar's prefix and name, or the name alone.
    fn path(&self) -> Vec<u8> {
        let name = cstr(&self.block[..100]);
        let prefix = cstr(&self.block[345..500]);
        if self.format() == Format::Ustar && !prefix.is_empty() {
            [prefix, b"/", name].concat()
        } else {
            name.to_vec()
        }
    }

    fn link(&self) -> &[u8] {
        cstr(&self.block[157..257])
    }

    /// Permission and type bits as stored (the caller masks them).
    pub fn mode(&self) -> Result<i128, String> {
        field("mode", &self.block[100..108])
    }

    pub fn uid(&self) -> Result<i128, String> {
        field("uid", &self.block[108..116])
    }

    pub fn gid(&self) -> Result<i128, String> {
        field("gid", &self.block[116..124])
    }

    fn size(&self) -> Result<u64, String> {
        let n = field("size", &self.block[124..136])?;
        u64::try_from(n).map_err(|_| format!("size {n} is out of range"))
    }

    /// Seconds since the epoch; GNU base-256 allows times before 1970.
    pub fn mtime(&self) -> Result<i128, String> {
        field("mtime", &self.block[136..148])
    }

    /// Device numbers; a v7 header has none, and a blank field (some
    /// writers leave them empty) is 0.
    pub fn device(&self) -> Result<(u32, u32), String> {
        if self.format() == Format::V7 {
            return Ok((0, 0));
        }
        let number = |what: &str, f: &[u8]| -> Result<u32, String> {
            if f.iter().all(|&b| b == 0 || b == b' ') {
                return Ok(0);
            }
            let n = field(what, f)?;
            u32::try_from(n).map_err(|_| format!("{what} {n} is out of range"))
        };
        Ok((
            number("device major", &self.block[329..337])?,
            number("device minor", &self.block[337..345])?,
        ))
    }

    /// Whether the checksum matches, as an unsigned or a signed sum.
    fn checksum_ok(&self) -> bool {
        let Ok(stored) = field("checksum", &self.block[148..156]) else {
            return false;
        };
        let (mut unsigned, mut signed) = (0i128, 0i128);
        for (i, &b) in self.block.iter().enumerate() {
            let b = if (148..156).contains(&i) { b' ' } else { b };
            unsigned += i128::from(b);
            signed += i128::from(b as i8);
        }
        stored == unsigned || stored == signed
    }
}

/// The bytes up to the first NUL.
fn cstr(b: &[u8]) -> &[u8] {
    b.iter().position(|&c| c == 0).map_or(b, |end| &b[..end])
}

/// A numeric header field: GNU base-256 (bit 7 of the first byte set; the
/// other bits a two's complement number, so it may be negative), else octal
/// digits with optional surrounding spaces, ended by NUL or the field's end.
fn field(what: &str, f: &[u8]) -> Result<i128, String> {
    if f.len() > 12 {
        return Err(format!("{what} field is longer than a header's"));
    }
    if let Some(&first) = f.first()
        && first & 0x80 != 0
    {
        // At most 12 bytes: 95 bits, well within i128.
        let mut v = i128::from(first & 0x7f);
        for &b in &f[1..] {
            v = (v << 8) | i128::from(b);
        }
        if first & 0x40 != 0 {
            v -= 1i128 << (f.len() * 8 - 1);
        }
        return Ok(v);
    }
    let text = cstr(f).trim_ascii();
    if text.is_empty() || !text.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return Err(format!(
            "{what} field '{}' is not an octal number",
            text.escape_ascii()
        ));
    }
    // 12 octal digits are 36 bits: no overflow.
    Ok(text
        .iter()
        .fold(0i128, |v, &d| (v << 3) | i128::from(d - b'0')))
}

/// The records of one member's pax header, in order.
#[derive(Debug, Default)]
pub struct PaxRecords {
    data: Vec<u8>,
    /// (keyword, value) ranges into `data`.
    records: Vec<(Range<usize>, Range<usize>)>,
}

impl PaxRecords {
    /// Parses a pax header's data, framing each record by its length.
    fn parse(data: Vec<u8>) -> Result<PaxRecords, String> {
        let mut records = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let rest = &data[at..];
            let bad = |why: String| format!("bad pax record at byte {at} of its header: {why}");
            // A record fits in 1 MiB, so 7 digits; look a little further to
            // tell a number too long from no number.
            let Some(space) = rest.iter().take(21).position(|&b| b == b' ') else {
                return Err(bad("no length".into()));
            };
            let digits = &rest[..space];
            let shown = digits.escape_ascii().to_string();
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return Err(bad(format!("length '{shown}' is not a number")));
            }
            let len = std::str::from_utf8(digits)
                .ok()
                .and_then(|d| d.parse::<usize>().ok())
                .ok_or_else(|| bad(format!("length {shown} is out of range")))?;
            // Digits, space, at least "k=" and the newline.
            if len < space + 4 {
                return Err(bad(format!("length {len} is too short for a record")));
            }
            if len > rest.len() {
                return Err(bad(format!(
                    "length {len} runs past the header's end ({} bytes left)",
                    rest.len()
                )));
            }
            if rest[len - 1] != b'\n' {
                return Err(bad(format!("the {len} bytes do not end in a newline")));
            }
            let kv = at + space + 1..at + len - 1;
            let Some(eq) = data[kv.clone()].iter().position(|&b| b == b'=') else {
                return Err(bad("no '=' after the keyword".into()));
            };
            if eq == 0 {
                return Err(bad("empty keyword".into()));
            }
            records.push((kv.start..kv.start + eq, kv.start + eq + 1..kv.end));
            at += len;
        }
        Ok(PaxRecords { data, records })
    }

    /// (keyword, value) of each record, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.records
            .iter()
            .map(|(k, v)| (&self.data[k.clone()], &self.data[v.clone()]))
    }

    /// The value of the last record of `key`; none if it is empty (an empty
    /// value deletes the override).
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let (_, v) = self
            .records
            .iter()
            .rev()
            .map(|(k, v)| (&self.data[k.clone()], &self.data[v.clone()]))
            .find(|(k, _)| *k == key)?;
        (!v.is_empty()).then_some(v)
    }
}

/// An old GNU sparse member's map.
#[derive(Debug, PartialEq, Eq)]
pub struct OldSparse {
    /// In order and apart (checked); the caller checks them against the
    /// sizes.
    pub map: Vec<Segment>,
    pub real_size: u64,
}

/// One member, its extension headers applied.
pub struct Member {
    pub header: Header,
    pub kind: Kind,
    /// As in the archive (not normalised): pax `path`, else the GNU long
    /// name, else the header's.
    pub path: Vec<u8>,
    /// Pax `linkpath`, else the GNU long link, else the header's.
    pub link: Vec<u8>,
    /// Bytes of data stored after the header: pax `size`, else the
    /// header's. For sparse members, the stored (not the real) size.
    pub size: u64,
    pub pax: PaxRecords,
    pub old_sparse: Option<OldSparse>,
}

/// Extension headers read so far for the next member.
#[derive(Default)]
struct Pending {
    pax: Option<PaxRecords>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    /// Header blocks and extension data of this member so far.
    bytes: u64,
}

impl Pending {
    fn any(&self) -> bool {
        self.pax.is_some() || self.long_name.is_some() || self.long_link.is_some()
    }

    fn charge(&mut self, n: u64) -> Result<(), TarError> {
        self.bytes = self.bytes.saturating_add(n);
        if self.bytes > MAX_HEADER_BYTES {
            return Err(TarError::Limit(TOO_MUCH_HEADER));
        }
        Ok(())
    }
}

pub struct Archive<R> {
    inner: R,
    /// Unread data of the current member, and the padding after it.
    left: u64,
    pad: u64,
    /// Bytes consumed so far, for messages.
    pos: u64,
}

impl<R: Read> Archive<R> {
    pub fn new(inner: R) -> Self {
        Archive {
            inner,
            left: 0,
            pad: 0,
            pos: 0,
        }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The current member's data (what [`Archive::next`] has not skipped
    /// yet). Ends early, without error, if the stream does; callers check
    /// the length they got.
    pub fn data(&mut self) -> Data<'_, R> {
        Data { archive: self }
    }

    /// The next member, or `None` at the end-of-archive marker. Skips what
    /// is left of the previous member's data.
    pub fn next(&mut self) -> Result<Option<Member>, TarError> {
        let rest = self.left.saturating_add(self.pad);
        self.skip(rest)?;
        self.left = 0;
        self.pad = 0;
        let mut pending = Pending::default();
        loop {
            let at = self.pos;
            let Some(header) = self.header(&pending)? else {
                return Ok(None);
            };
            pending.charge(BLOCK as u64)?;
            let corrupt = |why: &str| TarError::Corrupt(format!("header at byte {at}: {why}"));
            let twice = |what: &str| corrupt(&format!("two {what} headers for one member"));
            match header.typeflag() {
                b'x' => {
                    if pending.pax.is_some() {
                        return Err(twice("pax"));
                    }
                    let data = self.extension(&header, &mut pending, at)?;
                    let records = PaxRecords::parse(data).map_err(|e| corrupt(&e))?;
                    pending.pax = Some(records);
                }
                b'L' => {
                    if pending.long_name.is_some() {
                        return Err(twice("GNU long name"));
                    }
                    let data = self.extension(&header, &mut pending, at)?;
                    pending.long_name = Some(cstr(&data).to_vec());
                }
                b'K' => {
                    if pending.long_link.is_some() {
                        return Err(twice("GNU long link"));
                    }
                    let data = self.extension(&header, &mut pending, at)?;
                    pending.long_link = Some(cstr(&data).to_vec());
                }
                // Skipped, and ends what came before (see the module doc).
                b'g' => {
                    self.extension(&header, &mut pending, at)?;
                    pending = Pending::default();
                }
                _ => return self.member(header, pending, at).map(Some),
            }
        }
    }

    /// Reads a header block; `None` for a zero block (the end).
    fn header(&mut self, pending: &Pending) -> Result<Option<Header>, TarError> {
        let at = self.pos;
        let mut block = [0u8; BLOCK];
        let got = self.read_full(&mut block)?;
        if got == 0 {
            return Err(TarError::Corrupt(
                "archive ends without its end-of-archive marker".into(),
            ));
        }
        if got < BLOCK {
            return Err(TarError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the archive ends inside the header at byte {at}"),
            )));
        }
        if block.iter().all(|&b| b == 0) {
            if pending.any() {
                return Err(TarError::Corrupt(format!(
                    "extended headers before byte {at} describe a member that never comes"
                )));
            }
            return Ok(None);
        }
        let header = Header { block };
        if !header.checksum_ok() {
            return Err(TarError::Corrupt(format!(
                "header checksum mismatch at byte {at}"
            )));
        }
        Ok(Some(header))
    }

    /// Reads an extension header's data (within the header limit) and its
    /// padding.
    fn extension(
        &mut self,
        header: &Header,
        pending: &mut Pending,
        at: u64,
    ) -> Result<Vec<u8>, TarError> {
        let size = header
            .size()
            .map_err(|e| TarError::Corrupt(format!("header at byte {at}: {e}")))?;
        pending.charge(size.div_ceil(BLOCK as u64).saturating_mul(BLOCK as u64))?;
        // Bounded by the charge above.
        let mut data = vec![0u8; size as usize];
        if self.read_full(&mut data)? < data.len() {
            return Err(eof(at));
        }
        self.skip(padding(size))?;
        Ok(data)
    }

    fn member(
        &mut self,
        header: Header,
        mut pending: Pending,
        at: u64,
    ) -> Result<Member, TarError> {
        let pax = pending.pax.take().unwrap_or_default();
        let path = match (pax.get(b"path"), pending.long_name.take()) {
            (Some(p), _) => p.to_vec(),
            (None, Some(long)) => long,
            (None, None) => header.path(),
        };
        let link = match (pax.get(b"linkpath"), pending.long_link.take()) {
            (Some(l), _) => l.to_vec(),
            (None, Some(long)) => long,
            (None, None) => header.link().to_vec(),
        };
        // Shown only when something is wrong: most members never need it.
        let corrupt = |why: String| {
            let shown = super::path::raw(&path[..path.len().min(200)]);
            TarError::Corrupt(format!("'{shown}' (header at byte {at}): {why}"))
        };
        let size = match pax.get(b"size") {
            Some(v) => decimal(v).ok_or_else(|| {
                corrupt(format!(
                    "pax size '{}' is not a number",
                    v[..v.len().min(24)].escape_ascii()
                ))
            })?,
            None => header.size().map_err(corrupt)?,
        };
        let kind = Kind::of(header.typeflag());
        let old_sparse = if kind == Kind::OldSparse {
            if header.format() != Format::Gnu {
                return Err(corrupt(
                    "an old GNU sparse member without a GNU header".into(),
                ));
            }
            Some(self.old_sparse(&header, &mut pending, &corrupt)?)
        } else {
            None
        };
        self.left = size;
        self.pad = padding(size);
        Ok(Member {
            header,
            kind,
            path,
            link,
            size,
            pax,
            old_sparse,
        })
    }

    /// The map of an old GNU sparse member: 4 entries in the header, 21 in
    /// each extension block while `isextended` is 1. Entries whose fields
    /// start with NUL are unused: GNU tar writes them only after the last
    /// one (and stops reading there), so skipping them, as the `tar` crate
    /// did, reads the same maps.
    fn old_sparse(
        &mut self,
        header: &Header,
        pending: &mut Pending,
        corrupt: &dyn Fn(String) -> TarError,
    ) -> Result<OldSparse, TarError> {
        let mut map = Vec::new();
        let mut end = 0u64;
        let mut add = |entry: &[u8]| -> Result<(), TarError> {
            if entry[0] == 0 || entry[12] == 0 {
                return Ok(());
            }
            let number = |what: &str, f: &[u8]| {
                let n = field(what, f).map_err(|e| corrupt(format!("old GNU sparse map: {e}")))?;
                u64::try_from(n)
                    .map_err(|_| corrupt(format!("old GNU sparse map: {what} {n} is out of range")))
            };
            let offset = number("offset", &entry[..12])?;
            let len = number("numbytes", &entry[12..24])?;
            if offset < end {
                return Err(corrupt(
                    "old GNU sparse map: out of order or overlapping sparse blocks".into(),
                ));
            }
            end = offset
                .checked_add(len)
                .ok_or_else(|| corrupt("old GNU sparse map: a block ends beyond 2^64".into()))?;
            map.push(Segment { offset, len });
            Ok(())
        };
        for entry in header.block[386..482].chunks_exact(24) {
            add(entry)?;
        }
        let mut extended = header.block[482] == 1;
        while extended {
            let at = self.pos;
            pending.charge(BLOCK as u64)?;
            let mut block = [0u8; BLOCK];
            if self.read_full(&mut block)? < BLOCK {
                return Err(eof(at));
            }
            for entry in block[..504].chunks_exact(24) {
                add(entry)?;
            }
            extended = block[504] == 1;
        }
        let real = field("realsize", &header.block[483..495]).map_err(corrupt)?;
        let real_size =
            u64::try_from(real).map_err(|_| corrupt(format!("realsize {real} is out of range")))?;
        Ok(OldSparse { map, real_size })
    }

    /// Reads until `buf` is full or the stream ends; returns the count.
    fn read_full(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.pos += got as u64;
        Ok(got)
    }

    fn skip(&mut self, mut n: u64) -> Result<(), TarError> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let want = n.min(buf.len() as u64) as usize;
            let got = self.read_full(&mut buf[..want])?;
            if got < want {
                return Err(TarError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the archive ends inside a member's data at byte {}",
                        self.pos
                    ),
                )));
            }
            n -= got as u64;
        }
        Ok(())
    }
}

fn eof(header_at: u64) -> TarError {
    TarError::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the archive ends inside the extended header at byte {header_at}"),
    ))
}

/// Zeros after `size` bytes of data up to the next block.
fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// A pax decimal: digits only.
fn decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// The current member's data, read from the stream as asked.
pub struct Data<'a, R> {
    archive: &'a mut Archive<R>,
}

impl<R: Read> Read for Data<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let a = &mut *self.archive;
        let want = buf.len().min(usize::try_from(a.left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = a.inner.read(&mut buf[..want])?;
        a.left -= n as u64;
        a.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn octal(f: &mut [u8], v: u64) {
        let s = format!("{v:0w$o}\0", w = f.len() - 1);
        f.copy_from_slice(s.as_bytes());
    }

    /// Sets the checksum field to the unsigned sum.
    fn seal(b: &mut [u8; BLOCK]) {
        b[148..156].fill(b' ');
        let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
        b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }

    /// A ustar header block.
    fn header(name: &[u8], flag: u8, size: u64) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        b[..name.len()].copy_from_slice(name);
        octal(&mut b[100..108], 0o644);
        octal(&mut b[108..116], 0);
        octal(&mut b[116..124], 0);
        octal(&mut b[124..136], size);
        octal(&mut b[136..148], 0);
        b[156] = flag;
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        seal(&mut b);
        b
    }

    /// A header and its data, padded.
    fn with_data(h: [u8; BLOCK], data: &[u8]) -> Vec<u8> {
        let mut v = h.to_vec();
        v.extend_from_slice(data);
        v.resize(BLOCK + data.len().div_ceil(BLOCK) * BLOCK, 0);
        v
    }

    fn record(key: &[u8], value: &[u8]) -> Vec<u8> {
        let body = key.len() + value.len() + 3;
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        [len.to_string().as_bytes(), b" ", key, b"=", value, b"\n"].concat()
    }

    fn pax(records: &[(&[u8], &[u8])]) -> Vec<u8> {
        let data: Vec<u8> = records.iter().flat_map(|(k, v)| record(k, v)).collect();
        with_data(header(b"PaxHeaders/x", b'x', data.len() as u64), &data)
    }

    fn file(name: &[u8], data: &[u8]) -> Vec<u8> {
        with_data(header(name, b'0', data.len() as u64), data)
    }

    const END: [u8; 2 * BLOCK] = [0; 2 * BLOCK];

    /// Every member and its data.
    fn read_all(archive: &[u8]) -> Result<Vec<(Member, Vec<u8>)>, TarError> {
        let mut a = Archive::new(archive);
        let mut out = Vec::new();
        while let Some(m) = a.next()? {
            let mut data = Vec::new();
            a.data().read_to_end(&mut data)?;
            out.push((m, data));
        }
        Ok(out)
    }

    fn corrupt(archive: &[u8]) -> String {
        match read_all(archive) {
            Err(TarError::Corrupt(why)) => why,
            Err(other) => panic!("not a Corrupt error: {other:?}"),
            Ok(m) => panic!("accepted, {} members", m.len()),
        }
    }

    #[test]
    fn numbers_in_octal_and_base_256() {
        assert_eq!(field("mode", b"0000644\0"), Ok(0o644));
        assert_eq!(field("mode", b"  644 \0\0"), Ok(0o644));
        assert_eq!(field("size", b"77777777777\0"), Ok(0o77777777777));
        for bad in [
            &b"\0\0\0\0\0\0\0\0"[..],
            b"        ",
            b"12 34\0",
            b"0009\0",
            b"-1\0",
        ] {
            let err = field("uid", bad).unwrap_err();
            assert!(
                err.contains("uid field") && err.contains("not an octal"),
                "{err}"
            );
        }
        // Base-256: bit 7 marks it, bit 6 is the sign.
        assert_eq!(field("uid", &[0x80, 0, 0, 1, 0, 0, 0, 0]), Ok(1 << 32));
        assert_eq!(field("gid", &[0xff; 8]), Ok(-1));
        assert_eq!(field("gid", &[0xc0, 0, 0, 0, 0, 0, 0, 0]), Ok(-(1 << 62)));
        let mut size = [0u8; 12];
        size[0] = 0x80;
        size[4..].copy_from_slice(&(9u64 << 30).to_be_bytes());
        assert_eq!(field("size", &size), Ok(9 << 30));
        assert_eq!(field("mtime", &[0xff; 12]), Ok(-1));
        // Beyond u64: refused where a size is needed.
        let mut h = header(b"big", b'0', 0);
        h[124..136].copy_from_slice(&[0xbf, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        seal(&mut h);
        let err = corrupt(&h);
        assert!(err.contains("size 1980583170274646976921128140"), "{err}");
        h[124..136].copy_from_slice(&[0xff; 12]);
        seal(&mut h);
        assert!(corrupt(&h).contains("size -1 is out of range"));
    }

    #[test]
    fn checksums_signed_or_unsigned() {
        let mut h = header(b"\xff\xfe-name", b'0', 0);
        let archive = [&h[..], &END].concat();
        assert_eq!(read_all(&archive).unwrap()[0].0.path, b"\xff\xfe-name");
        // The same header summed as signed chars, as old writers did.
        h[148..156].fill(b' ');
        let signed: i32 = h.iter().map(|&b| i32::from(b as i8)).sum();
        h[148..156].copy_from_slice(format!("{signed:06o}\0 ").as_bytes());
        let archive = [&h[..], &END].concat();
        assert_eq!(read_all(&archive).unwrap().len(), 1);
        // One bit off: refused.
        let mut bad = header(b"etc/passwd", b'0', 0);
        bad[0] ^= 1;
        let err = corrupt(&[&bad[..], &END].concat());
        assert_eq!(err, "header checksum mismatch at byte 0");
        let mut blank = header(b"x", b'0', 0);
        blank[148..156].fill(0);
        assert!(corrupt(&[&blank[..], &END].concat()).contains("checksum mismatch"));
    }

    #[test]
    fn pax_values_may_hold_newlines_and_equals() {
        let cap: &[u8] = &[
            1, 0, 0, 2, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let archive = [
            pax(&[
                (b"SCHILY.xattr.security.capability", cap),
                (b"SCHILY.xattr.user.x", b"a=b\n=c\n"),
                (b"path", b"dir/new\nline"),
                (b"comment", b"\0\n\0"),
            ]),
            file(b"short", b"hi"),
            END.to_vec(),
        ]
        .concat();
        let members = read_all(&archive).unwrap();
        let (m, data) = &members[0];
        assert_eq!(m.path, b"dir/new\nline");
        assert_eq!(data, b"hi");
        let recs: Vec<_> = m.pax.iter().collect();
        assert_eq!(recs[0], (&b"SCHILY.xattr.security.capability"[..], cap));
        assert_eq!(recs[1], (&b"SCHILY.xattr.user.x"[..], &b"a=b\n=c\n"[..]));
        assert_eq!(recs[3], (&b"comment"[..], &b"\0\n\0"[..]));
    }

    #[test]
    fn a_newline_before_size_does_not_misframe() {
        // The old reader gave up at the first value with a newline and so
        // never saw `size`: the data would have been read as headers.
        let body = file(b"inner", b"smuggled");
        let mut h = header(b"big", b'0', 0);
        h[124..136].copy_from_slice(b"00000000000\0");
        seal(&mut h);
        let archive = [
            pax(&[
                (b"SCHILY.xattr.user.a", b"x\ny"),
                (b"size", body.len().to_string().as_bytes()),
            ]),
            with_data(h, &body),
            file(b"after", b"ok"),
            END.to_vec(),
        ]
        .concat();
        let members = read_all(&archive).unwrap();
        let names: Vec<&[u8]> = members.iter().map(|(m, _)| m.path.as_slice()).collect();
        assert_eq!(names, [&b"big"[..], b"after"]);
        assert_eq!(members[0].1, body);
        assert_eq!(members[0].0.size, body.len() as u64);
    }

    #[test]
    fn malformed_pax_records_are_refused() {
        let raw = |data: &[u8]| {
            [
                with_data(header(b"PaxHeaders/x", b'x', data.len() as u64), data),
                file(b"f", b""),
                END.to_vec(),
            ]
            .concat()
        };
        let cases: &[(&[u8], &str)] = &[
            (
                b"99 path=x\n",
                "length 99 runs past the header's end (10 bytes left)",
            ),
            (b"0 path=x\n", "length 0 is too short"),
            (b"3 =\n", "length 3 is too short"),
            (b"x9 path=\n", "length 'x9' is not a number"),
            (b"-9 path=\n", "length '-9' is not a number"),
            (b"+9 path=\n", "length '+9' is not a number"),
            (b" 9 path=\n", "length '' is not a number"),
            (b"pathwithoutlength\n", "no length"),
            (b"8 a=bcd ", "do not end in a newline"),
            (b"6 abc\n", "no '=' after the keyword"),
            (b"6 =ab\n", "empty keyword"),
            (b"10 path=x\n\0\0\0", "at byte 10 of its header: no length"),
            (b"99999999999999999999 a=b\n", "is out of range"),
            (b"99999999999999999999999 a=b\n", "no length"),
        ];
        for (data, needle) in cases {
            let err = corrupt(&raw(data));
            assert!(
                err.contains(needle) && err.starts_with("header at byte 0: bad pax record"),
                "{}: {err}",
                String::from_utf8_lossy(data)
            );
        }
        let mut size = pax(&[(b"size", b"12x")]);
        size.extend(file(b"f", b""));
        size.extend(END);
        assert!(corrupt(&size).contains("pax size '12x' is not a number"));
    }

    #[test]
    fn pax_path_wins_over_gnu_long_names() {
        let long = [b'a'; 300];
        let long_name = with_data(
            header(b"././@LongLink", b'L', 301),
            &[&long[..], b"\0"].concat(),
        );
        let long_link = with_data(header(b"././@LongLink", b'K', 6), b"tgt\0\0\0");
        let gnu_then_pax = [
            long_name.clone(),
            pax(&[(b"path", b"from/pax"), (b"linkpath", b"pax-target")]),
            long_link.clone(),
            with_data(header(b"short", b'2', 0), b""),
            END.to_vec(),
        ]
        .concat();
        let m = &read_all(&gnu_then_pax).unwrap()[0].0;
        assert_eq!(
            (&m.path[..], &m.link[..]),
            (&b"from/pax"[..], &b"pax-target"[..])
        );
        assert_eq!(m.kind, Kind::Symlink);
        // Long names alone (cut at their NUL); an empty pax value leaves
        // them in force.
        let gnu_only = [
            long_name,
            pax(&[(b"path", b"")]),
            long_link,
            with_data(header(b"short", b'1', 0), b""),
            END.to_vec(),
        ]
        .concat();
        let m = &read_all(&gnu_only).unwrap()[0].0;
        assert_eq!((&m.path[..], &m.link[..]), (&long[..], &b"tgt"[..]));
        // The last of several records wins.
        let last = [
            pax(&[(b"path", b"first"), (b"path", b"second")]),
            file(b"h", b""),
            END.to_vec(),
        ]
        .concat();
        assert_eq!(read_all(&last).unwrap()[0].0.path, b"second");
    }

    #[test]
    fn header_names_by_format() {
        let mut ustar = header(b"name", b'5', 0);
        ustar[345..352].copy_from_slice(b"usr/lib");
        seal(&mut ustar);
        // GNU keeps times where ustar has the prefix.
        let mut gnu = header(b"gnu-name", b'3', 0);
        gnu[257..265].copy_from_slice(b"ustar  \0");
        gnu[345..357].copy_from_slice(b"14000000000\0");
        octal(&mut gnu[329..337], 4);
        octal(&mut gnu[337..345], 64);
        seal(&mut gnu);
        let mut v7 = header(b"v7-name", b'\0', 0);
        v7[257..265].fill(0);
        v7[329..337].copy_from_slice(b"garbage!");
        seal(&mut v7);
        let mut blank = header(b"blank-dev", b'4', 0);
        blank[329..345].fill(0);
        seal(&mut blank);
        let archive = [&ustar[..], &gnu, &v7, &blank, &END].concat();
        let m = read_all(&archive).unwrap();
        assert_eq!(m[0].0.path, b"usr/lib/name");
        assert_eq!(m[0].0.kind, Kind::Dir);
        assert_eq!(m[1].0.path, b"gnu-name");
        assert_eq!(m[1].0.header.device(), Ok((4, 64)));
        assert_eq!(
            (&m[2].0.path[..], m[2].0.kind),
            (&b"v7-name"[..], Kind::File)
        );
        assert_eq!(m[2].0.header.device(), Ok((0, 0)));
        assert_eq!(m[3].0.header.device(), Ok((0, 0)));
        let mut bad = header(b"dev", b'3', 0);
        bad[329..337].copy_from_slice(b"zzzzzzz\0");
        seal(&mut bad);
        let m = read_all(&[&bad[..], &END].concat()).unwrap();
        assert!(m[0].0.header.device().unwrap_err().contains("device major"));
    }

    #[test]
    fn the_end_marker_is_required() {
        let one = file(b"a", b"hello");
        let err = corrupt(&one);
        assert_eq!(err, "archive ends without its end-of-archive marker");
        // GNU tar stops at the first zero block too; what follows is not
        // read as members.
        let lone = [&one[..], &[0; BLOCK], b"junk after the end"].concat();
        assert_eq!(read_all(&lone).unwrap().len(), 1);
        // Extension headers with no member after them.
        let dangling = [pax(&[(b"path", b"x")]), END.to_vec()].concat();
        assert!(corrupt(&dangling).contains("describe a member that never comes"));
        let twice = [pax(&[]), pax(&[]), file(b"a", b""), END.to_vec()].concat();
        assert!(corrupt(&twice).contains("two pax headers for one member"));
        // A global header is skipped, and ends what came before it.
        let global = [
            pax(&[(b"path", b"dropped")]),
            with_data(header(b"g", b'g', 12), b"11 path=gg\n"),
            file(b"kept", b""),
            END.to_vec(),
        ]
        .concat();
        let m = read_all(&global).unwrap();
        assert_eq!((m.len(), &m[0].0.path[..]), (1, &b"kept"[..]));
    }

    #[test]
    fn truncation_is_an_io_error() {
        let full = [file(b"a", b"hello"), file(b"b", &[7; 700]), END.to_vec()].concat();
        // Inside the second header, inside its data, inside a pax header.
        for cut in [1024 + 300, 1024 + 512 + 100] {
            let mut a = Archive::new(&full[..cut]);
            let first = a.next().unwrap().unwrap();
            assert_eq!(first.path, b"a");
            let res = a.next().and_then(|_| a.next());
            assert!(
                matches!(&res, Err(TarError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof),
                "{cut}: {:?}",
                res.err()
            );
        }
        let p = pax(&[(b"path", b"x")]);
        assert!(matches!(read_all(&p[..600]), Err(TarError::Io(_))));
        // Data cut short reads short, and the caller sees the count.
        let mut a = Archive::new(&full[..1024 + 512 + 100]);
        a.next().unwrap();
        let b = a.next().unwrap().unwrap();
        let mut data = Vec::new();
        a.data().read_to_end(&mut data).unwrap();
        assert_eq!((b.size, data.len()), (700, 100));
    }

    #[test]
    fn header_data_is_limited_to_1_mib() {
        // Refused from the size alone: nothing is read or allocated.
        let flood = header(b"PaxHeaders/x", b'x', 2 << 20);
        assert!(matches!(
            read_all(&flood),
            Err(TarError::Limit(why)) if why.contains("over 1 MiB of header data")
        ));
        // The extension headers of one member add up.
        let half = vec![b'n'; 600 << 10];
        let many = [
            pax(&[(b"comment", &half)]),
            with_data(header(b"././@LongLink", b'L', half.len() as u64), &half),
            file(b"a", b""),
            END.to_vec(),
        ]
        .concat();
        assert!(matches!(read_all(&many), Err(TarError::Limit(_))));
        // Just under the limit is fine.
        let name = vec![b'n'; (1 << 20) - 3 * BLOCK];
        let big = [
            with_data(header(b"././@LongLink", b'L', name.len() as u64), &name),
            file(b"x", b""),
            END.to_vec(),
        ]
        .concat();
        assert_eq!(read_all(&big).unwrap()[0].0.path.len(), name.len());
    }

    fn sparse_entry(b: &mut [u8], offset: u64, len: u64) {
        octal(&mut b[..12], offset);
        octal(&mut b[12..24], len);
    }

    /// An old GNU sparse member: `map` spread over the header and
    /// extension blocks, then `data`.
    fn old_gnu(map: &[(u64, u64)], real: u64, data: &[u8]) -> Vec<u8> {
        let mut h = header(b"sparse", b'S', data.len() as u64);
        h[257..265].copy_from_slice(b"ustar  \0");
        octal(&mut h[483..495], real);
        let (first, rest) = map.split_at(map.len().min(4));
        for (i, (o, l)) in first.iter().enumerate() {
            sparse_entry(&mut h[386 + 24 * i..], *o, *l);
        }
        h[482] = u8::from(!rest.is_empty());
        seal(&mut h);
        let mut out = h.to_vec();
        let chunks: Vec<_> = rest.chunks(21).collect();
        for (n, chunk) in chunks.iter().enumerate() {
            let mut ext = [0u8; BLOCK];
            for (i, (o, l)) in chunk.iter().enumerate() {
                sparse_entry(&mut ext[24 * i..], *o, *l);
            }
            ext[504] = u8::from(n + 1 < chunks.len());
            out.extend(ext);
        }
        out.extend(data);
        out.resize(out.len() + (BLOCK - data.len() % BLOCK) % BLOCK, 0);
        out
    }

    #[test]
    fn old_gnu_sparse_maps_span_extension_blocks() {
        let map: Vec<(u64, u64)> = (0..30).map(|i| (i * 4096, 10)).collect();
        let data = vec![5u8; 300];
        let archive = [
            old_gnu(&map, 30 * 4096, &data),
            file(b"next", b"n"),
            END.to_vec(),
        ]
        .concat();
        let m = read_all(&archive).unwrap();
        let old = m[0].0.old_sparse.as_ref().unwrap();
        assert_eq!(old.real_size, 30 * 4096);
        assert_eq!(old.map.len(), 30);
        assert_eq!(
            old.map[29],
            Segment {
                offset: 29 * 4096,
                len: 10
            }
        );
        assert_eq!((m[0].0.kind, m[0].1.len()), (Kind::OldSparse, 300));
        assert_eq!(m[1].0.path, b"next");

        let bad = [
            old_gnu(&[(2048, 512), (0, 512)], 4096, &[1; 1024]),
            END.to_vec(),
        ]
        .concat();
        assert!(corrupt(&bad).contains("out of order or overlapping sparse blocks"));
        let mut ustar = old_gnu(&[(0, 1)], 1, b"x");
        ustar[257..265].copy_from_slice(b"ustar\x0000");
        let mut h = [0u8; BLOCK];
        h.copy_from_slice(&ustar[..BLOCK]);
        seal(&mut h);
        ustar[..BLOCK].copy_from_slice(&h);
        assert!(corrupt(&[ustar, END.to_vec()].concat()).contains("without a GNU header"));
        // An extension block flagged but missing.
        let cut = old_gnu(&map, 30 * 4096, &data);
        assert!(matches!(
            read_all(&cut[..BLOCK + 100]),
            Err(TarError::Io(_))
        ));
    }

    #[test]
    fn unread_data_is_skipped() {
        let archive = [
            file(b"a", &[1; 2000]),
            with_data(header(b"dir", b'5', 700), &[2; 700]),
            file(b"b", b"bee"),
            END.to_vec(),
        ]
        .concat();
        let mut a = Archive::new(&archive[..]);
        let mut names = Vec::new();
        while let Some(m) = a.next().unwrap() {
            names.push(m.path);
        }
        assert_eq!(names, [&b"a"[..], b"dir", b"b"]);
    }

    #[test]
    fn hostile_bytes_never_panic() {
        // Mutations of an archive using every header kind, read to the end:
        // each gives members or an error, never a panic or a hang.
        let long = with_data(header(b"././@LongLink", b'L', 200), &[b'l'; 200]);
        let seed = [
            pax(&[
                (b"path", b"p\nx"),
                (b"size", b"3"),
                (b"SCHILY.xattr.user.a", b"=\n"),
            ]),
            file(b"a", b"abc"),
            long,
            with_data(header(b"g", b'g', 11), b"11 a=bcdef\n"),
            old_gnu(&[(0, 10), (100, 5), (200, 0)], 200, &[3; 15]),
            with_data(header(b"dev", b'3', 0), b""),
            END.to_vec(),
        ]
        .concat();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..10_000 {
            let mut b = seed.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % b.len() as u64) as usize;
                b[at] =
                    [0, b'\n', b' ', b'=', b'7', 0x80, 0xff, next() as u8][(next() % 8) as usize];
            }
            // Re-seal the mutated header half the time, to get past the
            // checksum.
            if next() % 2 == 0 {
                let blk = (next() % (b.len() / BLOCK) as u64) as usize * BLOCK;
                let mut h = [0u8; BLOCK];
                h.copy_from_slice(&b[blk..blk + BLOCK]);
                seal(&mut h);
                b[blk..blk + BLOCK].copy_from_slice(&h);
            }
            let cut = b.len() - (next() % 3 == 0) as usize * (next() % b.len() as u64) as usize;
            let mut a = Archive::new(&b[..cut]);
            while let Ok(Some(m)) = a.next() {
                let _ = m.header.device();
                let _ = (m.header.mode(), m.header.uid(), m.header.mtime());
                let _ = io::copy(&mut a.data(), &mut io::sink());
            }
        }
    }
}
