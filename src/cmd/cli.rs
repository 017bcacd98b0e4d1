//! The command line: arguments, and their translation into the typed
//! settings the library takes. Everything a user can get wrong in the
//! arguments is checked here and reported as a [`UsageError`] (exit 2).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::image::Spec;
use crate::layers::Compression;
use crate::oci::Tag;

#[derive(Parser, Debug)]
#[command(
    name = "rustimage",
    version,
    about = "Container images from OpenEmbedded root filesystems, without Docker or root"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build an image from a root filesystem.
    Build(Box<BuildArgs>),
    /// Show an image's config, layers and history.
    Inspect(InspectArgs),
    /// Push an image archive or OCI layout to a registry.
    Push(PushArgs),
    /// Combine images for several machines into one multi-platform index.
    Index(IndexArgs),
    /// Attach SBOMs to an image (archive, OCI layout or registry image) as
    /// OCI referrers.
    Attach(AttachArgs),
}

/// How to reach a registry (shared by push, build --push and index --push).
#[derive(Args, Debug, Clone)]
pub struct RegistryArgs {
    /// Credentials USER:PASSWORD (else docker/podman config and helpers).
    #[arg(
        long,
        value_name = "USER:PASSWORD",
        env = "RUSTIMAGE_CREDS",
        hide_env_values = true
    )]
    pub creds: Option<String>,
    /// Allow plain HTTP and TLS without certificate verification.
    #[arg(long)]
    pub insecure: bool,
    /// Extra CA certificate (PEM) to trust besides the system's.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Certificates for the registry (*.crt CAs, NAME.cert + NAME.key client
    /// pair), instead of the certs.d directories.
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Write the pushed manifest's digest to FILE (attach: the digest of
    /// each artifact attached, one per line).
    #[arg(long, value_name = "FILE")]
    pub digestfile: Option<PathBuf>,
    /// Repository of the same registry to mount blobs from (repeatable).
    #[arg(long, value_name = "REPO")]
    pub mount_from: Vec<String>,
    /// Blobs uploaded at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub parallel: usize,
    /// Blobs larger than this many bytes are uploaded in chunks of it.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub chunk_size: u64,
    /// Seconds any step may take (connecting, each read or write, an answer)
    /// before it is retried once, then given up.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u64,
}

/// Where an image (or index) goes; at least one is needed.
#[derive(Args, Debug)]
pub struct Outputs {
    /// Write a tar that `docker load`, `podman load` and skopeo accept
    /// (Docker archive and OCI layout in one; an index is OCI only);
    /// `-` for stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Write an OCI image layout directory (replacing an earlier layout there).
    #[arg(long, value_name = "DIR")]
    pub oci_dir: Option<PathBuf>,
    /// Push to a registry: [HOST[:PORT]/]PATH/NAME[:TAG].
    #[arg(long, value_name = "REF")]
    pub push: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

impl Outputs {
    /// The registry target, checked before any work; a usage error when
    /// no output at all is given.
    pub fn check(&self) -> Result<Option<crate::registry::Target>, UsageError> {
        if self.output.is_none() && self.oci_dir.is_none() && self.push.is_none() {
            return Err(usage(
                "no output: give -o FILE, --oci-dir DIR and/or --push REF",
            ));
        }
        self.push
            .as_deref()
            .map(|r| crate::registry::Target::parse(r).map_err(UsageError))
            .transpose()
    }
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// An archive written by `build -o`, or an OCI layout directory.
    pub source: PathBuf,
    /// Where to: [HOST[:PORT]/]PATH/NAME[:TAG][@DIGEST] (Docker Hub for short names).
    pub reference: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// No progress output; only errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print a JSON summary (digest, blob counts) on stdout.
    #[arg(long)]
    pub json: bool,
}

impl PushArgs {
    pub fn target(&self) -> Result<crate::registry::Target, UsageError> {
        crate::registry::Target::parse(&self.reference).map_err(UsageError)
    }
}

#[derive(Args, Debug)]
pub struct IndexArgs {
    /// Image archives or OCI layout directories holding one image each.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    #[command(flatten)]
    pub outputs: Outputs,
    /// Name for the index in the archive or layout (repeatable).
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// Index annotation KEY=VALUE (repeatable).
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// No progress output; only errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the index digest and platforms as JSON.
    #[arg(long)]
    pub json: bool,
}

impl IndexArgs {
    pub fn tags(&self) -> Result<Vec<Tag>, UsageError> {
        tags(&self.tags)
    }

