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
        self.hex().as_str().to_string()
    }

    /// The 64 lowercase hex characters, without an allocation (a ledger or cache entry writes
    /// one per input and output).
    pub fn hex(&self) -> Hex {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (pair, byte) in out.chunks_exact_mut(2).zip(self.0) {
            pair[0] = HEX[(byte >> 4) as usize];
            pair[1] = HEX[(byte & 15) as usize];
        }
        Hex(out)
    }

    /// The first 12 hex characters, for human output.
    pub fn short(&self) -> String {
        self.hex().as_str()[..12].to_string()
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

/// A digest's hex form ([`Digest::hex`]).
#[derive(Clone, Copy)]
pub struct Hex([u8; 64]);

impl Hex {
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written into it.
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex().as_str())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.short())
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.hex().as_str())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Takes the text as the deserializer has it (borrowed from the input when it can be),
        /// never copied into a `String` of its own.
        struct HexDigest;
        impl serde::de::Visitor<'_> for HexDigest {
            type Value = Digest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sha256 hex digest")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Digest, E> {
                Digest::from_hex(text)
                    .ok_or_else(|| E::custom(format!("not a sha256 hex digest: {text:?}")))
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Digest, E> {
                match std::str::from_utf8(bytes) {
                    Ok(text) => self.visit_str(text),
                    Err(_) => Err(E::custom("not a sha256 hex digest: not UTF-8")),
                }
            }
        }
        deserializer.deserialize_str(HexDigest)
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

/// Hashes everything a reader yields; returns the digest and the byte count. Uses one 32 KiB
/// buffer per thread (hashing many small files allocates nothing).
pub fn hash_reader(reader: &mut impl Read) -> io::Result<(Digest, u64)> {
    // Expecting more bytes than any source holds: read to the end, whatever its length.
    hash_reader_expecting(reader, u64::MAX).map(|(digest, len, _)| (digest, len))
}

