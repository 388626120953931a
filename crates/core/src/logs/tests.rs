use std::fs::File;
use std::io::Read;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::*;

fn memory_log(ring: usize) -> ChannelLog {
    ChannelLog::open(None, 0, 0, ring).unwrap()
}

fn file_log(dir: &Path, maxbytes: u64, backups: u32, ring: usize) -> ChannelLog {
    ChannelLog::open(Some(dir.join("out.log")), maxbytes, backups, ring).unwrap()
}

fn put(log: &ChannelLog, data: &[u8]) {
    log.append(data);
}

fn read_file(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

#[test]
fn read_semantics_table() {
    let dir = tempfile::tempdir().unwrap();
    // Ring of 3 bytes: most reads come from the file.
    for log in [memory_log(100), file_log(dir.path(), 0, 0, 3)] {
        put(&log, b"abcdefghij");
        let cases: &[(i64, i64, &[u8])] = &[
            (0, 0, b"abcdefghij"),
            (-3, 0, b"hij"),
            (-100, 0, b"abcdefghij"),
            (2, 3, b"cde"),
            (8, 10, b"ij"),
            (10, 0, b""),
            (20, 0, b""),
            (20, 5, b""),
        ];
        for (offset, length, expected) in cases {
            assert_eq!(
                log.read(*offset, *length).unwrap(),
                expected.to_vec(),
                "read({offset}, {length}) on {log:?}"
            );
        }
        for (offset, length) in [(-1, 1), (0, -1), (-5, -5)] {
            assert!(
                matches!(log.read(offset, length), Err(LogError::BadArguments { .. })),
                "read({offset}, {length})"
            );
        }
    }
}

#[test]
fn tail_semantics_table() {
    let log = memory_log(100);
    put(&log, b"abcdefghij");
    let cases: &[(u64, u64, &[u8], u64, bool)] = &[
        (0, 100, b"abcdefghij", 10, false),
        (0, 4, b"ghij", 10, true),
        (8, 5, b"fghij", 10, false),
        (9, 1, b"j", 10, false),
        (10, 5, b"", 10, false),
        (12, 5, b"", 10, false),
        (5, 0, b"", 10, true),
        (0, 10, b"abcdefghij", 10, false),
    ];
    for (offset, length, bytes, new_offset, overflow) in cases {
        assert_eq!(
            log.tail(*offset, *length),
            (bytes.to_vec(), *new_offset, *overflow),
            "tail({offset}, {length})"
        );
    }
}

#[test]
fn no_storage_is_no_file() {
    let log = memory_log(0);
    put(&log, b"lost to nowhere");
    assert!(matches!(log.read(0, 0), Err(LogError::NoFile)));
    assert_eq!(log.tail(0, 100), (Vec::new(), 0, false));
    assert_eq!(log.total(), 15);
}

#[test]
fn ring_keeps_the_newest_bytes() {
    let log = memory_log(4);
    put(&log, b"abc");
    put(&log, b"def");
    assert_eq!(log.read(0, 0).unwrap(), b"cdef");
    put(&log, b"ghijkl");
    assert_eq!(log.read(0, 0).unwrap(), b"ijkl");
    put(&log, b"m");
    assert_eq!(log.read(0, 0).unwrap(), b"jklm");
    assert_eq!(log.read(-2, 0).unwrap(), b"lm");
    assert_eq!(log.read(10, 2).unwrap(), b"kl");
    assert_eq!(log.tail(0, 100), (b"jklm".to_vec(), 13, false));
    assert_eq!(log.total(), 13);
}

#[test]
fn rotation_names_and_contents() {
    let dir = tempfile::tempdir().unwrap();
    let log = file_log(dir.path(), 4, 2, 0);
    let base = dir.path().join("out.log");
    put(&log, b"abcdefghij");
    assert_eq!(read_file(&backup_path(&base, 2)), b"abcd");
    assert_eq!(read_file(&backup_path(&base, 1)), b"efgh");
    assert_eq!(read_file(&base), b"ij");
    assert_eq!(log.read(0, 0).unwrap(), b"abcdefghij");

    put(&log, b"klmn");
    assert_eq!(read_file(&backup_path(&base, 2)), b"efgh");
    assert_eq!(read_file(&backup_path(&base, 1)), b"ijkl");
    assert_eq!(read_file(&base), b"mn");
    assert!(!backup_path(&base, 3).exists());
    // "abcd" rotated out: reads start at the oldest kept byte.
    assert_eq!(log.read(0, 0).unwrap(), b"efghijklmn");
    assert_eq!(log.read(-3, 0).unwrap(), b"lmn");
    assert_eq!(log.read(5, 4).unwrap(), b"fghi");
    assert_eq!(log.tail(0, 6), (b"ijklmn".to_vec(), 14, true));
}

#[test]
fn zero_backups_truncates_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let log = file_log(dir.path(), 4, 0, 0);
    let base = dir.path().join("out.log");
    put(&log, b"abcdefghij");
    assert_eq!(read_file(&base), b"ij");
    assert!(!backup_path(&base, 1).exists());
    assert_eq!(log.read(0, 0).unwrap(), b"ij");
    assert_eq!(log.total(), 10);
}

