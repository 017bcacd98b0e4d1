//! POSIX ACLs in bsdtar's text form (`SCHILY.acl.access`,
//! `SCHILY.acl.default`, star's keywords) turned into the xattrs Linux keeps
//! them in (`system.posix_acl_access`, `system.posix_acl_default`): the form
//! a directory scan and GNU tar `--xattrs` give, so the layer is the same
//! whichever tool made the input.
//!
//! Text: entries separated by ',' (bsdtar) or newlines (GNU tar `--acls`),
//! each `tag:qualifier:perms[:id]`, e.g. `user::rw-`, `user:alice:r--:1000`,
//! `user:1001:r-x`, `group::r--`, `group:2000:rw-`, `mask::rwx`, `other::r--`.
//! bsdtar adds the numeric id whenever it writes a name; a name alone can't
//! be resolved here (the build host's users are not the image's), see
//! [`AclError::NameOnly`].
//!
//! Binary (linux/posix_acl_xattr.h): le32 version 2, then per entry le16
//! tag, le16 perm, le32 id (ACL_UNDEFINED_ID where there is none), sorted by
//! tag, then id: the order the kernel checks for and getfattr shows.

const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
const UNDEFINED_ID: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Access,
    Default,
}

impl Kind {
    pub fn xattr(self) -> &'static [u8] {
        match self {
            Kind::Access => b"system.posix_acl_access",
            Kind::Default => b"system.posix_acl_default",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum AclError {
    /// Not an ACL the kernel would take.
    Bad(String),
    /// An entry names a user or group with no numeric id.
    NameOnly(String),
}

/// The xattr value for an ACL's text, or `None` where Linux stores no xattr:
/// an empty ACL, or an access ACL of only the owner, group and other
/// entries (those are the mode bits).
pub fn to_xattr(text: &[u8], kind: Kind) -> Result<Option<Vec<u8>>, AclError> {
    let mut entries = Vec::new();
    for item in text.split(|&b| b == b',' || b == b'\n') {
        if !item.is_empty() {
            entries.push(entry(item)?);
        }
    }
    entries.sort_unstable_by_key(|e| (e.0, e.2));
    let count = |tag| entries.iter().filter(|e| e.0 == tag).count();
    for (tag, name) in [
        (USER_OBJ, "user::"),
        (GROUP_OBJ, "group::"),
        (OTHER, "other::"),
    ] {
        if count(tag) != 1 && !entries.is_empty() {
            return Err(bad(format!("needs exactly one {name} entry")));
        }
    }
    if count(MASK) > 1 {
        return Err(bad("has more than one mask entry".into()));
    }
    if count(MASK) == 0 && (count(USER) > 0 || count(GROUP) > 0) {
        return Err(bad("names users or groups but has no mask entry".into()));
    }
    if entries
        .windows(2)
        .any(|w| (w[0].0, w[0].2) == (w[1].0, w[1].2))
    {
        return Err(bad("lists a user or group twice".into()));
    }
    if entries.is_empty() || (kind == Kind::Access && entries.len() == 3) {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(4 + 8 * entries.len());
    out.extend_from_slice(&VERSION.to_le_bytes());
    for (tag, perm, id) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    Ok(Some(out))
}

fn bad(why: String) -> AclError {
    AclError::Bad(why)
}

/// One `tag:qualifier:perms[:id]` entry as (tag, perm, id).
fn entry(item: &[u8]) -> Result<(u16, u16, u32), AclError> {
    let shown = || String::from_utf8_lossy(&item[..item.len().min(80)]).into_owned();
    let fields: Vec<&[u8]> = item.split(|&b| b == b':').collect();
    let malformed = || bad(format!("entry '{}' is malformed", shown()));
    let (tag, rest) = fields.split_first().ok_or_else(malformed)?;
    match *tag {
        b"user" | b"u" | b"group" | b"g" => {
            let named = if tag.starts_with(b"u") { USER } else { GROUP };
            let (qual, perms, id) = match rest {
                [q, p] => (*q, *p, None),
                [q, p, id] => (*q, *p, Some(*id)),
                _ => return Err(malformed()),
            };
            let perm = perms_of(perms).ok_or_else(malformed)?;
            if qual.is_empty() {
                if id.is_some() {
                    return Err(malformed());
                }
                let obj = if named == USER { USER_OBJ } else { GROUP_OBJ };
                return Ok((obj, perm, UNDEFINED_ID));
            }
            let digits = match id {
                Some(id) => id,
                None if qual.iter().all(u8::is_ascii_digit) => qual,
                None => return Err(AclError::NameOnly(shown())),
            };
            let id = std::str::from_utf8(digits)
                .ok()
                .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u32>().ok())
                .filter(|&id| id != UNDEFINED_ID)
                .ok_or_else(|| bad(format!("entry '{}' has an id out of range", shown())))?;
            Ok((named, perm, id))
        }
        b"mask" | b"m" | b"other" | b"o" => {
            let perms = match rest {
                [b"", p] | [p] => *p,
                _ => return Err(malformed()),
            };
            let t = if tag.starts_with(b"m") { MASK } else { OTHER };
            Ok((t, perms_of(perms).ok_or_else(malformed)?, UNDEFINED_ID))
        }
        _ => Err(malformed()),
    }
}

/// `rwx` with `-` for what is not granted.
fn perms_of(p: &[u8]) -> Option<u16> {
    let [r, w, x] = p else { return None };
    let bit = |c: u8, want: u8, v: u16| match c {
        b'-' => Some(0),
        c if c == want => Some(v),
        _ => None,
    };
    Some(bit(*r, b'r', 4)? | bit(*w, b'w', 2)? | bit(*x, b'x', 1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(v: &[u8]) -> String {
        v.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn bsdtar_text_gives_the_kernels_bytes() {
        // What bsdtar 3.6.2 wrote for a file and a directory, and what
        // getfattr -e hex showed for them on the disk they came from.
        let access = b"user::rw-,group::r--,other::r--,user:root:rwx:0,\
            user:cloudsdk:r--:1000,group:2000:rw-,mask::rwx";
        assert_eq!(
            hex(&to_xattr(access, Kind::Access).unwrap().unwrap()),
            "0200000001000600ffffffff020007000000000002000400e803000004000400\
             ffffffff08000600d007000010000700ffffffff20000400ffffffff"
        );
        let dir = b"user::rwx,group::r-x,other::r-x,user:1001:r-x,mask::r-x";
        assert_eq!(
            hex(&to_xattr(dir, Kind::Access).unwrap().unwrap()),
            "0200000001000700ffffffff02000500e903000004000500ffffffff\
             10000500ffffffff20000500ffffffff"
        );
        let default = b"user::rwx,user:cloudsdk:rwx:1000,group::r-x,mask::rwx,other::r-x";
        assert_eq!(
            hex(&to_xattr(default, Kind::Default).unwrap().unwrap()),
            "0200000001000700ffffffff02000700e803000004000500ffffffff\
             10000700ffffffff20000500ffffffff"
        );
        // GNU tar's newline-separated form reads the same.
        let gnu = b"user::rwx\nuser:1001:r-x\ngroup::r-x\nmask::r-x\nother::r-x\n";
        assert_eq!(
            to_xattr(gnu, Kind::Access).unwrap(),
            to_xattr(dir, Kind::Access).unwrap()
        );
    }

    #[test]
    fn acls_the_mode_already_says_leave_no_xattr() {
        let minimal = b"user::rw-,group::r--,other::r--";
        assert_eq!(to_xattr(minimal, Kind::Access).unwrap(), None);
        assert_eq!(to_xattr(b"", Kind::Access).unwrap(), None);
        assert_eq!(to_xattr(b"", Kind::Default).unwrap(), None);
        // A minimal default ACL is kept: it is not the directory's mode.
        assert_eq!(
            to_xattr(minimal, Kind::Default).unwrap().map(|v| v.len()),
            Some(4 + 3 * 8)
        );
    }

    #[test]
    fn names_without_ids_and_bad_acls() {
        assert!(matches!(
            to_xattr(b"user::rw-,user:alice:r--,group::r--,mask::r--,other::r--", Kind::Access),
            Err(AclError::NameOnly(e)) if e == "user:alice:r--"
        ));
        let bad = [
            &b"user::rw-,group::r--"[..],
            b"user::rw-,user::r--,group::r--,other::r--",
            b"user::rw-,user:5:r--,group::r--,other::r--",
            b"user::rw-,user:5:r--,user:5:rw-,group::r--,mask::rw-,other::r--",
            b"user::rw-,group::r--,mask::r--,mask::r--,other::r--",
            b"user::rw-,user:4294967295:r--,group::r--,mask::r--,other::r--",
            b"user::rw-,user:x:r--:99999999999,group::r--,mask::r--,other::r--",
            b"user::rw-,user:x:r--:-1,group::r--,mask::r--,other::r--",
            b"user::rw-,group::r--,other::rwxx",
            b"user::rw-,group::r--,other::wr-",
            b"user::rw-:0,group::r--,other::r--",
            b"default:user::rw-,group::r--,other::r--",
            b"everyone@:rwx:allow,user::rw-,group::r--,other::r--",
        ];
        for text in bad {
            let res = to_xattr(text, Kind::Access);
            assert!(
                matches!(res, Err(AclError::Bad(_))),
                "{}: {res:?}",
                String::from_utf8_lossy(text)
            );
        }
        // Short forms libarchive also reads.
        assert!(
            to_xattr(b"u::rw-,u:7:r--,g::r--,m:r--,o:---", Kind::Access)
                .unwrap()
                .is_some()
        );
    }
}
