//! TCP for the registry agents, in place of ureq's `TcpConnector` for one
//! reason: a write must finish within its timeout as a whole. ureq's
//! transport gives each `write` system call the full timeout, and a peer
//! that stopped reading still frees a few bytes of window now and then,
//! so each call makes a little progress and a stalled upload went on for
//! three timeouts or more. Here one buffer (ureq's output buffer, or one
//! TLS write) has one deadline.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ureq::Timeout;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, ShutdownHandle,
    Transport,
};

#[derive(Default)]
pub struct TcpConnector;

impl fmt::Debug for TcpConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tcp::TcpConnector")
    }
}

impl<In: Transport> Connector<In> for TcpConnector {
    type Out = Either<In, TcpTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        // A proxy tunnel made before us is the connection.
        if let Some(t) = chained {
            return Ok(Some(Either::A(t)));
        }
        let budget = details.timeout.not_zero().map(|d| *d);
        let began = Instant::now();
        let mut last = None;
        for addr in &details.addrs {
            let left = match budget {
                Some(b) => match b.checked_sub(began.elapsed()) {
                    Some(l) if !l.is_zero() => Some(l),
                    _ => return Err(ureq::Error::Timeout(details.timeout.reason)),
                },
                None => None,
            };
            let result = match left {
                Some(l) => TcpStream::connect_timeout(addr, l),
                None => TcpStream::connect(addr),
            };
            match result {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    let stream = Arc::new(stream);
                    let handle: Weak<dyn ShutdownHandle> = {
                        let weak: Weak<TcpStream> = Arc::downgrade(&stream);
                        weak
                    };
                    (details.register_shutdown)(handle)?;
                    let config = details.config;
                    return Ok(Some(Either::B(TcpTransport {
                        stream,
                        buffers: LazyBuffers::new(
                            config.input_buffer_size(),
                            config.output_buffer_size(),
                        ),
                    })));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                    ) =>
                {
                    last = Some(ureq::Error::Timeout(Timeout::Connect));
                }
                Err(e) => last = Some(e.into()),
            }
        }
        Err(last.unwrap_or(ureq::Error::ConnectionFailed))
    }
}

pub struct TcpTransport {
    stream: Arc<TcpStream>,
    buffers: LazyBuffers,
}

impl fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tcp::TcpTransport")
    }
}

/// The time left before `deadline`, or the timeout error.
fn left(deadline: Option<Instant>, reason: Timeout) -> Result<Option<Duration>, ureq::Error> {
    match deadline {
        None => Ok(None),
        Some(d) => match d.checked_duration_since(Instant::now()) {
            Some(l) if !l.is_zero() => Ok(Some(l)),
            _ => Err(ureq::Error::Timeout(reason)),
        },
    }
}

fn deadline(timeout: &NextTimeout) -> Option<Instant> {
    timeout.not_zero().map(|d| Instant::now() + *d)
}

impl Transport for TcpTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let timeout = timeout.for_write();
        let deadline = deadline(&timeout);
        let mut stream: &TcpStream = &self.stream;
        let mut done = 0;
        while done < amount {
            stream.set_write_timeout(left(deadline, timeout.reason)?)?;
            match stream.write(&self.buffers.output()[done..amount]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(ureq::Error::Timeout(timeout.reason));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let timeout = timeout.for_read();
        let deadline = deadline(&timeout);
        let mut stream: &TcpStream = &self.stream;
        loop {
            stream.set_read_timeout(left(deadline, timeout.reason)?)?;
            let input = self.buffers.input_append_buf();
            match stream.read(input) {
                Ok(n) => {
                    self.buffers.input_appended(n);
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(ureq::Error::Timeout(timeout.reason));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Idle and usable again: nothing to read (bytes or EOF would mean the
    /// server sent something we did not ask for, or closed).
    fn is_open(&mut self) -> bool {
        let stream: &TcpStream = &self.stream;
        if stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut byte = [0u8];
        let idle =
            matches!(stream.peek(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        idle && stream.set_nonblocking(false).is_ok()
    }
}