/// [`hash_reader`] of a source a stat said holds `size` bytes, proving where it ends without
/// asking anything else: the read that should reach that end asks for one byte more, and a
/// source of exactly `size` bytes answers it short (a small file: one `read`, where reading to
/// the end takes two and a second `fstat` one more system call). A source that holds more is
/// read to its end; one that ends early is read to its end too. Returns the digest of
/// everything read, its length, and whether it was exactly `size` bytes.
///
/// A short answer at exactly `size` is taken as the end: what a regular file's `read` means by
/// it. A source that answers short before its end (a pipe) may be cut there; the caller, which
/// trusts the digest only for the stat it took before, sees that stat change when the source
/// grows.
pub fn hash_reader_expecting(reader: &mut impl Read, size: u64) -> io::Result<(Digest, u64, bool)> {
    with_buffer(|buffer| {
        let mut hasher = Hasher::new();
        let mut total = 0u64;
        loop {
            // Up to the end the stat gave and one byte past it; once past it, whole buffers.
            let want = match size.checked_sub(total).map(usize::try_from) {
                Some(Ok(remaining)) if remaining < buffer.len() => remaining + 1,
                _ => buffer.len(),
            };
            let read = match reader.read(&mut buffer[..want]) {
                Ok(0) => break,
                Ok(read) => read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            hasher.update(&buffer[..read]);
            total += read as u64;
            if read < want && total == size {
                break;
            }
        }
        Ok((hasher.finish(), total, total == size))
    })
}

/// Appends the whole content of a small file whose bytes are all in the page cache to `bytes`,
/// without waiting for the disk: one `preadv2(RWF_NOWAIT)` from offset 0 (the file's position
/// is left where it was), asking one byte past `size`. Whether it did; when it did not,
/// `bytes` is as it was (the caller reads the file the usual way, after starting the reads of
/// other files: see `StatCache::start_digest`): the file is not smaller than a hashing buffer,
/// the read would have waited for the disk, it did not answer exactly `size` bytes (a file
/// that grew or shrank), `size` is a multiple of 4 KiB, or the file system cannot read without
/// waiting (and never off Linux).
///
/// Why the last two: a read that does not wait stops at the first page not in the cache, so a
/// short answer proves the end of the file only when the byte after the last one it gave lies
/// in a page it did read: when `size` is not a multiple of the page size (4 KiB, or a multiple
/// of it). Then, as for [`hash_reader_expecting`], an answer short at exactly `size` is the end.
pub fn read_if_cached(file: &File, size: u64, bytes: &mut Vec<u8>) -> bool {
    let Ok(size) = usize::try_from(size) else {
        return false;
    };
    if !cfg!(target_os = "linux") || size >= BUFFER_BYTES || (size % 4096 == 0 && size != 0) {
        return false;
    }
    let start = bytes.len();
    bytes.resize(start + size + 1, 0);
    let exact = read_without_waiting(file, &mut bytes[start..]) == Some(size);
    bytes.truncate(if exact { start + size } else { start });
    exact
}

/// One `preadv2(RWF_NOWAIT)` of `buffer.len()` bytes from offset 0: how many it read, `None`
/// on any error (would wait, not supported here, not a file that reads so), which is left to
/// the usual read, which waits or says what is wrong.
#[cfg(target_os = "linux")]
fn read_without_waiting(file: &File, buffer: &mut [u8]) -> Option<usize> {
    let mut slices = [io::IoSliceMut::new(buffer)];
    rustix::io::preadv2(file, &mut slices, 0, rustix::io::ReadWriteFlags::NOWAIT).ok()
}

#[cfg(not(target_os = "linux"))]
fn read_without_waiting(_: &File, _: &mut [u8]) -> Option<usize> {
    None
}

/// Fewest messages [`hash_many`] hashes side by side: half the lanes of the multi-buffer
/// kernel, below which one message after the other on the SHA-256 unit is as fast.
fn batch_at_least() -> usize {
    static AT_LEAST: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *AT_LEAST.get_or_init(|| {
        let lanes = tape_sha256::lane_width();
        // One lane: no multi-buffer kernel on this CPU (only the portable one): never.
        if lanes < 4 { usize::MAX } else { lanes / 2 }
    })
}

/// The digests of independent messages, in their order, hashed side by side where the CPU has
/// a multi-buffer kernel (`tape-sha256`: AVX-512 lanes, or several SHA-NI streams): a lane per
/// message, which hashes many small files about twice as fast as one after the other (100
/// files of 2 KiB here: 2.46 against 1.39 GB/s). Fewer messages than half its lanes, or a CPU
/// without one, are hashed one after the other.
pub fn hash_many(messages: &[&[u8]]) -> Vec<Digest> {
    if messages.len() < batch_at_least() {
        return messages
            .iter()
            .map(|message| Digest::of_bytes(message))
            .collect();
    }
    let mut raw = vec![[0u8; 32]; messages.len()];
    tape_sha256::hash_many(messages, &mut raw);
    raw.into_iter().map(Digest).collect()
}

/// Starts reading the first MiB of `file` into the page cache without waiting for it
/// (`posix_fadvise(WILLNEED)`); whether it could (never off Linux).
#[cfg(target_os = "linux")]
pub fn start_reading(file: &File) -> bool {
    rustix::fs::fadvise(
        file,
        0,
        std::num::NonZeroU64::new(1 << 20),
        rustix::fs::Advice::WillNeed,
    )
    .is_ok()
}

#[cfg(not(target_os = "linux"))]
pub fn start_reading(_: &File) -> bool {
    false
}

/// The size of each thread's hashing buffer: hashing reads a file in pieces this large. Small
/// beside the time hashing takes (a `read` per 32 KiB of SHA-256 costs about 3%), and resident
/// in every worker thread.
const BUFFER_BYTES: usize = 32 * 1024;

/// Runs `f` with this thread's hashing buffer (hashing many small files allocates nothing).
fn with_buffer<T>(f: impl FnOnce(&mut [u8]) -> T) -> T {
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; BUFFER_BYTES]);
    }
    BUFFER.with(|buffer| f(&mut buffer.borrow_mut()))
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
    fn expected_size_hashing_proves_the_end_with_a_short_read_and_reads_on_otherwise() {
        let data = vec![7u8; 200_000];
        // (what the stat said, what the source holds, reads)
        for (said, holds, reads) in [
            // As said: a 2-byte file in one read; 200 000 bytes in 32 KiB reads, the seventh
            // asking one byte more and answered short; an empty file in one read.
            (2u64, 2usize, 1usize),
            (200_000, 200_000, 7),
            (0, 0, 1),
            // Grew after its stat: read to the end (a last read finding it).
            (1000, 200_000, 9),
            (0, 2, 3),
            // Shrank: read to the end.
            (300_000, 200_000, 8),
            (3, 2, 2),
        ] {
            let mut reader = Counted(&data[..holds], 0);
            let (digest, len, exact) = hash_reader_expecting(&mut reader, said).unwrap();
            assert_eq!(len, holds as u64, "{said} {holds}");
            assert_eq!(digest, Digest::of_bytes(&data[..holds]));
            assert_eq!(exact, said == holds as u64, "{said} {holds}");
            assert_eq!(reader.1, reads, "reads for {said} said, {holds} held");
        }
    }

    /// Whether the first page of `file` is in the page cache (`mincore` of a mapping of it).
    #[cfg(target_os = "linux")]
    fn first_page_cached(file: &File) -> bool {
        use std::os::fd::AsRawFd;
        // SAFETY: a shared read-only mapping of one page of an open file, unmapped before
        // returning; `mincore` writes one byte into `vector`.
        unsafe {
            let at = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            );
            assert_ne!(at, libc::MAP_FAILED);
            let mut vector = 0u8;
            assert_eq!(libc::mincore(at, 4096, &mut vector), 0);
            libc::munmap(at, 4096);
            vector & 1 == 1
        }
    }

    /// [`read_if_cached`] of a file alone, hashed: its digest, size and exactness as
    /// [`hash_reader_expecting`] gives them, or `None`.
    fn hash_if_cached(file: &File, size: u64) -> Option<(Digest, u64, bool)> {
        let mut bytes = Vec::new();
        read_if_cached(file, size, &mut bytes).then(|| (Digest::of_bytes(&bytes), size, true))
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_is_hashed_without_waiting_only_when_its_bytes_are_cached_and_as_its_stat_says() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small");
        std::fs::write(&path, b"four").unwrap();
        let file = File::open(&path).unwrap();
        let mut probe = [0u8; 8];
        let mut slices = [io::IoSliceMut::new(&mut probe)];
        if let Err(err) =
            rustix::io::preadv2(&file, &mut slices, 0, rustix::io::ReadWriteFlags::NOWAIT)
        {
            eprintln!(
                "skipped: the temporary directory's file system reads no file without waiting ({err})"
            );
            return;
        }
        // In the page cache (just written): hashed, and the file's position left at 0.
        assert_eq!(
            hash_if_cached(&file, 4),
            Some((Digest::of_bytes(b"four"), 4, true))
        );
        assert_eq!(
            hash_reader_expecting(&mut &file, 4).unwrap().0,
            Digest::of_bytes(b"four")
        );
        // Not the size its stat said (grew, shrank): left to the full read.
        assert_eq!(hash_if_cached(&file, 3), None);
        assert_eq!(hash_if_cached(&file, 5), None);
        // Read into a batch: appended after what it holds, or nothing added at all.
        let mut bytes = b"xy".to_vec();
        assert!(read_if_cached(&file, 4, &mut bytes));
        assert_eq!(bytes, b"xyfour");
        for wrong in [3, 5, 4096] {
            assert!(!read_if_cached(&file, wrong, &mut bytes), "{wrong}");
            assert_eq!(bytes, b"xyfour", "{wrong}");
        }
        // An empty file.
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(
            hash_if_cached(&File::open(&empty).unwrap(), 0),
            Some((Digest::EMPTY, 0, true))
        );
        // A size that ends a page: a short read there may be a page not in the cache, not the
        // end; one byte less ends inside a page it read.
        let page = dir.path().join("page");
        std::fs::write(&page, vec![2u8; 4096]).unwrap();
        assert_eq!(hash_if_cached(&File::open(&page).unwrap(), 4096), None);
        std::fs::write(&page, vec![2u8; 4095]).unwrap();
        assert_eq!(
            hash_if_cached(&File::open(&page).unwrap(), 4095),
            Some((Digest::of_bytes(&[2u8; 4095]), 4095, true))
        );
        // Larger than the buffer: never, cached or not.
        let large = dir.path().join("large");
        std::fs::write(&large, vec![1u8; BUFFER_BYTES]).unwrap();
        assert_eq!(
            hash_if_cached(&File::open(&large).unwrap(), BUFFER_BYTES as u64),
            None
        );
        // Dropped from the page cache (where the file system can): not read, unless the page
        // is still there.
        file.sync_all().unwrap();
        // SAFETY: a valid descriptor; advice only.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        let cached = first_page_cached(&file);
        let hashed = hash_if_cached(&file, 4);
        assert_eq!(hashed.is_some(), cached, "{hashed:?}");
        if !cached {
            eprintln!("the page left the cache and the read did not wait for it");
        }
    }

    /// Messages whose lengths sit around SHA-256's block boundaries (55, 56, 63, 64 bytes:
    /// where the padding takes a block of its own) and beyond one block, some empty; all of
    /// one length half the time (SHA-NI's streams go side by side only for equal lengths).
    fn messages() -> impl proptest::strategy::Strategy<Value = Vec<Vec<u8>>> {
        use proptest::prelude::*;
        let length = prop_oneof![Just(0usize), 54usize..=65, 118usize..=129, 0usize..3000,];
        let varied = prop::collection::vec((length.clone(), any::<u8>()), 0..70);
        let alike = (length, 0usize..70).prop_flat_map(|(length, count)| {
            prop::collection::vec((Just(length), any::<u8>()), count)
        });
        prop_oneof![varied, alike].prop_map(|specs| {
            specs
                .into_iter()
                .map(|(length, seed)| {
                    (0..length)
                        .map(|i| seed.wrapping_add((i * 7) as u8))
                        .collect()
                })
                .collect()
        })
    }

    proptest::proptest! {
        /// Side by side or one after the other (any count, below and above the lanes of the
        /// multi-buffer kernel), each message gets its own SHA-256, in order.
        #[test]
        fn hashing_many_messages_gives_each_its_own_digest(messages in messages()) {
            let slices: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
            let digests = hash_many(&slices);
            let one_by_one: Vec<Digest> = slices.iter().map(|m| Digest::of_bytes(m)).collect();
            proptest::prop_assert_eq!(digests, one_by_one);
        }
    }

    #[test]
    fn many_messages_are_hashed_as_the_standard_says() {
        // FIPS 180-2's examples, each among others of every length around a block's end.
        let mut messages: Vec<Vec<u8>> = (0..70).map(|n| vec![b'a'; n]).collect();
        messages[3] = b"abc".to_vec();
        messages[56] = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".to_vec();
        let slices: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let digests = hash_many(&slices);
        assert_eq!(
            digests[3].to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            digests[56].to_hex(),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(digests[0], Digest::EMPTY);
    }
}
