//! The agent's state journal: the processes it has paused and the GPU hogs it has started, on
//! disk, so that an agent killed with SIGKILL (no shutdown, no lifts) does not leave them so for
//! good: the next agent started with the same state directory undoes them (`recover`).
//!
//! Every change is durable before it is acted on: pids are recorded before they are stopped,
//! and forgotten only once resumed. A write is a new file fsync'd, renamed over the old one,
//! then the directory fsync'd, so a crash at any point leaves either the old journal or the
//! new one, never half of one. One agent per directory: a lock held for the agent's life keeps
//! a second one from undoing the first's faults as "left over".
//!
//! A process is named by its pid and its start time (from `/proc/<pid>/stat`), so a pid reused
//! since is never touched; the boot id is recorded too, since start times restart at each boot.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::procfs::ProcInfo;

/// The journal's file name in the state directory.
pub const FILE: &str = "agent-journal.json";
const LOCK: &str = "agent.lock";
const VERSION: u32 = 1;
/// Where the kernel names this boot; absent in some containers, then boots are not compared.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot create the agent's state directory {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    #[error(
        "the agent's state directory {} {why}; it must belong to this user and be writable by \
         no one else, as its journal says which processes the agent may signal",
        path.display()
    )]
    Unsafe { path: PathBuf, why: String },
    #[error(
        "another faultline agent is using the state directory {} (it holds {}); give each agent \
         its own --state-dir",
        dir.display(),
        lock.display()
    )]
    InUse { dir: PathBuf, lock: PathBuf },
    #[error("cannot lock {}: {source}", path.display())]
    Lock { path: PathBuf, source: io::Error },
    #[error("cannot read the agent's state journal {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "the agent's state journal {} is corrupt: {why}. It lists processes a previous agent \
         paused and GPU hogs it started: check those by hand (`ps -o pid,stat,lstart,args`), \
         then delete the file to start the agent",
        path.display()
    )]
    Corrupt { path: PathBuf, why: String },
    #[error("cannot write the agent's state journal {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
}

/// What the agent did to a process, and so what undoing it means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum What {
    /// SIGSTOPped: undone with SIGCONT.
    Paused,
    /// A `faultline gpu-hog` child holding GPU memory: undone by ending it.
    GpuHog,
}

/// One process the agent acted on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Unique within one journal; how a fault forgets its own records.
    pub id: u64,
    pub what: What,
    pub pid: u32,
    /// Clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_time: u64,
    /// For the log lines only; never used to decide anything but a hog's identity.
    pub cmdline: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    version: u32,
    /// The boot the start times belong to; empty when the kernel does not say.
    boot_id: String,
    records: Vec<Record>,
}

/// What a predecessor left in the journal.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Leftover {
    /// Still possibly in force (same boot).
    pub records: Vec<Record>,
    /// Records from an earlier boot: their processes died with it.
    pub stale: usize,
}

struct Inner {
    next_id: u64,
    records: Vec<Record>,
}

/// The journal of a running agent. Its methods do blocking file I/O (with fsync): call them
/// from a blocking context (`spawn_blocking`), not straight from an async task.
pub struct Journal {
    dir: PathBuf,
    path: PathBuf,
    boot_id: String,
    inner: Mutex<Inner>,
    /// Holds the directory's lock for as long as the agent runs; the kernel releases it when
    /// the process dies, however it dies.
    _lock: File,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

/// The default state directory: `/var/lib/faultline` for root (a system daemon; `sudo` may
/// carry a user's XDG variables), else `$XDG_STATE_HOME/faultline`, else
/// `~/.local/state/faultline`.
pub fn default_dir() -> Result<PathBuf, String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(PathBuf::from("/var/lib/faultline"));
    }
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(state) = absolute("XDG_STATE_HOME") {
        return Ok(state.join("faultline"));
    }
    if let Some(home) = absolute("HOME") {
        return Ok(home.join(".local/state/faultline"));
    }
    Err(
        "cannot choose a state directory: neither XDG_STATE_HOME nor HOME is set to an absolute \
         path; give --state-dir"
            .into(),
    )
}

