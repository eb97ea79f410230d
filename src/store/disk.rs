//! The file operations the active file goes through.
//!
//! [`ActiveFile`](super::ActiveFile) never touches `tokio::fs::File`
//! directly: it opens files through a [`Disk`] and writes through the
//! [`DiskFile`] it gets back. Production uses [`RealDisk`]; tests hand
//! [`Store::open_with`](super::Store::open_with) a disk that fails with
//! ENOSPC or EIO on demand (even after writing part of a buffer), so the
//! retry and roll-back paths run through the same store code as on a full
//! SD card.
//!
//! Renames, directory fsyncs and compression of rotated files use the file
//! system directly; they never write into the active file.

use std::future::Future;
use std::io::{self, SeekFrom};
use std::path::Path;
use std::pin::Pin;

use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::history::names::FILE_MODE;

/// What the methods of [`Disk`] and [`DiskFile`] return.
pub type IoFuture<'a, T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send + 'a>>;

/// Opens the active file.
pub trait Disk: Send + Sync {
    /// Open `path` for reading and appending, creating it (mode 0640) if
    /// it does not exist; a symlink is not followed (ELOOP).
    fn open<'a>(&'a self, path: &'a Path) -> IoFuture<'a, Box<dyn DiskFile>>;
}

/// One open data file. Writes always go to the end.
pub trait DiskFile: Send {
    /// The file's length now.
    fn size(&mut self) -> IoFuture<'_, u64>;
    /// `fstat` of the open file: its identity (device, inode), type, links.
    fn metadata(&mut self) -> IoFuture<'_, std::fs::Metadata>;
    /// Read from `offset` into `buf`; 0 at the end of the file.
    fn read_at<'a>(&'a mut self, offset: u64, buf: &'a mut [u8]) -> IoFuture<'a, usize>;
    /// Append all of `bytes` and hand them to the kernel. An error may come
    /// after part of `bytes` was written.
    fn append<'a>(&'a mut self, bytes: &'a [u8]) -> IoFuture<'a, ()>;
    /// Cut (or extend) the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> IoFuture<'_, ()>;
    /// fsync the file's data.
    fn sync(&mut self) -> IoFuture<'_, ()>;
}

/// The real file system, through tokio.
pub struct RealDisk;

impl Disk for RealDisk {
    fn open<'a>(&'a self, path: &'a Path) -> IoFuture<'a, Box<dyn DiskFile>> {
        Box::pin(async move {
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .mode(FILE_MODE)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(path)
                .await?;
            Ok(Box::new(RealFile(file)) as Box<dyn DiskFile>)
        })
    }
}

struct RealFile(File);

impl DiskFile for RealFile {
    fn size(&mut self) -> IoFuture<'_, u64> {
        Box::pin(async move { Ok(self.0.metadata().await?.len()) })
    }

    fn metadata(&mut self) -> IoFuture<'_, std::fs::Metadata> {
        Box::pin(self.0.metadata())
    }

    fn read_at<'a>(&'a mut self, offset: u64, buf: &'a mut [u8]) -> IoFuture<'a, usize> {
        Box::pin(async move {
            self.0.seek(SeekFrom::Start(offset)).await?;
            self.0.read(buf).await
        })
    }

    fn append<'a>(&'a mut self, bytes: &'a [u8]) -> IoFuture<'a, ()> {
        Box::pin(async move {
            self.0.write_all(bytes).await?;
            // tokio's File reports a failed write only on the next operation.
            self.0.flush().await
        })
    }

    fn set_len(&mut self, len: u64) -> IoFuture<'_, ()> {
        Box::pin(self.0.set_len(len))
    }

    fn sync(&mut self) -> IoFuture<'_, ()> {
        Box::pin(self.0.sync_data())
    }
}

/// Run blocking file work on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)))
}