#[test]
fn zero_maxbytes_never_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let log = file_log(dir.path(), 0, 3, 0);
    for _ in 0..100 {
        put(&log, b"0123456789");
    }
    assert_eq!(read_file(&dir.path().join("out.log")).len(), 1000);
    assert!(!backup_path(&dir.path().join("out.log"), 1).exists());
}

#[test]
fn existing_content_is_the_oldest_history() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("out.log");
    std::fs::write(backup_path(&base, 1), b"old-").unwrap();
    std::fs::write(&base, b"older-run\n").unwrap();
    let log = file_log(dir.path(), 100, 1, 16);
    assert_eq!(log.total(), 14);
    put(&log, b"new\n");
    assert_eq!(log.read(0, 0).unwrap(), b"old-older-run\nnew\n");
    assert_eq!(read_file(&base), b"older-run\nnew\n");
}

#[test]
fn a_history_ends_at_the_first_missing_backup() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("out.log");
    // `.2` is missing: `.3` is not part of what `.1` continues.
    std::fs::write(backup_path(&base, 1), b"one-").unwrap();
    std::fs::write(backup_path(&base, 3), b"three-").unwrap();
    std::fs::write(&base, b"base\n").unwrap();
    let log = file_log(dir.path(), 100, 3, 16);
    assert_eq!(log.total(), 9);
    assert_eq!(log.read(0, 0).unwrap(), b"one-base\n");
}

#[test]
fn a_log_continued_after_an_upgrade_keeps_its_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("out.log");
    std::fs::write(backup_path(&base, 1), b"rotated-").unwrap();
    std::fs::write(&base, b"current\n").unwrap();
    // The previous image had held 100 bytes; older backups were dropped.
    let log = file_log(dir.path(), 1000, 1, 16);
    log.continue_from(100);
    assert_eq!(log.total(), 100);
    assert_eq!(log.read(84, 0).unwrap(), b"rotated-current\n");
    put(&log, b"next\n");
    assert_eq!(log.read(100, 0).unwrap(), b"next\n");
    assert_eq!(log.read(0, 0).unwrap(), b"rotated-current\nnext\n");
    // A total the files already reach moves nothing.
    log.continue_from(50);
    assert_eq!(log.total(), 105);
}

#[test]
fn a_log_resumed_from_its_carried_layout_reads_and_rotates_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("out.log");
    // Rotates every 10 bytes, two backups kept: 25 bytes span three files.
    let log = file_log(dir.path(), 10, 2, 16);
    put(&log, b"0123456789abcdefghijKLMNO");
    let layout = log.layout().expect("a regular file in good standing");
    assert_eq!((layout.total, layout.backups.len()), (25, 2));
    drop(log);
    let resumed = ChannelLog::resume(layout, 10, 16);
    assert_eq!(resumed.total(), 25);
    assert_eq!(resumed.read(0, 0).unwrap(), b"0123456789abcdefghijKLMNO");
    assert_eq!(resumed.read(12, 5).unwrap(), b"cdefg");
    // Writing goes on in the same file, and rotates where it would have.
    put(&resumed, b"PQRSTuv");
    assert_eq!(resumed.total(), 32);
    assert_eq!(resumed.read(20, 0).unwrap(), b"KLMNOPQRSTuv");
    assert_eq!(read_file(&base), b"uv");
    assert_eq!(read_file(&backup_path(&base, 1)), b"KLMNOPQRST");
}

