//! `rustimage inspect`: what an image holds, for people (or JSON).

use indicatif::HumanBytes;

use super::Error;
use super::cli::InspectArgs;
use crate::oci::{self, Image};

pub fn run(args: &InspectArgs) -> Result<(), Error> {
    let set = oci::read(&args.image)?;
    let images = set.images()?;
    if args.json {
        // The documents as they are, fields rustimage does not know included.
        let mut docs = Vec::new();
        for i in &images {
            let manifest: serde_json::Value = set.doc(&i.descriptor.digest)?;
            let config: serde_json::Value = set.doc(&i.manifest.config.digest)?;
            docs.push(serde_json::json!({
                "names": i.names,
                "digest": i.descriptor.digest,
                "manifest": manifest,
                "config": config,
            }));
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&docs).unwrap_or_default()
        );
        return Ok(());
    }
    for (i, image) in images.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print!("{}", describe(image));
    }
    Ok(())
}

fn describe(image: &Image) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<12}{v}\n"));
    let c = &image.config;
    line("Manifest", image.descriptor.digest.to_string());
    if !image.names.is_empty() {
        line("Names", image.names.join(", "));
    }
    line("Platform", c.platform().to_string());
    if let Some(t) = &c.created {
        line("Created", t.clone());
    }
    if let Some(a) = &c.author {
        line("Author", a.clone());
    }
    let run = c.config.clone().unwrap_or_default();
    let json = |v: &Option<Vec<String>>| v.as_ref().map(|v| serde_json::json!(v).to_string());
    for (label, value) in [
        ("Entrypoint", json(&run.entrypoint)),
        ("Cmd", json(&run.cmd)),
        ("WorkingDir", run.working_dir.clone()),
        ("User", run.user.clone()),
        ("StopSignal", run.stop_signal.clone()),
    ] {
        if let Some(v) = value {
            line(label, v);
        }
    }
    for e in run.env.iter().flatten() {
        line("Env", e.clone());
    }
    for (key, map) in [
        ("ExposedPorts", &run.exposed_ports),
        ("Volumes", &run.volumes),
    ] {
        if let Some(m) = map {
            line(key, m.keys().cloned().collect::<Vec<_>>().join(", "));
        }
    }
    for (k, v) in run.labels.iter().flatten() {
        line("Label", format!("{k}={v}"));
    }
    let layers = &image.manifest.layers;
    let total: u64 = layers.iter().map(|l| l.size).sum();
    line(
        "Layers",
        format!("{} ({} compressed)", layers.len(), HumanBytes(total)),
    );
    // History entries that made no layer don't line up with layers.
    let history: Vec<_> = c
        .history
        .iter()
        .filter(|h| h.empty_layer != Some(true))
        .collect();
    for (i, layer) in layers.iter().enumerate() {
        let by = history
            .get(i)
            .and_then(|h| h.created_by.as_deref())
            .unwrap_or_default();
        out.push_str(&format!(
            "  {:>3}  {}  {:>10}  {by}\n",
            i + 1,
            layer.digest,
            HumanBytes(layer.size).to_string()
        ));
        if let Some(d) = c.rootfs.diff_ids.get(i) {
            out.push_str(&format!("       diff_id {d}\n"));
        }
        if let Some(comment) = history.get(i).and_then(|h| h.comment.as_deref()) {
            out.push_str(&format!("       {comment}\n"));
        }
    }
    out
}
