//! The seam under the journal's file operations: [`JournalIo`], what the journal asks of the
//! disk, and [`FileIo`], the real file. Tests (this crate's and the service's) put a
//! [`FaultyIo`](super::FaultyIo) in between to make the disk fill up on command.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// A journal being replayed: read front to back, with a seek back when a corrupt record makes
/// replay look for the next good one.
pub trait ReadSeek: Read + Seek + Send {}

impl<T: Read + Seek + Send> ReadSeek for T {}

/// The operations the journal does on its file. Each is durable when it returns `Ok` and, when
/// it fails, leaves the file either as it was or (for [`append`](JournalIo::append)) with some
/// of the bytes written, which the journal then truncates away.
///
/// Called only from the fallback's writer thread (and once at open), so `&mut self`.
pub trait JournalIo: Send + 'static {
    /// Where the journal lives, for logs and errors.
    fn path(&self) -> &Path;

    /// The journal's bytes and their length, for replay; `None` when there is no journal yet.
    fn read(&mut self) -> io::Result<Option<(Box<dyn ReadSeek>, u64)>>;

    /// Writes `bytes` at the end of the journal and syncs them.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;

    /// Cuts the journal to its first `len` bytes and syncs that.
    fn truncate(&mut self, len: u64) -> io::Result<()>;

    /// Replaces the whole journal with `bytes`, atomically: after a crash at any point the
    /// journal is either the old one or the new one, whole.
    fn replace(&mut self, bytes: &[u8]) -> io::Result<()>;
}

/// The journal as a real file, `dir/journal.log`, locked through `dir/journal.lock`.
pub struct FileIo {
    dir: PathBuf,
    path: PathBuf,
    /// Holds an exclusive `flock` on `journal.lock` for as long as this journal is open, so two
    /// processes (a replica, `docroom replay-journal`) never write one journal. The kernel
    /// drops it when the process dies, however it dies.
    _lock: File,
    /// `None` after a replace whose new file could not be opened: nothing may be appended until
    /// a later replace succeeds, or the bytes would land where replay cannot reach them.
    file: Option<File>,
}

impl FileIo {
    /// Creates `dir` and the journal file if needed, durably, and removes the temp file of a
    /// replace that a crash interrupted (the journal itself is still whole then).
    ///
    /// Fails with [`io::ErrorKind::WouldBlock`] when another open journal (in this process or
    /// another) holds the lock: nothing in `dir` is touched then.
    pub fn open(dir: &Path) -> io::Result<FileIo> {
        fs::create_dir_all(dir)?;
        let lock = lock(dir)?;
        let path = dir.join("journal.log");
        match fs::remove_file(temp_path(&path)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let file = open_append(&path)?;
        sync_dir(dir)?;
        Ok(FileIo {
            dir: dir.to_owned(),
            path,
            _lock: lock,
            file: Some(file),
        })
    }

    fn file(&mut self) -> io::Result<&mut File> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("journal file is not open"))
    }
}

impl JournalIo for FileIo {
    fn path(&self) -> &Path {
        &self.path
    }

    fn read(&mut self) -> io::Result<Option<(Box<dyn ReadSeek>, u64)>> {
        match File::open(&self.path) {
            Ok(file) => {
                let len = file.metadata()?.len();
                Ok(Some((Box::new(BufReader::new(file)), len)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let file = self.file()?;
        file.write_all(bytes)?;
        file.sync_data()?;
        still_linked(file)
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let file = self.file()?;
        file.set_len(len)?;
        file.sync_all()?;
        still_linked(file)
    }

    fn replace(&mut self, bytes: &[u8]) -> io::Result<()> {
        let tmp = temp_path(&self.path);
        let written = File::create(&tmp).and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        });
        if let Err(e) = written.and_then(|()| fs::rename(&tmp, &self.path)) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        // The old handle points at the replaced file; until the new one is open, appends must
        // not go anywhere.
        self.file = None;
        sync_dir(&self.dir)?;
        self.file = Some(open_append(&self.path)?);
        Ok(())
    }
}

/// Takes the exclusive lock of the journal in `dir`, without waiting.
fn lock(dir: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("journal.lock"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "the journal is in use by another process",
        )),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

fn temp_path(path: &Path) -> PathBuf {
    path.with_extension("log.tmp")
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A write into a file whose directory entry is gone succeeds but survives nothing, so it must
/// count as a failure.
fn still_linked(file: &File) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if file.metadata()?.nlink() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "journal file was removed",
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}
