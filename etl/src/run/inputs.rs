//! The run's inputs: raw log files listed by wildcard, and the per-file ingest reports every
//! scan leaves behind (so `lines = accepted + rejected` can be checked for each file).

use anyhow::{Context, bail};
use rtb_features::layout::LogKind;
use rtb_storage::Location;

use object_store::ObjectStoreExt as _;

use crate::ingest::{
    FileReport, InputFile, Part, Ranges, RejectRecord, parts_of, rejects_name, report_name,
};

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

/// Every input's report, written by whichever processes read its parts, merged per file: a
/// missing part report means the file was never read whole, and the run must not claim counts
/// for it. A file read in several parts gets one rejects file, line numbers from its start.
pub(super) async fn read_reports(
    out: &Location,
    dir: &str,
    files: &[InputFile],
    ranges: Ranges,
) -> anyhow::Result<Vec<FileReport>> {
    let mut reports = Vec::with_capacity(files.len());
    for (i, file) in files.iter().enumerate() {
        let parts = parts_of(i, file, ranges);
        let mut merged: Option<FileReport> = None;
        // (part, the lines before it) for the parts that rejected lines
        let mut rejecting: Vec<(Part, u64)> = Vec::new();
        for part in &parts {
            let name = format!("{dir}/{}", report_name(file, part));
            let bytes = out.get(&name).await.with_context(|| {
                format!(
                    "{} was not read to its end (part {} of {} has no report), so its line counts are unknown; does the job read every row of its table?",
                    file.url,
                    part.index + 1,
                    part.of
                )
            })?;
            let report: FileReport = serde_json::from_slice(&bytes)
                .with_context(|| format!("ingest report {} is not valid", out.child_url(&name)))?;
            let before = merged.as_ref().map_or(0, |m| m.lines);
            if report.rejected > 0 {
                rejecting.push((*part, before));
            }
            match &mut merged {
                None => merged = Some(report),
                Some(m) if m.layout != report.layout => bail!(
                    "{} was read as {} in its first part and as {} in part {}; the parts of one file must agree",
                    file.url,
                    m.layout,
                    report.layout,
                    part.index + 1
                ),
                Some(m) => m.absorb(&report),
            }
        }
        if parts.len() > 1 && !rejecting.is_empty() {
            merge_rejects(out, dir, file, &rejecting).await?;
        }
        reports.extend(merged);
    }
    reports.sort_by(|a, b| a.url.cmp(&b.url));
    Ok(reports)
}

/// Concatenates the parts' rejected lines into the file's rejects file, each line number
/// moved on by the lines of the parts before, then deletes the parts' files.
async fn merge_rejects(
    out: &Location,
    dir: &str,
    file: &InputFile,
    rejecting: &[(Part, u64)],
) -> anyhow::Result<()> {
    let mut merged = Vec::new();
    for (part, before) in rejecting {
        let name = format!("{dir}/{}", rejects_name(file, part));
        let bytes = out
            .get(&name)
            .await
            .with_context(|| format!("the rejected lines of {} are missing", file.url))?;
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let mut record: RejectRecord<'_> = serde_json::from_slice(line).with_context(|| {
                format!(
                    "{} holds a line that is not a reject record",
                    out.child_url(&name)
                )
            })?;
            record.line += before;
            serde_json::to_writer(&mut merged, &record)?;
            merged.push(b'\n');
        }
    }
    let whole = format!("{dir}/{}", rejects_name(file, &Part::whole(0)));
    out.put(&whole, merged.into()).await?;
    for (part, _) in rejecting {
        let name = format!("{dir}/{}", rejects_name(file, part));
        out.store()
            .delete(&out.path(&name))
            .await
            .with_context(|| format!("cannot delete {}", out.child_url(&name)))?;
    }
    Ok(())
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
