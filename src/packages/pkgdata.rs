//! pkgdata: what BitBake recorded of each package it split.
//!
//! `tmp/pkgdata/<MACHINE>/runtime/<pkg>` (named by the package's name before
//! any renaming) holds lines `VAR:<pkg>: value` for per-package values and
//! `VAR: value` for the recipe's (OE's packagedata.py, `write_if_exists`),
//! values escaped with Python's `unicode_escape`. Used here: `PN` (the
//! recipe), `PKG` (the final name), `PKGE`, `PKGV`, `PKGR`, `LICENSE`,
//! `RDEPENDS` and `FILES_INFO`,
//! a JSON object of path to size built from `os.lstat` of regular files and
//! symlinks (no directories, no owners, no modes, no digests).
//! `runtime-reverse/<final name>` is a symlink to the runtime file.
//!
//! JSON escapes non-ASCII as `\uXXXX`; names that are not UTF-8 come out of
//! Python as lone surrogates `\udc80`..`\udcff` (surrogateescape), which
//! stand for the raw bytes 0x80..0xff: a small parser below gives the exact
//! path bytes back, where a general JSON library would refuse them.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::{FileKind, FileList, Format, Package, PackageError, canonical, invalid};

/// Largest runtime file we read. FILES_INFO of the biggest packages runs
/// to a few MiB (kernel-devsrc, about 80 000 files, some 7 MiB); the limit
/// keeps a hostile file from costing more than a few hundred MiB.
const MAX_FILE: u64 = 64 << 20;

/// The variables read; values of the others are skipped unparsed.
const USED: [&str; 8] = [
    "PN",
    "LICENSE",
    "PKG",
    "PKGE",
    "PKGV",
    "PKGR",
    "FILES_INFO",
    "RDEPENDS",
];

/// Reads `runtime/<pkg>`: version `[PKGE:]PKGV-PKGR` (the epoch only when
/// non-zero, as package_ipk and package_deb write it); every FILES_INFO entry
/// is a [`FileKind::File`] with its size and no digest (symlinks included:
/// pkgdata does not tell them apart).
pub fn read_pkgdata_runtime(path: &Path) -> Result<Package, PackageError> {
    let at = |e: io::Error| PackageError::new(path, e);
    // Values are keyed by the runtime file's name, also when it is read
    // through a runtime-reverse/ link.
    let real = std::fs::canonicalize(path).map_err(at)?;
    let pkg = real
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| PackageError::new(path, "the runtime file name is not UTF-8"))?;
    let file = File::open(path).map_err(at)?;
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut reader = BufReader::new(file.take(MAX_FILE + 1));
    let mut line = Vec::new();
    let mut total = 0u64;
    for number in 1.. {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(at)? == 0 {
            break;
        }
        total += line.len() as u64;
        if total > MAX_FILE {
            return Err(PackageError::new(
                path,
                "the runtime file is larger than 64 MiB: not pkgdata as BitBake writes it",
            ));
        }
        let text = std::str::from_utf8(&line)
            .map_err(|_| PackageError::new(path, format!("line {number}: not UTF-8")))?;
        // OE splits at the first ':' followed by white space.
        let Some((key, value)) = split_var(text.trim_end_matches(['\n', '\r'])) else {
            continue;
        };
        let var = key
            .strip_suffix(pkg)
            .and_then(|k| k.strip_suffix(':'))
            .unwrap_or(key);
        if !USED.contains(&var) {
            continue;
        }
        let value =
            unescape(value).map_err(|e| PackageError::new(path, format!("line {number}: {e}")))?;
        vars.push((key.to_string(), value));
    }
    // The line buffer may be as big as FILES_INFO: free it before parsing.
    drop(line);
    // A package's own `VAR:<pkg>` wins over the recipe-wide `VAR`.
    let get = |var: &str| {
        let own = format!("{var}:{pkg}");
        vars.iter()
            .find(|(k, _)| *k == own)
            .or_else(|| vars.iter().find(|(k, _)| k == var))
            .map(|(_, v)| v.as_str())
    };
    let need =
        |var: &str| get(var).ok_or_else(|| PackageError::new(path, format!("no {var} line")));
    let version = format!("{}-{}", need("PKGV")?, need("PKGR")?);
    let version = match get("PKGE").and_then(|e| e.trim().parse::<u64>().ok()) {
        Some(e) if e > 0 => format!("{e}:{version}"),
        _ => version,
    };
    let mut files = FileList::default();
    if let Some(json) = get("FILES_INFO") {
        parse_files_info(json, &mut |raw, size| {
            files.push(canonical(&raw)?, FileKind::File { size, sha256: None });
            Ok(())
        })
        .map_err(|e| PackageError::new(path, format!("FILES_INFO: {e}")))?;
    }
    // RDEPENDS name packages before OE's renaming (glibc, not libc6):
    // map each through its own runtime file, as the manifest names them.
    let runtime_dir = path.parent();
    let depends = super::dependency_names(get("RDEPENDS").unwrap_or_default())
        .into_iter()
        .map(|dep| {
            runtime_dir
                .and_then(|d| renamed(&d.join(&dep), &dep))
                .unwrap_or(dep)
        })
        .collect();
    Ok(Package {
        name: get("PKG").unwrap_or(pkg).to_string(),
        version,
        arch: String::new(),
        recipe: get("PN").map(str::to_string),
        license: get("LICENSE").map(str::to_string),
        depends,
        files: files.files,
        source: path.to_path_buf(),
        format: Format::Pkgdata,
    })
}

