//! Free disk space: a reserve that new content may not eat into.
//!
//! Why: sled stops at the first failed write of its log and answers every later operation with
//! that error until the process restarts, and a full disk also fails index saves and uploads
//! half-way. Refusing new content while the disk still has room keeps the store writable for what
//! must still happen when space is short: status changes, deletes (which free space), index
//! saves.
//!
//! Design: [`SpaceGuard::check`] asks the file system (`statvfs`, the space available to this
//! user) before new content is accepted and refuses when the free space minus what the content
//! needs would fall below the reserve. It is a cheap system call, made per upload or write, never
//! cached: space that comes back counts at once. A file system that cannot be asked does not block
//! writes (the write itself will say what is wrong). A reserve of 0 turns the guard off.

use std::path::{Path, PathBuf};

/// Why new content was refused: the numbers behind the decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not enough free disk space in {}: {free} bytes free, {needed} bytes needed, and {reserve} bytes are kept in reserve", .path.display())]
pub struct NoSpace {
    /// The directory whose file system was asked.
    pub path: PathBuf,
    /// Bytes available when asked (including any the content already occupies).
    pub free: u64,
    /// Bytes the content needs (an estimate where it is not yet written).
    pub needed: u64,
    /// Bytes kept free.
    pub reserve: u64,
}

/// Refuses new content that would leave less than a reserve of free space.
#[derive(Debug, Clone)]
pub struct SpaceGuard {
    /// A directory on the guarded file system.
    path: PathBuf,
    /// Bytes kept free; 0 turns the guard off.
    reserve: u64,
}

/// The decision, apart from the system call: `free` bytes available, `needed` more wanted.
fn decide(path: &Path, free: u64, needed: u64, reserve: u64) -> Result<(), NoSpace> {
    if reserve == 0 || free.saturating_sub(needed) >= reserve {
        Ok(())
    } else {
        Err(NoSpace { path: path.to_path_buf(), free, needed, reserve })
    }
}

impl SpaceGuard {
    /// A guard keeping `reserve` bytes free on the file system holding `path`.
    pub fn new(path: impl Into<PathBuf>, reserve: u64) -> Self {
        SpaceGuard { path: path.into(), reserve }
    }

    /// The reserve in bytes.
    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Bytes available to this process on the guarded file system.
    pub fn free_bytes(&self) -> std::io::Result<u64> {
        fs4::available_space(&self.path)
    }

    /// Ok when `needed` more bytes leave at least the reserve free.
    pub fn check(&self, needed: u64) -> Result<(), NoSpace> {
        self.check_with(needed, 0)
    }

    /// Like [`SpaceGuard::check`] for content of `written` bytes that is already on the disk (a
    /// received upload): it counts as needed, and the space it occupies as free.
    pub fn check_written(&self, written: u64) -> Result<(), NoSpace> {
        self.check_with(written, written)
    }

    fn check_with(&self, needed: u64, already_written: u64) -> Result<(), NoSpace> {
        if self.reserve == 0 {
            return Ok(());
        }
        match self.free_bytes() {
            Ok(free) => decide(&self.path, free.saturating_add(already_written), needed, self.reserve),
            Err(e) => {
                tracing::debug!(path = %self.path.display(), error = %e, "Cannot ask the file system for its free space; not guarding.");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_and_the_need_must_both_fit() {
        let p = Path::new("/data");
        assert!(decide(p, 1000, 100, 900).is_ok());
        let refused = decide(p, 1000, 101, 900).unwrap_err();
        assert_eq!((refused.free, refused.needed, refused.reserve), (1000, 101, 900));
        let message = refused.to_string();
        assert!(message.contains("1000 bytes free") && message.contains("101 bytes needed") && message.contains("900 bytes"), "{message}");
        assert!(decide(p, 10, 0, 11).is_err(), "a disk already below the reserve refuses even empty content");
        assert!(decide(p, 0, u64::MAX, 0).is_ok(), "a reserve of 0 is off");
        assert!(decide(p, 5, u64::MAX, 1).is_err(), "no overflow");
    }

    #[test]
    fn asks_the_real_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let free = SpaceGuard::new(dir.path(), 1).free_bytes().unwrap();
        assert!(free > 0);
        assert!(SpaceGuard::new(dir.path(), 1).check(0).is_ok());
        // A reserve of 1 PB trips on any disk this runs on.
        let err = SpaceGuard::new(dir.path(), 1 << 50).check(10).unwrap_err();
        assert_eq!((err.needed, err.reserve), (10, 1 << 50));
        assert!(err.free > 0 && err.free < 1 << 50);
        // Content already written counts as free space it occupies.
        let err = SpaceGuard::new(dir.path(), 1 << 50).check_written(7).unwrap_err();
        assert_eq!(err.needed, 7);
        assert!(SpaceGuard::new(dir.path(), 0).check(u64::MAX).is_ok());
    }
}
