//! The pax records of one tar entry that the scan acts on, read in one pass:
//! xattrs, mtime, owner ids, sparse maps and bsdtar's ACLs. The framing ones
//! (path, linkpath, size) the reader ([`super::tarread`]) applies itself.

use super::sparse;

const XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";
/// Linux's limits: XATTR_NAME_MAX and XATTR_SIZE_MAX.
const MAX_XATTR_NAME: usize = 255;
const MAX_XATTR_VALUE: usize = 64 << 10;

#[derive(Debug, Default)]
pub struct Pax {
    /// Unsorted, as they came.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub mtime: Option<i64>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub sparse: sparse::Records,
    /// bsdtar's (and star's) textual POSIX ACLs.
    pub acl_access: Option<Vec<u8>>,
    pub acl_default: Option<Vec<u8>>,
    /// An NFSv4 ACL (`SCHILY.acl.ace`), which Linux files can't carry.
    pub acl_nfs4: bool,
}

/// Reads an entry's pax records, in order (none: all defaults).
pub fn read<'a>(records: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Result<Pax, String> {
    let mut pax = Pax::default();
    for (key, value) in records {
        if pax.sparse.add(key, value) {
            continue;
        }
        match key {
            b"uid" => pax.uid = Some(owner_id("uid", value)?),
            b"gid" => pax.gid = Some(owner_id("gid", value)?),
            b"mtime" => {
                // PAX times may carry a fraction: "1520598896.123".
                let secs = value.split(|&b| b == b'.').next().unwrap_or(b"");
                if let Some(t) = std::str::from_utf8(secs).ok().and_then(|s| s.parse().ok()) {
                    pax.mtime = Some(t);
                }
            }
            b"SCHILY.acl.access" => pax.acl_access = Some(value.to_vec()),
            b"SCHILY.acl.default" => pax.acl_default = Some(value.to_vec()),
            b"SCHILY.acl.ace" => pax.acl_nfs4 = true,
            _ => {
                if let Some(name) = key.strip_prefix(XATTR_PREFIX) {
                    if name.is_empty()
                        || name.len() > MAX_XATTR_NAME
                        || value.len() > MAX_XATTR_VALUE
                    {
                        return Err(format!(
                            "extended attribute '{}' exceeds Linux's limits \
                             (name 1-255 bytes, value 64 KiB)",
                            String::from_utf8_lossy(&name[..name.len().min(64)])
                        ));
                    }
                    pax.xattrs.push((name.to_vec(), value.to_vec()));
                }
            }
        }
    }
    Ok(pax)
}

/// A pax `uid`/`gid` record: decimal, within [`check_id`]'s range. GNU tar
/// refuses what isn't (-1, 2^64+7), and so do we.
fn owner_id(what: &str, value: &[u8]) -> Result<u32, String> {
    let text = String::from_utf8_lossy(&value[..value.len().min(40)]).into_owned();
    let digits = value.strip_prefix(b"-").unwrap_or(value);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(format!("{what} '{text}' is not a number"));
    }
    let n = if value.starts_with(b"-") {
        None
    } else {
        text.parse::<u64>().ok()
    };
    match n {
        Some(n) => check_id(what, n),
        None => Err(out_of_range(what, &text)),
    }
}

/// An owner id from a header field or pax record. 4294967295 is `(uid_t)-1`,
/// which chown(2) takes as "leave unchanged": such a file would unpack owned
/// by whoever unpacks it (root), so it is refused with everything above.
pub fn check_id(what: &str, n: u64) -> Result<u32, String> {
    u32::try_from(n)
        .ok()
        .filter(|&id| id != u32::MAX)
        .ok_or_else(|| out_of_range(what, &n.to_string()))
}

pub fn out_of_range(what: &str, value: &str) -> String {
    format!("{what} {value} is out of range 0..4294967294")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_ids_must_fit_in_32_bits() {
        assert_eq!(owner_id("uid", b"0").unwrap(), 0);
        assert_eq!(owner_id("uid", b"4294967294").unwrap(), 4294967294);
        for bad in [
            &b"4294967295"[..],
            b"4294967296",
            b"18446744073709551623",
            b"-1",
        ] {
            let err = owner_id("uid", bad).unwrap_err();
            assert!(err.contains("out of range"), "{err}");
            assert!(err.contains(std::str::from_utf8(bad).unwrap()), "{err}");
        }
        for bad in [&b""[..], b" 5", b"5 ", b"0x10", b"+5", b"-"] {
            let err = owner_id("gid", bad).unwrap_err();
            assert!(err.contains("gid") && err.contains("not a number"), "{err}");
        }
        assert!(check_id("uid", 1 << 32).is_err());
        assert_eq!(check_id("uid", 65534).unwrap(), 65534);
    }
}
