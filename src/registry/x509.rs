//! The two facts about a certificate that webpki does not hand out and the
//! pinned-certificate check needs: its validity period and its extended
//! key usages. A strict DER reader of just the path to them (RFC 5280
//! 4.1): anything unexpected is an error, never a guess.

/// `id-kp-serverAuth` (1.3.6.1.5.5.7.3.1), DER contents of the OID.
pub const SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
/// `anyExtendedKeyUsage` (2.5.29.37.0).
pub const ANY_EKU: &[u8] = &[0x55, 0x1d, 0x25, 0x00];
/// `id-ce-extKeyUsage` (2.5.29.37).
const EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION: u8 = 0xa0;
const ISSUER_UID: u8 = 0x81;
const SUBJECT_UID: u8 = 0x82;
const EXTENSIONS: u8 = 0xa3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// The extended key usage OIDs (DER contents), if the extension is there.
    pub ext_key_usage: Option<Vec<Vec<u8>>>,
}

/// Reads the validity and extended key usages of a DER certificate.
pub fn facts(der: &[u8]) -> Result<Facts, String> {
    let mut cert = DerReader(der).inner(SEQUENCE)?;
    let mut tbs = cert.inner(SEQUENCE)?;
    tbs.optional(VERSION)?;
    tbs.skip(INTEGER)?; // serial
    tbs.skip(SEQUENCE)?; // signature algorithm
    tbs.skip(SEQUENCE)?; // issuer
    let mut validity = tbs.inner(SEQUENCE)?;
    let not_before = time(&mut validity)?;
    let not_after = time(&mut validity)?;
    tbs.skip(SEQUENCE)?; // subject
    tbs.skip(SEQUENCE)?; // subjectPublicKeyInfo
    tbs.optional(ISSUER_UID)?;
    tbs.optional(SUBJECT_UID)?;
    let mut ext_key_usage = None;
    if let Some(exts) = tbs.optional(EXTENSIONS)? {
        let mut list = DerReader(exts).inner(SEQUENCE)?;
        while !list.0.is_empty() {
            let mut ext = list.inner(SEQUENCE)?;
            let id = ext.next(OID)?;
            ext.optional(BOOLEAN)?; // critical
            let value = ext.next(OCTET_STRING)?;
            if id == EXT_KEY_USAGE {
                let mut oids = DerReader(value).inner(SEQUENCE)?;
                let mut found = Vec::new();
                while !oids.0.is_empty() {
                    found.push(oids.next(OID)?.to_vec());
                }
                ext_key_usage = Some(found);
            }
        }
    }
    Ok(Facts {
        not_before,
        not_after,
        ext_key_usage,
    })
}

struct DerReader<'a>(&'a [u8]);

