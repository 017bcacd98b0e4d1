//! The spool: a tarball's file contents copied to an unnamed temporary file
//! while they stream past, hashed on the way. Writing and hashing run on a
//! thread of their own, so decompressing and parsing the archive (the
//! other half of the work) proceed on another core.
//!
//! Contents travel in chunks of [`CHUNK`] bytes that may hold many small
//! files; each chunk lists where its files end, so the writer knows where
//! one digest stops and the next starts.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

/// Chunks in flight between the reader and the writer.
const DEPTH: usize = 4;
const CHUNK: usize = 1 << 20;

struct Chunk {
    data: Vec<u8>,
    /// (end offset in `data`, inode) of each file that ends in this chunk.
    ends: Vec<(usize, usize)>,
}

/// Content digests by inode.
pub type Digests = Vec<(usize, [u8; 32])>;

pub struct Spool {
    tx: Option<SyncSender<Chunk>>,
    free: Receiver<Vec<u8>>,
    writer: Option<JoinHandle<io::Result<(File, Digests)>>>,
    current: Chunk,
    /// Bytes taken so far: the offset of the next file.
    pub offset: u64,
}

impl Spool {
    /// `hash`: compute each file's SHA-256 as well.
    pub fn new(file: File, hash: bool) -> Spool {
        let (tx, rx) = sync_channel::<Chunk>(DEPTH);
        let (free_tx, free) = sync_channel::<Vec<u8>>(DEPTH + 2);
        let writer = std::thread::spawn(move || write(file, hash, rx, free_tx));
        Spool {
            tx: Some(tx),
            free,
            writer: Some(writer),
            current: Chunk {
                data: Vec::with_capacity(CHUNK),
                ends: Vec::new(),
            },
            offset: 0,
        }
    }

    /// Copies one file's content (at most `size` bytes) from `r`; returns
    /// how many bytes there were. Read errors come back as `Ok(Err(_))`,
    /// spool errors as `Err(_)`.
    pub fn copy(&mut self, r: &mut impl Read, size: u64) -> io::Result<Result<u64, io::Error>> {
        let mut copied = 0u64;
        loop {
            if self.current.data.len() == CHUNK {
                self.flush()?;
            }
            let data = &mut self.current.data;
            let start = data.len();
            // Zero only what this file can fill: small files stay cheap.
            let left = usize::try_from(size.saturating_sub(copied)).unwrap_or(usize::MAX);
            let want = left.clamp(1, CHUNK - start);
            data.resize(start + want, 0);
            let n = loop {
                match r.read(&mut data[start..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        data.truncate(start);
                        return Ok(Err(e));
                    }
                }
            };
            data.truncate(start + n);
            if n == 0 {
                return Ok(Ok(copied));
            }
            copied += n as u64;
            self.offset += n as u64;
        }
    }

    /// Ends the current file, which is inode `inode`.
    pub fn end_file(&mut self, inode: usize) {
        let at = self.current.data.len();
        self.current.ends.push((at, inode));
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut next = self
            .free
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        next.clear();
        let chunk = std::mem::replace(
            &mut self.current,
            Chunk {
                data: next,
                ends: Vec::new(),
            },
        );
        let sent = self.tx.as_ref().map(|tx| tx.send(chunk).is_ok());
        if sent == Some(true) {
            return Ok(());
        }
        // The writer stopped: its error is the one to report.
        match self.finish() {
            Err(e) => Err(e),
            Ok(_) => Err(io::Error::other("the spool writer stopped")),
        }
    }

    /// Sends what is left, waits for the writer; returns the file and the
    /// digests by inode.
    pub fn finish(&mut self) -> io::Result<(File, Digests)> {
        if let Some(tx) = self.tx.take() {
            let last = std::mem::replace(
                &mut self.current,
                Chunk {
                    data: Vec::new(),
                    ends: Vec::new(),
                },
            );
            let _ = tx.send(last);
        }
        let writer = self
            .writer
            .take()
            .ok_or_else(|| io::Error::other("the spool was already finished"))?;
        writer
            .join()
            .map_err(|_| io::Error::other("the spool writer panicked"))?
    }
}

fn write(
    file: File,
    hash: bool,
    rx: Receiver<Chunk>,
    free: SyncSender<Vec<u8>>,
) -> io::Result<(File, Digests)> {
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut digests = Vec::new();
    for chunk in rx {
        if hash {
            let mut from = 0;
            for &(end, inode) in &chunk.ends {
                hasher.update(&chunk.data[from..end]);
                digests.push((inode, hasher.finalize_reset().into()));
                from = end;
            }
            hasher.update(&chunk.data[from..]);
        }
        out.write_all(&chunk.data)?;
        let _ = free.try_send(chunk.data);
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    Ok((file, digests))
}