impl Journal {
    /// Creates the state directory (0700) if needed, takes its lock, and reads what a
    /// predecessor left. The journal on disk is left as it was: call `clear` once the leftover
    /// has been dealt with.
    pub fn open(dir: &Path) -> Result<(Journal, Leftover), JournalError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| JournalError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        check_dir(dir)?;
        let lock = lock(dir)?;
        let path = dir.join(FILE);
        let boot_id = fs::read_to_string(BOOT_ID)
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let leftover = match fs::read(&path) {
            Ok(bytes) => read_doc(&path, &bytes, &boot_id)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Leftover::default(),
            Err(source) => return Err(JournalError::Read { path, source }),
        };
        let next_id = leftover.records.iter().map(|r| r.id).max().unwrap_or(0) + 1;
        let journal = Journal {
            dir: dir.to_path_buf(),
            path,
            boot_id,
            inner: Mutex::new(Inner {
                next_id,
                records: leftover.records.clone(),
            }),
            _lock: lock,
        };
        Ok((journal, leftover))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere must not also lose the record of what is in force.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `procs` as `what`, durably, and returns their record ids in the same order.
    /// Nothing is recorded if the write fails.
    pub fn record(&self, what: What, procs: &[ProcInfo]) -> Result<Vec<u64>, JournalError> {
        let mut inner = self.lock();
        let first = inner.next_id;
        let mut records = inner.records.clone();
        let ids: Vec<u64> = (first..).take(procs.len()).collect();
        records.extend(procs.iter().zip(&ids).map(|(p, &id)| Record {
            id,
            what,
            pid: p.pid,
            start_time: p.start_time,
            cmdline: p.cmdline.clone(),
        }));
        self.write(&records)?;
        inner.next_id = first + procs.len() as u64;
        inner.records = records;
        Ok(ids)
    }

    /// Forgets these records (undone, or never applied), durably. On a failed write they stay
    /// in memory too, so the next successful write still carries them: a successor then finds
    /// them and, as the processes are no longer stopped, touches nothing harmful (SIGCONT to a
    /// running process does nothing).
    pub fn forget(&self, ids: &[u64]) -> Result<(), JournalError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut inner = self.lock();
        let records: Vec<Record> = inner
            .records
            .iter()
            .filter(|r| !ids.contains(&r.id))
            .cloned()
            .collect();
        self.write(&records)?;
        inner.records = records;
        Ok(())
    }

    /// Forgets everything: the predecessor's leftover has been undone.
    pub fn clear(&self) -> Result<(), JournalError> {
        let mut inner = self.lock();
        self.write(&[])?;
        inner.records.clear();
        Ok(())
    }

    fn write(&self, records: &[Record]) -> Result<(), JournalError> {
        let doc = Doc {
            version: VERSION,
            boot_id: self.boot_id.clone(),
            records: records.to_vec(),
        };
        let err = |source| JournalError::Write {
            path: self.path.clone(),
            source,
        };
        let mut bytes = serde_json::to_vec_pretty(&doc).map_err(|e| err(io::Error::other(e)))?;
        bytes.push(b'\n');
        write_atomically(&self.dir, &self.path, &bytes).map_err(err)
    }
}

/// Temp file, fsync, rename over the old, fsync the directory (so the rename itself is on disk).
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// The directory must be ours and writable by no one else: a journal someone else could
/// write would let them choose processes for the agent to signal.
fn check_dir(dir: &Path) -> Result<(), JournalError> {
    let unsafe_dir = |why: String| JournalError::Unsafe {
        path: dir.to_path_buf(),
        why,
    };
    let meta = fs::metadata(dir).map_err(|source| JournalError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(unsafe_dir("is not a directory".into()));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(unsafe_dir(format!(
            "belongs to uid {}, not to this user (uid {me})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_dir(format!(
            "is writable by its group or others (mode {:o})",
            meta.mode() & 0o777
        )));
    }
    Ok(())
}

