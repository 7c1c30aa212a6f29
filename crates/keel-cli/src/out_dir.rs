//! `--out`: a directory holds one run's files. A re-run replaces keel's files there (and
//! removes those of the earlier run that this run does not write, so nothing stale is left
//! beside the new results); a directory holding anything else is refused, not mixed into.

use anyhow::{Context, Result, bail};
use std::path::Path;

/// Every file a keel command writes into its `--out`.
const KEEL_FILES: [&str; 7] =
    ["summary.json", "timeseries.csv", "events.csv", "report.html", "compare.csv", "results.csv", "paths.csv"];

/// Make `dir` ready for a run that writes `writes` (file names, all in [`KEEL_FILES`]). Returns
/// a note to print when an earlier run's files were replaced.
pub fn prepare(dir: &Path, writes: &[&str]) -> Result<Option<String>> {
    if !dir.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create --out {}", dir.display()))?;
        return Ok(None);
    }
    if !dir.is_dir() {
        bail!("--out {}: a file, not a directory", dir.display());
    }
    let mut ours = Vec::new();
    let mut other = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read --out {}", dir.display()))? {
        let e = e.with_context(|| format!("cannot read --out {}", dir.display()))?;
        let name = e.file_name().to_string_lossy().to_string();
        if KEEL_FILES.contains(&name.as_str()) && (writes.contains(&name.as_str()) || stale_ok(&name, writes)) {
            ours.push(name);
        } else {
            other.push(name);
        }
    }
    if !other.is_empty() {
        other.sort();
        let shown: Vec<&str> = other.iter().take(5).map(|s| s.as_str()).collect();
        bail!(
            "--out {}: already holds {}{} that this run would not replace; results of different runs must not mix — give a new or empty directory, or remove {}",
            dir.display(),
            shown.join(", "),
            if other.len() > 5 { format!(" and {} more", other.len() - 5) } else { String::new() },
            if other.len() == 1 { "it" } else { "them" }
        );
    }
    if ours.is_empty() {
        return Ok(None);
    }
    for name in ours.iter().filter(|n| !writes.contains(&n.as_str())) {
        std::fs::remove_file(dir.join(name)).with_context(|| format!("cannot remove {}", dir.join(name).display()))?;
    }
    Ok(Some(format!("replacing the earlier run's files in {}", dir.display())))
}

/// An earlier run of the same command may have written this optional file (a sweep's
/// `paths.csv`); it is removed rather than left beside new results.
fn stale_ok(name: &str, writes: &[&str]) -> bool {
    name == "paths.csv" && writes.contains(&"results.csv")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKTEST: [&str; 4] = ["summary.json", "timeseries.csv", "events.csv", "report.html"];

    fn dir(files: &[&str]) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "keel-out-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        ));
        std::fs::create_dir_all(&d).unwrap();
        for f in files {
            std::fs::write(d.join(f), "x").unwrap();
        }
        d
    }

    #[test]
    fn out_directories_table() {
        // (case, files there, what the run writes, refused?, files left before the run writes)
        type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a str], bool, &'a [&'a str]);
        let cases: [Case; 5] = [
            ("empty", &[], &BACKTEST, false, &[]),
            ("a backtest again", &BACKTEST, &BACKTEST, false, &BACKTEST),
            (
                "a sweep without paths.csv after one with",
                &["results.csv", "report.html", "paths.csv"],
                &["results.csv", "report.html"],
                false,
                &["report.html", "results.csv"],
            ),
            (
                "a backtest into a sweep's directory",
                &["results.csv", "report.html"],
                &BACKTEST,
                true,
                &["report.html", "results.csv"],
            ),
            ("someone's notes", &["notes.txt", "report.html"], &BACKTEST, true, &["notes.txt", "report.html"]),
        ];
        for (case, there, writes, refused, left) in cases {
            let d = dir(there);
            let r = prepare(&d, writes);
            assert_eq!(r.is_err(), refused, "case {case}: {r:?}");
            if let Err(e) = r {
                assert!(
                    e.to_string().contains("--out") && e.to_string().contains("new or empty directory"),
                    "case {case}: {e}"
                );
            }
            let mut files: Vec<String> =
                std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
            files.sort();
            let mut want: Vec<String> = left.iter().map(|s| s.to_string()).collect();
            want.sort();
            assert_eq!(files, want, "case {case}");
            std::fs::remove_dir_all(d).unwrap();
        }
    }
}