#[test]
fn a_memory_log_or_a_device_has_no_layout_to_carry() {
    assert!(memory_log(16).layout().is_none());
    let device =
        ChannelLog::open(Some(std::path::PathBuf::from("/dev/null")), 0, 0, 16).expect("/dev/null");
    assert!(device.layout().is_none());
}

#[test]
fn clear_empties_file_and_ring_but_keeps_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = file_log(dir.path(), 0, 0, 100);
    put(&log, b"before");
    log.clear().unwrap();
    assert_eq!(read_file(&dir.path().join("out.log")), b"");
    assert_eq!(log.read(0, 0).unwrap(), b"");
    assert_eq!(log.total(), 6);
    put(&log, b"after");
    assert_eq!(log.read(0, 0).unwrap(), b"after");
    assert_eq!(log.read(6, 2).unwrap(), b"af");
    assert_eq!(read_file(&dir.path().join("out.log")), b"after");
    assert_eq!(log.tail(6, 100), (b"after".to_vec(), 11, false));

    let memory = memory_log(100);
    put(&memory, b"gone");
    memory.clear().unwrap();
    assert_eq!(memory.read(0, 0).unwrap(), b"");
}

#[test]
fn reopen_follows_an_external_logrotate() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("out.log");
    let log = file_log(dir.path(), 0, 0, 3);
    put(&log, b"abcdef");
    std::fs::rename(&base, dir.path().join("moved.log")).unwrap();
    log.reopen().unwrap();
    put(&log, b"gh");
    assert_eq!(read_file(&base), b"gh");
    assert_eq!(read_file(&dir.path().join("moved.log")), b"abcdef");
    // The moved bytes are no longer ours; only the ring still has some of them.
    assert_eq!(log.read(0, 0).unwrap(), b"fgh");

    // Reopening an untouched file keeps the whole history readable.
    let dir2 = tempfile::tempdir().unwrap();
    let log2 = file_log(dir2.path(), 0, 0, 0);
    put(&log2, b"abc");
    log2.reopen().unwrap();
    put(&log2, b"def");
    assert_eq!(log2.read(0, 0).unwrap(), b"abcdef");
}

#[test]
fn write_failure_is_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let log = ChannelLog::open(Some(sub.join("out.log")), 4, 1, 100).unwrap();
    put(&log, b"ab");
    // Take the directory away: rotation and reopening fail, capture goes on.
    std::fs::remove_file(sub.join("out.log")).unwrap();
    std::fs::remove_dir(&sub).unwrap();
    put(&log, b"cdefgh");
    put(&log, b"ij");
    assert_eq!(log.total(), 10);
    assert_eq!(log.read(-4, 0).unwrap(), b"ghij");
    // The directory comes back: writes resume and are readable again.
    std::fs::create_dir(&sub).unwrap();
    put(&log, b"kl");
    assert_eq!(log.read(-2, 0).unwrap(), b"kl");
    assert_eq!(log.total(), 12);
}

