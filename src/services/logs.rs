//! Where a service's output goes (`<log_dir>/<name>.log`), and the last lines of it, which every
//! start failure quotes so the user sees why without opening the file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::exit::Failure;

/// Bytes read from the end of a log to find its last lines: plenty for 20 ordinary lines, and a
/// service that has logged gigabytes does not make an error message slow.
const TAIL_WINDOW: u64 = 64 * 1024;
/// A longer line is cut in messages; a JSON blob on one line should not drown the rest.
const MAX_LINE_CHARS: usize = 400;

/// `<log_dir>/<name>.log`. Characters other than letters, digits, `-`, `_` and `.` become `_`,
/// so a service name can never point outside `log_dir`.
pub(super) fn log_path(log_dir: &Path, name: &str) -> PathBuf {
    let mut safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() {
        safe.push('_');
    }
    log_dir.join(format!("{safe}.log"))
}

/// A log opened for one start: the child's stdout and stderr, and where this start's output
/// begins (so a failure quotes this attempt, not the previous run's last words).
pub(super) struct StartLog {
    pub stdout: File,
    pub stderr: File,
    pub offset: u64,
}

/// Opens (appending) the log for start number `start` and writes a header line, so restarts
/// and repeated runs stay readable in one file.
pub(super) fn open(
    path: &Path,
    name: &str,
    argv: &[String],
    start: u32,
) -> Result<StartLog, Failure> {
    let fail = |what: &str, e: std::io::Error| {
        Failure::Environment(format!(
            "service `{name}`: cannot {what} {}: {e}",
            path.display()
        ))
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail("create the log directory for", e))?;
    }
    let mut stdout = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| fail("open its log", e))?;
    let header = format!(
        "--- faultline: start {start} of service `{name}` at {}: {} ---\n",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        shell_words(argv)
    );
    stdout
        .write_all(header.as_bytes())
        .map_err(|e| fail("write its log", e))?;
    let offset = stdout
        .metadata()
        .map_err(|e| fail("read its log", e))?
        .len();
    // One open file description for both streams: with O_APPEND, stdout and stderr lines
    // interleave in the order the service wrote them.
    let stderr = stdout.try_clone().map_err(|e| fail("open its log", e))?;
    Ok(StartLog {
        stdout,
        stderr,
        offset,
    })
}

/// The last `lines` lines of the log at `path`, for messages. Never fails: an unreadable or
/// empty log says so in the text.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match last_lines(path, 0, lines) {
        Ok(found) if found.is_empty() => "(the log is empty)".to_string(),
        Ok(found) => found.join("\n"),
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// The sentence a start failure ends with: the last lines this start wrote.
pub(super) fn tail_for_message(path: &Path, since: u64, lines: usize) -> String {
    match last_lines(path, since, lines) {
        Ok(found) if found.is_empty() => {
            format!("it wrote nothing to its log ({})", path.display())
        }
        Ok(found) => format!(
            "last lines of its log ({}):\n{}",
            path.display(),
            found.join("\n")
        ),
        Err(e) => format!("its log ({}) cannot be read: {e}", path.display()),
    }
}

/// The last `count` non-blank lines written at or after byte `since`.
fn last_lines(path: &Path, since: u64, count: usize) -> std::io::Result<Vec<String>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = since.max(len.saturating_sub(TAIL_WINDOW));
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(len.saturating_sub(start))
        .read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut all: Vec<&str> = text.lines().collect();
    // The window began mid-file: its first line is probably a fragment.
    if start > since && !all.is_empty() {
        all.remove(0);
    }
    let all: Vec<&str> = all.into_iter().filter(|l| !l.trim().is_empty()).collect();
    let skip = all.len().saturating_sub(count);
    Ok(all[skip..].iter().map(|l| cut(l)).collect())
}

fn cut(line: &str) -> String {
    match line.char_indices().nth(MAX_LINE_CHARS) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_string(),
    }
}

/// The command as a person would type it, for the log header.
pub(super) fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if a.is_empty()
                || a.chars()
                    .any(|c| c.is_whitespace() || "'\"\\$`".contains(c))
            {
                format!("{a:?}")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_the_log_dir() {
        let dir = Path::new("/tmp/logs");
        assert_eq!(log_path(dir, "gateway"), dir.join("gateway.log"));
        assert_eq!(log_path(dir, "../etc/x"), dir.join(".._etc_x.log"));
        assert_eq!(log_path(dir, ""), dir.join("_.log"));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, text).unwrap();
        let tail = log_tail(&path, 3);
        assert_eq!(tail, "line 28\nline 29\nline 30");
        std::fs::write(&path, "no newline at the end").unwrap();
        assert_eq!(log_tail(&path, 20), "no newline at the end");
        std::fs::write(&path, "").unwrap();
        assert_eq!(log_tail(&path, 20), "(the log is empty)");
        assert!(log_tail(&dir.path().join("missing.log"), 5).starts_with("(cannot read"));
    }

    #[test]
    fn tail_of_a_start_skips_earlier_output_and_cuts_long_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.log");
        let first = "old run\n";
        let long = "x".repeat(1000);
        std::fs::write(&path, format!("{first}new run\n{long}\n\u{fffe}\u{ff}\n")).unwrap();
        let msg = tail_for_message(&path, first.len() as u64, 20);
        assert!(!msg.contains("old run"), "{msg}");
        assert!(msg.contains("new run"), "{msg}");
        assert!(
            msg.contains(&format!("{}…", "x".repeat(MAX_LINE_CHARS))),
            "{msg}"
        );
        let end = std::fs::metadata(&path).unwrap().len();
        assert!(tail_for_message(&path, end, 20).starts_with("it wrote nothing"));
    }

    #[test]
    fn a_huge_log_is_read_from_its_end_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let text: String = (0..20_000).map(|i| format!("entry {i}\n")).collect();
        std::fs::write(&path, text).unwrap();
        assert_eq!(log_tail(&path, 2), "entry 19998\nentry 19999");
    }

    #[test]
    fn argv_prints_like_a_shell_line() {
        let argv: Vec<String> = ["sh", "-c", "echo hi"].map(String::from).to_vec();
        assert_eq!(shell_words(&argv), "sh -c \"echo hi\"");
    }
}
