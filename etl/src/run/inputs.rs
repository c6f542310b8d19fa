//! The run's inputs: raw log files listed by wildcard, and the per-file ingest reports every
//! scan leaves behind (so `lines = accepted + rejected` can be checked for each file).

use anyhow::{Context, bail};
use rtb_features::layout::LogKind;
use rtb_storage::Location;

use crate::ingest::{FileReport, InputFile, report_name};

/// `*` matches any run of characters, `?` one character.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Every input's report, written by whichever process read it; a missing one means the file
/// was never read whole, and the run must not claim counts for it.
pub(super) async fn read_reports(
    out: &Location,
    dir: &str,
    files: &[InputFile],
) -> anyhow::Result<Vec<FileReport>> {
    let mut reports = Vec::with_capacity(files.len());
    for file in files {
        let name = format!("{dir}/{}", report_name(file));
        let bytes = out.get(&name).await.with_context(|| {
            format!(
                "{} was not read to its end, so its line counts are unknown; does the job read every row of its table?",
                file.url
            )
        })?;
        let report: FileReport = serde_json::from_slice(&bytes)
            .with_context(|| format!("ingest report {} is not valid", out.child_url(&name)))?;
        reports.push(report);
    }
    reports.sort_by(|a, b| a.url.cmp(&b.url));
    Ok(reports)
}

pub(super) async fn list_inputs(
    location: &Location,
    patterns: &str,
    kind: LogKind,
) -> anyhow::Result<Vec<InputFile>> {
    let names = location.list_sized("").await?;
    let patterns: Vec<&str> = patterns
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let mut files: Vec<InputFile> = names
        .iter()
        .filter(|(name, _)| !name.contains('/'))
        .filter(|(name, _)| patterns.iter().any(|p| wildcard_match(p, name)))
        .map(|(name, size)| InputFile {
            url: location.child_url(name),
            kind,
            size: *size,
        })
        .collect();
    files.sort_by(|a, b| a.url.cmp(&b.url));
    if files.is_empty() {
        bail!(
            "no {} log matching {:?} under {}; check --input and --{}",
            match kind {
                LogKind::Bid => "bid",
                LogKind::Imp => "impression",
            },
            patterns.join(","),
            location.url(),
            match kind {
                LogKind::Bid => "bids",
                LogKind::Imp => "imps",
            }
        );
    }
    Ok(files)
}
