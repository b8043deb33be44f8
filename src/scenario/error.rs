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

/// Every error found in a scenario, in file order: what `failmail check` prints.
///
/// A file that is not valid TOML gives one error: what follows a syntax error cannot be read
/// reliably (as a compiler stops there). Past that, each section and each rule is checked on its
/// own and gives its first error (an unknown key, a wrong type, a bad value), and unknown
/// top-level keys give theirs, so that one run shows every broken rule. At most
/// [`ScenarioErrors::MAX`] are kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScenarioErrors {
    /// The errors kept, in file order.
    pub errors: Vec<ScenarioError>,
    /// How many more were found past [`ScenarioErrors::MAX`].
    pub more: usize,
}

impl ScenarioErrors {
    /// The most errors kept (a bound on what a file of many bad rules makes us hold).
    pub const MAX: usize = 50;

    /// Adds `error` (counted only, past the bound).
    pub fn push(&mut self, error: ScenarioError) {
        if self.errors.len() < Self::MAX {
            self.errors.push(error);
        } else {
            self.more += 1;
        }
    }

    /// The value of `result`, or `None` after keeping its error.
    pub fn keep<T>(&mut self, result: Result<T, ScenarioError>) -> Option<T> {
        result.map_err(|e| self.push(e)).ok()
    }

    /// How many errors were found.
    pub fn count(&self) -> usize {
        self.errors.len() + self.more
    }

    /// The first error in file order (where a caller reports only one).
    pub fn first(mut self) -> ScenarioError {
        self.sort();
        self.errors.swap_remove(0)
    }

    /// `Ok` when there is no error, else these errors in file order.
    pub fn into_result(mut self) -> Result<(), Self> {
        if self.errors.is_empty() {
            return Ok(());
        }
        self.sort();
        Err(self)
    }

    fn sort(&mut self) {
        self.errors.sort_by_key(|e| (e.line, e.column));
    }
}

impl From<ScenarioError> for ScenarioErrors {
    fn from(error: ScenarioError) -> Self {
        Self {
            errors: vec![error],
            more: 0,
        }
    }
}

impl fmt::Display for ScenarioErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        if self.more > 0 {
            write!(f, "\n… and {} more", self.more)?;
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioErrors {}

/// "did you mean …?" for a misspelt catalog name.
pub(super) fn closest_name(name: &str) -> String {
    let names = Catalog::builtin().entries().iter().map(|e| e.name.as_str());
    match closest(name, names) {
        Some(best) => format!("did you mean {best:?}?"),
        None => "no catalog entry is close".to_owned(),
    }
}

/// The candidate closest to a misspelt `word` (case ignored), if one is close enough to be
/// what was meant: at most one edit per three characters of the word (at least one), so that
/// "gmial" finds "gmail" but "hotmail" is not "corrected" into it.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word, &c.to_ascii_lowercase()), c))
        .min()
        .filter(|(distance, _)| *distance <= (word.chars().count() / 3).max(1))
        .map(|(_, best)| best)
}

/// The edit distance between two names, in characters, a swap of two neighbours counting as one
/// edit (optimal string alignment): how far a typo is from a name.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows: two back (for swaps), one back, and the one being filled.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            current[j] = best;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closest_word_is_suggested_only_when_close() {
        let flavors = ["generic", "ovh", "gmail", "outlook"];
        assert_eq!(closest("gmial", flavors), Some("gmail"));
        assert_eq!(closest("GMAIL", flavors), Some("gmail"));
        assert_eq!(closest("hotmail", flavors), None);
        assert_eq!(closest("x", flavors), None);
        assert_eq!(
            closest("acept", ["accept", "disconnect", "hang", "abort"]),
            Some("accept")
        );
        assert_eq!(
            closest_name("user_unkown"),
            "did you mean \"user_unknown\"?"
        );
        assert_eq!(edit_distance("gmial", "gmail"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
