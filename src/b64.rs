//! Byte strings (paths may be any bytes but NUL) as base64 in JSON, for
//! `#[serde(with = "crate::b64")]`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use serde::{Deserialize, Deserializer, Serializer, de::Error};

pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&STANDARD_NO_PAD.encode(bytes))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = String::deserialize(d)?;
    STANDARD_NO_PAD.decode(s).map_err(D::Error::custom)
}

/// The same for fixed-size digests.
pub mod array {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        super::serialize(bytes, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let v = super::deserialize(d)?;
        v.try_into()
            .map_err(|_| D::Error::custom("a digest is 32 bytes"))
    }
}
