//! SHA-256 checksums as hex, and readers and writers that hash what passes through them
//! (artifact files are checksummed as they are written; list sources as they are read).

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

/// Lower-case hex of a byte slice.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// SHA-256 of a byte slice as hex, hashed `chunk` bytes at a time; `after` is called with
/// each chunk's offset and length once it is hashed (to give a mapping's pages back as the
/// hash moves on).
pub(crate) fn sha256_hex_chunked(
    bytes: &[u8],
    chunk: usize,
    mut after: impl FnMut(usize, usize),
) -> String {
    let mut hasher = Sha256::new();
    for (i, part) in bytes.chunks(chunk.max(1)).enumerate() {
        hasher.update(part);
        after(i * chunk, part.len());
    }
    hex(&hasher.finalize())
}

/// A writer that hashes what passes through it.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Hashes what is written to `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }
    /// The inner writer, the SHA-256 (hex) and the byte count of what was written.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, hex(&self.hasher.finalize()), self.bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes what passes through it (source checksums without a second read).
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    /// Hashes what is read from `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }
    /// The SHA-256 (hex) of what was read.
    pub fn hex(self) -> String {
        hex(&self.hasher.finalize())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_sha() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        assert_eq!(
            sha256_hex_chunked(b"abc", usize::MAX, |_, _| {}),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let mut seen = Vec::new();
        let chunked = sha256_hex_chunked(&bytes, 4096, |at, len| seen.push((at, len)));
        assert_eq!(chunked, hex(&Sha256::digest(&bytes)));
        assert_eq!(seen, [(0, 4096), (4096, 4096), (8192, 1808)]);
    }
}
