//! What a task prints, live: the [`OutputSink`] an action reports its output to
//! ([`crate::ActionContext::output`]), and [`run_command`], how a task's commands run (the
//! engine's [`crate::CommandAction`] and the front end's own tool runner both use it; only a
//! signing hook, whose output may hold a secret, is captured and redacted instead).
//!
//! [`run_command`] spawns the command in its own process group registered with the run's
//! [`crate::Cancel`], reads stdout and stderr together on the calling thread (one `poll` loop
//! over both pipes, no reader threads) and forwards each complete line to the sink as it
//! arrives; a last line without a newline is forwarded when the stream ends, and a line longer than [`MAX_LINE`] is forwarded in pieces of that size, so
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

use std::io;
#[cfg(test)]
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
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
/// Both pipes are read by the calling thread, which polls them together (no reader thread per
/// stream): the command's exit is noticed when both pipes close, or, while a process it left
/// in the background holds them, by a `waitpid` at least every [`EXIT_CHECK`].
///
/// An error of kind [`io::ErrorKind::Interrupted`] means the run was cancelled before the
/// command could start.
pub fn run_command(
    context: &ActionContext<'_>,
    command: &mut Command,
    forward: Forward,
) -> io::Result<Finished> {
    run_as(context, command, forward, Spawn::default())
}

/// How [`run_as`] starts a command and reports its end, beyond [`run_command`]'s defaults.
#[derive(Default)]
pub(crate) struct Spawn<'a> {
    /// Where stdin comes from (default: nothing, `/dev/null`).
    pub stdin: Option<Stdio>,
    /// Where stdout goes instead of a pipe read as the task's (a redirection's file: nothing
    /// of it is read).
    pub stdout: Option<Stdio>,
    /// The process group to join (see [`crate::cancel::Cancel::run_in_group`]).
    pub group: Option<i32>,
    /// Set once the command has started: an error before says it never ran.
    pub started: Option<&'a std::cell::Cell<bool>>,
    /// An end by a signal is reported as dash reports its command's (see
    /// [`crate::direct::as_dash_status`]): the status 128 + the signal, and its description at
    /// the end of stderr, unless the run was cancelled.
    pub as_dash: bool,
}

/// [`run_command`], started and reported as `spawn` says.
pub(crate) fn run_as(
    context: &ActionContext<'_>,
    command: &mut Command,
    forward: Forward,
    spawn: Spawn<'_>,
) -> io::Result<Finished> {
    let piped = spawn.stdout.is_none();
    command
        .stdin(spawn.stdin.unwrap_or_else(Stdio::null))
        .stdout(spawn.stdout.unwrap_or_else(Stdio::piped))
        .stderr(Stdio::piped());
    // The command is left a zombie once it ends (see `exited`): its id, which is signalled as
    // a group until `Cancel::run_in_group` unregisters it (by the linger kill, a cancellation,
    // the reaper), cannot be handed to another process before that reaps it.
    let keep_zombie = cfg!(any(target_os = "linux", target_os = "android"));
    let cancel = context.cancel;
    cancel.run_in_group(command, spawn.group, keep_zombie, |mut child| {
        if let Some(started) = spawn.started {
            started.set(true);
        }
        // The group it joined or leads, and the one named by its id (the same when it leads).
        let own = child.id() as i32;
        let group = spawn.group.unwrap_or(own);
        let stdout = child.stdout.take();
        let stderr = child.stderr.take().expect("stderr is piped");
        let sink = context.output;
        let mut streams = [
            // A stdout that went to a file is a stream closed from the start (its descriptor
            // is stderr's, never polled nor read).
            Reading::new(
                stdout.as_ref().map_or(stderr.as_fd(), |out| out.as_fd()),
                Stream::Stdout,
                forward == Forward::Both,
            ),
            Reading::new(stderr.as_fd(), Stream::Stderr, true),
        ];
        streams[0].open = piped;
        let mut buffer = vec![0u8; 16 * 1024];
        // The end of the command as `spawn.as_dash` asks: dash's status, and its message where
        // dash prints it, on the same stderr after what the command wrote (when the end is seen).
        let dash_end = |ended: ExitStatus, stderr: &mut Reading<'_>| -> ExitStatus {
            if !spawn.as_dash || context.cancel.is_cancelled() {
                return ended;
            }
            let (shell, line) = crate::direct::as_dash_status(ended);
            if let Some(line) = line
                && stderr.forwarded
            {
                stderr.lines.feed(line.as_bytes(), sink);
            }
            shell
        };
        let mut status: Option<ExitStatus> = None;
        let mut exited_at: Option<Instant> = None;
        let mut last_check = Instant::now();
        let mut lingered = false;
        let mut failure: Option<io::Error> = None;
        while failure.is_none() && streams.iter().any(|s| s.open) {
            // The pipes close when the command exits, unless a process it left in the
            // background holds them: that one gets LINGER, then its group is killed and
            // reading stops (cargo and ninja would wait for it forever).
            let timeout = match exited_at {
                None => EXIT_CHECK,
                Some(at) => LINGER.saturating_sub(at.elapsed()),
            };
            if exited_at.is_some() && timeout.is_zero() {
                lingered = true;
                // The command's group (registered with the run's Cancel), and the one it may
                // have made of its own.
                crate::cancel::signal_group(group, libc::SIGKILL);
                if group != own {
                    crate::cancel::signal_group(own, libc::SIGKILL);
                }
                // What the pipes already hold, up to DRAIN_AFTER_STOP bytes each, then stop.
                for stream in &mut streams {
                    if let Err(err) = stream.drain(&mut buffer, sink) {
                        failure.get_or_insert(err);
                    }
                }
                break;
            }
            match poll_streams(&mut streams, timeout) {
                Ok(_) => {
                    for stream in &mut streams {
                        if stream.ready
                            && let Err(err) = stream.read_once(&mut buffer, sink)
                        {
                            failure.get_or_insert(err);
                        }
                    }
                }
                Err(err) => {
                    failure = Some(err);
                }
            }
            // Checked on a clock, not only when the pipes are quiet: a process left in the
            // background may keep writing.
            if exited_at.is_none() && last_check.elapsed() >= EXIT_CHECK {
                last_check = Instant::now();
                match exited(&mut child, keep_zombie, false) {
                    Ok(Some(done)) => {
                        // What it wrote before it ended comes before what dash would add:
                        // all the pipe holds (it may have been made larger than usual).
                        let held = pipe_size(streams[1].fd);
                        if let Err(err) = streams[1].read_available(&mut buffer, sink, held) {
                            failure.get_or_insert(err);
                        }
                        status = Some(dash_end(done, &mut streams[1]));
                        exited_at = Some(last_check);
                    }
                    Ok(None) => {}
                    Err(err) => {
                        failure.get_or_insert(err);
                    }
                }
            }
        }
        let status = match status {
            Some(status) => Ok(status),
            None => exited(&mut child, keep_zombie, true)
                .map(|ended| dash_end(ended.expect("waited for"), &mut streams[1])),
        };
        for stream in &mut streams {
            stream.finish(sink);
        }
        let data = std::mem::take(&mut streams[0].data);
        drop(streams);
        drop((stdout, stderr));
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
        if let Some(err) = failure {
            return Err(err);
        }
        Ok(Finished {
            status,
            stdout: data,
        })
    })
}

