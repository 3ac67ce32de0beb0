//! Errors in an experiment file, each with the file, line and column it is about.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_saphyr::Location;

/// One thing wrong with a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is about the whole file.
    pub line: u64,
    pub column: u64,
    pub message: String,
    /// The parser's excerpt of the source around the position, when it made one.
    pub excerpt: Option<String>,
}

impl Problem {
    pub fn at(file: &Path, loc: Location, message: impl Into<String>) -> Self {
        Problem {
            file: file.to_path_buf(),
            line: loc.line(),
            column: loc.column(),
            message: message.into(),
            excerpt: None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )?;
        }
        if let Some(excerpt) = &self.excerpt {
            write!(f, "\n{excerpt}")?;
        }
        Ok(())
    }
}

/// Every problem found in one file. Checks go on after the first problem so that one run of
/// `faultline validate` shows them all.
#[derive(Debug, thiserror::Error)]
pub struct ExperimentError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ExperimentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl From<Problem> for ExperimentError {
    fn from(p: Problem) -> Self {
        ExperimentError { problems: vec![p] }
    }
}
