//! What a task prints, live: the [`OutputSink`] an action reports its output to
//! ([`crate::ActionContext::output`]), and [`run_command`], how a task's commands run (the
//! engine's [`crate::CommandAction`] and the front end's own tool runner both use it; only a
//! signing hook, whose output may hold a secret, is captured and redacted instead).
//!
//! [`run_command`] spawns the command in its own process group registered with the run's
//! [`crate::Cancel`], reads stdout and stderr concurrently (one thread each) and forwards each
//! complete line to the sink as it arrives; a last line without a newline is forwarded when the
//! stream ends, and a line longer than [`MAX_LINE`] is forwarded in pieces of that size, so
//! memory stays bounded whatever the command prints.
//!
//! The engine's sink (`TaskOutput`) reports each piece at once as an
//! [`Event::Output`] (`replayed: false`) and keeps a copy for the cache, at most [`MAX_KEPT`]
//! bytes per stream (what is beyond is reported live but not replayed from the cache; the kept
//! copy then ends with a line saying how much was left out).
//!
//! A command that exits while a process it started in the background still holds its output
//! pipes (`server &`, `sleep 600 &`) does not hang the build, as it would cargo or ninja (both
//! read to the end of the pipes): the pipes get [`LINGER`] to close after the command exited,
//! then what is left of the command's process group is killed, reading stops, and the task's
//! stderr says so. A background process that redirected its output is not concerned.
//!
//! **Invariants:** every byte a command writes to a forwarded stream is reported exactly once,
//! in order per stream, whether the command succeeds, fails or is stopped by a cancellation
//! (the readers run until the pipes close, which a stopped process group does, or until
//! [`LINGER`] after the command exited); nothing is reported again when the action ends. A line
//! is never split between two reports unless it is longer than [`MAX_LINE`].

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::events::{Event, Reporter, Stream};
use crate::task::{ActionContext, TaskId};

/// The longest piece forwarded at once: a longer line is forwarded in pieces of this size.
pub const MAX_LINE: usize = 64 * 1024;

/// The most a task's output kept for the cache holds, per stream.
pub const MAX_KEPT: usize = 16 * 1024 * 1024;

/// How long a command's output pipes may stay open after it exited (held by a process it left
/// in the background) before that process's group is killed and reading stops.
pub const LINGER: Duration = Duration::from_secs(1);

/// What a stopped reader still reads of what is already in its pipe (a pipe's buffer).
const DRAIN_AFTER_STOP: usize = 64 * 1024;

/// Where an action reports what it prints, as it prints it.
pub trait OutputSink: Sync {
    /// `bytes` the task printed on `stream` (whole lines, except a last line without a
    /// newline or a piece of an overlong one).
    fn output(&self, stream: Stream, bytes: &[u8]);
}

/// Discards everything (an action run outside the engine, a test).
pub struct Discard;

impl OutputSink for Discard {
    fn output(&self, _: Stream, _: &[u8]) {}
}

/// Which streams of a command [`run_command`] forwards to the task's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forward {
    /// Both, live.
    Both,
    /// stderr live; stdout is data the caller reads (`cargo metadata`, `go list -json`),
    /// returned in [`Finished::stdout`] and not printed.
    StderrOnly,
}

/// How a command run by [`run_command`] ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// The command's stdout with [`Forward::StderrOnly`]; empty with [`Forward::Both`] (it was
    /// reported to the task's output).
    pub stdout: Vec<u8>,
}

