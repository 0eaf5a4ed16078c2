//! The backup file: every key-value entry of the store's trees plus the
//! small files of the data directory (the address hash key), checksummed.
//!
//! Layout: `REACHBAK`, format version (u32), then records, each a tag byte:
//! `T` tree name; `E` key, value (of the last tree); `F` file name, bytes;
//! `I` the store's id counter (u64, action sequence numbers continue after
//! it); `Z` entry count (u64) and the BLAKE3 of every byte before the `Z`.
//! Lengths are u32 little-endian. A file is verified whole before any of it
//! is restored, so a truncated or altered backup restores nothing.

use std::io::{self, Read, Write};

use crate::storage::StoreError;

const MAGIC: &[u8; 8] = b"REACHBAK";
const VERSION: u32 = 1;

/// Writes a backup to `W`, hashing as it goes.
pub struct BackupWriter<W: Write> {
    out: W,
    hasher: blake3::Hasher,
    entries: u64,
    bytes: u64,
}

/// What a finished backup holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupStats {
    pub entries: u64,
    pub bytes: u64,
    pub blake3: String,
}

impl<W: Write> BackupWriter<W> {
    pub fn new(out: W) -> io::Result<Self> {
        let mut writer = BackupWriter {
            out,
            hasher: blake3::Hasher::new(),
            entries: 0,
            bytes: 0,
        };
        writer.put(MAGIC)?;
        writer.put(&VERSION.to_le_bytes())?;
        Ok(writer)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        self.out.write_all(bytes)
    }

    fn put_field(&mut self, bytes: &[u8]) -> io::Result<()> {
        let len = u32::try_from(bytes.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "field over 4 GiB"))?;
        self.put(&len.to_le_bytes())?;
        self.put(bytes)
    }

    pub fn tree(&mut self, name: &[u8]) -> io::Result<()> {
        self.put(b"T")?;
        self.put_field(name)
    }

    pub fn entry(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.entries += 1;
        self.put(b"E")?;
        self.put_field(key)?;
        self.put_field(value)
    }

    pub fn file(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.put(b"F")?;
        self.put_field(name.as_bytes())?;
        self.put_field(bytes)
    }

    pub fn next_id(&mut self, id: u64) -> io::Result<()> {
        self.put(b"I")?;
        self.put(&id.to_le_bytes())
    }

    /// Writes the trailer and returns the output and what was written.
    pub fn finish(mut self) -> io::Result<(W, BackupStats)> {
        self.put(b"Z")?;
        let hash = self.hasher.finalize();
        let mut trailer = self.entries.to_le_bytes().to_vec();
        trailer.extend_from_slice(hash.as_bytes());
        self.out.write_all(&trailer)?;
        self.out.flush()?;
        let stats = BackupStats {
            entries: self.entries,
            bytes: self.bytes + trailer.len() as u64,
            blake3: hash.to_hex().to_string(),
        };
        Ok((self.out, stats))
    }
}

/// One record of a backup, as read.
#[derive(Debug, PartialEq, Eq)]
pub enum BackupRecord {
    Tree(Vec<u8>),
    Entry(Vec<u8>, Vec<u8>),
    File(String, Vec<u8>),
    NextId(u64),
}

fn corrupt(why: impl Into<String>) -> StoreError {
    StoreError::Internal(format!("not a valid reach backup: {}", why.into()))
}