impl<'a> DerReader<'a> {
    /// The next element's tag and contents.
    fn element(&mut self) -> Result<(u8, &'a [u8]), String> {
        let bad = || "truncated or malformed DER".to_string();
        let (&tag, rest) = self.0.split_first().ok_or_else(bad)?;
        let (&first, mut rest) = rest.split_first().ok_or_else(bad)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err(bad());
            }
            let mut len = 0usize;
            for &b in &rest[..n] {
                len = (len << 8) | usize::from(b);
            }
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return Err(bad());
        }
        let (contents, after) = rest.split_at(len);
        self.0 = after;
        Ok((tag, contents))
    }

    fn next(&mut self, tag: u8) -> Result<&'a [u8], String> {
        match self.element()? {
            (t, contents) if t == tag => Ok(contents),
            (t, _) => Err(format!("unexpected DER tag {t:#04x}, wanted {tag:#04x}")),
        }
    }

    fn inner(&mut self, tag: u8) -> Result<DerReader<'a>, String> {
        self.next(tag).map(DerReader)
    }

    fn skip(&mut self, tag: u8) -> Result<(), String> {
        self.next(tag).map(|_| ())
    }

    /// The contents of the next element if it has `tag`.
    fn optional(&mut self, tag: u8) -> Result<Option<&'a [u8]>, String> {
        if self.0.first() == Some(&tag) {
            self.next(tag).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// A UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`) as Unix seconds.
fn time(r: &mut DerReader<'_>) -> Result<i64, String> {
    let (tag, text) = r.element()?;
    let digits = |s: &[u8]| -> Result<i32, String> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return Err("malformed certificate time".into());
        }
        Ok(s.iter().fold(0, |n, d| n * 10 + i32::from(d - b'0')))
    };
    let (year, rest) = match (tag, text.len()) {
        (UTC_TIME, 13) => {
            let yy = digits(&text[..2])?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &text[2..])
        }
        (GENERALIZED_TIME, 15) => (digits(&text[..4])?, &text[4..]),
        _ => return Err("unsupported certificate time format".into()),
    };
    if rest.last() != Some(&b'Z') {
        return Err("certificate time is not in UTC".into());
    }
    let field = |i: usize| digits(&rest[i..i + 2]);
    let month = time::Month::try_from(u8::try_from(field(0)?).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let date = time::Date::from_calendar_date(
        year,
        month,
        u8::try_from(field(2)?).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let hms =
        |i: usize| -> Result<u8, String> { u8::try_from(field(i)?).map_err(|e| e.to_string()) };
    let at = date
        .with_hms(hms(4)?, hms(6)?, hms(8)?)
        .map_err(|e| e.to_string())?;
    Ok(at.assume_utc().unix_timestamp())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256
    /// -nodes -days 3650 -subj /CN=localhost -addext "subjectAltName =
    /// DNS:localhost" -addext "extendedKeyUsage = serverAuth"` (CA:TRUE, as
    /// OpenSSL makes self-signed certificates); the key was thrown away.
    pub(crate) const SELF_SIGNED: &str = "
MIIBqDCCAU6gAwIBAgIUFOKW0Ejdse4soSt6VH+QFLuoTvIwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MB4XDTI2MTEzMDIwMzkwNVoXDTM2MTEyNzIw
MzkwNVowFDESMBAGA1UEAwwJbG9jYWxob3N0MFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAE45LD9+0bQTTOKpbkTk4f6E9o9484dlcdFKanktESrWwa17GUhPNi4a37
5++e4SDlhlMAPVbShzJQyfw5Y9JaNaN+MHwwHQYDVR0OBBYEFGbniqSO5CKdkUgA
laEMRkO4/7W5MB8GA1UdIwQYMBaAFGbniqSO5CKdkUgAlaEMRkO4/7W5MA8GA1Ud
EwEB/wQFMAMBAf8wFAYDVR0RBA0wC4IJbG9jYWxob3N0MBMGA1UdJQQMMAoGCCsG
AQUFBwMBMAoGCCqGSM49BAMCA0gAMEUCIBc9iyTcQrXzA4nuciI3QFHf7rIJLRw+
SC+E3bWJVdz0AiEAp+95TqwlowOphKXtEmt05LgQQtu8mCCR2gfPvggbfv4=";

    /// The same with `-days 30 -subj /CN=x` and no extensions asked for.
    const NO_EKU: &str = "
MIIBbDCCAROgAwIBAgIUPxPOrKj0aP3wduu7AQH7KGKr1ZYwCgYIKoZIzj0EAwIw
DDEKMAgGA1UEAwwBeDAeFw0yNjExMzAyMDM5MDVaFw0yNjEyMzAyMDM5MDVaMAwx
CjAIBgNVBAMMAXgwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATYbt7U9DkI930M
cUwJ9XqkmHgGGl9lR//WxKsx85bbIbjVrkFIzvM5dcAbxS0COFdAq+ka2IeQ/rMw
VgoEN5MNo1MwUTAdBgNVHQ4EFgQUzEVfjwfbmI8pB3q1EDvHieL4wSowHwYDVR0j
BBgwFoAUzEVfjwfbmI8pB3q1EDvHieL4wSowDwYDVR0TAQH/BAUwAwEB/zAKBggq
hkjOPQQDAgNHADBEAiBDBb/LIDhL6G2A5h6yxz688/3MqajgUc0IYIpw51y3pAIg
bNroX1TQc8aOqQeXuE1/KoRKwL1xvn0EnBoqwMOzDzU=";

    #[test]
    fn validity_and_key_usage_as_openssl_shows_them() {
        // notBefore=2026-11-30 20:39:05Z notAfter=2036-11-27 20:39:05Z
        let f = facts(&der(SELF_SIGNED)).unwrap();
        assert_eq!((f.not_before, f.not_after), (1_796_071_145, 2_111_431_145));
        assert_eq!(f.ext_key_usage, Some(vec![SERVER_AUTH.to_vec()]));
        let f = facts(&der(NO_EKU)).unwrap();
        assert_eq!((f.not_before, f.not_after), (1_796_071_145, 1_798_663_145));
        assert_eq!(f.ext_key_usage, None);
    }

    pub(crate) fn der(b64: &str) -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(b64.split_whitespace().collect::<String>())
            .unwrap_or_default()
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        assert!(facts(&[]).is_err());
        assert!(facts(&[0x30, 0x82, 0xff]).is_err());
        assert!(facts(&[0x30, 0x00]).is_err());
        let d = der(SELF_SIGNED);
        for n in 0..d.len() {
            assert!(facts(&d[..n]).is_err());
        }
    }

    #[test]
    fn times_in_both_encodings() {
        let mut r = DerReader(b"\x17\x0d240102030405Z");
        assert_eq!(time(&mut r), Ok(1_704_164_645));
        let mut r = DerReader(b"\x18\x0f20240102030405Z");
        assert_eq!(time(&mut r), Ok(1_704_164_645));
        let mut r = DerReader(b"\x17\x0d491231235959Z");
        assert_eq!(time(&mut r), Ok(2_524_607_999));
        let mut r = DerReader(b"\x17\x0d500101000000Z");
        assert_eq!(time(&mut r), Ok(-631_152_000));
        for bad in [
            &b"\x17\x0d241302030405Z"[..],
            b"\x17\x0d2401020304050",
            b"\x18\x0d240102030405Z",
            b"\x17\x0d24010203040aZ",
        ] {
            assert!(time(&mut DerReader(bad)).is_err(), "{bad:?}");
        }
    }
}