/// The package's `LICENSE` from its runtime file (its own `LICENSE:<pkg>`
/// over the recipe's), for packages whose feed does not say (debs). Only
/// that line is read, not FILES_INFO; `None` when the file can't be read
/// or has no license.
pub fn pkgdata_license(runtime: &Path) -> Option<String> {
    let real = std::fs::canonicalize(runtime).ok()?;
    let pkg = real.file_name()?.to_str()?;
    let own = format!("LICENSE:{pkg}");
    let reader = BufReader::new(File::open(runtime).ok()?.take(MAX_FILE));
    let mut shared = None;
    for line in reader.split(b'\n') {
        let line = line.ok()?;
        if !line.starts_with(b"LICENSE") {
            continue;
        }
        let Some((key, value)) = std::str::from_utf8(&line).ok().and_then(split_var) else {
            continue;
        };
        let value = unescape(value.trim_end_matches('\r')).ok()?;
        if key == own {
            return Some(value);
        }
        if key == "LICENSE" {
            shared = Some(value);
        }
    }
    shared
}

/// The final name (`PKG:<pkg>: name`) a runtime file gives its package.
fn renamed(runtime: &Path, pkg: &str) -> Option<String> {
    // A name from the file's text must not lead out of runtime/.
    if pkg.is_empty() || pkg == "." || pkg == ".." || pkg.contains(['/', '\0']) {
        return None;
    }
    let text = fs::read_to_string(runtime).ok()?;
    let key = format!("PKG:{pkg}: ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map(|v| v.trim().to_string())
}

/// The runtime file for a final package name: `runtime-reverse/<name>`
/// (a symlink to `../runtime/<pkg>`), else `runtime/<name>` for a package
/// that was never renamed.
pub fn find_pkgdata(pkgdata_dir: &Path, name: &str) -> Option<PathBuf> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return None;
    }
    let reverse = pkgdata_dir.join("runtime-reverse").join(name);
    if let Ok(target) = std::fs::read_link(&reverse) {
        // Only the name matters: OE links into runtime/ and nowhere else.
        let runtime = pkgdata_dir.join("runtime").join(target.file_name()?);
        return runtime.is_file().then_some(runtime);
    }
    if reverse.is_file() {
        return Some(reverse);
    }
    let direct = pkgdata_dir.join("runtime").join(name);
    direct.is_file().then_some(direct)
}

