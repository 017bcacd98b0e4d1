//! The vocabulary every reader and writer of images shares: digests, media
//! types, descriptors and documents, blobs and image sets, image names.
//! Nothing here knows where an image came from or where it goes.
//!
//! - [`Digest`]: parsed once where it is read, one spelling everywhere.
//! - [`docs`]: descriptors, manifests, indexes, the image config; written
//!   as canonical JSON, read leniently but with every digest and size
//!   checked.
//! - [`Blob`]: digest, size, media type and where the bytes are.
//! - [`ImageSet`]: the blobs and `index.json` entries of one layout, and
//!   the referrers of its images; built by `image`, read back by [`read`],
//!   written by every sink.
//! - [`referrer`]: artifacts attached to an image (SBOMs) and where they
//!   live.

mod blob;
mod digest;
pub mod docs;
pub mod media;
pub mod read;
pub mod reference;
pub mod referrer;
mod set;

pub use blob::{Blob, Source};
pub use digest::{Digest, DigestError, hex};
pub use docs::{Descriptor, ImageConfig, Index, Manifest, Platform, canonical};
pub use read::{LayoutError, read};
pub use reference::{Reference, Tag};
pub use set::{Image, ImageSet, SetError, oci_layout};