#[test]
fn auto_log_names() {
    let dir = tempfile::tempdir().unwrap();
    let first = auto_log_path(dir.path(), "web_0", Channel::Stdout, "supervisor").unwrap();
    let second = auto_log_path(dir.path(), "web_0", Channel::Stdout, "supervisor").unwrap();
    assert_ne!(first, second);
    assert!(first.exists());
    let name = first.file_name().unwrap().to_str().unwrap();
    let suffix = name.strip_prefix("web_0-stdout---supervisor-").unwrap();
    let random = suffix.strip_suffix(".log").unwrap();
    assert_eq!(random.len(), 8);
    assert!(random.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
    let err = auto_log_path(&dir.path().join("missing"), "x", Channel::Stderr, "s").unwrap_err();
    assert_eq!(io::Error::from(err).kind(), io::ErrorKind::NotFound);

    assert!(is_auto_log_name(name, "supervisor"));
    assert!(is_auto_log_name("web-stderr---supervisor-abc123.log.3", "supervisor"));
    assert!(!is_auto_log_name(name, "other"));
    assert!(!is_auto_log_name("---supervisor-abc.log", "supervisor"));
    assert!(!is_auto_log_name("web-stdout---supervisor-.log", "supervisor"));
    assert!(!is_auto_log_name("web-stdout---supervisor-a b.log", "supervisor"));
    assert!(!is_auto_log_name("notes.txt", "supervisor"));

    std::fs::write(dir.path().join("keep.log"), b"").unwrap();
    std::fs::write(dir.path().join("web-stderr---supervisor-zz.log.1"), b"").unwrap();
    assert_eq!(remove_auto_logs(dir.path(), "supervisor").unwrap(), 3);
    assert!(dir.path().join("keep.log").exists());
}

#[tokio::test]
async fn wait_beyond_wakes_on_new_bytes() {
    let log = memory_log(100);
    put(&log, b"abc");
    // Already beyond: immediate.
    tokio::time::timeout(Duration::from_secs(5), log.wait_beyond(2)).await.unwrap();
    let waiter = {
        let log = log.clone();
        tokio::spawn(async move { log.wait_beyond(3).await })
    };
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    put(&log, b"d");
    tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
}

#[tokio::test]
async fn line_callback_sees_whole_lines() {
    let log = memory_log(1024);
    let (mut sender, receiver) = pipe::pipe().unwrap();
    let lines = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let sink = Arc::clone(&lines);
    let task = log.capture_with(
        receiver,
        Some(Box::new(move |line: &[u8]| sink.lock().unwrap().push(line.to_vec()))),
    );
    sender.write_all(b"a\nbc").await.unwrap();
    sender.flush().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), log.wait_beyond(3)).await.unwrap();
    sender.write_all(b"d\n\ntail").await.unwrap();
    drop(sender);
    tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
    let got = lines.lock().unwrap().clone();
    assert_eq!(got, vec![b"a".to_vec(), b"bcd".to_vec(), b"".to_vec(), b"tail".to_vec()]);
    assert_eq!(log.read(0, 0).unwrap(), b"a\nbcd\n\ntail");
}

/// Deterministic test data: every aligned 8-byte word holds its own offset, so any
/// lost, duplicated or reordered byte shows up.
fn pattern(offset: u64, buf: &mut [u8]) {
    assert_eq!(offset % 8, 0);
    assert_eq!(buf.len() % 8, 0);
    for (index, word) in buf.chunks_exact_mut(8).enumerate() {
        word.copy_from_slice(&(offset + index as u64 * 8).to_le_bytes());
    }
}

/// Writes `total` pattern bytes into a pipe as fast as it takes them and captures
/// them into `log`.
async fn pump(log: &ChannelLog, total: u64) {
    let (mut sender, receiver) = pipe::pipe().unwrap();
    let capture = log.capture(receiver);
    let writer = tokio::spawn(async move {
        // Odd-sized writes so batches never line up with rotation boundaries.
        let mut buf = vec![0u8; 200_008];
        let mut offset = 0u64;
        while offset < total {
            let n = (total - offset).min(buf.len() as u64) as usize;
            pattern(offset, &mut buf[..n]);
            sender.write_all(&buf[..n]).await.unwrap();
            offset += n as u64;
        }
    });
    tokio::time::timeout(Duration::from_secs(300), writer).await.unwrap().unwrap();
    tokio::time::timeout(Duration::from_secs(300), capture).await.unwrap().unwrap();
}

/// Compares the concatenation of `files` (oldest first) with pattern bytes
/// `[start, start + len)`.
fn assert_files_hold(files: &[PathBuf], start: u64) -> u64 {
    let mut offset = start;
    let mut expected = vec![0u8; 1 << 20];
    let mut actual = vec![0u8; 1 << 20];
    for path in files {
        let mut file = File::open(path).unwrap();
        loop {
            let n = file.read(&mut actual).unwrap();
            if n == 0 {
                break;
            }
            // Compare on 8-byte aligned windows of the pattern.
            let aligned = offset - offset % 8;
            let skip = (offset - aligned) as usize;
            let span = (skip + n).div_ceil(8) * 8;
            if expected.len() < span {
                expected.resize(span, 0);
            }
            pattern(aligned, &mut expected[..span]);
            assert!(
                expected[skip..skip + n] == actual[..n],
                "mismatch in {} near offset {offset}",
                path.display()
            );
            offset += n as u64;
        }
    }
    offset - start
}

