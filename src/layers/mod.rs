//! Layers: turns layer plans into compressed, content-addressed blobs.
//!
//! One producer thread writes each layer's tar stream, hashing it (diff_id)
//! as it goes, and cuts it into blocks; `jobs` workers compress blocks; one
//! collector writes them back in order to the layer's blob file while hashing
//! the compressed bytes (digest). Blocks in flight are bounded, so memory
//! does not depend on layer or rootfs size.

mod cache;
mod compress;
mod tarwrite;

pub use cache::{Cache, file_digest};

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::{fmt, thread};

use sha2::{Digest as _, Sha256};

use crate::oci::{Blob, Digest, Source, media};
use crate::plan::LayerPlan;
use crate::source::{Rootfs, path};
use compress::{BufPool, Compressor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

impl Compression {
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => media::LAYER_GZIP,
            Compression::Zstd => media::LAYER_ZSTD,
            Compression::None => media::LAYER_TAR,
        }
    }

    pub fn default_level(self) -> i32 {
        match self {
            Compression::Gzip => 6,
            Compression::Zstd => 3,
            Compression::None => 0,
        }
    }

    pub fn levels(self) -> std::ops::RangeInclusive<i32> {
        match self {
            // libdeflate's levels; 12 is its slowest and smallest.
            Compression::Gzip => 0..=12,
            Compression::Zstd => 1..=19,
            Compression::None => 0..=0,
        }
    }

    /// Uncompressed bytes per independently compressed block. Part of the
    /// output format: changing it changes every digest.
    fn block_size(self) -> usize {
        match self {
            Compression::Gzip => 1 << 20,
            Compression::Zstd => 2 << 20,
            Compression::None => 1 << 20,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub compression: Compression,
    pub level: i32,
    pub jobs: usize,
    /// Latest mtime written; later ones are clamped to it.
    pub clamp: i64,
    /// Directory for temporary blob files (unnamed, gone on exit).
    pub workdir: PathBuf,
}

/// A finished layer: its compressed blob, and the digest of the tar it
/// decompresses to.
pub struct Layer {
    pub blob: Blob,
    pub diff_id: Digest,
}

/// A failure while writing layers.
#[derive(Debug)]
pub enum LayerError {
    /// Reading an entry's content or writing it failed.
    Entry {
        origin: PathBuf,
        path: Vec<u8>,
        source: io::Error,
    },
    /// Temporary blob files could not be written.
    Workdir {
        dir: PathBuf,
        source: io::Error,
    },
    Internal(String),
}

impl fmt::Display for LayerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerError::Entry {
                origin,
                path: p,
                source,
            } => write!(f, "{}: {}: {source}", origin.display(), path::display(p)),
            LayerError::Workdir { dir, source } => {
                write!(
                    f,
                    "{}: writing temporary layer files: {source}",
                    dir.display()
                )
            }
            LayerError::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl std::error::Error for LayerError {}

/// Writes every planned layer, taking unchanged ones from `cache`; returns
/// them in plan order. `progress` is told the running total of content
/// bytes written.
pub fn build(
    rootfs: &Rootfs,
    plans: &[LayerPlan],
    settings: &Settings,
    cache: Option<&Cache>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<Layer>, LayerError> {
    let Some(cache) = cache else {
        return build_all(rootfs, plans, settings, progress);
    };
    let keys: Vec<Option<String>> = plans
        .iter()
        .map(|p| cache::key(rootfs, p, settings))
        .collect();
    let mut found = lookup(cache, &keys, settings);
    let missing: Vec<usize> = (0..plans.len()).filter(|&i| found[i].is_none()).collect();
    let todo: Vec<LayerPlan> = missing.iter().map(|&i| plans[i].clone()).collect();
    let built = build_all(rootfs, &todo, settings, progress)?;
    let store = |e: io::Error| LayerError::Workdir {
        dir: cache.dir().to_path_buf(),
        source: e,
    };
    for (i, layer) in missing.into_iter().zip(built) {
        found[i] = Some(match &keys[i] {
            Some(k) => cache.put(k, layer).map_err(store)?,
            None => layer,
        });
    }
    found
        .into_iter()
        .map(|l| l.ok_or_else(|| LayerError::Internal("a layer went missing".into())))
        .collect()
}

/// The cached layer of each key, checked on `settings.jobs` threads: each
/// check decompresses the whole blob.
fn lookup(cache: &Cache, keys: &[Option<String>], settings: &Settings) -> Vec<Option<Layer>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let found: Mutex<Vec<Option<Layer>>> = Mutex::new(keys.iter().map(|_| None).collect());
    thread::scope(|s| {
        for _ in 0..settings.jobs.clamp(1, keys.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(key) = keys.get(i) else { break };
                    let layer = key
                        .as_deref()
                        .and_then(|k| cache.get(k, settings.compression));
                    if let Ok(mut all) = found.lock() {
                        all[i] = layer;
                    }
                }
            });
        }
    });
    found.into_inner().unwrap_or_else(|e| e.into_inner())
}

