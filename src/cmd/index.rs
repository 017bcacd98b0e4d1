//! `rustimage index`: one OCI image index over images built for several
//! machines (say qemux86-64 and qemuarm64), the platform of each taken from
//! its config. Written as an archive or layout, or pushed after its
//! manifests.

use std::collections::BTreeSet;

use super::cli::{IndexArgs, UsageError};
use super::{Error, write_outputs};
use crate::oci::{self, Descriptor, ImageSet, Platform};
use crate::progress::Progress;

pub fn run(args: &IndexArgs) -> Result<(), Error> {
    let target = args.outputs.check()?;
    let tags = args.tags()?;
    let annotations = args.annotations()?;
    let mut sets = Vec::new();
    let mut images = Vec::new();
    let mut platforms = BTreeSet::new();
    for path in &args.images {
        let set = oci::read(path)?;
        let (desc, platform) = one_image(&set).map_err(|what| Error::path(path, what, None))?;
        if !platforms.insert(platform.to_string()) {
            return Err(UsageError(format!(
                "two images for {platform}: an index holds one per platform"
            ))
            .into());
        }
        images.push((desc, platform));
        sets.push(set);
    }
    let set = crate::image::platform_index(&images, &sets, &annotations, &tags);
    let progress = Progress::new(args.quiet, args.json);
    write_outputs(&set, &args.outputs, target.as_ref(), 0, &progress)?;
    if args.json {
        let digest = set.entries.first().map(|e| e.digest.to_string());
        let platforms: Vec<serde_json::Value> = images
            .iter()
            .map(|(d, p)| {
                serde_json::json!({
                    "digest": d.digest,
                    "os": p.os,
                    "architecture": p.architecture,
                    "variant": p.variant,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"digest": digest, "manifests": platforms})
        );
    }
    Ok(())
}

/// The single image of an input, with the platform its config names.
fn one_image(set: &ImageSet) -> Result<(Descriptor, Platform), String> {
    if set
        .entries
        .iter()
        .any(|e| oci::media::is_index(&e.media_type))
    {
        return Err("already holds an index; give the single-platform images".into());
    }
    let images = set.images().map_err(|e| e.to_string())?;
    let [one] = images.as_slice() else {
        return Err(format!(
            "holds {} images; give archives of one image each",
            images.len()
        ));
    };
    let mut platform = one.config.platform();
    if platform.os.is_empty() {
        platform.os = "linux".into();
    }
    Ok((one.descriptor.clone(), platform))
}