/// Runs `command` as part of the task of `context`: stdin is closed, stdout and stderr are
/// read as they come and forwarded to [`ActionContext::output`] line by line (see the module
/// docs); the command runs in a process group registered with the run's cancellation.
///
/// An error of kind [`io::ErrorKind::Interrupted`] means the run was cancelled before the
/// command could start.
pub fn run_command(
    context: &ActionContext<'_>,
    command: &mut Command,
    forward: Forward,
) -> io::Result<Finished> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    context.cancel.run(command, |mut child| {
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let sink = context.output;
        let stop = StopPipe::new()?;
        let (done, readers_done) = mpsc::channel::<()>();
        let (status, data, errors, lingered) = std::thread::scope(|scope| {
            let err_done = Done(done.clone());
            let stop_fd = stop.read.as_fd();
            let err_reader = scope.spawn(move || {
                let _done = err_done;
                forward_lines(Stoppable::new(stderr, stop_fd), Stream::Stderr, sink)
            });
            let out_done = Done(done);
            let out_reader = scope.spawn(move || {
                let _done = out_done;
                let mut stdout = Stoppable::new(stdout, stop_fd);
                match forward {
                    Forward::Both => {
                        forward_lines(stdout, Stream::Stdout, sink).map(|()| Vec::new())
                    }
                    Forward::StderrOnly => {
                        let mut data = Vec::new();
                        stdout.read_to_end(&mut data).map(|_| data)
                    }
                }
            });
            let status = child.wait();
            // The pipes close when the command exits, unless a process it left in the
            // background holds them: that one gets LINGER, then its group is killed and
            // reading stops (cargo and ninja would wait for it forever).
            let deadline = Instant::now() + LINGER;
            let mut lingered = false;
            for _ in 0..2 {
                match readers_done.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(()) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) => {
                        lingered = true;
                        // SAFETY: kill(2) on the process group of the command this function
                        // spawned (registered with the run's Cancel); no memory is involved.
                        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                        stop.stop();
                        break;
                    }
                }
            }
            let errors = joined(err_reader);
            let data = joined(out_reader);
            (status, data, errors, lingered)
        });
        if lingered {
            sink.output(
                Stream::Stderr,
                format!(
                    "[xbundle: the command exited but a process it started still held its output {}s later; that process was killed]\n",
                    LINGER.as_secs()
                )
                .as_bytes(),
            );
        }
        let status = status?;
        errors?;
        Ok(Finished {
            status,
            stdout: data?,
        })
    })
}

fn joined<T>(reader: std::thread::ScopedJoinHandle<'_, io::Result<T>>) -> io::Result<T> {
    reader
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("output reader panicked")))
}

/// Sends on drop: a reader thread says it ended, however it ended.
struct Done(mpsc::Sender<()>);

impl Drop for Done {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// A pipe whose read end becomes readable when the readers of a command are to stop.
struct StopPipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl StopPipe {
    fn new() -> io::Result<StopPipe> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills the two-element array with two new descriptors on success.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned by nobody else.
        Ok(unsafe {
            StopPipe {
                read: OwnedFd::from_raw_fd(fds[0]),
                write: OwnedFd::from_raw_fd(fds[1]),
            }
        })
    }

    fn stop(&self) {
        // SAFETY: writes one byte from a local to a descriptor this struct owns.
        unsafe { libc::write(self.write.as_raw_fd(), b"x".as_ptr().cast(), 1) };
    }
}

/// A pipe reader that ends (as at end of file) once the stop pipe is readable, after at most
/// [`DRAIN_AFTER_STOP`] more bytes of what its pipe already holds.
struct Stoppable<'a, R> {
    inner: R,
    stop: BorrowedFd<'a>,
    after_stop: usize,
}

impl<'a, R> Stoppable<'a, R> {
    fn new(inner: R, stop: BorrowedFd<'a>) -> Stoppable<'a, R> {
        Stoppable {
            inner,
            stop,
            after_stop: 0,
        }
    }
}

impl<R: Read + AsFd> Read for Stoppable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut fds = [
            libc::pollfd {
                fd: self.inner.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        loop {
            // SAFETY: poll(2) on a two-element array of valid pollfd structs.
            if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } >= 0 {
                break;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        let stopped = fds[1].revents != 0;
        if fds[0].revents == 0 || (stopped && self.after_stop >= DRAIN_AFTER_STOP) {
            return Ok(0);
        }
        // Readable, closed or failed: read says which, without blocking.
        let read = self.inner.read(buf)?;
        if stopped {
            self.after_stop += read;
        }
        Ok(read)
    }
}

/// Reads `reader` to its end, forwarding each complete line (and the last partial one) to
/// `sink`.
fn forward_lines(mut reader: impl Read, stream: Stream, sink: &dyn OutputSink) -> io::Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                if !pending.is_empty() {
                    sink.output(stream, &pending);
                }
                return Err(err);
            }
        };
        pending.extend_from_slice(&buffer[..read]);
        // Everything up to the last newline goes now, in one report.
        if let Some(last) = pending.iter().rposition(|&b| b == b'\n') {
            sink.output(stream, &pending[..=last]);
            pending.drain(..=last);
        }
        while pending.len() >= MAX_LINE {
            sink.output(stream, &pending[..MAX_LINE]);
            pending.drain(..MAX_LINE);
        }
    }
    if !pending.is_empty() {
        sink.output(stream, &pending);
    }
    Ok(())
}

/// The engine's sink for one task run: reports each piece live and keeps a bounded copy of
/// each stream for the cache.
pub(crate) struct TaskOutput<'a> {
    id: &'a TaskId,
    reporter: &'a dyn Reporter,
    kept: Mutex<[Kept; 2]>,
}

