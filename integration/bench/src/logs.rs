//! The S6 output stream: how the generator produces it and how a captured log
//! is checked against it.
//!
//! The stream is a sequence of 100-byte lines, line `i` being `i` as 11
//! zero-padded digits, a space, 87 `x` and a newline. Any byte at any offset is
//! therefore known without storing the stream, so a log of hundreds of MB is
//! verified byte for byte in one pass. A rotated log is checked as a whole: the
//! backups (oldest first) followed by the live file must be exactly the last
//! bytes of the stream, which proves that nothing in the kept tail was lost,
//! duplicated or reordered, and that it ends at the last line.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Length of one generated line.
pub const LINE_LEN: u64 = 100;

/// The text of line `index`.
pub fn line(index: u64) -> [u8; LINE_LEN as usize] {
    let mut out = [b'x'; LINE_LEN as usize];
    write_digits(&mut out, index);
    out[11] = b' ';
    out[LINE_LEN as usize - 1] = b'\n';
    out
}

fn write_digits(out: &mut [u8; LINE_LEN as usize], mut index: u64) {
    for slot in out[..11].iter_mut().rev() {
        *slot = b'0' + (index % 10) as u8;
        index /= 10;
    }
}

/// Writes `total_bytes` of the stream to `out` in large blocks (the generator
/// mode of the binary). `total_bytes` must be a whole number of lines.
pub fn generate(out: &mut impl Write, total_bytes: u64) -> io::Result<()> {
    if !total_bytes.is_multiple_of(LINE_LEN) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{total_bytes} is not a multiple of the {LINE_LEN}-byte line"),
        ));
    }
    const LINES_PER_BLOCK: u64 = 655; // Just under 64 KiB, one pipe's worth.
    let total_lines = total_bytes / LINE_LEN;
    let mut block = Vec::with_capacity((LINES_PER_BLOCK * LINE_LEN) as usize);
    let mut next = 0;
    while next < total_lines {
        block.clear();
        let end = (next + LINES_PER_BLOCK).min(total_lines);
        for index in next..end {
            block.extend_from_slice(&line(index));
        }
        out.write_all(&block)?;
        next = end;
    }
    out.flush()
}

/// What a verified log held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Bytes in the kept files together.
    pub bytes: u64,
    /// Stream offset of the first kept byte (0 when nothing was rotated away).
    pub first_offset: u64,
    /// Complete lines in the kept tail.
    pub complete_lines: u64,
}

/// Why a log does not match the stream.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("the log holds {found} bytes, more than the {total} the generator wrote")]
    TooLong { found: u64, total: u64 },
    #[error("the log holds {found} bytes, expected all {total}")]
    Incomplete { found: u64, total: u64 },
    #[error("byte {offset} of the stream (line {line}) differs in {path}")]
    Mismatch { offset: u64, line: u64, path: PathBuf },
}

/// Checks that `files` (oldest first; missing ones are skipped, as a rotation
/// may not have produced every backup) concatenate to the last bytes of a
/// `total`-byte stream. With `require_all`, they must hold the whole stream.
pub fn verify(files: &[PathBuf], total: u64, require_all: bool) -> Result<Verified, VerifyError> {
    let present: Vec<(&PathBuf, u64)> =
        files.iter().filter_map(|p| std::fs::metadata(p).ok().map(|m| (p, m.len()))).collect();
    let found: u64 = present.iter().map(|(_, len)| len).sum();
    if found > total {
        return Err(VerifyError::TooLong { found, total });
    }
    if require_all && found != total {
        return Err(VerifyError::Incomplete { found, total });
    }
    let first_offset = total - found;
    let mut offset = first_offset;
    let mut buf = vec![0u8; 1 << 20];
    for (path, _) in present {
        let read_err = |source| VerifyError::Read { path: path.clone(), source };
        let mut file = File::open(path).map_err(read_err)?;
        loop {
            let n = file.read(&mut buf).map_err(read_err)?;
            if n == 0 {
                break;
            }
            if let Some(bad) = first_mismatch(&buf[..n], offset) {
                return Err(VerifyError::Mismatch {
                    offset: bad,
                    line: bad / LINE_LEN,
                    path: path.clone(),
                });
            }
            offset += n as u64;
        }
    }
    if offset != total {
        // A file changed size while being read.
        return Err(VerifyError::Incomplete { found: offset - first_offset, total });
    }
    let complete_lines = total / LINE_LEN - first_offset.div_ceil(LINE_LEN);
    Ok(Verified { bytes: found, first_offset, complete_lines })
}