    pub fn annotations(&self) -> Result<BTreeMap<String, String>, UsageError> {
        pairs("--annotation", &self.annotations)
    }
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// An archive written by `build -o`, `docker save`, or an OCI layout directory.
    pub image: PathBuf,
    /// Print the manifest and config as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print an attached SBOM, byte for byte: the only one, or
    /// `--sbom=DIGEST` (its referrer's or its own), or `--sbom=TYPE`
    /// (spdx, spdx3, cyclonedx or a media type).
    #[arg(long, value_name = "DIGEST|TYPE", num_args = 0..=1, require_equals = true,
          default_missing_value = "")]
    pub sbom: Option<String>,
    /// Write the SBOM `--sbom` picks to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub sbom_out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// An image archive or OCI layout directory (changed in place: the
    /// SBOMs are added as blobs, index.json stays as it is), or, when no
    /// such path exists, a registry image [HOST[:PORT]/]PATH/NAME[:TAG|@DIGEST].
    #[arg(value_name = "IMAGE|REF")]
    pub image: String,
    /// SBOM file to attach: SPDX 2 JSON, SPDX 3 JSON-LD or CycloneDX JSON,
    /// told by its content (repeatable).
    #[arg(long = "sbom", value_name = "FILE", required = true)]
    pub sboms: Vec<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// No progress output; only errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print what was attached as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    Gzip,
    Zstd,
    None,
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Root filesystem: a tarball (plain, gzip, bzip2, xz or zstd; detected
    /// from its content) or a directory. Found in the deploy dir if omitted.
    #[arg(long, value_name = "PATH", required_unless_present = "deploy_dir")]
    pub rootfs: Option<PathBuf>,
    /// BitBake's deploy directory (tmp/deploy): rootfs, manifest and feeds
    /// are found there, pkgdata beside it (tmp/pkgdata/MACHINE).
    #[arg(long, value_name = "DIR", requires_all = ["image", "machine"])]
    pub deploy_dir: Option<PathBuf>,
    /// Image recipe name (core-image-minimal), with --deploy-dir.
    #[arg(long, value_name = "NAME", requires = "deploy_dir")]
    pub image: Option<String>,
    /// MACHINE the image was built for (qemux86-64), with --deploy-dir.
    #[arg(long, value_name = "MACHINE", requires = "deploy_dir")]
    pub machine: Option<String>,
    /// Image manifest (lines "package arch version").
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Package feed: a dir with arch subdirs as BitBake writes them, or a
    /// flat dir of .ipk/.deb/.rpm files (repeatable).
    #[arg(long = "feed", value_name = "DIR")]
    pub feeds: Vec<PathBuf>,
    /// pkgdata of the machine (tmp/pkgdata/MACHINE).
    #[arg(long, value_name = "DIR")]
    pub pkgdata: Option<PathBuf>,
    /// Put the whole rootfs into one layer.
    #[arg(long)]
    pub squash: bool,
    /// Most layers the image may have, the final image-specific one included.
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u16).range(1..=125))]
    pub max_layers: u16,
    /// INI file of named layers and the package globs they take.
    #[arg(long, value_name = "FILE")]
    pub layer_rules: Option<PathBuf>,
    /// Directory of compressed layers kept between builds; unchanged layers
    /// are taken from it instead of compressed again.
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Attach an SBOM to the image as an OCI referrer (repeatable): a file
    /// (SPDX 2 JSON, SPDX 3 JSON-LD or CycloneDX JSON, told by content), or
    /// `generate` for an SPDX 2.3 SBOM of the image's packages (needs the
    /// image manifest: --deploy-dir or --manifest).
    #[arg(long = "sbom", value_name = "FILE|generate")]
    pub sboms: Vec<PathBuf>,

    #[command(flatten)]
    pub outputs: Outputs,

    /// Image name and tag, NAME[:TAG] (repeatable; TAG defaults to latest).
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// Entrypoint: a JSON array ('["/bin/sh","-c"]') or words split on whitespace.
    #[arg(long, value_name = "CMD", allow_hyphen_values = true)]
    pub entrypoint: Option<String>,
    /// Default arguments: a JSON array or words split on whitespace.
    #[arg(long, value_name = "CMD", allow_hyphen_values = true)]
    pub cmd: Option<String>,
    /// Environment variable KEY=VALUE (repeatable). PATH gets the usual
    /// default unless given.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory of the container.
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User (and group) the container runs as: NAME, UID, UID:GID.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Config label KEY=VALUE (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Manifest annotation KEY=VALUE (repeatable).
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Port to expose, PORT[/tcp|udp|sctp] (repeatable).
    #[arg(long = "expose", value_name = "PORT[/PROTO]")]
    pub expose: Vec<String>,
    /// Volume mount point (repeatable).
    #[arg(long = "volume", value_name = "PATH")]
    pub volumes: Vec<String>,
    /// Signal that stops the container (e.g. SIGTERM).
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Author recorded in the config.
    #[arg(long)]
    pub author: Option<String>,
    /// Operating system of the image.
    #[arg(long, default_value = "linux")]
    pub os: String,
    /// Architecture, as Go names it (amd64, arm64, arm, 386, riscv64...).
    #[arg(long, default_value = "amd64")]
    pub arch: String,
    /// Architecture variant (v7, v8...).
    #[arg(long)]
    pub variant: Option<String>,
    /// Creation time, RFC 3339 or @EPOCH; default $SOURCE_DATE_EPOCH. Later
    /// file mtimes are clamped to it. Without either, mtimes are kept and
    /// the image is dated by the newest of them.
    #[arg(long, value_name = "TIME")]
    pub created: Option<String>,

    /// Layer compression.
    #[arg(long, value_enum, default_value = "gzip")]
    pub compression: CompressionArg,
    /// Compression level (gzip 0-12, libdeflate's levels, default 6; zstd
    /// 1-19, default 3).
    #[arg(long, value_name = "N")]
    pub compression_level: Option<i32>,
    /// Threads compressing layers (default: the number of cores). The
    /// output is the same for any value.
    #[arg(short = 'j', long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Most bytes the rootfs tarball may decompress to, sparse files'
    /// holes included (guards against archives made to fill the disk);
    /// suffixes K, M, G, T.
    #[arg(long, value_name = "SIZE", default_value = "256G", value_parser = parse_size)]
    pub max_size: u64,
    /// Directory for temporary files (default: beside the output).
    #[arg(long, value_name = "DIR")]
    pub tmpdir: Option<PathBuf>,

    /// No progress output; only errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print a JSON summary (digests, layers, sizes) on stdout.
    #[arg(long)]
    pub json: bool,
}

