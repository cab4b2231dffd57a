//! Safe file I/O: mapped or streamed input, atomic output, and the same-file check.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::ops::Range;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tempfile::NamedTempFile;

/// A path argument where `-` means standard input or output.
pub const STDIO: &str = "-";

/// An opened input: a memory map of a regular file, or a stream.
pub enum Input {
    /// A regular, non-empty file, mapped read-only.
    Mapped(memmap2::Mmap),
    /// Anything that cannot be mapped: a pipe, a FIFO, stdin, a zero-size special file.
    Stream(Box<dyn Read + Send>),
}

/// Identifies a file by device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    /// The identity of the file at `path` (following links), if it exists.
    pub fn of_path(path: &Path) -> Option<Self> {
        fs::metadata(path).ok().map(|meta| Self::of(&meta))
    }

    /// The identity of the regular file standard output writes to, when it is redirected to
    /// one (`> f` or `>> f`).
    pub fn of_stdout() -> Option<Self> {
        use std::os::fd::AsFd;

        let fd = io::stdout().as_fd().try_clone_to_owned().ok()?;
        let meta = File::from(fd).metadata().ok()?;
        meta.is_file().then(|| Self::of(&meta))
    }
}

/// Opens `path` (or stdin for `-`), mapping it when it is a regular non-empty file. Returns the
/// input and, for a file, its identity for the same-file check.
pub fn open_input(path: &Path) -> io::Result<(Input, Option<FileId>)> {
    if path.as_os_str() == STDIO {
        return Ok((Input::Stream(Box::new(io::stdin())), stdin_id()));
    }
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a directory",
        ));
    }
    let id = Some(FileId::of(&meta));
    if meta.is_file()
        && meta.len() > 0
        && let Ok(map) = mapping::map(&file)
    {
        return Ok((Input::Mapped(map), id));
    }
    Ok((Input::Stream(Box::new(file)), id))
}

/// The identity of the file standard input reads, when it is redirected from one: `-o FILE`
/// must not replace the file being read (`encrypt -o f - < f`).
fn stdin_id() -> Option<FileId> {
    use std::os::fd::AsFd;

    let fd = io::stdin().as_fd().try_clone_to_owned().ok()?;
    let meta = File::from(fd).metadata().ok()?;
    meta.is_file().then(|| FileId::of(&meta))
}

/// How far before a released range to release again: a fault on a page of a large page-cache
/// folio may map the whole folio (up to 2 MiB on x86-64), including pages before the boundary
/// that were already released. Without this margin those pages pile up (165 MiB resident to
/// decrypt 1 GiB on one thread, measured).
const FOLIO_MARGIN: usize = 2 * 1024 * 1024;

/// Consumed bytes of a mapped input released at once: each release costs a system call and a
/// TLB flush on every core running this process, so batches are released several at a time
/// (releasing each 1 MiB batch on its own made encrypting to /dev/null 20% slower, measured).
const RELEASE_STEP: usize = 8 * 1024 * 1024;

/// Releases the consumed ranges of a mapped input: tells the kernel they will not be read
/// again, so their pages leave this process's resident set (they stay in the page cache).
/// Memory use then stays bounded by the batches in flight and one release step, whatever the
/// file size.
pub struct Releaser<'a> {
    map: &'a memmap2::Mmap,
    released_to: usize,
}

impl<'a> Releaser<'a> {
    /// A releaser for `map`, with nothing released yet.
    pub fn new(map: &'a memmap2::Mmap) -> Self {
        Self {
            map,
            released_to: 0,
        }
    }

    /// Notes that `range` was consumed (consumed ranges come in order), and once another
    /// 8 MiB are behind (or the map's end is reached), releases them and the margin before them.
    /// A failure only costs memory, so it is ignored.
    pub fn consumed(&mut self, range: Range<usize>) {
        let end = range.end.min(self.map.len());
        if end >= self.released_to + RELEASE_STEP || end == self.map.len() {
            self.release_to(end);
        }
    }

    fn release_to(&mut self, end: usize) {
        let start = self.released_to.saturating_sub(FOLIO_MARGIN);
        if start < end {
            let _ = mapping::release(self.map, start..end);
        }
        self.released_to = self.released_to.max(end);
    }
}

/// Where output goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputTarget {
    /// Standard output.
    Stdout,
    /// A file, replaced only with `force`.
    File {
        /// The destination.
        path: PathBuf,
        /// Whether an existing destination may be replaced.
        force: bool,
        /// Whether an existing FIFO or character device there is written in place, as when
        /// a person named it (`-o /dev/null`); otherwise it counts as an existing file.
        in_place: bool,
    },
}

