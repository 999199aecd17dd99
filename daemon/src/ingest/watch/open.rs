//! Opening a watched file without races: the scan's `lstat` says "regular file", but by the time
//! the watcher opens the path it may be a symbolic link to a secret, a FIFO that blocks an open
//! or read for ever, or a device that never ends (`/dev/zero`).
//!
//! So a candidate is opened relative to the folder's own descriptor with `openat2`:
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS` (no component may be a link or
//! lead outside the folder) and `O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_RDONLY` (opening a FIFO
//! does not wait for a writer). Then `fstat` on the open descriptor decides: only a regular file
//! is returned, and the caller hashes and copies from that same descriptor, so what is checked is
//! what is read. Opening a device node does happen before `fstat` refuses it; it is never read.
//!
//! Where the kernel has no `openat2` (before Linux 5.6: `ENOSYS`; or a container's seccomp profile
//! refuses it with `EPERM`), the path is walked one
//! component at a time with `openat(O_NOFOLLOW)`: directories with `O_DIRECTORY`, the last one
//! with the flags above. That refuses links at every step as well; only the mount-crossing checks
//! of `RESOLVE_BENEATH` are lost, and a relative path of plain names cannot climb out anyway.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Why a candidate was not opened.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// A component is a symbolic link now.
    #[error("a symbolic link")]
    Link,
    /// It resolves outside the folder.
    #[error("outside the folder")]
    Outside,
    /// It is there, but not a regular file.
    #[error("a {0}, not a regular file")]
    NotRegular(&'static str),
    /// The path is not a plain relative one (no `..`, no root).
    #[error("not a plain relative path")]
    BadPath,
    /// Gone, unreadable, or another error.
    #[error("{0}")]
    Io(std::io::Error),
}

impl Refused {
    /// True for what an attacker (or a confused user) swapped in: worth a log line.
    pub fn is_swap(&self) -> bool {
        matches!(self, Refused::Link | Refused::Outside | Refused::NotRegular(_))
    }
}

const FILE_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::NOFOLLOW).union(OFlags::NONBLOCK).union(OFlags::CLOEXEC);

/// The folder's descriptor, for [`regular_beneath`].
pub fn folder(root: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

/// Opens `rel` under `root` as described in the module header; returns the file and its `fstat`.
pub fn regular_beneath(root: BorrowedFd<'_>, rel: &Path) -> Result<(File, std::fs::Metadata), Refused> {
    if rel.as_os_str().is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(Refused::BadPath);
    }
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let mut attempt = 0;
    let fd = loop {
        match rustix::fs::openat2(root, rel, FILE_FLAGS, Mode::empty(), resolve) {
            // A rename elsewhere in the tree during the lookup: the kernel asks to try again.
            Err(Errno::AGAIN) if attempt < 3 => attempt += 1,
            // No openat2 in this kernel, or a container's seccomp profile refuses it (older Docker
            // profiles answer EPERM): the walk's own answer stands.
            Err(Errno::NOSYS | Errno::PERM) => break walk(root, rel),
            other => break other,
        }
    };
    checked(fd.map_err(refusal)?)
}

/// The fallback without `openat2`: one `openat(O_NOFOLLOW)` per component.
fn walk(root: BorrowedFd<'_>, rel: &Path) -> rustix::io::Result<OwnedFd> {
    let mut names: Vec<&std::ffi::OsStr> = rel.components().map(Component::as_os_str).collect();
    let last = names.pop().ok_or(Errno::INVAL)?;
    let mut dir: Option<OwnedFd> = None;
    for name in names {
        let at = dir.as_ref().map_or(root, AsFd::as_fd);
        // O_PATH | O_NOFOLLOW opens a link itself, which fstat then names.
        let next = rustix::fs::openat(at, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
        match rustix::fs::FileType::from_raw_mode(rustix::fs::fstat(&next)?.st_mode) {
            rustix::fs::FileType::Directory => dir = Some(next),
            rustix::fs::FileType::Symlink => return Err(Errno::LOOP),
            _ => return Err(Errno::NOTDIR),
        }
    }
    rustix::fs::openat(dir.as_ref().map_or(root, AsFd::as_fd), last, FILE_FLAGS, Mode::empty())
}

fn refusal(e: Errno) -> Refused {
    match e {
        // O_NOFOLLOW on the last component, RESOLVE_NO_SYMLINKS on any.
        Errno::LOOP => Refused::Link,
        Errno::XDEV => Refused::Outside,
        // Opening a socket (or a device without a driver).
        Errno::NXIO => Refused::NotRegular("socket"),
        other => Refused::Io(other.into()),
    }
}

fn checked(fd: OwnedFd) -> Result<(File, std::fs::Metadata), Refused> {
    let file = File::from(fd);
    let meta = file.metadata().map_err(Refused::Io)?;
    let kind = meta.file_type();
    if kind.is_file() {
        return Ok((file, meta));
    }
    use std::os::unix::fs::FileTypeExt;
    let what = if kind.is_fifo() {
        "FIFO"
    } else if kind.is_char_device() {
        "character device"
    } else if kind.is_block_device() {
        "block device"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_dir() {
        "directory"
    } else {
        "special file"
    };
    Err(Refused::NotRegular(what))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;
    use std::io::Read;

    fn mkfifo(path: &Path) {
        rustix::fs::mknodat(rustix::fs::CWD, path, rustix::fs::FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
    }

    /// The folder: a.txt, sub/b.txt, a link to an outside file, a link to a folder outside, a FIFO.
    fn folder_with_traps() -> (tempfile::TempDir, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
        std::fs::write(dir.path().join("a.txt"), "a").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b.txt"), "b").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), dir.path().join("link.txt")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("linkdir")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero")).unwrap();
        mkfifo(&dir.path().join("fifo"));
        (dir, outside)
    }

    fn read(opened: Result<(File, std::fs::Metadata), Refused>) -> Result<String, Refused> {
        let (mut file, _) = opened?;
        let mut s = String::new();
        file.read_to_string(&mut s).map_err(Refused::Io)?;
        Ok(s)
    }

    type Open<'a> = &'a dyn Fn(&str) -> Result<(File, std::fs::Metadata), Refused>;

    fn refuses_the_traps(open: Open<'_>) {
        assert_eq!(read(open("a.txt")).unwrap(), "a");
        assert_eq!(read(open("sub/b.txt")).unwrap(), "b");
        assert!(matches!(open("link.txt"), Err(Refused::Link)), "a link to a file outside");
        assert!(matches!(open("linkdir/secret.txt"), Err(Refused::Link)), "a link to a folder outside");
        assert!(matches!(open("zero"), Err(Refused::Link)), "a link to /dev/zero");
        assert!(matches!(open("fifo"), Err(Refused::NotRegular("FIFO"))), "a FIFO opens without blocking and is refused");
        assert!(matches!(open("sub"), Err(Refused::NotRegular("directory"))));
        assert!(matches!(open("a.txt/x"), Err(Refused::Io(_))));
        assert!(matches!(open("missing.txt"), Err(Refused::Io(_))));
    }

    /// Both ways in (openat2, and the per-component walk) refuse the same traps.
    #[test]
    fn only_regular_files_beneath_the_folder_open() {
        let (dir, _outside) = folder_with_traps();
        let root = folder(dir.path()).unwrap();
        refuses_the_traps(&|rel| regular_beneath(root.as_fd(), Path::new(rel)));
        refuses_the_traps(&|rel| checked(walk(root.as_fd(), Path::new(rel)).map_err(refusal)?));
        for bad in ["../x", "/etc/hostname", "", "sub/../a.txt"] {
            assert!(matches!(regular_beneath(root.as_fd(), Path::new(bad)), Err(Refused::BadPath)), "{bad}");
        }
    }

    #[test]
    fn a_device_node_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("zero");
        // /dev/zero's numbers (1, 5); creating a device node needs CAP_MKNOD.
        if rustix::fs::mknodat(rustix::fs::CWD, &node, rustix::fs::FileType::CharacterDevice, Mode::from_raw_mode(0o600), rustix::fs::makedev(1, 5)).is_err() {
            eprintln!("skipped: no CAP_MKNOD here");
            return;
        }
        let root = folder(dir.path()).unwrap();
        assert!(matches!(regular_beneath(root.as_fd(), Path::new("zero")), Err(Refused::NotRegular("character device"))));
    }
}