/// A mistake in the arguments.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

/// What `build --sbom` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SbomSource {
    /// The SBOM rustimage writes of the image.
    Generate,
    File(PathBuf),
}

impl BuildArgs {
    /// The `--sbom` values, `generate` at most once.
    pub fn sbom_sources(&self) -> Result<Vec<SbomSource>, UsageError> {
        let out: Vec<SbomSource> = self
            .sboms
            .iter()
            .map(|p| {
                if p.as_os_str() == "generate" {
                    SbomSource::Generate
                } else {
                    SbomSource::File(p.clone())
                }
            })
            .collect();
        if out.iter().filter(|s| **s == SbomSource::Generate).count() > 1 {
            return Err(usage("--sbom generate: give it once"));
        }
        Ok(out)
    }

    pub fn compression(&self) -> Result<(Compression, i32), UsageError> {
        let c = match self.compression {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Zstd => Compression::Zstd,
            CompressionArg::None => Compression::None,
        };
        let level = self.compression_level.unwrap_or(c.default_level());
        if !c.levels().contains(&level) {
            return Err(usage(format!(
                "--compression-level {level}: {:?} takes {}-{}",
                self.compression,
                c.levels().start(),
                c.levels().end()
            )));
        }
        Ok((c, level))
    }

    /// The image description the flags ask for.
    pub fn spec(&self, source_date_epoch: Option<&str>) -> Result<Spec, UsageError> {
        let mut tags = tags(&self.tags)?;
        if tags.is_empty()
            && let Some(image) = &self.image
        {
            tags.push(
                Tag::parse(&format!("{image}:latest"))
                    .map_err(|e| usage(format!("--image: {e}")))?,
            );
        }
        for e in &self.env {
            if !e.contains('=') || e.starts_with('=') {
                return Err(usage(format!("--env '{e}': expected KEY=VALUE")));
            }
        }
        if let Some(w) = &self.workdir
            && !w.starts_with('/')
        {
            return Err(usage(format!("--workdir '{w}': must be an absolute path")));
        }
        let ports = self
            .expose
            .iter()
            .map(|p| port(p))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let volumes = self
            .volumes
            .iter()
            .map(|v| {
                if v.starts_with('/') {
                    Ok(v.clone())
                } else {
                    Err(usage(format!("--volume '{v}': must be an absolute path")))
                }
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        Ok(Spec {
            tags,
            entrypoint: self
                .entrypoint
                .as_deref()
                .map(|s| command("--entrypoint", s))
                .transpose()?,
            cmd: self
                .cmd
                .as_deref()
                .map(|s| command("--cmd", s))
                .transpose()?,
            env: self.env.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            labels: pairs("--label", &self.labels)?,
            annotations: pairs("--annotation", &self.annotations)?,
            ports,
            volumes,
            stop_signal: self.stop_signal.clone(),
            author: self.author.clone(),
            os: self.os.clone(),
            arch: self.arch.clone(),
            variant: self.variant.clone(),
            created: created(self.created.as_deref(), source_date_epoch)?,
        })
    }
}

/// `123`, `64K`, `512M`, `256G`, `1T` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("'{s}': unknown size suffix (K, M, G, T)")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a size"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("'{s}' is too large"))
}

/// `["a","b"]` as JSON, or whitespace-separated words.
pub fn command(flag: &str, s: &str) -> Result<Vec<String>, UsageError> {
    if s.trim_start().starts_with('[') {
        serde_json::from_str(s)
            .map_err(|e| usage(format!("{flag} '{s}': not a JSON array of strings ({e})")))
    } else {
        Ok(s.split_whitespace().map(str::to_string).collect())
    }
}

/// `--tag` values.
fn tags(items: &[String]) -> Result<Vec<Tag>, UsageError> {
    items
        .iter()
        .map(|t| Tag::parse(t).map_err(|e| usage(format!("--tag: {e}"))))
        .collect()
}

fn pairs(flag: &str, items: &[String]) -> Result<BTreeMap<String, String>, UsageError> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(usage(format!("{flag} '{kv}': expected KEY=VALUE"))),
        })
        .collect()
}

