//! Why a scenario could not be loaded: [`ScenarioError`] names the file, line and column and
//! gives a hint, and the "did you mean" helper suggests the catalog name closest to a misspelt one.

use std::fmt;

use super::catalog::Catalog;

/// A scenario that could not be loaded, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// The file name (or `<inline>`).
    pub origin: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.origin, self.line, self.column, self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioError {}

/// "did you mean …?" for a misspelt catalog name.
pub(super) fn closest_name(name: &str) -> String {
    let best = Catalog::builtin()
        .entries()
        .iter()
        .map(|e| (edit_distance(name, &e.name), e.name.as_str()))
        .min();
    match best {
        Some((distance, best)) if distance <= 3 => format!("did you mean {best:?}?"),
        _ => "no catalog entry is close".to_owned(),
    }
}

/// The Levenshtein distance between two names, in characters: how far a typo is from a name.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = if ca == *cb {
                previous
            } else {
                1 + previous.min(row[j]).min(row[j + 1])
            };
            previous = current;
        }
    }
    row[b.len()]
}