fn build_all(
    rootfs: &Rootfs,
    plans: &[LayerPlan],
    settings: &Settings,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<Layer>, LayerError> {
    let jobs = settings.jobs.max(1);
    let pool = BufPool::default();
    let abort = AtomicBool::new(false);
    // Each permit is one block between the producer and the blob file.
    let permits = jobs + 2;
    let (permit_tx, permit_rx) = mpsc::channel::<()>();
    for _ in 0..permits {
        let _ = permit_tx.send(());
    }
    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = mpsc::channel::<io::Result<Job>>();

    thread::scope(|s| {
        let mut workers = Vec::new();
        for _ in 0..jobs {
            let rx = Arc::clone(&job_rx);
            let tx = done_tx.clone();
            let pool = &pool;
            workers.push(s.spawn(move || worker(&rx, &tx, settings, pool)));
        }
        drop(done_tx);
        let collector = {
            let pool = &pool;
            let abort = &abort;
            s.spawn(move || collect(done_rx, permit_tx, plans.len(), settings, pool, abort))
        };
        let produced = produce(
            rootfs, plans, settings, job_tx, &permit_rx, &pool, &abort, progress,
        );
        let collected = collector
            .join()
            .unwrap_or_else(|_| Err(LayerError::Internal("collector thread panicked".into())));
        for w in workers {
            if w.join().is_err() {
                return Err(LayerError::Internal("compression thread panicked".into()));
            }
        }
        let diff_ids = match produced {
            Ok(d) => d,
            Err(Produce::Failed(e)) => return Err(e),
            // The producer stopped because the collector failed: report
            // the collector's error, the real cause.
            Err(Produce::Aborted) => {
                collected?;
                return Err(LayerError::Internal("compression stopped early".into()));
            }
        };
        let blobs = collected?;
        Ok(blobs
            .into_iter()
            .zip(diff_ids)
            .map(|(b, diff_id)| {
                let digest = match settings.compression {
                    Compression::None => diff_id,
                    _ => b.digest,
                };
                Layer {
                    blob: Blob {
                        digest,
                        size: b.size,
                        media_type: settings.compression.media_type().to_string(),
                        source: Source::Temp(Arc::new(b.file)),
                    },
                    diff_id,
                }
            })
            .collect())
    })
}

/// A block on its way: raw from the producer, compressed from a worker.
struct Job {
    layer: usize,
    seq: u64,
    data: Vec<u8>,
    last: bool,
}

enum Produce {
    Failed(LayerError),
    /// Stopped because the collector failed; its error is the cause.
    Aborted,
}

#[allow(clippy::too_many_arguments)]
fn produce(
    rootfs: &Rootfs,
    plans: &[LayerPlan],
    settings: &Settings,
    jobs: Sender<Job>,
    permits: &Receiver<()>,
    pool: &BufPool,
    abort: &AtomicBool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<Digest>, Produce> {
    let mut diff_ids = Vec::with_capacity(plans.len());
    let mut done_bytes = 0u64;
    for (layer, plan) in plans.iter().enumerate() {
        let sink = BlockSink {
            layer,
            seq: 0,
            block: settings.compression.block_size(),
            buf: pool.get(settings.compression.block_size()),
            diff: Sha256::new(),
            jobs: &jobs,
            permits,
            pool,
            abort,
        };
        let mut on_bytes = |n: u64| {
            done_bytes += n;
            progress(done_bytes);
        };
        let sink = tarwrite::write_layer(rootfs, &plan.nodes, settings.clamp, sink, &mut on_bytes)
            .map_err(|e| {
                if abort.load(Ordering::Relaxed) {
                    Produce::Aborted
                } else {
                    Produce::Failed(LayerError::Entry {
                        origin: rootfs.origin().to_path_buf(),
                        path: e.path,
                        source: e.source,
                    })
                }
            })?;
        diff_ids.push(sink.finish().map_err(|_| Produce::Aborted)?);
    }
    Ok(diff_ids)
}

/// The producer's end of the pipeline: hashes the tar stream and hands it
/// on in blocks.
struct BlockSink<'a> {
    layer: usize,
    seq: u64,
    block: usize,
    buf: Vec<u8>,
    diff: Sha256,
    jobs: &'a Sender<Job>,
    permits: &'a Receiver<()>,
    pool: &'a BufPool,
    abort: &'a AtomicBool,
}

impl BlockSink<'_> {
    fn send(&mut self, last: bool) -> io::Result<()> {
        let stopped = || io::Error::other("stopped: writing the layer files failed");
        if self.abort.load(Ordering::Relaxed) {
            return Err(stopped());
        }
        self.permits.recv().map_err(|_| stopped())?;
        let data = std::mem::replace(&mut self.buf, self.pool.get(self.block));
        let job = Job {
            layer: self.layer,
            seq: self.seq,
            data,
            last,
        };
        self.seq += 1;
        self.jobs.send(job).map_err(|_| stopped())
    }

    /// Sends the final block; returns the diff_id.
    fn finish(mut self) -> io::Result<Digest> {
        self.send(true)?;
        let buf = std::mem::take(&mut self.buf);
        self.pool.put(buf);
        Ok(Digest::from_hasher(self.diff.clone()))
    }
}