const BIG: u64 = 200 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_megabytes_without_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let log = file_log(dir.path(), 0, 0, 64 * 1024);
    pump(&log, BIG).await;
    assert_eq!(log.total(), BIG);
    let base = dir.path().join("out.log");
    assert_eq!(assert_files_hold(std::slice::from_ref(&base), 0), BIG);
    let mut expected = vec![0u8; 1600];
    pattern(BIG - 1600, &mut expected);
    assert_eq!(log.read(-1600, 0).unwrap(), expected);
}

/// The pump's bytes at `[from, from + len)`.
fn pumped(from: u64, len: usize) -> Vec<u8> {
    let aligned = from - from % 8;
    let skip = (from - aligned) as usize;
    let mut bytes = vec![0u8; (skip + len).div_ceil(8) * 8];
    pattern(aligned, &mut bytes);
    bytes[skip..skip + len].to_vec()
}

/// The files of a rotated log, oldest first (`.N` ... `.1`, then `base`),
/// checking that every backup holds exactly `maxbytes` and none beyond `.N`.
fn full_backups_then_base(base: &Path, backups: u32, maxbytes: u64) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..=backups).rev().map(|i| backup_path(base, i)).collect();
    for backup in &files {
        assert_eq!(std::fs::metadata(backup).unwrap().len(), maxbytes, "{}", backup.display());
    }
    assert!(!backup_path(base, backups + 1).exists());
    files.push(base.to_path_buf());
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_megabytes_with_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let maxbytes = 7 * 1024 * 1024 + 3;
    let backups = 10;
    let log = file_log(dir.path(), maxbytes, backups, 1024);
    pump(&log, BIG).await;
    assert_eq!(log.total(), BIG);
    let base = dir.path().join("out.log");
    // Oldest first: .10 ... .1, then the base file; together a gapless tail.
    let files = full_backups_then_base(&base, backups, maxbytes);
    let base_len = std::fs::metadata(&base).unwrap().len();
    assert_eq!(base_len, BIG % maxbytes);
    let kept = maxbytes * u64::from(backups) + base_len;
    assert_eq!(assert_files_hold(&files, BIG - kept), kept);
    // Reads across file boundaries come back byte-exact.
    let from = BIG - kept + maxbytes - 100;
    assert_eq!(log.read(from as i64, 200).unwrap(), pumped(from, 200));
    // Bytes no longer kept are left out of a slice.
    assert_eq!(log.read(0, 16).unwrap(), b"");
    let partial = log.read((BIG - kept - 8) as i64, 16).unwrap();
    assert_eq!(partial, log.read((BIG - kept) as i64, 8).unwrap());
    assert_eq!(partial.len(), 8);
}

#[test]
fn external_truncation_falls_back_to_the_ring() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("out.log");
    let log = file_log(dir.path(), 0, 0, 4);
    put(&log, b"abcdefgh");
    // A copytruncate logrotate without SIGUSR2.
    File::create(&base).unwrap();
    assert_eq!(log.read(0, 0).unwrap(), b"efgh");
    assert_eq!(log.tail(0, 100), (b"efgh".to_vec(), 8, false));
}

