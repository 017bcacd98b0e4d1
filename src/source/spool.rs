//! The spool: a tarball's file contents copied to an unnamed temporary file
//! while they stream past, hashed on the way. Writing and hashing run on a
//! thread of their own, so decompressing and parsing the archive (the
//! other half of the work) proceed on another core.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

/// Chunks in flight between the reader and the writer.
const DEPTH: usize = 8;
pub const CHUNK: usize = 256 << 10;

enum Msg {
    Data(Vec<u8>),
    /// The current file ended; its digest belongs to this inode.
    End(usize),
}

pub struct Spool {
    tx: Option<SyncSender<Msg>>,
    free: Receiver<Vec<u8>>,
    writer: Option<JoinHandle<io::Result<Written>>>,
    /// Bytes handed over so far: the offset of the next file.
    pub offset: u64,
}

/// Content digests by inode.
pub type Digests = Vec<(usize, [u8; 32])>;

struct Written {
    file: File,
    digests: Digests,
}

impl Spool {
    /// `hash`: compute each file's SHA-256 as well.
    pub fn new(file: File, hash: bool) -> Spool {
        let (tx, rx) = sync_channel::<Msg>(DEPTH);
        let (free_tx, free) = sync_channel::<Vec<u8>>(DEPTH + 2);
        let writer = std::thread::spawn(move || write(file, hash, rx, free_tx));
        Spool {
            tx: Some(tx),
            free,
            writer: Some(writer),
            offset: 0,
        }
    }

    /// An empty buffer of [`CHUNK`] capacity, recycled when possible.
    pub fn buffer(&self) -> Vec<u8> {
        let mut b = self.free.try_recv().unwrap_or_default();
        b.clear();
        b.reserve(CHUNK);
        b
    }

    pub fn send(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        self.offset += chunk.len() as u64;
        self.push(Msg::Data(chunk))
    }

    /// Ends the current file, which is inode `inode`.
    pub fn end_file(&mut self, inode: usize) -> io::Result<()> {
        self.push(Msg::End(inode))
    }

    fn push(&mut self, m: Msg) -> io::Result<()> {
        let sent = self.tx.as_ref().map(|tx| tx.send(m).is_ok());
        if sent == Some(true) {
            return Ok(());
        }
        // The writer stopped: its error is the one to report.
        match self.finish() {
            Err(e) => Err(e),
            Ok(_) => Err(io::Error::other("the spool writer stopped")),
        }
    }

    /// Waits for the writer; returns the file and the digests by inode.
    pub fn finish(&mut self) -> io::Result<(File, Digests)> {
        drop(self.tx.take());
        let writer = self
            .writer
            .take()
            .ok_or_else(|| io::Error::other("the spool was already finished"))?;
        let w = writer
            .join()
            .map_err(|_| io::Error::other("the spool writer panicked"))??;
        Ok((w.file, w.digests))
    }
}

fn write(
    file: File,
    hash: bool,
    rx: Receiver<Msg>,
    free: SyncSender<Vec<u8>>,
) -> io::Result<Written> {
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut digests = Vec::new();
    for m in rx {
        match m {
            Msg::Data(chunk) => {
                if hash {
                    hasher.update(&chunk);
                }
                out.write_all(&chunk)?;
                let _ = free.try_send(chunk);
            }
            Msg::End(inode) => {
                if hash {
                    digests.push((inode, hasher.finalize_reset().into()));
                }
            }
        }
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    Ok(Written { file, digests })
}
