//! `rustimage inspect`: what an image holds, for people (or JSON).

use indicatif::HumanBytes;
use serde_json::Value;

use crate::cli::InspectArgs;
use crate::layout::{self, Layout};

pub fn run(args: &InspectArgs) -> Result<(), crate::error::Error> {
    let layout = Layout::open(&args.image)?;
    let images = layout::images(&layout)?;
    if args.json {
        let docs: Vec<Value> = images
            .iter()
            .map(|f| {
                serde_json::json!({
                    "names": f.names,
                    "digest": f.manifest_digest,
                    "manifest": f.manifest,
                    "config": f.config,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&docs).unwrap_or_default()
        );
        return Ok(());
    }
    for (i, f) in images.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print!("{}", describe(f));
    }
    Ok(())
}

fn describe(f: &layout::Found) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<12}{v}\n"));
    let c = &f.config;
    if let Some(d) = &f.manifest_digest {
        line("Manifest", d.clone());
    }
    if !f.names.is_empty() {
        line("Names", f.names.join(", "));
    }
    let mut platform = format!(
        "{}/{}",
        c["os"].as_str().unwrap_or("?"),
        c["architecture"].as_str().unwrap_or("?")
    );
    if let Some(v) = c["variant"].as_str() {
        platform.push('/');
        platform.push_str(v);
    }
    line("Platform", platform);
    if let Some(t) = c["created"].as_str() {
        line("Created", t.to_string());
    }
    if let Some(a) = c["author"].as_str() {
        line("Author", a.to_string());
    }
    let rc = &c["config"];
    for (key, label) in [
        ("Entrypoint", "Entrypoint"),
        ("Cmd", "Cmd"),
        ("WorkingDir", "WorkingDir"),
        ("User", "User"),
        ("StopSignal", "StopSignal"),
    ] {
        if !rc[key].is_null() {
            let v = match &rc[key] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            line(label, v);
        }
    }
    for e in rc["Env"].as_array().into_iter().flatten() {
        line("Env", e.as_str().unwrap_or_default().to_string());
    }
    for key in ["ExposedPorts", "Volumes"] {
        if let Some(m) = rc[key].as_object() {
            line(key, m.keys().cloned().collect::<Vec<_>>().join(", "));
        }
    }
    for (k, v) in rc["Labels"].as_object().into_iter().flatten() {
        line("Label", format!("{k}={}", v.as_str().unwrap_or_default()));
    }
    let total: u64 = f.layers.iter().filter_map(|l| l.1).sum();
    line(
        "Layers",
        format!("{} ({} compressed)", f.layers.len(), HumanBytes(total)),
    );
    // History entries that made no layer don't line up with layers.
    let history: Vec<&Value> = c["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| !h["empty_layer"].as_bool().unwrap_or(false))
        .collect();
    let diff_ids = c["rootfs"]["diff_ids"].as_array();
    for (i, (digest, size, _)) in f.layers.iter().enumerate() {
        let size = size.map(|s| HumanBytes(s).to_string()).unwrap_or_default();
        let by = history
            .get(i)
            .and_then(|h| h["created_by"].as_str())
            .unwrap_or_default();
        out.push_str(&format!("  {:>3}  {digest}  {size:>10}  {by}\n", i + 1));
        if let Some(d) = diff_ids.and_then(|d| d.get(i)).and_then(|d| d.as_str()) {
            out.push_str(&format!("       diff_id {d}\n"));
        }
        if let Some(comment) = history.get(i).and_then(|h| h["comment"].as_str()) {
            out.push_str(&format!("       {comment}\n"));
        }
    }
    out
}