fn split_var(line: &str) -> Option<(&str, &str)> {
    let bytes = line.as_bytes();
    let i = (1..bytes.len()).find(|&i| bytes[i - 1] == b':' && bytes[i].is_ascii_whitespace())?;
    Some((&line[..i - 1], line[i..].trim_start()))
}

/// Undoes Python's `unicode_escape` encoding (what OE writes values with).
fn unescape(s: &str) -> io::Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = chars.next() else {
            return Err(invalid("value ends with a lone backslash"));
        };
        let mut hex = |n: usize| -> io::Result<char> {
            let digits: String = chars.by_ref().take(n).collect();
            u32::from_str_radix(&digits, 16)
                .ok()
                .filter(|_| digits.len() == n)
                .and_then(char::from_u32)
                .ok_or_else(|| invalid(format!("bad escape \\{e}{digits}")))
        };
        match e {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'v' => out.push('\x0b'),
            '\\' | '\'' | '"' => out.push(e),
            '\n' => {}
            'x' => out.push(hex(2)?),
            'u' => out.push(hex(4)?),
            'U' => out.push(hex(8)?),
            '0'..='7' => {
                // Up to three octal digits.
                let mut v = e as u32 - '0' as u32;
                for _ in 0..2 {
                    match chars.clone().next() {
                        Some(d @ '0'..='7') => {
                            v = v * 8 + (d as u32 - '0' as u32);
                            chars.next();
                        }
                        _ => break,
                    }
                }
                out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
            }
            // Python keeps unknown escapes as they are.
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    Ok(out)
}

/// Parses FILES_INFO as json.dumps writes it: `{"path": size, ...}`,
/// handing each entry to `out` as it is read.
fn parse_files_info(
    json: &str,
    out: &mut dyn FnMut(Vec<u8>, u64) -> io::Result<()>,
) -> io::Result<()> {
    let mut p = Json {
        s: json.as_bytes(),
        i: 0,
    };
    p.expect(b'{')?;
    if p.peek() == Some(b'}') {
        p.i += 1;
    } else {
        loop {
            let key = p.string()?;
            p.expect(b':')?;
            let value = p.number()?;
            out(key, value)?;
            match p.next()? {
                b',' => {}
                b'}' => break,
                c => {
                    return Err(invalid(format!(
                        "expected ',' or '}}' but found {:?}",
                        c as char
                    )));
                }
            }
        }
    }
    if p.peek().is_some() {
        return Err(invalid("text after the JSON object"));
    }
    Ok(())
}

struct Json<'a> {
    s: &'a [u8],
    i: usize,
}