/// How often a command whose pipes stay open is checked for having exited.
const EXIT_CHECK: Duration = Duration::from_millis(50);

/// One of a command's output pipes, as [`run_command`] reads it.
struct Reading<'a> {
    fd: BorrowedFd<'a>,
    /// Forwarded line by line (else kept whole in `data`).
    forwarded: bool,
    lines: Lines,
    data: Vec<u8>,
    open: bool,
    /// Set by the last poll: readable, closed or failed.
    ready: bool,
}

impl<'a> Reading<'a> {
    fn new(fd: BorrowedFd<'a>, stream: Stream, forwarded: bool) -> Reading<'a> {
        Reading {
            fd,
            forwarded,
            lines: Lines::new(stream),
            data: Vec::new(),
            open: true,
            ready: false,
        }
    }

    /// One read (the last poll said it will not block); closes the stream at its end.
    fn read_once(&mut self, buffer: &mut [u8], sink: &dyn OutputSink) -> io::Result<usize> {
        let read = loop {
            // SAFETY: read(2) into a buffer this function borrows mutably, of its length.
            let read = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                )
            };
            if read >= 0 {
                break read as usize;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                self.open = false;
                return Err(err);
            }
        };
        if read == 0 {
            self.open = false;
        } else if self.forwarded {
            self.lines.feed(&buffer[..read], sink);
        } else {
            self.data.extend_from_slice(&buffer[..read]);
        }
        Ok(read)
    }

    /// Reads what the pipe already holds, at most [`DRAIN_AFTER_STOP`] bytes, without waiting,
    /// then stops reading it.
    fn drain(&mut self, buffer: &mut [u8], sink: &dyn OutputSink) -> io::Result<()> {
        let read = self.read_available(buffer, sink, DRAIN_AFTER_STOP);
        self.open = false;
        read
    }

    /// Reads what the pipe already holds, at most `limit` bytes, without waiting; the stream
    /// stays open.
    fn read_available(
        &mut self,
        buffer: &mut [u8],
        sink: &dyn OutputSink,
        limit: usize,
    ) -> io::Result<()> {
        let mut drained = 0;
        while self.open && drained < limit {
            let mut fd = [libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            // SAFETY: poll(2) on a one-element array of a valid pollfd struct, no waiting.
            if unsafe { libc::poll(fd.as_mut_ptr(), 1, 0) } <= 0 || fd[0].revents == 0 {
                break;
            }
            drained += self.read_once(buffer, sink)?;
        }
        Ok(())
    }

    /// Forwards the last partial line.
    fn finish(&mut self, sink: &dyn OutputSink) {
        if self.forwarded {
            self.lines.finish(sink);
        }
    }
}