impl OutputTarget {
    /// A path a person named: `-` is stdout; anything else a file, where an existing FIFO or
    /// character device is written in place.
    pub fn from_arg(path: &Path, force: bool) -> Self {
        if path.as_os_str() == STDIO {
            Self::Stdout
        } else {
            Self::File {
                path: path.to_owned(),
                force,
                in_place: true,
            }
        }
    }

    /// A path datakey chose (the input's name plus or minus `.dk`): whatever exists there is
    /// only ever replaced with `force`.
    pub fn derived(path: PathBuf, force: bool) -> Self {
        Self::File {
            path,
            force,
            in_place: false,
        }
    }
}

/// Why an output could not be prepared.
#[derive(Debug)]
pub enum OutputError {
    /// The destination exists and `--force` was not given.
    Exists(PathBuf),
    /// The destination is neither a regular file nor a stream device (a directory, a block
    /// device, a socket).
    NotAFile(PathBuf),
    /// The destination is the input file.
    SameFile(PathBuf),
    /// Creating the temporary file or opening the device failed.
    Io(PathBuf, io::Error),
}

impl std::fmt::Display for OutputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exists(p) => write!(
                f,
                "{} already exists (use --force to replace it)",
                p.display()
            ),
            Self::NotAFile(p) => write!(f, "output {} is not a regular file", p.display()),
            Self::SameFile(p) => write!(f, "output {} is the input file", p.display()),
            Self::Io(p, err) => write!(f, "{}: {err}", p.display()),
        }
    }
}

impl std::error::Error for OutputError {}

/// An output being written: a mode-0600 temporary file beside the destination, renamed into
/// place by [`Output::commit`] and removed if dropped uncommitted; an existing character device
/// or FIFO (`/dev/null`, a named pipe), written in place; or stdout.
pub enum Output {
    /// A temporary file and its final destination.
    File {
        /// The temporary file, removed on drop unless persisted.
        tmp: NamedTempFile,
        /// A buffered writer on the same file.
        writer: io::BufWriter<Writeback>,
        /// The destination.
        path: PathBuf,
        /// Whether to replace an existing destination.
        force: bool,
        /// Keeps the temporary path listed for [`remove_pending_outputs`] while it exists.
        _pending: Pending,
    },
    /// A character device or FIFO, written directly: it holds no file to replace.
    Device(File),
    /// Standard output.
    Stdout(io::StdoutLock<'static>),
}

impl Output {
    /// Checks the destination (exists? the input itself?) and creates the temporary file.
    /// Nothing is created when a check fails.
    pub fn create(target: &OutputTarget, input: Option<FileId>) -> Result<Self, OutputError> {
        let (path, force, in_place) = match target {
            OutputTarget::Stdout => return stdout(input),
            OutputTarget::File {
                path,
                force,
                in_place,
            } => (path, *force, *in_place),
        };

        if let Ok(meta) = fs::metadata(path) {
            if input == Some(FileId::of(&meta)) {
                return Err(OutputError::SameFile(path.clone()));
            }
            let kind = meta.file_type();
            let is_stream = kind.is_char_device() || kind.is_fifo();
            if is_stream && in_place {
                return open_device(path);
            }
            if !kind.is_file() && !is_stream {
                return Err(OutputError::NotAFile(path.clone()));
            }
            if !force {
                return Err(OutputError::Exists(path.clone()));
            }
        } else if fs::symlink_metadata(path).is_ok() && !force {
            return Err(OutputError::Exists(path.clone()));
        }

        let dir = parent_dir(path);
        let tmp = tempfile::Builder::new()
            .prefix(".datakey-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|err| OutputError::Io(path.clone(), without_path(err)))?;
        let pending = Pending::register(tmp.path());
        // Write through a second handle: the temporary file's own writer names the file in
        // every error, and that name means nothing to the person reading it.
        let handle = tmp
            .as_file()
            .try_clone()
            .map_err(|e| OutputError::Io(path.clone(), e))?;
        Ok(Self::File {
            tmp,
            writer: io::BufWriter::with_capacity(1024 * 1024, Writeback::new(handle)),
            path: path.clone(),
            force,
            _pending: pending,
        })
    }

    /// The writer.
    pub fn writer(&mut self) -> &mut dyn Write {
        match self {
            Self::File { writer, .. } => writer,
            Self::Device(file) => file,
            Self::Stdout(out) => out,
        }
    }

    /// Flushes, syncs and renames the file into place (never over an existing file without
    /// `force`).
    pub fn commit(self) -> io::Result<()> {
        match self {
            Self::Stdout(mut out) => out.flush(),
            Self::Device(mut file) => file.flush(),
            Self::File {
                tmp,
                writer,
                path,
                force,
                ..
            } => {
                writer
                    .into_inner()
                    .map_err(io::IntoInnerError::into_error)?;
                tmp.as_file().sync_all()?;
                let persisted = if force {
                    tmp.persist(&path)
                } else {
                    tmp.persist_noclobber(&path)
                };
                persisted.map_err(|err| err.error)?;
                sync_parent(&path)
            }
        }
    }
}

/// Syncs the directory holding `path`, so that the rename that put it there survives a crash.
fn sync_parent(path: &Path) -> io::Result<()> {
    File::open(parent_dir(path))?.sync_all()
}

/// The directory `path` is in (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Temporary outputs that exist right now, so that a signal handler can remove them.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A temporary output path listed for the signal handler for as long as this value lives.
#[derive(Debug)]
pub struct Pending(PathBuf);

impl Pending {
    fn register(path: &Path) -> Self {
        lock_pending().push(path.to_owned());
        Self(path.to_owned())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        lock_pending().retain(|p| p != &self.0);
    }
}

fn lock_pending() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    PENDING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes every temporary output still being written. A program that exits on a signal calls
/// this first, so that an interrupted run leaves nothing beside its destination.
pub fn remove_pending_outputs() {
    for path in lock_pending().drain(..) {
        let _ = fs::remove_file(path);
    }
}

/// The operating system's error without the temporary file's name that `tempfile` attaches,
/// which would only confuse a person reading the message.
fn without_path(err: io::Error) -> io::Error {
    match err.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => err,
    }
}

/// Bytes written to a temporary output between two requests to start writing them back.
const WRITEBACK_STEP: u64 = 8 * 1024 * 1024;

/// A temporary output file that asks the kernel to start writing each 8 MiB to disk as soon as
/// it is written, without waiting for it. The disk then works while later chunks are sealed, and
/// the `fsync` before the rename has little left to do.
pub struct Writeback {
    file: File,
    written: u64,
    started: u64,
}

impl Writeback {
    fn new(file: File) -> Self {
        Self {
            file,
            written: 0,
            started: 0,
        }
    }
}

impl Write for Writeback {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= WRITEBACK_STEP {
            mapping::start_writeback(&self.file, self.started, self.written);
            self.started = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Standard output, unless it is redirected to the input file (`encrypt -o - f >> f`).
fn stdout(input: Option<FileId>) -> Result<Output, OutputError> {
    if input.is_some() && input == FileId::of_stdout() {
        return Err(OutputError::SameFile(PathBuf::from("(standard output)")));
    }
    Ok(Output::Stdout(io::stdout().lock()))
}

/// Opens an existing character device or FIFO for writing, without creating or truncating.
fn open_device(path: &Path) -> Result<Output, OutputError> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map(Output::Device)
        .map_err(|err| OutputError::Io(path.to_owned(), err))
}

/// The one place that calls `mmap`, `madvise` and `sync_file_range`.
#[expect(
    unsafe_code,
    reason = "mmap, madvise and sync_file_range have no safe wrapper"
)]
mod mapping {
    use std::fs::File;
    use std::io;