impl Write for BlockSink<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.block - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        self.diff.update(&data[..n]);
        if self.buf.len() == self.block {
            self.send(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn worker(
    jobs: &Mutex<Receiver<Job>>,
    done: &Sender<io::Result<Job>>,
    settings: &Settings,
    pool: &BufPool,
) {
    let mut compressor = match Compressor::new(settings.compression, settings.level) {
        Ok(c) => c,
        Err(e) => {
            let _ = done.send(Err(e));
            return;
        }
    };
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|e| e.into_inner());
            match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            }
        };
        let mut out = pool.get(job.data.len() / 2 + 64);
        let result = compressor.block(&job.data, &mut out).map(|()| {
            pool.put(job.data);
            Job {
                layer: job.layer,
                seq: job.seq,
                data: out,
                last: job.last,
            }
        });
        if done.send(result).is_err() {
            return;
        }
    }
}

struct Written {
    file: File,
    digest: Digest,
    size: u64,
}

/// One layer's blob being assembled from blocks that may arrive out of order.
struct Assembly {
    file: File,
    hash: Sha256,
    size: u64,
    next: u64,
    pending: BTreeMap<u64, Job>,
}

fn collect(
    done: Receiver<io::Result<Job>>,
    permits: Sender<()>,
    layers: usize,
    settings: &Settings,
    pool: &BufPool,
    abort: &AtomicBool,
) -> Result<Vec<Written>, LayerError> {
    let fail = |source: io::Error| {
        abort.store(true, Ordering::Relaxed);
        LayerError::Workdir {
            dir: settings.workdir.clone(),
            source,
        }
    };
    let mut open: Vec<Option<Assembly>> = (0..layers).map(|_| None).collect();
    let mut finished: Vec<Option<Written>> = (0..layers).map(|_| None).collect();
    for job in done {
        let job = job.map_err(fail)?;
        let layer = job.layer;
        if open[layer].is_none() {
            open[layer] = Some(Assembly {
                file: tempfile::tempfile_in(&settings.workdir).map_err(fail)?,
                hash: Sha256::new(),
                size: 0,
                next: 0,
                pending: BTreeMap::new(),
            });
        }
        let Some(asm) = open[layer].as_mut() else {
            continue;
        };
        asm.pending.insert(job.seq, job);
        while let Some(job) = asm.pending.remove(&asm.next) {
            asm.file.write_all(&job.data).map_err(fail)?;
            // Uncompressed, the digest is the diff_id already computed.
            if settings.compression != Compression::None {
                asm.hash.update(&job.data);
            }
            asm.size += job.data.len() as u64;
            asm.next += 1;
            pool.put(job.data);
            // The block has left memory: let the producer send another.
            let _ = permits.send(());
            if job.last {
                let Some(asm) = open[layer].take() else { break };
                finished[layer] = Some(Written {
                    file: asm.file,
                    digest: Digest::from_hasher(asm.hash),
                    size: asm.size,
                });
                break;
            }
        }
    }
    finished
        .into_iter()
        .map(|w| w.ok_or_else(|| fail(io::Error::other("a layer was not completed"))))
        .collect()
}