/// How much the pipe `fd` can hold (`F_GETPIPE_SZ`; [`DRAIN_AFTER_STOP`] where that is not
/// known).
fn pipe_size(fd: BorrowedFd<'_>) -> usize {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: fcntl(2) F_GETPIPE_SZ on a descriptor this process holds; no memory involved.
        let size = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ) };
        if size > 0 {
            return size as usize;
        }
    }
    let _ = fd;
    DRAIN_AFTER_STOP
}

/// Whether `child` has ended (waiting for it with `block`), and how. With `keep_zombie` (Linux)
/// it is not reaped: `waitid(2)` with `WNOWAIT` (the caller reaps it later); otherwise as
/// `Child::try_wait`/`Child::wait` do.
fn exited(child: &mut Child, keep_zombie: bool, block: bool) -> io::Result<Option<ExitStatus>> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if keep_zombie {
        use std::os::unix::process::ExitStatusExt;
        let mut flags = libc::WEXITED | libc::WNOWAIT;
        if !block {
            flags |= libc::WNOHANG;
        }
        loop {
            // SAFETY: a zeroed siginfo_t that waitid(2) fills in, for a child of this process.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let done =
                unsafe { libc::waitid(libc::P_PID, child.id() as libc::id_t, &mut info, flags) };
            if done < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            // SAFETY: si_pid and si_status are valid in what waitid(2) filled in for CLD_*.
            let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
            if pid == 0 {
                return Ok(None);
            }
            // The raw wait status: exit code in the second byte, else the signal (and 0x80 for
            // a core dump).
            let raw = match info.si_code {
                libc::CLD_EXITED => (status & 0xff) << 8,
                libc::CLD_DUMPED => status | 0x80,
                _ => status,
            };
            return Ok(Some(ExitStatus::from_raw(raw)));
        }
    }
    let _ = keep_zombie;
    if block {
        child.wait().map(Some)
    } else {
        child.try_wait()
    }
}

/// Polls the open streams for up to `timeout`; marks the ready ones, returns how many are.
fn poll_streams(streams: &mut [Reading<'_>; 2], timeout: Duration) -> io::Result<usize> {
    let mut fds: Vec<libc::pollfd> = Vec::with_capacity(2);
    for stream in streams.iter_mut() {
        stream.ready = false;
        if stream.open {
            fds.push(libc::pollfd {
                fd: stream.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
    }
    let millis = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: poll(2) on an array of valid pollfd structs of the length given.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
    if ready < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted {
            Ok(0)
        } else {
            Err(err)
        };
    }
    let mut polled = fds.iter();
    for stream in streams.iter_mut().filter(|s| s.open) {
        stream.ready = polled.next().is_some_and(|fd| fd.revents != 0);
    }
    Ok(ready as usize)
}

/// Cuts a stream into the pieces forwarded: every complete line (several at once when they
/// came together), a piece of [`MAX_LINE`] bytes of an overlong one, the last partial line at
/// the end.
struct Lines {
    stream: Stream,
    pending: Vec<u8>,
}

impl Lines {
    fn new(stream: Stream) -> Lines {
        Lines {
            stream,
            pending: Vec::new(),
        }
    }

    fn feed(&mut self, bytes: &[u8], sink: &dyn OutputSink) {
        self.pending.extend_from_slice(bytes);
        // Everything up to the last newline goes now, in one report.
        if let Some(last) = self.pending.iter().rposition(|&b| b == b'\n') {
            sink.output(self.stream, &self.pending[..=last]);
            self.pending.drain(..=last);
        }
        while self.pending.len() >= MAX_LINE {
            sink.output(self.stream, &self.pending[..MAX_LINE]);
            self.pending.drain(..MAX_LINE);
        }
    }

    fn finish(&mut self, sink: &dyn OutputSink) {
        if !self.pending.is_empty() {
            sink.output(self.stream, &self.pending);
            self.pending.clear();
        }
    }
}

/// Reads `reader` to its end, forwarding each complete line (and the last partial one) to
/// `sink`.
#[cfg(test)]
fn forward_lines(mut reader: impl Read, stream: Stream, sink: &dyn OutputSink) -> io::Result<()> {
    let mut lines = Lines::new(stream);
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                lines.finish(sink);
                return Err(err);
            }
        };
        lines.feed(&buffer[..read], sink);
    }
    lines.finish(sink);
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