/// Waits (bounded) until `condition` holds.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_rotates_exactly_at_maxbytes() {
    let dir = tempfile::tempdir().unwrap();
    let (maxbytes, backups, ring) = (100_003, 3, 4096);
    let log = file_log(dir.path(), maxbytes, backups, ring);
    let total = 2 * 1024 * 1024;
    pump(&log, total).await;
    assert_eq!(log.total(), total);
    let base = dir.path().join("out.log");
    let files = full_backups_then_base(&base, backups, maxbytes);
    // The oldest backups were removed, not kept under other names.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), backups as usize + 1);
    let base_len = std::fs::metadata(&base).unwrap().len();
    assert_eq!(base_len, total % maxbytes);
    let kept = maxbytes * u64::from(backups) + base_len;
    assert_eq!(assert_files_hold(&files, total - kept), kept);
    assert_eq!(log.read(-(ring as i64), 0).unwrap(), pumped(total - ring as u64, ring));
    // Reads across a rotation boundary come from the files.
    let from = total - base_len - 8;
    assert_eq!(log.read(from as i64, 16).unwrap(), pumped(from, 16));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_truncates_in_place_exactly_at_maxbytes_without_backups() {
    let dir = tempfile::tempdir().unwrap();
    let maxbytes = 10_007;
    let log = file_log(dir.path(), maxbytes, 0, 64);
    let total = 100_000;
    pump(&log, total).await;
    let base = dir.path().join("out.log");
    assert!(!backup_path(&base, 1).exists());
    // Truncated exactly at each boundary: the file holds the bytes since the last one.
    let kept = total % maxbytes;
    assert_eq!(std::fs::metadata(&base).unwrap().len(), kept);
    assert_eq!(assert_files_hold(std::slice::from_ref(&base), total - kept), kept);
    assert_eq!(log.read(0, 0).unwrap().len() as u64, kept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_program_holds_no_descriptor_until_it_writes() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("out.log");
    let log = file_log(dir.path(), 0, 0, 1024);
    // Not created at open, nor on the spawn's path: the log maker makes it
    // soon after `prepare`.
    assert!(!base.exists());
    log.prepare().unwrap();
    // The program runs (its output is being captured) but writes nothing yet.
    let (mut sender, receiver) = pipe::pipe().unwrap();
    let task = log.capture(receiver);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !base.exists() {
        assert!(std::time::Instant::now() < deadline, "the log maker did not create the file");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    // Not held open while nothing is written, the log maker's open included.
    assert!(!lock(&log.inner.file).disk().is_open());
    sender.write_all(b"one line\n").await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), log.wait_beyond(8)).await.unwrap();
    assert!(lock(&log.inner.file).disk().is_open());
    assert_eq!(read_file(&base), b"one line\n");
    assert_eq!(log.tail(0, 4), (b"ine\n".to_vec(), 9, true));
    drop(sender);
    tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap();
    assert_eq!(log.read(0, 0).unwrap(), b"one line\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_channel_gets_a_bigger_pipe_and_a_quiet_one_does_not() {
    use nix::fcntl::{FcntlArg, fcntl};
    use std::sync::atomic::AtomicBool;
    let pipe_size = |fd: BorrowedFd<'_>| fcntl(fd, FcntlArg::F_GETPIPE_SZ).unwrap();
    // Where this process may not have such a pipe, the daemon may not either:
    // the pipe must then stay as it is.
    let (probe, _probe_rx) = pipe::pipe().unwrap();
    let big = i32::try_from(BUSY_PIPE_SIZE).unwrap();
    let allowed = fcntl(&probe, FcntlArg::F_SETPIPE_SZ(big)).is_ok();
    drop(probe);

    let dir = tempfile::tempdir().unwrap();
    let quiet = ChannelLog::open(Some(dir.path().join("quiet.log")), 0, 0, 64).unwrap();
    let (mut quiet_tx, quiet_rx) = pipe::pipe().unwrap();
    let quiet_task = quiet.capture(quiet_rx);
    let before = pipe_size(quiet_tx.as_fd());
    quiet_tx.write_all(b"a line now and then\n").await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), quiet.wait_beyond(19)).await.unwrap();

    let log = file_log(dir.path(), 0, 0, 64);
    let (sender, receiver) = pipe::pipe().unwrap();
    let sender = Arc::new(tokio::sync::Mutex::new(sender));
    let capture = log.capture(receiver);
    // Write until the pipe has grown (or, where that is refused, 4 MiB).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (sender, stop) = (Arc::clone(&sender), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut offset = 0u64;
            while !stop.load(Ordering::Relaxed) && (allowed || offset < 4 << 20) {
                pattern(offset, &mut buf);
                sender.lock().await.write_all(&buf).await.unwrap();
                offset += buf.len() as u64;
            }
            offset
        })
    };
    // A second descriptor of the write end, to look at the pipe while the
    // writer holds the first; closed before waiting for EOF.
    let watch = sender.lock().await.as_fd().try_clone_to_owned().unwrap();
    if allowed {
        wait_until("the busy pipe to grow", || pipe_size(watch.as_fd()) == big).await;
        stop.store(true, Ordering::Relaxed);
    }
    let written = tokio::time::timeout(Duration::from_secs(60), writer).await.unwrap().unwrap();
    if !allowed {
        assert_eq!(pipe_size(watch.as_fd()), before);
    }
    drop(watch);
    drop(sender);
    tokio::time::timeout(Duration::from_secs(60), capture).await.unwrap().unwrap();
    assert_eq!(assert_files_hold(&[dir.path().join("out.log")], 0), written);

    // The quiet channel kept the default pipe.
    assert_eq!(pipe_size(quiet_tx.as_fd()), before);
    drop(quiet_tx);
    tokio::time::timeout(Duration::from_secs(30), quiet_task).await.unwrap().unwrap();
}

