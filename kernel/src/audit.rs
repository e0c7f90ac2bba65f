//! The config audit log: every applied change with who made it, when, the diff from the
//! previous config and the full text, so any earlier config can be restored.

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Entries kept in memory; the audit file keeps everything.
const KEPT: usize = 100;

/// One applied config change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// 1 for the config the process started with, then +1 per applied change.
    pub seq: u64,
    /// When it was applied, Unix seconds.
    pub at: u64,
    /// Who or what applied it: `startup`, `file change`, `SIGHUP`, `admin:NAME`, ...
    pub who: String,
    /// Unified diff from the previous config (the whole text for the first entry).
    pub diff: String,
    /// The full config text applied.
    pub text: String,
}

/// The running process's audit log.
#[derive(Debug, Default)]
pub(crate) struct AuditLog {
    /// Shared with the plugins' `ConfigCenter`, which reads it.
    entries: Arc<Mutex<VecDeque<AuditEntry>>>,
    next_seq: u64,
    file: Option<PathBuf>,
}

impl AuditLog {
    pub(crate) fn new(file: Option<PathBuf>) -> Self {
        AuditLog {
            entries: Arc::default(),
            next_seq: 1,
            file,
        }
    }

    /// Where entries are appended from now on (the setting may change with a reload).
    pub(crate) fn set_file(&mut self, file: Option<PathBuf>) {
        self.file = file;
    }

    /// Records `text` as applied by `who`, unless it is the text already in force.
    pub(crate) fn record(&mut self, who: &str, text: &str, now: u64) {
        let mut entries = self.entries.lock();
        let previous = entries.back().map_or("", |e| e.text.as_str());
        if !entries.is_empty() && previous == text {
            return;
        }
        let diff = config_diff(previous, text);
        let entry = AuditEntry {
            seq: self.next_seq,
            at: now,
            who: who.to_owned(),
            diff,
            text: text.to_owned(),
        };
        self.next_seq += 1;
        tracing::info!(seq = entry.seq, who, diff = %entry.diff, "config applied");
        if let Some(path) = &self.file {
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut file| {
                    let mut line = serde_json::to_vec(&entry).map_err(std::io::Error::from)?;
                    line.push(b'\n');
                    file.write_all(&line)
                });
            if let Err(error) = written {
                tracing::error!(path = %path.display(), %error, "cannot append to the config audit log");
            }
        }
        entries.push_back(entry);
        while entries.len() > KEPT {
            entries.pop_front();
        }
    }

    /// The entries, shared (for the plugins' `ConfigCenter`).
    pub(crate) fn shared(&self) -> Arc<Mutex<VecDeque<AuditEntry>>> {
        self.entries.clone()
    }

    /// The config text in force (the last one recorded).
    pub(crate) fn current_text(&self) -> Option<String> {
        self.entries.lock().back().map(|e| e.text.clone())
    }

    /// The sequence number of the config in force.
    pub(crate) fn last_seq(&self) -> Option<u64> {
        self.entries.lock().back().map(|e| e.seq)
    }

    pub(crate) fn entries(&self) -> Vec<AuditEntry> {
        self.entries.lock().iter().cloned().collect()
    }
}

/// Reads an audit file written by a running bourse (one JSON entry per line).
pub fn read_audit_file(path: &Path) -> anyhow::Result<Vec<AuditEntry>> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the audit log {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not an audit entry", path.display(), i + 1))
        })
        .collect()
}

/// A unified diff of two config texts, as the history shows it (two lines of context).
pub fn config_diff(before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(2)
        .header("before", "after")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_recorded_with_diffs_and_repeats_are_not() {
        let mut log = AuditLog::new(None);
        log.record("startup", "a = 1\nb = 2\n", 10);
        log.record("file change", "a = 1\nb = 2\n", 11);
        log.record("admin:ops", "a = 1\nb = 3\n", 12);
        let entries = log.entries();
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0].seq, entries[1].seq), (1, 2));
        assert_eq!(entries[1].who, "admin:ops");
        assert!(entries[1].diff.contains("-b = 2"), "{}", entries[1].diff);
        assert!(entries[1].diff.contains("+b = 3"), "{}", entries[1].diff);
        assert_eq!(entries[1].text, "a = 1\nb = 3\n");
    }

    #[test]
    fn the_file_reads_back_what_was_recorded() {
        let path = std::env::temp_dir().join(format!("bourse-audit-{}.jsonl", rand_suffix()));
        let mut log = AuditLog::new(Some(path.clone()));
        log.record("startup", "x = 1\n", 1);
        log.record("SIGHUP", "x = 2\n", 2);
        assert_eq!(read_audit_file(&path).unwrap(), log.entries());
        std::fs::write(&path, "not json\n").unwrap();
        let error = read_audit_file(&path).unwrap_err().to_string();
        assert!(error.contains(":1: not an audit entry"), "{error}");
        std::fs::remove_file(&path).unwrap();
    }

    fn rand_suffix() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    }
}
