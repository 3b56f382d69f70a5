//! The progress file: one line per input line that is done, `<line>
//! stored <version>` or `<line> already-stored`, appended and flushed as
//! each finishes, so that a stopped or killed import resumes after the
//! lines it finished. With `--verify`, a provider that rotates refresh
//! tokens has already replaced the input's token when the refresh returns,
//! so the new one is written first, sealed, as `<line> sealed <JWE>`: a
//! resume stores that instead of the dead one from the input. It holds line
//! numbers, outcomes and sealed tokens (which only get-service's private key
//! opens), never a plaintext token.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::ImportError;

/// How a line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stored as this version.
    Stored(u64),
    /// Something was stored for the account already (an interrupted run of
    /// this import, or before it): nothing stored.
    AlreadyStored,
}

/// An open progress file.
#[derive(Debug)]
pub struct Progress {
    path: PathBuf,
    file: File,
    done: HashSet<u64>,
    sealed: HashMap<u64, String>,
}

impl Progress {
    /// Opens (or creates) the file at `path` and reads the lines done.
    pub fn open(path: &Path) -> Result<Self, ImportError> {
        let error = |source| ImportError::Progress {
            path: path.to_owned(),
            source,
        };
        let mut done = HashSet::new();
        let mut sealed = HashMap::new();
        if path.exists() {
            let reader = BufReader::new(File::open(path).map_err(error)?);
            for text in reader.split(b'\n') {
                let Ok(text) = String::from_utf8(text.map_err(error)?) else {
                    continue;
                };
                // A line cut short by a kill has no outcome: not done.
                let mut parts = text.split(' ');
                let (Some(line), Some(outcome)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let Ok(line) = line.parse::<u64>() else {
                    continue;
                };
                match (outcome, parts.next()) {
                    ("sealed", Some(jwe)) if jwe.split('.').count() == 5 => {
                        sealed.insert(line, jwe.to_owned());
                    }
                    ("stored" | "already-stored", _) => {
                        done.insert(line);
                    }
                    _ => {}
                }
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(error)?;
        // The last line, cut short by a kill, must not run into the next.
        if !ends_with_newline(path).map_err(error)? {
            file.write_all(b"\n").map_err(error)?;
        }
        sealed.retain(|line, _| !done.contains(line));
        Ok(Self {
            path: path.to_owned(),
            file,
            done,
            sealed,
        })
    }

    /// Whether `line` was done by an earlier run.
    pub fn is_done(&self, line: u64) -> bool {
        self.done.contains(&line)
    }

    /// The sealed token an earlier run journaled for `line` and may not
    /// have stored.
    pub fn sealed(&self, line: u64) -> Option<&str> {
        self.sealed.get(&line).map(String::as_str)
    }

    /// Records that `line` is done.
    pub fn record(&mut self, line: u64, outcome: &Outcome) -> Result<(), ImportError> {
        let text = match outcome {
            Outcome::Stored(version) => format!("{line} stored {version}\n"),
            Outcome::AlreadyStored => format!("{line} already-stored\n"),
        };
        self.append(&text)?;
        self.done.insert(line);
        self.sealed.remove(&line);
        Ok(())
    }

    /// Journals the sealed token to store for `line`, synced to disk
    /// before it is stored.
    pub fn record_sealed(&mut self, line: u64, jwe: &str) -> Result<(), ImportError> {
        self.append(&format!("{line} sealed {jwe}\n"))?;
        self.file
            .sync_data()
            .map_err(|source| ImportError::Progress {
                path: self.path.clone(),
                source,
            })?;
        self.sealed.insert(line, jwe.to_owned());
        Ok(())
    }

    fn append(&mut self, text: &str) -> Result<(), ImportError> {
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|source| ImportError::Progress {
                path: self.path.clone(),
                source,
            })
    }
}

fn ends_with_newline(path: &Path) -> std::io::Result<bool> {
    let bytes = std::fs::read(path)?;
    Ok(bytes.last().is_none_or(|b| *b == b'\n'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn resumes_after_what_was_recorded() {
        let dir = std::env::temp_dir().join(format!("tv-import-progress-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p");
        let _ = std::fs::remove_file(&path);
        let mut p = Progress::open(&path).unwrap();
        p.record(1, &Outcome::Stored(7)).unwrap();
        p.record(3, &Outcome::AlreadyStored).unwrap();
        drop(p);
        // A write cut short by a kill.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"4")
            .unwrap();
        let mut p = Progress::open(&path).unwrap();
        assert!(p.is_done(1) && p.is_done(3));
        assert!(!p.is_done(2) && !p.is_done(4));
        p.record(5, &Outcome::Stored(9)).unwrap();
        drop(p);
        let mut p = Progress::open(&path).unwrap();
        assert!(p.is_done(5) && !p.is_done(45) && !p.is_done(4));
        p.record_sealed(6, "h.k.i.c.t").unwrap();
        p.record_sealed(7, "h.k.i.c.t").unwrap();
        p.record(7, &Outcome::Stored(10)).unwrap();
        drop(p);
        let p = Progress::open(&path).unwrap();
        assert_eq!(p.sealed(6), Some("h.k.i.c.t"));
        assert!(!p.is_done(6) && p.sealed(7).is_none() && p.is_done(7));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