/// A reader that hashes what it takes.
struct Hashing<R> {
    input: io::BufReader<R>,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<R: Read> Hashing<R> {
    fn take(&mut self, n: usize) -> Result<Vec<u8>, StoreError> {
        let mut buf = vec![0; n];
        self.input
            .read_exact(&mut buf)
            .map_err(|_| corrupt("it ends early (truncated?)"))?;
        self.hasher.update(&buf);
        self.bytes += n as u64;
        Ok(buf)
    }

    fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn field(&mut self) -> Result<Vec<u8>, StoreError> {
        let len = self.u32()?;
        self.take(len as usize)
    }
}

/// Reads `input` through, calling `visit` for each record, and checks the
/// trailer. With `visit` doing nothing this verifies a backup.
pub fn read<R: Read>(
    input: R,
    mut visit: impl FnMut(BackupRecord) -> Result<(), StoreError>,
) -> Result<BackupStats, StoreError> {
    let mut r = Hashing {
        input: io::BufReader::with_capacity(1 << 20, input),
        hasher: blake3::Hasher::new(),
        bytes: 0,
    };
    if r.take(8)? != MAGIC {
        return Err(corrupt("wrong magic"));
    }
    let version = r.u32()?;
    if version != VERSION {
        return Err(corrupt(format!(
            "format version {version}, this reach reads {VERSION}"
        )));
    }
    let mut entries = 0u64;
    loop {
        match r.take(1)?[0] {
            b'T' => visit(BackupRecord::Tree(r.field()?))?,
            b'E' => {
                entries += 1;
                let key = r.field()?;
                let value = r.field()?;
                visit(BackupRecord::Entry(key, value))?;
            }
            b'F' => {
                let name = String::from_utf8(r.field()?)
                    .map_err(|_| corrupt("a file name is not UTF-8"))?;
                let content = r.field()?;
                visit(BackupRecord::File(name, content))?;
            }
            b'I' => {
                let id = u64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
                visit(BackupRecord::NextId(id))?;
            }
            b'Z' => break,
            other => return Err(corrupt(format!("unknown record tag {other:#04x}"))),
        }
    }
    let hash = r.hasher.finalize();
    let mut trailer = [0u8; 40];
    r.input
        .read_exact(&mut trailer)
        .map_err(|_| corrupt("the trailer is missing (truncated?)"))?;
    let counted = u64::from_le_bytes(trailer[..8].try_into().expect("8 bytes"));
    if &trailer[8..] != hash.as_bytes() || counted != entries {
        return Err(corrupt(
            "checksum mismatch: the file was altered or damaged",
        ));
    }
    if r.input
        .read(&mut [0u8; 1])
        .map_err(|e| corrupt(e.to_string()))?
        != 0
    {
        return Err(corrupt("bytes after the trailer"));
    }
    Ok(BackupStats {
        entries,
        bytes: r.bytes + 40,
        blake3: hash.to_hex().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = BackupWriter::new(Vec::new()).unwrap();
        w.tree(b"reach").unwrap();
        w.entry(b"k1", b"v1").unwrap();
        w.entry(b"k2", b"").unwrap();
        w.file("address-hash.key", &[7; 32]).unwrap();
        w.next_id(42).unwrap();
        let (bytes, stats) = w.finish().unwrap();
        assert_eq!(stats.entries, 2);
        assert_eq!(stats.bytes, bytes.len() as u64);
        bytes
    }

    #[test]
    fn round_trips() {
        let mut records = Vec::new();
        let stats = read(sample().as_slice(), |r| {
            records.push(r);
            Ok(())
        })
        .unwrap();
        assert_eq!(stats.entries, 2);
        assert_eq!(
            records,
            vec![
                BackupRecord::Tree(b"reach".to_vec()),
                BackupRecord::Entry(b"k1".to_vec(), b"v1".to_vec()),
                BackupRecord::Entry(b"k2".to_vec(), Vec::new()),
                BackupRecord::File("address-hash.key".into(), vec![7; 32]),
                BackupRecord::NextId(42),
            ]
        );
    }

    #[test]
    fn every_damage_is_caught() {
        let good = sample();
        for cut in [0, 5, 20, good.len() - 1] {
            assert!(read(&good[..cut], |_| Ok(())).is_err(), "cut at {cut}");
        }
        for flip in [9, 14, 25, good.len() - 3] {
            let mut bad = good.clone();
            bad[flip] ^= 1;
            assert!(read(bad.as_slice(), |_| Ok(())).is_err(), "flip at {flip}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(read(longer.as_slice(), |_| Ok(())).is_err());
    }
}