#[derive(Default)]
struct Kept {
    bytes: Vec<u8>,
    dropped: u64,
}

impl<'a> TaskOutput<'a> {
    pub(crate) fn new(id: &'a TaskId, reporter: &'a dyn Reporter) -> TaskOutput<'a> {
        TaskOutput {
            id,
            reporter,
            kept: Mutex::default(),
        }
    }

    /// What was kept of stdout and stderr, for the cache.
    pub(crate) fn into_kept(self) -> (Vec<u8>, Vec<u8>) {
        let [stdout, stderr] = self.kept.into_inner().unwrap_or_else(|e| e.into_inner());
        (stdout.finish(), stderr.finish())
    }
}

impl Kept {
    fn finish(mut self) -> Vec<u8> {
        if self.dropped > 0 {
            if !self.bytes.is_empty() && !self.bytes.ends_with(b"\n") {
                self.bytes.push(b'\n');
            }
            self.bytes.extend_from_slice(
                format!(
                    "[xbundle: {} more bytes of output were shown live but not kept in the cache]\n",
                    self.dropped
                )
                .as_bytes(),
            );
        }
        self.bytes
    }
}

impl OutputSink for TaskOutput<'_> {
    fn output(&self, stream: Stream, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            let kept = &mut kept[match stream {
                Stream::Stdout => 0,
                Stream::Stderr => 1,
            }];
            let room = MAX_KEPT.saturating_sub(kept.bytes.len());
            let taken = room.min(bytes.len());
            kept.bytes.extend_from_slice(&bytes[..taken]);
            kept.dropped += (bytes.len() - taken) as u64;
        }
        self.reporter.report(Event::Output {
            id: self.id,
            stream,
            bytes,
            replayed: false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Pieces(Mutex<Vec<(Stream, Vec<u8>)>>);

    impl OutputSink for Pieces {
        fn output(&self, stream: Stream, bytes: &[u8]) {
            self.0.lock().unwrap().push((stream, bytes.to_vec()));
        }
    }

    /// A reader handing out its data in the given chunks.
    struct Chunks(Vec<Vec<u8>>);

    impl Read for Chunks {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let chunk = self.0.remove(0);
            buf[..chunk.len()].copy_from_slice(&chunk);
            Ok(chunk.len())
        }
    }

    #[test]
    fn lines_are_forwarded_whole_and_the_last_partial_line_at_the_end() {
        let sink = Pieces::default();
        let chunks = [&b"fir"[..], b"st\nsec", b"ond\nthird\nfour", b"th"];
        forward_lines(
            Chunks(chunks.iter().map(|c| c.to_vec()).collect()),
            Stream::Stdout,
            &sink,
        )
        .unwrap();
        let pieces: Vec<Vec<u8>> = sink
            .0
            .into_inner()
            .unwrap()
            .into_iter()
            .map(|p| p.1)
            .collect();
        assert_eq!(
            pieces,
            [&b"first\n"[..], b"second\nthird\n", b"fourth"].map(<[u8]>::to_vec)
        );
    }

    #[test]
    fn an_overlong_line_goes_in_bounded_pieces() {
        let sink = Pieces::default();
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let chunks = long.chunks(10_000).map(<[u8]>::to_vec).collect();
        forward_lines(Chunks(chunks), Stream::Stderr, &sink).unwrap();
        let pieces = sink.0.into_inner().unwrap();
        assert!(pieces.iter().all(|(_, p)| p.len() <= MAX_LINE));
        assert_eq!(
            pieces.iter().map(|(_, p)| p.len()).sum::<usize>(),
            long.len()
        );
    }

    #[test]
    fn what_is_kept_for_the_cache_is_bounded_and_says_so() {
        let id = TaskId::new("task:x");
        let sink = TaskOutput::new(&id, &crate::events::Silent);
        let piece = vec![b'y'; 1024 * 1024];
        for _ in 0..(MAX_KEPT / piece.len() + 3) {
            sink.output(Stream::Stdout, &piece);
        }
        sink.output(Stream::Stderr, b"short\n");
        let (stdout, stderr) = sink.into_kept();
        assert!(stdout.len() < MAX_KEPT + 200);
        let tail = String::from_utf8_lossy(&stdout[MAX_KEPT..]).into_owned();
        assert!(
            tail.contains(&format!("{} more bytes", 3 * piece.len())),
            "{tail}"
        );
        assert_eq!(stderr, b"short\n");
    }
}