    pub fn map(file: &File) -> io::Result<memmap2::Mmap> {
        // SAFETY: the map is read-only and private to this process. If another process
        // truncates or rewrites the file while it is mapped, reads may fault (SIGBUS) or see
        // changed bytes; changed bytes fail authentication on decrypt, and on encrypt they are
        // the same race any reader of a changing file has. The README states this limit.
        let map = unsafe { memmap2::MmapOptions::new().map(file)? };
        let _ = map.advise(memmap2::Advice::Sequential);
        Ok(map)
    }

    pub fn release(map: &memmap2::Mmap, range: std::ops::Range<usize>) -> io::Result<()> {
        let advice = memmap2::UncheckedAdvice::DontNeed;
        // SAFETY: the map is a read-only, private mapping of a file that this process never
        // writes through. MADV_DONTNEED on such pages only drops them from this process's page
        // tables: a later read faults them in again with the same file contents, so no
        // reference into the map ever sees memory change under it (unlike on anonymous or
        // written private pages, where it would zero them).
        unsafe { map.unchecked_advise_range(advice, range.start, range.len()) }
    }

    /// Starts writeback of bytes `start..end` of `file` without waiting for it. Only a hint: a
    /// failure changes nothing but timing, so it is ignored.
    #[cfg(target_os = "linux")]
    pub fn start_writeback(file: &File, start: u64, end: u64) {
        use std::os::fd::AsRawFd;

        let (Ok(offset), Ok(len)) = (i64::try_from(start), i64::try_from(end - start)) else {
            return;
        };
        // SAFETY: sync_file_range only reads its integer arguments; the descriptor is open for
        // as long as `file` is borrowed, and the call touches no memory of this process.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
        }
    }

    /// Elsewhere the final `fsync` does all the writing back.
    #[cfg(not(target_os = "linux"))]
    pub fn start_writeback(_file: &File, _start: u64, _end: u64) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_existing_and_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in");
        fs::write(&input, b"x").unwrap();
        let (_, id) = open_input(&input).unwrap();

        let target = OutputTarget::File {
            path: input.clone(),
            force: true,
            in_place: true,
        };
        assert!(matches!(
            Output::create(&target, id),
            Err(OutputError::SameFile(_))
        ));

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&input, &link).unwrap();
        let target = OutputTarget::File {
            path: link,
            force: true,
            in_place: true,
        };
        assert!(matches!(
            Output::create(&target, id),
            Err(OutputError::SameFile(_))
        ));

        let other = dir.path().join("other");
        fs::write(&other, b"y").unwrap();
        let target = OutputTarget::File {
            path: other,
            force: false,
            in_place: true,
        };
        assert!(matches!(
            Output::create(&target, id),
            Err(OutputError::Exists(_))
        ));
    }

    #[test]
    fn uncommitted_output_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let target = OutputTarget::File {
            path: path.clone(),
            force: false,
            in_place: true,
        };
        let mut out = Output::create(&target, None).unwrap();
        out.writer().write_all(b"partial").unwrap();
        drop(out);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);

        let mut out = Output::create(&target, None).unwrap();
        out.writer().write_all(b"whole").unwrap();
        out.commit().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"whole");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn released_ranges_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mapped");
        let data: Vec<u8> = (0..5 * FOLIO_MARGIN + 123)
            .map(|i| (i % 241) as u8)
            .collect();
        fs::write(&path, &data).unwrap();
        let Input::Mapped(map) = open_input(&path).unwrap().0 else {
            panic!("a regular file is mapped");
        };

        let mut releaser = Releaser::new(&map);
        let step = FOLIO_MARGIN / 3 + 7;
        let mut start = 0;
        while start < map.len() {
            let end = (start + step).min(map.len());
            assert!(map[start..end] == data[start..end]);
            releaser.consumed(start..end);
            start = end;
        }
        releaser.consumed(map.len()..map.len() + 10);
        assert!(
            map[..] == data[..],
            "released pages fault back in unchanged"
        );
    }

    #[test]
    fn large_outputs_are_written_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let target = OutputTarget::File {
            path: path.clone(),
            force: false,
            in_place: true,
        };
        let data: Vec<u8> = (0..3 * WRITEBACK_STEP as usize + 5)
            .map(|i| (i % 249) as u8)
            .collect();
        let mut out = Output::create(&target, None).unwrap();
        for piece in data.chunks(3 * 1024 * 1024 + 1) {
            out.writer().write_all(piece).unwrap();
        }
        out.commit().unwrap();
        assert!(fs::read(&path).unwrap() == data);
    }

    #[test]
    fn writes_devices_in_place_and_refuses_directories() {
        let null = Path::new("/dev/null");
        for force in [false, true] {
            let target = OutputTarget::File {
                path: null.to_owned(),
                force,
                in_place: true,
            };
            let mut out = Output::create(&target, None).unwrap();
            assert!(matches!(out, Output::Device(_)));
            out.writer().write_all(b"discarded").unwrap();
            out.commit().unwrap();
            assert!(fs::metadata(null).unwrap().file_type().is_char_device());
        }

        let dir = tempfile::tempdir().unwrap();
        let target = OutputTarget::File {
            path: dir.path().to_owned(),
            force: true,
            in_place: true,
        };
        assert!(matches!(
            Output::create(&target, None),
            Err(OutputError::NotAFile(_))
        ));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    fn make_fifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[test]
    fn writes_fifos_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        make_fifo(&fifo);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read(fifo).unwrap())
        };

        let target = OutputTarget::File {
            path: fifo.clone(),
            force: false,
            in_place: true,
        };
        let mut out = Output::create(&target, None).unwrap();
        out.writer().write_all(b"through the pipe").unwrap();
        out.commit().unwrap();
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_fifo_at_a_derived_path_is_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("secret");
        make_fifo(&fifo);

        let refused = Output::create(&OutputTarget::derived(fifo.clone(), false), None);
        assert!(matches!(refused, Err(OutputError::Exists(_))));

        // With --force it is replaced by the file, never written through.
        let mut out = Output::create(&OutputTarget::derived(fifo.clone(), true), None).unwrap();
        out.writer().write_all(b"kept here").unwrap();
        out.commit().unwrap();
        assert_eq!(fs::read(&fifo).unwrap(), b"kept here");
    }

    #[test]
    fn maps_regular_files_and_streams_empty_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"data").unwrap();
        assert!(matches!(open_input(&path).unwrap().0, Input::Mapped(_)));
        fs::write(&path, b"").unwrap();
        assert!(matches!(open_input(&path).unwrap().0, Input::Stream(_)));
        assert!(open_input(dir.path()).is_err());
    }
}
