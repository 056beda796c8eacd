//! SHA-256 digests: the one identity every stored thing has.
//!
//! Invariant: a [`Digest`] is always the SHA-256 of some bytes; it prints and
//! serializes as 64 lowercase hex characters and parses only from that form.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of the empty byte string (`e3b0c442…`).
    pub const EMPTY: Digest = Digest([
        0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9,
        0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52,
        0xb8, 0x55,
    ]);

    pub fn of_bytes(bytes: &[u8]) -> Digest {
        let mut hasher = Hasher::new();
        hasher.update(bytes);
        hasher.finish()
    }

    pub fn from_raw(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(HEX[(byte >> 4) as usize] as char);
            out.push(HEX[(byte & 15) as usize] as char);
        }
        out
    }

    /// The first 12 hex characters, for human output.
    pub fn short(&self) -> String {
        self.to_hex()[..12].to_string()
    }

    pub fn from_hex(text: &str) -> Option<Digest> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (index, pair) in bytes.chunks_exact(2).enumerate() {
            let high = hex_value(pair[0])?;
            let low = hex_value(pair[1])?;
            out[index] = (high << 4) | low;
        }
        Some(Digest(out))
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.short())
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Digest::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not a sha256 hex digest: {text:?}")))
    }
}

/// Incremental SHA-256.
#[derive(Clone, Default)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn new() -> Hasher {
        Hasher(Sha256::new())
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> Digest {
        let out = self.0.finalize();
        let mut raw = [0u8; 32];
        raw.copy_from_slice(&out);
        Digest(raw)
    }
}

impl Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Hashes a file's content; returns its digest and size.
pub fn hash_file(path: &Path) -> io::Result<(Digest, u64)> {
    let mut file = File::open(path)?;
    hash_reader(&mut file)
}

/// Hashes everything a reader yields; returns the digest and the byte count. Uses one 64 KiB
/// buffer per thread (hashing many small files allocates nothing).
pub fn hash_reader(reader: &mut impl Read) -> io::Result<(Digest, u64)> {
    // Expecting more bytes than any source holds: read to the end, whatever its length.
    hash_reader_sized(reader, u64::MAX, || Ok((0, ()))).map(|(digest, len, ())| (digest, len))
}

/// [`hash_reader`] of a source expected to hold `size` bytes (what a stat said): reads at most
/// that many, then asks `now` how many it holds and reads on to the end only if more. A file
/// whose stat did not change is thus read without the last `read` that only finds its end
/// (half the reads of hashing a small file). Returns the digest of what was read, its length,
/// and what `now` answered.
pub fn hash_reader_sized<T>(
    reader: &mut impl Read,
    size: u64,
    now: impl FnOnce() -> io::Result<(u64, T)>,
) -> io::Result<(Digest, u64, T)> {
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 64 * 1024]);
    }
    BUFFER.with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        let mut hasher = Hasher::new();
        let mut read_total = 0u64;
        let mut until = Some(size);
        let mut now = Some(now);
        let mut answer = None;
        loop {
            let want = match until {
                Some(limit) if read_total >= limit => {
                    // As many bytes as expected: does the source hold more?
                    let (current, told) = (now.take().expect("asked once"))()?;
                    answer = Some(told);
                    if current <= read_total {
                        break;
                    }
                    until = None;
                    buffer.len()
                }
                Some(limit) => buffer.len().min((limit - read_total) as usize),
                None => buffer.len(),
            };
            let read = match reader.read(&mut buffer[..want]) {
                Ok(0) => break,
                Ok(read) => read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            hasher.update(&buffer[..read]);
            read_total += read as u64;
        }
        let answer = match answer {
            Some(answer) => answer,
            // Ended early (it shrank) or read to its end (it grew): asked now.
            None => (now.take().expect("asked once"))()?.1,
        };
        Ok((hasher.finish(), read_total, answer))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_digest_is_the_well_known_one() {
        assert_eq!(Digest::of_bytes(b""), Digest::EMPTY);
        assert_eq!(
            Digest::EMPTY.to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let digest = Digest::of_bytes(b"abc");
        assert_eq!(
            digest.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::from_hex(&digest.to_hex()), Some(digest));
        assert_eq!(Digest::from_hex("zz"), None);
        assert_eq!(Digest::from_hex(&"A".repeat(64)), None);
    }

    /// A reader that counts its `read` calls.
    struct Counted<'a>(&'a [u8], usize);

    impl Read for Counted<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.1 += 1;
            self.0.read(buf)
        }
    }

    #[test]
    fn sized_hashing_reads_what_the_stat_says_and_on_only_when_the_source_grew() {
        let data = vec![7u8; 200_000];
        for (stat_size, now_size, expect_len) in [
            // Unchanged: exactly the bytes, no read finding the end.
            (200_000u64, 200_000u64, 200_000u64),
            // Grew after its stat: read to the end.
            (1000, 200_000, 200_000),
            // Shrank (the reader ends first).
            (300_000, 200_000, 200_000),
            (0, 0, 0),
            (0, 200_000, 200_000),
        ] {
            let mut reader = Counted(&data[..], 0);
            let (digest, len, told) =
                hash_reader_sized(&mut reader, stat_size, || Ok((now_size, "asked"))).unwrap();
            assert_eq!(len, expect_len, "{stat_size} {now_size}");
            assert_eq!(digest, Digest::of_bytes(&data[..expect_len as usize]));
            assert_eq!(told, "asked");
            let unchanged = stat_size == now_size && stat_size == data.len() as u64;
            if unchanged {
                // 200 000 bytes in 64 KiB reads: 4, and no fifth finding the end.
                assert_eq!(reader.1, 4);
            }
        }
        let mut reader = Counted(b"ab", 0);
        let (_, len, _) = hash_reader_sized(&mut reader, 2, || Ok((2, ()))).unwrap();
        assert_eq!((len, reader.1), (2, 1), "a small file: one read");
    }
}
