//! Reading and writing files in directories other users may write to (Falco's rules directory)
//! or name in the boot file (TLS certificates): a read opens only a regular file, never blocks
//! on a FIFO or device, and stops at a size; a temporary file is created new (`O_EXCL`),
//! never through a symbolic link (`O_NOFOLLOW`), readable by its owner only.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// How a read treats a symbolic link at the path itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Links {
    /// Follow it (configured paths: Kubernetes mounts secrets as links).
    Follow,
    /// Refuse it (files in a directory others may write to).
    Refuse,
}

/// The contents of the regular file at `path`, at most `max` bytes (longer: an error naming the
/// limit). A FIFO, socket or device is refused without blocking.
pub fn read_regular(path: &Path, max: u64, links: Links) -> io::Result<Vec<u8>> {
    let mut flags = libc::O_NONBLOCK;
    if links == Links::Refuse {
        flags |= libc::O_NOFOLLOW;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if meta.len() > max {
        return Err(too_large(max));
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(too_large(max));
    }
    Ok(out)
}

fn too_large(max: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("larger than {max} bytes"),
    )
}

/// Creates `path` as a new file, mode 0600: fails if anything (a file, a link) is there.
pub fn create_new_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit_and_never_through_a_link_when_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a");
        std::fs::write(&file, b"hello").unwrap();
        assert_eq!(read_regular(&file, 5, Links::Refuse).unwrap(), b"hello");
        assert!(read_regular(&file, 4, Links::Refuse)
            .unwrap_err()
            .to_string()
            .contains("larger than 4 bytes"));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(read_regular(&link, 100, Links::Refuse).is_err());
        assert_eq!(read_regular(&link, 100, Links::Follow).unwrap(), b"hello");
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let started = std::time::Instant::now();
        assert!(read_regular(&fifo, 100, Links::Follow).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(read_regular(Path::new("/dev/zero"), 100, Links::Follow).is_err());
        assert!(create_new_private(&link).is_err(), "never through a link");
        assert_eq!(std::fs::read(&file).unwrap(), b"hello");
        let made = dir.path().join("new");
        create_new_private(&made).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&made).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