/// A directory every user may write (so not trusted, whoever runs the test)
/// inside a private one, and a file outside it that must stay as it is.
fn untrusted_dir() -> (tempfile::TempDir, PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"victim\n").unwrap();
    (dir, open, victim)
}

fn refused(result: Result<(), LogError>) -> String {
    match result {
        Err(error @ LogError::Refused { .. }) => error.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_symlink_in_an_untrusted_directory_is_never_followed() {
    let (dir, open, victim) = untrusted_dir();
    let base = open.join("out.log");
    let log = ChannelLog::open(Some(base.clone()), 0, 0, 100).unwrap();
    put(&log, b"mine\n");
    std::fs::remove_file(&base).unwrap();
    let created = dir.path().join("created");
    std::os::unix::fs::symlink(&created, &base).unwrap();
    // First open after the swap, and the spawn-time check.
    put(&log, b"planted\n");
    assert!(log.problem().unwrap().contains("symbolic link"), "{:?}", log.problem());
    assert!(refused(log.prepare()).contains("symbolic link"));
    assert!(!created.exists());
    // Reopen and clear.
    std::fs::remove_file(&base).unwrap();
    std::os::unix::fs::symlink(&victim, &base).unwrap();
    // Nothing is open (no capture runs): reopening only looks, without following.
    log.reopen().unwrap();
    refused(log.clear());
    put(&log, b"again\n");
    assert_eq!(read_file(&victim), b"victim\n");
    assert!(created.symlink_metadata().is_err());
    // Still captured in memory.
    assert_eq!(log.read(-6, 0).unwrap(), b"again\n");
    // A real file again: writes resume and the problem is gone.
    std::fs::remove_file(&base).unwrap();
    put(&log, b"back\n");
    assert_eq!(log.problem(), None);
    assert_eq!(read_file(&base), b"back\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_directory_in_an_untrusted_directory_stops_rotation() {
    let (dir, open, _victim) = untrusted_dir();
    let sub = open.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let log = ChannelLog::open(Some(sub.join("out.log")), 10, 2, 100).unwrap();
    let (mut sender, receiver) = pipe::pipe().unwrap();
    {
        let task = log.capture(receiver);
        sender.write_all(b"12345").await.unwrap();
        wait_until("the first bytes", || log.total() == 5).await;
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("out.log"), b"keep").unwrap();
        std::fs::rename(&sub, open.join("old")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &sub).unwrap();
        sender.write_all(b"6789012345").await.unwrap();
        wait_until("the rest", || log.total() == 15).await;
        // The rotation that came due was refused: the open file took the bytes.
        assert!(log.problem().unwrap().contains("symbolic link"), "{:?}", log.problem());
        assert_eq!(read_file(&open.join("old/out.log")), b"123456789012345");
        assert_eq!(read_file(&elsewhere.join("out.log")), b"keep");
        assert!(!elsewhere.join("out.log.1").exists());
        drop(sender);
        task.await.unwrap();
    }
}

#[test]
fn hard_links_fifos_and_foreign_files_are_refused_in_an_untrusted_directory() {
    let (_dir, open, victim) = untrusted_dir();
    let linked = open.join("linked.log");
    std::fs::hard_link(&victim, &linked).unwrap();
    let error = ChannelLog::open(Some(linked), 0, 0, 0).unwrap_err();
    assert!(error.to_string().contains("2 hard links"), "{error}");
    let fifo = open.join("fifo.log");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    // Refused at once, not blocked waiting for a reader.
    let error = ChannelLog::open(Some(fifo.clone()), 0, 0, 0).unwrap_err();
    assert_eq!(io::Error::from(error).raw_os_error(), Some(libc::ENXIO));
    let _reader = nix::fcntl::open(
        &fifo,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NONBLOCK,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    let error = ChannelLog::open(Some(fifo), 0, 0, 0).unwrap_err();
    assert!(error.to_string().contains("not a regular file"), "{error}");
    assert_eq!(read_file(&victim), b"victim\n");
    // Reading back refuses a planted link too.
    let base = open.join("read.log");
    let log = ChannelLog::open(Some(base.clone()), 0, 0, 0).unwrap();
    put(&log, b"ab");
    std::fs::remove_file(&base).unwrap();
    std::os::unix::fs::symlink(&victim, &base).unwrap();
    assert!(!log.read(0, 0).map(|b| b == b"victim\n").unwrap_or(false));
}

#[test]
fn links_in_trusted_directories_and_devices_are_followed() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.log");
    let link = dir.path().join("link.log");
    std::os::unix::fs::symlink("real.log", &link).unwrap();
    let log = ChannelLog::open(Some(link.clone()), 4, 1, 0).unwrap();
    put(&log, b"abcdef");
    // Rotation acts on the file the trusted link names.
    assert_eq!(read_file(&backup_path(&real, 1)), b"abcd");
    assert_eq!(read_file(&real), b"ef");
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    // `/dev/stdout` ends in a magic link of /proc.
    let stdout = LogFile::open(PathBuf::from("/dev/stdout")).unwrap();
    assert!(stdout.is_open());
    let null = LogFile::open(PathBuf::from("/dev/null")).unwrap();
    assert!(!null.is_regular());
}

#[test]
fn a_directory_reached_lately_is_walked_again_once_it_changes() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    mode(&sub, 0o755);
    LogFile::open(sub.join("first.log")).unwrap();
    // Removed and made again: the new directory takes the file.
    std::fs::remove_file(sub.join("first.log")).unwrap();
    std::fs::remove_dir(&sub).unwrap();
    std::fs::create_dir(&sub).unwrap();
    mode(&sub, 0o755);
    LogFile::open(sub.join("second.log")).unwrap();
    assert!(sub.join("second.log").is_file());
    // Made writable by every user: a hard link planted there is refused, as
    // in any directory that is not trusted.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"victim\n").unwrap();
    mode(&sub, 0o777);
    std::fs::hard_link(&victim, sub.join("linked.log")).unwrap();
    let error = LogFile::open(sub.join("linked.log")).unwrap_err();
    assert!(error.to_string().contains("2 hard links"), "{error}");
    std::fs::remove_file(sub.join("linked.log")).unwrap();
    mode(&sub, 0o755);
    LogFile::open(sub.join("third.log")).unwrap();
    // Moved away, in a directory every user may write, and replaced by a
    // link to another trusted directory: the link is refused.
    mode(dir.path(), 0o777);
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    mode(&elsewhere, 0o755);
    std::fs::rename(&sub, dir.path().join("old")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &sub).unwrap();
    let error = LogFile::open(sub.join("fourth.log")).unwrap_err();
    assert!(error.to_string().contains("symbolic link"), "{error}");
    assert!(!elsewhere.join("fourth.log").exists());
    assert_eq!(read_file(&victim), b"victim\n");
}

/// Descriptors of this process open on `path`.
fn open_on(path: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|entry| std::fs::read_link(entry.path()).is_ok_and(|target| target == path))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_is_closed_when_the_last_pipe_closes() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("out.log");
    let log = file_log(dir.path(), 0, 0, 1024);
    let (mut first, first_end) = pipe::pipe().unwrap();
    let (mut second, second_end) = pipe::pipe().unwrap();
    let first_task = log.capture(first_end);
    let second_task = log.capture(second_end);
    first.write_all(b"one\n").await.unwrap();
    second.write_all(b"two\n").await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), log.wait_beyond(7)).await.unwrap();
    assert_eq!(open_on(&base), 1);
    // A grandchild still holds the other pipe: the file stays open for it.
    drop(first);
    tokio::time::timeout(Duration::from_secs(30), first_task).await.unwrap().unwrap();
    assert_eq!(open_on(&base), 1);
    drop(second);
    tokio::time::timeout(Duration::from_secs(30), second_task).await.unwrap().unwrap();
    assert_eq!(open_on(&base), 0, "a stopped program's log holds no descriptor");
    // A message written for a stopped program opens and closes it again.
    log.append(b"three\n");
    assert_eq!(open_on(&base), 0);
    let all = log.read(0, 0).unwrap();
    assert_eq!(all.len(), 14);
    assert!(all.ends_with(b"three\n"));
}
