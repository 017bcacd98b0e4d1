//! Path normalisation and the order entries are written in.
//!
//! Paths inside the image are kept as raw bytes (Linux allows any byte but NUL
//! and `/` in a name), relative to the root, without `./` or trailing slashes.
//! The empty path is the root directory itself.

use std::cmp::Ordering;
use std::fmt;

/// Longest path we accept, as Linux's PATH_MAX.
pub const MAX_PATH: usize = 4096;
/// Longest single name, as Linux's NAME_MAX.
pub const MAX_NAME: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    Escapes,
    TooLong,
    NameTooLong,
    Nul,
    Whiteout,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::Escapes => "path leaves the root through '..'",
            PathError::TooLong => "path is longer than 4096 bytes",
            PathError::NameTooLong => "a name in the path is longer than 255 bytes",
            PathError::Nul => "path contains a NUL byte",
            PathError::Whiteout => {
                "name starts with '.wh.', which container runtimes read as a deletion marker"
            }
        })
    }
}

/// Turns an archive member name (`./etc//passwd`, `/etc/passwd/`) into the
/// canonical relative form (`etc/passwd`). `..` anywhere is refused rather than
/// resolved: a rootfs never needs it and resolving it hides hostile input.
pub fn normalize(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    if raw.contains(&0) {
        return Err(PathError::Nul);
    }
    let mut out = Vec::with_capacity(raw.len());
    for name in raw.split(|&b| b == b'/') {
        match name {
            b"" | b"." => continue,
            b".." => return Err(PathError::Escapes),
            _ => {}
        }
        if name.len() > MAX_NAME {
            return Err(PathError::NameTooLong);
        }
        if name.starts_with(b".wh.") {
            return Err(PathError::Whiteout);
        }
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(name);
    }
    if out.len() > MAX_PATH {
        return Err(PathError::TooLong);
    }
    Ok(out)
}

/// Depth-first order with the names of each directory sorted bytewise, as
/// `tar --sort=name` writes: a directory is followed by everything under it
/// before its next sibling (`a`, `a/b`, `a-c`). Mapping `/` below every other
/// byte gives exactly that order in one bytewise comparison.
pub fn cmp(a: &[u8], b: &[u8]) -> Ordering {
    let key = |c: &u8| if *c == b'/' { 0 } else { u16::from(*c) + 1 };
    a.iter().map(key).cmp(b.iter().map(key))
}

/// The parent of a canonical path; `None` for the root.
pub fn parent(path: &[u8]) -> Option<&[u8]> {
    if path.is_empty() {
        return None;
    }
    Some(match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[..i],
        None => b"",
    })
}

/// A canonical path for messages: `/` and the path (see [`raw`]).
pub fn display(path: &[u8]) -> String {
    format!("/{}", raw(path))
}

/// Any name for messages: lossy UTF-8, control characters escaped (a name
/// may hold a newline; a message stays one line).
pub fn raw(name: &[u8]) -> String {
    let mut out = String::new();
    for c in String::from_utf8_lossy(name).chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_archive_names() {
        assert_eq!(normalize(b"./etc//passwd").unwrap(), b"etc/passwd");
        assert_eq!(normalize(b"/usr/bin/").unwrap(), b"usr/bin");
        assert_eq!(normalize(b"./").unwrap(), b"");
        assert_eq!(normalize(b".").unwrap(), b"");
        assert_eq!(normalize(b"a/./b").unwrap(), b"a/b");
        assert_eq!(normalize(b"\xff\xfe/x").unwrap(), b"\xff\xfe/x");
    }

    #[test]
    fn refuses_escapes_and_oddities() {
        assert_eq!(normalize(b"../etc"), Err(PathError::Escapes));
        assert_eq!(normalize(b"a/../../b"), Err(PathError::Escapes));
        assert_eq!(normalize(b"a\0b"), Err(PathError::Nul));
        assert_eq!(normalize(b"etc/.wh.passwd"), Err(PathError::Whiteout));
        assert_eq!(normalize(&[b'a'; 256]), Err(PathError::NameTooLong));
        let long: Vec<u8> = std::iter::repeat_n(b"abcdefgh/".as_slice(), 600)
            .flatten()
            .copied()
            .collect();
        assert_eq!(normalize(&long), Err(PathError::TooLong));
    }

    #[test]
    fn orders_depth_first() {
        let mut v: Vec<&[u8]> = vec![b"a-c", b"a/b", b"a", b"", b"a/b/c", b"b", b"a.d"];
        v.sort_by(|a, b| cmp(a, b));
        let want: Vec<&[u8]> = vec![b"", b"a", b"a/b", b"a/b/c", b"a-c", b"a.d", b"b"];
        assert_eq!(v, want);
    }

    #[test]
    fn displays_one_line() {
        assert_eq!(display(b""), "/");
        assert_eq!(display(b"etc/a\nb\tc"), "/etc/a\\nb\\tc");
        assert_eq!(display(b"\xff\xfename"), "/\u{fffd}\u{fffd}name");
        assert_eq!(raw(b"./a\rb"), "./a\\rb");
    }

    #[test]
    fn parents() {
        assert_eq!(parent(b"a/b/c"), Some(&b"a/b"[..]));
        assert_eq!(parent(b"a"), Some(&b""[..]));
        assert_eq!(parent(b""), None);
    }
}
