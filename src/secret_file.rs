//! Reading a file that holds one secret (a token, a JWT secret, a Redis
//! password), the one way every role does it: at most [`MAX_BYTES`] are
//! read, so `--token-file /dev/zero` is an error rather than all of memory.
//! The error says what happened and how large the file may be; it never
//! holds the content. Owns no trimming or validation: each caller has its
//! own rules for what the text must be.

use std::io::Read as _;
use std::path::Path;

/// The largest secret file read: far more than any token or password.
pub(crate) const MAX_BYTES: u64 = 16 << 10;

/// Why a secret file could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("cannot read it: {0}")]
    Io(#[from] std::io::Error),
    #[error("larger than {}; the file holds only the secret", crate::size::human(MAX_BYTES as usize))]
    TooLarge,
}

/// The whole text of `path`, if it is at most [`MAX_BYTES`] of UTF-8.
pub(crate) fn read(path: &Path) -> Result<String, ReadError> {
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_BYTES {
        return Err(ReadError::TooLarge);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_past_the_cap_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok");
        std::fs::write(&ok, "s3cret\n").unwrap();
        assert_eq!(read(&ok).unwrap(), "s3cret\n");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; MAX_BYTES as usize + 1]).unwrap();
        let e = read(&big).unwrap_err();
        assert!(matches!(e, ReadError::TooLarge), "{e}");
        assert!(e.to_string().contains("16 KiB"), "{e}");
        assert!(matches!(
            read(&dir.path().join("none")),
            Err(ReadError::Io(_))
        ));
    }
}