/// Offset of the first byte of `chunk` (which starts at stream offset
/// `offset`) that differs from the stream, if any.
fn first_mismatch(chunk: &[u8], offset: u64) -> Option<u64> {
    let mut pos = 0usize;
    while pos < chunk.len() {
        let at = offset + pos as u64;
        let index = at / LINE_LEN;
        let col = (at % LINE_LEN) as usize;
        let expected = line(index);
        let take = (LINE_LEN as usize - col).min(chunk.len() - pos);
        let got = &chunk[pos..pos + take];
        if got != &expected[col..col + take] {
            let k = got.iter().zip(&expected[col..]).position(|(a, b)| a != b).unwrap_or(0);
            return Some(at + k as u64);
        }
        pos += take;
    }
    None
}

/// The files of a rotated log, oldest first: `NAME.backups` ... `NAME.1`, then
/// `NAME` (supervisord's naming).
pub fn rotated_files(live: &Path, backups: u32) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..=backups)
        .rev()
        .map(|k| {
            let mut name = live.as_os_str().to_owned();
            name.push(format!(".{k}"));
            PathBuf::from(name)
        })
        .collect();
    files.push(live.to_path_buf());
    files
}

/// True when the file at `live` ends with the last line of a `total`-byte
/// stream; cheap enough to poll every millisecond.
pub fn ends_with_last_line(live: &Path, total: u64) -> bool {
    use std::io::{Seek, SeekFrom};
    if total < LINE_LEN {
        return total == 0;
    }
    let Ok(mut file) = File::open(live) else { return false };
    let Ok(len) = file.seek(SeekFrom::End(0)) else { return false };
    if len < LINE_LEN || file.seek(SeekFrom::Start(len - LINE_LEN)).is_err() {
        return false;
    }
    let mut tail = [0u8; LINE_LEN as usize];
    file.read_exact(&mut tail).is_ok() && tail == line(total / LINE_LEN - 1)
}

/// The log format S6 asks for (vigil's `stdout_logfile_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The bytes as written (supervisord's capture).
    Raw,
    /// Each line after a 24-byte UTC time and a space.
    Timestamped,
    /// One JSON object per line, the text in `"line"`.
    Json,
}

impl Format {
    /// The config value.
    pub fn key(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Timestamped => "timestamped",
            Format::Json => "json",
        }
    }

    /// What the case label adds (nothing for raw).
    pub fn label(self) -> &'static str {
        match self {
            Format::Raw => "",
            Format::Timestamped => ", timestamped",
            Format::Json => ", JSON lines",
        }
    }

    /// The stream line (without its newline) a log line holds.
    fn decode(self, record: &[u8]) -> Option<&[u8]> {
        match self {
            Format::Raw => Some(record),
            Format::Timestamped => (record.len() > 25 && record[24] == b' ' && record[23] == b'Z')
                .then(|| &record[25..]),
            // The stream is digits, a space and `x`: nothing in it is escaped.
            Format::Json => {
                let marker = b"\"line\":\"";
                let at = record.windows(marker.len()).position(|w| w == marker)? + marker.len();
                record[at..].strip_suffix(b"\"}")
            }
        }
    }
}

/// True when the formatted log at `live` ends with the record of the last line
/// of a `total`-byte stream.
pub fn ends_with_last_record(live: &Path, total: u64, format: Format) -> bool {
    use std::io::{Seek, SeekFrom};
    let Ok(mut file) = File::open(live) else { return false };
    let Ok(len) = file.seek(SeekFrom::End(0)) else { return false };
    let want = 512.min(len);
    if want == 0 || file.seek(SeekFrom::Start(len - want)).is_err() {
        return false;
    }
    let mut tail = vec![0u8; want as usize];
    if file.read_exact(&mut tail).is_err() {
        return false;
    }
    let Some(body) = tail.strip_suffix(b"\n") else { return false };
    let record = body.rsplit(|b| *b == b'\n').next().unwrap_or(body);
    let last = line(total / LINE_LEN - 1);
    format.decode(record) == Some(&last[..LINE_LEN as usize - 1])
}

