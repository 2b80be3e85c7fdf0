//! Files sealed with XChaCha20-Poly1305 in 64 KiB chunks (the STREAM construction), for
//! data that must rest on disk encrypted but is written and read as a stream, such as a
//! clinic export waiting for its download: both directions use constant memory.
//!
//! Layout: `WARDSEAL1`, a 19-byte random nonce prefix, then chunks, each
//! `[last: u8][length: u32 BE][ciphertext + tag]`. A chunk's nonce is the prefix, its
//! 32-bit counter and the `last` flag, so chunks cannot be reordered, dropped, repeated
//! or the file cut short (the last chunk is marked, and authenticated as such) without
//! the opener noticing.

use std::io::{Read, Write};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

const MAGIC: &[u8; 9] = b"WARDSEAL1";
const PREFIX: usize = 19;
/// Plaintext bytes per chunk.
pub const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;

/// Why a sealed file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Wrong key, or the file was altered, truncated or is not a sealed file.
    #[error("the sealed file is damaged, cut short or sealed with another key")]
    Damaged,
}

fn nonce(prefix: &[u8; PREFIX], counter: u32, last: bool) -> XNonce {
    let mut n = [0u8; 24];
    n[..PREFIX].copy_from_slice(prefix);
    n[PREFIX..PREFIX + 4].copy_from_slice(&counter.to_be_bytes());
    n[23] = u8::from(last);
    XNonce::from(n)
}

/// Seals everything written to it into `out`; call [`SealWriter::finish`] at the end
/// (without it the file has no last chunk and will not open).
pub struct SealWriter<W: Write> {
    out: W,
    cipher: XChaCha20Poly1305,
    prefix: [u8; PREFIX],
    counter: u32,
    buf: Vec<u8>,
}

impl<W: Write> SealWriter<W> {
    /// Starts a sealed file under `key`.
    pub fn new(key: &[u8; 32], mut out: W) -> std::io::Result<Self> {
        let mut prefix = [0u8; PREFIX];
        rand::thread_rng().fill_bytes(&mut prefix);
        out.write_all(MAGIC)?;
        out.write_all(&prefix)?;
        Ok(Self {
            out,
            cipher: XChaCha20Poly1305::new(key.into()),
            prefix,
            counter: 0,
            buf: Vec::with_capacity(CHUNK),
        })
    }

    fn seal_chunk(&mut self, last: bool) -> std::io::Result<()> {
        let ct = self
            .cipher
            .encrypt(
                &nonce(&self.prefix, self.counter, last),
                Payload {
                    msg: &self.buf,
                    aad: MAGIC,
                },
            )
            .map_err(|_| std::io::Error::other("sealing failed"))?;
        self.counter = self
            .counter
            .checked_add(1)
            .ok_or_else(|| std::io::Error::other("the file is too large to seal"))?;
        self.out.write_all(&[u8::from(last)])?;
        // A chunk is at most CHUNK + TAG bytes; the cast cannot truncate.
        self.out.write_all(&(ct.len() as u32).to_be_bytes())?;
        self.out.write_all(&ct)?;
        self.buf.clear();
        Ok(())
    }

    /// Seals what is buffered as the last chunk and returns the destination.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.seal_chunk(true)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.seal_chunk(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Partial chunks stay buffered: sealing them early would change the layout.
        Ok(())
    }
}

/// Opens a sealed stream from `input` under `key`, writing the plaintext to `out` chunk
/// by chunk; returns the plaintext length. Everything written before an error is
/// unauthenticated and must be discarded by the caller.
pub fn open<R: Read, W: Write>(key: &[u8; 32], mut input: R, mut out: W) -> Result<u64, SealError> {
    let mut head = [0u8; MAGIC.len() + PREFIX];
    input
        .read_exact(&mut head)
        .map_err(|_| SealError::Damaged)?;
    if &head[..MAGIC.len()] != MAGIC {
        return Err(SealError::Damaged);
    }
    let mut prefix = [0u8; PREFIX];
    prefix.copy_from_slice(&head[MAGIC.len()..]);
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut total = 0u64;
    let mut counter = 0u32;
    let mut ct = Vec::with_capacity(CHUNK + TAG);
    loop {
        let mut frame = [0u8; 5];
        input
            .read_exact(&mut frame)
            .map_err(|_| SealError::Damaged)?;
        let last = match frame[0] {
            0 => false,
            1 => true,
            _ => return Err(SealError::Damaged),
        };
        let len = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
        if len > CHUNK + TAG {
            return Err(SealError::Damaged);
        }
        ct.resize(len, 0);
        input.read_exact(&mut ct).map_err(|_| SealError::Damaged)?;
        let pt = cipher
            .decrypt(
                &nonce(&prefix, counter, last),
                Payload {
                    msg: &ct,
                    aad: MAGIC,
                },
            )
            .map_err(|_| SealError::Damaged)?;
        out.write_all(&pt)?;
        total += pt.len() as u64;
        if last {
            let mut extra = [0u8; 1];
            return match input.read(&mut extra)? {
                0 => Ok(total),
                _ => Err(SealError::Damaged),
            };
        }
        counter = counter.checked_add(1).ok_or(SealError::Damaged)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(key: &[u8; 32], data: &[u8]) -> Vec<u8> {
        let mut w = SealWriter::new(key, Vec::new()).unwrap();
        // Odd write sizes cross chunk boundaries.
        for piece in data.chunks(7_919) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn round_trips_any_length_and_hides_the_content() {
        let key = [7u8; 32];
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sealed = seal(&key, &data);
            let mut out = Vec::new();
            assert_eq!(open(&key, &sealed[..], &mut out).unwrap(), len as u64);
            assert_eq!(out, data, "length {len}");
        }
        let canary = b"Zebediah Quillfeather".repeat(10);
        let sealed = seal(&key, &canary);
        assert!(!sealed.windows(21).any(|w| w == &canary[..21]));
    }

    #[test]
    fn refuses_a_wrong_key_truncation_tampering_and_trailing_bytes() {
        let key = [7u8; 32];
        let data = vec![42u8; 2 * CHUNK + 5];
        let sealed = seal(&key, &data);
        let fails = |bytes: &[u8], k: &[u8; 32]| open(k, bytes, std::io::sink()).is_err();
        assert!(fails(&sealed, &[8u8; 32]), "wrong key");
        // Cut at a chunk boundary: the previous chunk is not marked last.
        let first_chunk_end = MAGIC.len() + PREFIX + 5 + CHUNK + TAG;
        assert!(fails(&sealed[..first_chunk_end], &key), "cut at a boundary");
        assert!(fails(&sealed[..sealed.len() - 1], &key), "cut inside");
        let mut flipped = sealed.clone();
        flipped[100] ^= 1;
        assert!(fails(&flipped, &key), "a flipped bit");
        let mut longer = sealed.clone();
        longer.push(0);
        assert!(fails(&longer, &key), "bytes after the end");
        assert!(!fails(&sealed, &key));
    }
}