fn lock(dir: &Path) -> Result<File, JournalError> {
    let path = dir.join(LOCK);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|source| JournalError::Lock {
            path: path.clone(),
            source,
        })?;
    // A process forked elsewhere in this program (a service, a hog) shares the lock's open
    // file until its exec closes it, so a lock just released can look taken for a moment:
    // try again briefly before calling the directory in use.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    loop {
        // SAFETY: flock takes a descriptor we own (open for as long as `file`) and a flag.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(file);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(JournalError::Lock { path, source: e });
        }
        if std::time::Instant::now() >= deadline {
            return Err(JournalError::InUse {
                dir: dir.to_path_buf(),
                lock: path,
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn read_doc(path: &Path, bytes: &[u8], boot_id: &str) -> Result<Leftover, JournalError> {
    let corrupt = |why: String| JournalError::Corrupt {
        path: path.to_path_buf(),
        why,
    };
    let doc: Doc = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if doc.version != VERSION {
        return Err(corrupt(format!(
            "version {} is not one this faultline reads ({VERSION})",
            doc.version
        )));
    }
    let mut ids: Vec<u64> = doc.records.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return Err(corrupt("two records have the same id".into()));
    }
    // Both known and different: the host rebooted, and every recorded process with it.
    if !doc.boot_id.is_empty() && !boot_id.is_empty() && doc.boot_id != boot_id {
        return Ok(Leftover {
            records: Vec::new(),
            stale: doc.records.len(),
        });
    }
    Ok(Leftover {
        records: doc.records,
        stale: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: u32, start_time: u64) -> ProcInfo {
        ProcInfo {
            pid,
            cmdline: format!("sleep {pid}"),
            start_time,
        }
    }

    #[test]
    fn records_survive_a_restart_until_forgotten() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let (j, left) = Journal::open(&dir).unwrap();
        assert_eq!(left, Leftover::default());
        let mode = fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let ids = j
            .record(What::Paused, &[proc(100, 1), proc(101, 2)])
            .unwrap();
        let hog = j.record(What::GpuHog, &[proc(102, 3)]).unwrap();
        assert_eq!(ids.len(), 2);
        assert!(!ids.contains(&hog[0]));
        j.forget(&ids[..1]).unwrap();
        let on_disk = fs::metadata(j.path()).unwrap().mode() & 0o777;
        assert_eq!(on_disk, 0o600);
        drop(j);

        let (j, left) = Journal::open(&dir).unwrap();
        let kept: Vec<(What, u32)> = left.records.iter().map(|r| (r.what, r.pid)).collect();
        assert_eq!(kept, vec![(What::Paused, 101), (What::GpuHog, 102)]);
        // New ids never collide with what is still recorded.
        let more = j.record(What::Paused, &[proc(103, 4)]).unwrap();
        assert!(left.records.iter().all(|r| r.id != more[0]));
        j.clear().unwrap();
        drop(j);
        let (_, left) = Journal::open(&dir).unwrap();
        assert!(left.records.is_empty());
    }

    #[test]
    fn one_agent_per_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let (_first, _) = Journal::open(tmp.path()).unwrap();
        let err = Journal::open(tmp.path()).unwrap_err();
        assert!(matches!(err, JournalError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("--state-dir"), "{err}");
    }

    #[test]
    fn a_corrupt_journal_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(FILE);
        for (text, why) in [
            ("{\"version\": 1, \"records\": [", "EOF"),
            ("not json", "expected"),
            (
                r#"{"version": 9, "boot_id": "", "records": []}"#,
                "version 9",
            ),
            (
                r#"{"version": 1, "boot_id": "", "records": [{"id": 1, "what": "paused", "pid": -4, "start_time": 1, "cmdline": ""}]}"#,
                "invalid value",
            ),
            (
                r#"{"version": 1, "boot_id": "", "records": [{"id": 1, "what": "frozen", "pid": 4, "start_time": 1, "cmdline": ""}]}"#,
                "unknown variant",
            ),
        ] {
            fs::write(&path, text).unwrap();
            let err = Journal::open(tmp.path()).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, JournalError::Corrupt { .. }), "{msg}");
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains(why), "{text}: {msg}");
        }
    }

    #[test]
    fn records_from_another_boot_are_stale() {
        let tmp = tempfile::tempdir().unwrap();
        let doc = r#"{"version": 1, "boot_id": "another-boot", "records": [
            {"id": 1, "what": "paused", "pid": 4242, "start_time": 1, "cmdline": "x"}]}"#;
        let left = read_doc(&tmp.path().join(FILE), doc.as_bytes(), "this-boot").unwrap();
        assert_eq!(left.records, vec![]);
        assert_eq!(left.stale, 1);
        let left = read_doc(&tmp.path().join(FILE), doc.as_bytes(), "another-boot").unwrap();
        assert_eq!(left.records.len(), 1);
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let err = Journal::open(tmp.path()).unwrap_err();
        assert!(matches!(err, JournalError::Unsafe { .. }), "{err}");
        assert!(err.to_string().contains("mode 777"), "{err}");
    }
}