/// Checks that the formatted log at `live` holds every line of a `total`-byte
/// stream, in order, one record each.
pub fn verify_formatted(live: &Path, total: u64, format: Format) -> Result<Verified, VerifyError> {
    let read_err = |source| VerifyError::Read { path: live.to_path_buf(), source };
    let file = File::open(live).map_err(read_err)?;
    let mut reader = io::BufReader::with_capacity(1 << 20, file);
    let mut record = Vec::new();
    let mut index = 0;
    let mut bytes = 0;
    loop {
        record.clear();
        let n = io::BufRead::read_until(&mut reader, b'\n', &mut record).map_err(read_err)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        let expected = line(index);
        let body = record.strip_suffix(b"\n").unwrap_or(&record);
        if index >= total / LINE_LEN
            || format.decode(body) != Some(&expected[..LINE_LEN as usize - 1])
        {
            return Err(VerifyError::Mismatch {
                offset: index * LINE_LEN,
                line: index,
                path: live.to_path_buf(),
            });
        }
        index += 1;
    }
    if index != total / LINE_LEN {
        return Err(VerifyError::Incomplete { found: index * LINE_LEN, total });
    }
    Ok(Verified { bytes, first_offset: 0, complete_lines: index })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(total: u64) -> Vec<u8> {
        let mut out = Vec::new();
        generate(&mut out, total).unwrap();
        out
    }

    #[test]
    fn formatted_logs_verify() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("p.out");
        let lines = 30;
        let mut stamped = Vec::new();
        let mut json = Vec::new();
        for index in 0..lines {
            let text = line(index);
            let body = std::str::from_utf8(&text[..99]).unwrap();
            stamped.extend_from_slice(format!("2026-12-04T17:32:44.123Z {body}\n").as_bytes());
            json.extend_from_slice(
                format!("{{\"ts\":\"2026-12-04T17:32:44.123Z\",\"program\":\"gen\",\"pid\":7,\"line\":\"{body}\"}}\n")
                    .as_bytes(),
            );
        }
        for (format, bytes) in [(Format::Timestamped, &stamped), (Format::Json, &json)] {
            std::fs::write(&live, bytes).unwrap();
            assert!(ends_with_last_record(&live, lines * LINE_LEN, format));
            assert!(!ends_with_last_record(&live, (lines + 1) * LINE_LEN, format));
            let v = verify_formatted(&live, lines * LINE_LEN, format).unwrap();
            assert_eq!(v.complete_lines, lines);
            assert!(verify_formatted(&live, (lines + 1) * LINE_LEN, format).is_err());
        }
    }

    #[test]
    fn line_shape() {
        let l = line(42);
        assert_eq!(&l[..12], b"00000000042 ");
        assert!(l[12..99].iter().all(|b| *b == b'x'));
        assert_eq!(l[99], b'\n');
    }

    #[test]
    fn generate_rejects_partial_lines() {
        assert!(generate(&mut Vec::new(), 150).is_err());
        assert_eq!(stream(100_000).len(), 100_000);
    }

    #[test]
    fn whole_log_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("p.out");
        std::fs::write(&live, stream(70_000)).unwrap();
        let v = verify(std::slice::from_ref(&live), 70_000, true).unwrap();
        assert_eq!(v, Verified { bytes: 70_000, first_offset: 0, complete_lines: 700 });
        assert!(ends_with_last_line(&live, 70_000));
        assert!(!ends_with_last_line(&live, 70_100));
    }

    #[test]
    fn gapless_rotated_tail_verifies_even_when_split_mid_line() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("p.out");
        let all = stream(100_000);
        // Rotation at arbitrary byte boundaries, as a daemon writing whole
        // pipe reads produces: .3 was rotated away, .2 .1 and live are kept.
        let files = rotated_files(&live, 3);
        std::fs::write(&files[1], &all[33_333..60_050]).unwrap();
        std::fs::write(&files[2], &all[60_050..91_234]).unwrap();
        std::fs::write(&files[3], &all[91_234..]).unwrap();
        let v = verify(&files, 100_000, false).unwrap();
        assert_eq!(v.first_offset, 33_333);
        assert_eq!(v.bytes, 66_667);
        assert_eq!(v.complete_lines, 666);
    }

    #[test]
    fn a_gap_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("p.out");
        let all = stream(10_000);
        let files = rotated_files(&live, 1);
        std::fs::write(&files[0], &all[2_000..5_000]).unwrap();
        std::fs::write(&files[1], &all[5_100..]).unwrap(); // Line 50 lost.
        match verify(&files, 10_000, false) {
            Err(VerifyError::Mismatch { path, .. }) => assert_eq!(path, files[0]),
            other => panic!("expected a mismatch, got {other:?}"),
        }
    }

    #[test]
    fn a_corrupt_byte_is_located() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("p.out");
        let mut all = stream(10_000);
        all[4_321] = b'y';
        std::fs::write(&live, &all).unwrap();
        match verify(std::slice::from_ref(&live), 10_000, true) {
            Err(VerifyError::Mismatch { offset, line, .. }) => {
                assert_eq!((offset, line), (4_321, 43))
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
    }

    #[test]
    fn short_and_long_logs_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("p.out");
        std::fs::write(&live, stream(1_000)).unwrap();
        assert!(matches!(
            verify(std::slice::from_ref(&live), 2_000, true),
            Err(VerifyError::Incomplete { found: 1_000, total: 2_000 })
        ));
        assert!(matches!(
            verify(std::slice::from_ref(&live), 500, false),
            Err(VerifyError::TooLong { .. })
        ));
    }
}