fn port(p: &str) -> Result<String, UsageError> {
    let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let ok_num = num.parse::<u16>().is_ok_and(|n| n > 0);
    let proto = proto.to_ascii_lowercase();
    if !ok_num || !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(usage(format!(
            "--expose '{p}': expected PORT[/tcp|udp|sctp] with PORT 1-65535"
        )));
    }
    Ok(format!("{num}/{proto}"))
}

/// `--created`, else SOURCE_DATE_EPOCH, else `None`: the build then keeps
/// mtimes and dates the image by the newest.
pub fn created(flag: Option<&str>, sde: Option<&str>) -> Result<Option<i64>, UsageError> {
    if let Some(s) = flag {
        if let Some(epoch) = s.strip_prefix('@') {
            return epoch
                .parse()
                .map(Some)
                .map_err(|_| usage(format!("--created '{s}': expected @SECONDS")));
        }
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| usage(format!("--created '{s}': not RFC 3339 or @EPOCH ({e})")))?;
        return Ok(Some(t.unix_timestamp()));
    }
    match sde {
        Some(s) if !s.is_empty() => s.trim().parse().map(Some).map_err(|_| {
            usage(format!(
                "SOURCE_DATE_EPOCH='{s}' is not a number of seconds"
            ))
        }),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_from_json_or_words() {
        assert_eq!(
            command("--cmd", r#"["/bin/sh","-c","echo hi"]"#).unwrap(),
            vec!["/bin/sh", "-c", "echo hi"]
        );
        assert_eq!(command("--cmd", "ls  -l /").unwrap(), vec!["ls", "-l", "/"]);
        assert!(command("--cmd", "[1,2]").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("123").unwrap(), 123);
        assert_eq!(parse_size("64K").unwrap(), 64 << 10);
        assert_eq!(parse_size("2g").unwrap(), 2 << 30);
        assert!(parse_size("1X").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn ports_and_times() {
        assert_eq!(port("80").unwrap(), "80/tcp");
        assert_eq!(port("53/UDP").unwrap(), "53/udp");
        assert!(port("0").is_err());
        assert!(port("80/icmp").is_err());
        assert_eq!(created(Some("@42"), Some("7")).unwrap(), Some(42));
        assert_eq!(
            created(Some("2018-03-09T12:34:56Z"), None).unwrap(),
            Some(1520598896)
        );
        assert_eq!(
            created(Some("2018-03-09T13:34:56+01:00"), None).unwrap(),
            Some(1520598896)
        );
        assert_eq!(created(None, Some("1520598896")).unwrap(), Some(1520598896));
        assert_eq!(created(None, Some("")).unwrap(), None);
        assert_eq!(created(None, None).unwrap(), None);
        assert!(created(None, Some("yesterday")).is_err());
    }
}