impl Json<'_> {
    fn peek(&mut self) -> Option<u8> {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> io::Result<u8> {
        let c = self.peek().ok_or_else(|| invalid("JSON ends early"))?;
        self.i += 1;
        Ok(c)
    }

    fn expect(&mut self, want: u8) -> io::Result<()> {
        match self.next()? {
            c if c == want => Ok(()),
            c => Err(invalid(format!(
                "expected {:?} but found {:?}",
                want as char, c as char
            ))),
        }
    }

    fn number(&mut self) -> io::Result<u64> {
        self.peek();
        let start = self.i;
        while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| invalid("a size is not a non-negative integer"))
    }

    /// A string as bytes; `\udc80`..`\udcff` alone are Python's raw bytes.
    fn string(&mut self) -> io::Result<Vec<u8>> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            let c = *self
                .s
                .get(self.i)
                .ok_or_else(|| invalid("unterminated string"))?;
            self.i += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {
                    let e = *self
                        .s
                        .get(self.i)
                        .ok_or_else(|| invalid("unterminated string"))?;
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => self.unicode(&mut out)?,
                        _ => return Err(invalid(format!("bad escape \\{}", e as char))),
                    }
                }
                _ => out.push(c),
            }
        }
    }

    fn unicode(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let hi = self.hex4()?;
        let c = match hi {
            0xdc80..=0xdcff => {
                out.push((hi - 0xdc00) as u8);
                return Ok(());
            }
            0xd800..=0xdbff => {
                let lo = match self.s.get(self.i..self.i + 2) {
                    Some(b"\\u") => {
                        self.i += 2;
                        self.hex4()?
                    }
                    _ => 0,
                };
                if !(0xdc00..=0xdfff).contains(&lo) {
                    return Err(invalid("unpaired surrogate in a string"));
                }
                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
            }
            _ => hi,
        };
        let c = char::from_u32(c).ok_or_else(|| invalid("unpaired surrogate in a string"))?;
        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        Ok(())
    }

    fn hex4(&mut self) -> io::Result<u32> {
        let digits = self
            .s
            .get(self.i..self.i + 4)
            .ok_or_else(|| invalid("short \\u escape"))?;
        self.i += 4;
        std::str::from_utf8(digits)
            .ok()
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .ok_or_else(|| invalid("bad \\u escape"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(dir: &Path, name: &str, text: &str) -> PathBuf {
        let runtime = dir.join("runtime");
        std::fs::create_dir_all(&runtime).unwrap();
        let path = runtime.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reads_runtime_files_as_oe_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        // What packagedata.py writes for glibc's main package, renamed by
        // debian.bbclass; the FILES_INFO JSON escaped once more.
        let text = concat!(
            "PN: glibc\n",
            "PV: 2.39+git\n",
            "PKGV: 2.39+git\n",
            "PKGR: r0\n",
            "PKGE: 0\n",
            "LICENSE: GPL-2.0-only & LGPL-2.1-or-later\n",
            "DESCRIPTION: The GNU C library\\nwith a newline\n",
            "RDEPENDS:glibc: ldconfig\n",
            "PKG:glibc: libc6\n",
            "FILES_INFO:glibc: {\"/etc/ld.so.conf\": 27, \"/lib/ld-linux-x86-64.so.2\": 231936,",
            " \"/usr/share/caf\\\\u00e9\": 3, \"/usr/share/raw\\\\udcff\": 1, \"/usr/share/emoji\\\\ud83d\\\\ude00\": 2,",
            " \"/usr/share/q\\\\\"uote\": 0}\n",
            "pkg_postinst:glibc: #!/bin/sh\\nset -e\\nldconfig\\n\n",
            "PKGSIZE:glibc: 232000\n",
        );
        let path = runtime(dir.path(), "glibc", text);
        let p = read_pkgdata_runtime(&path).unwrap();
        assert_eq!(p.name, "libc6");
        assert_eq!(p.version, "2.39+git-r0", "epoch 0 is not written");
        assert_eq!(p.recipe.as_deref(), Some("glibc"));
        assert_eq!(
            p.license.as_deref(),
            Some("GPL-2.0-only & LGPL-2.1-or-later")
        );
        assert_eq!(p.arch, "");
        assert_eq!(p.format, Format::Pkgdata);
        let got: Vec<(&[u8], FileKind)> = p
            .files
            .iter()
            .map(|f| (f.path.as_slice(), f.kind.clone()))
            .collect();
        let file = |size| FileKind::File { size, sha256: None };
        let want: Vec<(&[u8], FileKind)> = vec![
            (b"etc/ld.so.conf", file(27)),
            (b"lib/ld-linux-x86-64.so.2", file(231936)),
            ("usr/share/café".as_bytes(), file(3)),
            (b"usr/share/raw\xff", file(1)),
            ("usr/share/emoji😀".as_bytes(), file(2)),
            (b"usr/share/q\"uote", file(0)),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn own_values_win_and_epochs_show() {
        let dir = tempfile::tempdir().unwrap();
        let text =
            "PN: foo\nPKGV: 1.0\nPKGV:foo-dev: 1.1\nPKGR: r2\nPKGE: 3\nFILES_INFO:foo-dev: {}\n";
        let p = read_pkgdata_runtime(&runtime(dir.path(), "foo-dev", text)).unwrap();
        assert_eq!(
            (p.name.as_str(), p.version.as_str()),
            ("foo-dev", "3:1.1-r2")
        );
        assert!(p.files.is_empty());
    }

    #[test]
    fn license_alone_is_read_own_first() {
        let dir = tempfile::tempdir().unwrap();
        let text =
            "PN: foo\nPKGV: 1\nPKGR: r0\nLICENSE: MIT & BSD-3-Clause\nLICENSE:foo-doc: CC-BY-4.0\n";
        let doc = runtime(dir.path(), "foo-doc", text);
        assert_eq!(pkgdata_license(&doc).as_deref(), Some("CC-BY-4.0"));
        let main = runtime(dir.path(), "foo", text);
        assert_eq!(
            pkgdata_license(&main).as_deref(),
            Some("MIT & BSD-3-Clause")
        );
        assert_eq!(
            read_pkgdata_runtime(&doc).unwrap().license.as_deref(),
            Some("CC-BY-4.0")
        );
        let none = runtime(dir.path(), "bar", "PN: bar\n");
        assert_eq!(pkgdata_license(&none), None);
        assert_eq!(pkgdata_license(&dir.path().join("missing")), None);
    }

    #[test]
    fn bad_runtime_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_pkgdata_runtime(&runtime(dir.path(), "a", "PN: a\nPKGR: r0\n")).unwrap_err();
        assert!(e.reason.contains("PKGV"), "{e}");
        for bad in [
            "{\"/a\": 1",
            "{\"/a\": -1}",
            "{\"/a\" 1}",
            "{\"/a\": 1} x",
            "{\"/\\ud800\": 1}",
            "{\"/../etc\": 1}",
            "[1]",
        ] {
            let text = format!("PKGV: 1\nPKGR: r0\nFILES_INFO: {bad}\n");
            let e = read_pkgdata_runtime(&runtime(dir.path(), "a", &text)).unwrap_err();
            assert!(e.to_string().contains("runtime/a"), "{e}");
        }
        let e = read_pkgdata_runtime(&runtime(dir.path(), "a", "PKGV: \\x4\n")).unwrap_err();
        assert!(e.reason.contains("line 1"), "{e}");
        assert!(read_pkgdata_runtime(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn oversized_runtime_files_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("PKGV: 1\nPKGR: r0\nFILES_INFO: {\"/");
        text.push_str(&"a".repeat(MAX_FILE as usize));
        text.push_str("\": 1}\n");
        let e = read_pkgdata_runtime(&runtime(dir.path(), "big", &text)).unwrap_err();
        assert!(e.to_string().contains("runtime/big"), "{e}");
        assert!(e.reason.contains("larger than 64 MiB"), "{e}");
    }

    #[test]
    fn unescapes_like_python() {
        assert_eq!(
            unescape(r"a\\b\tc\x41\u00e9\U0001F600\101\q").unwrap(),
            "a\\b\tcAé😀A\\q"
        );
        assert!(unescape("x\\").is_err());
        assert!(unescape(r"\u12").is_err());
    }

    #[test]
    fn finds_runtime_files_by_final_name() {
        let dir = tempfile::tempdir().unwrap();
        let glibc = runtime(
            dir.path(),
            "glibc",
            "PKGV:glibc: 1\nPKGR: r0\nPKG:glibc: libc6\n",
        );
        let busybox = runtime(dir.path(), "busybox", "PKGV: 1\nPKGR: r0\n");
        let reverse = dir.path().join("runtime-reverse");
        std::fs::create_dir(&reverse).unwrap();
        std::os::unix::fs::symlink("../runtime/glibc", reverse.join("libc6")).unwrap();
        assert_eq!(find_pkgdata(dir.path(), "libc6"), Some(glibc));
        let via_link = read_pkgdata_runtime(&reverse.join("libc6")).unwrap();
        assert_eq!(
            (via_link.name.as_str(), via_link.version.as_str()),
            ("libc6", "1-r0")
        );
        assert_eq!(find_pkgdata(dir.path(), "busybox"), Some(busybox));
        assert_eq!(find_pkgdata(dir.path(), "nothing"), None);
        assert_eq!(find_pkgdata(dir.path(), "../runtime/glibc"), None);
        assert_eq!(find_pkgdata(dir.path(), ".."), None);
    }
}
