//! The summary table printed at the end of a run.

use super::RunOutcome;

/// The summary table printed at the end of a run.
pub fn render(outcome: &RunOutcome) -> String {
    use std::fmt::Write;
    let m = &outcome.manifest;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "committed run {} of job {} at {} (lines read {})",
        m.run_id, m.job.name, outcome.run_url, m.job.read_as
    );
    let _ = writeln!(
        s,
        "{:<60} {:<16} {:>10} {:>10} {:>9}",
        "input", "layout", "lines", "accepted", "rejected"
    );
    for f in &m.inputs {
        let name = f.url.rsplit('/').next().unwrap_or(&f.url);
        let _ = writeln!(
            s,
            "{:<60} {:<16} {:>10} {:>10} {:>9}",
            name, f.layout, f.lines, f.accepted, f.rejected
        );
        for (reason, n) in &f.rejected_by_reason {
            let _ = writeln!(
                s,
                "{:<60} {:<16} {:>10} {:>10} {:>9}",
                format!("  {reason}"),
                "",
                "",
                "",
                n
            );
        }
        // what a lenient reading kept but changed, so a user sees it without opening the report
        for (what, n) in [
            ("short rows padded with nulls", f.rows_short_padded),
            (
                "long rows cut to the layout",
                f.rows_with_extra_columns_dropped,
            ),
            ("prices read as null", f.prices_unparsed),
        ] {
            if n > 0 {
                let _ = writeln!(s, "  {what:<58} {:<16} {:>10} {:>10}", "", "", n);
            }
        }
    }
    let _ = writeln!(s, "rows:");
    for (stage, n) in &m.rows {
        let _ = writeln!(s, "  {stage:<24} {n:>10}");
    }
    let _ = writeln!(
        s,
        "{:<8} {:>10} {:>10} {:>10} {:>8}",
        "split", "rows", "label 0", "label 1", "win %"
    );
    for (name, c) in &m.splits {
        let _ = writeln!(
            s,
            "{:<8} {:>10} {:>10} {:>10} {:>7.2}%",
            name,
            c.rows,
            c.label_0,
            c.label_1,
            100.0 * c.label_1 as f64 / c.rows.max(1) as f64
        );
    }
    let sizes: Vec<String> = m
        .vocabulary
        .sizes
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(
        s,
        "vocabulary {} ({})",
        &m.vocabulary.version[..m.vocabulary.version.len().min(19)],
        sizes.join(", ")
    );
    let durations: Vec<String> = m
        .durations_ms
        .iter()
        .map(|(k, v)| format!("{k} {:.2}s", *v as f64 / 1000.0))
        .collect();
    let _ = writeln!(s, "durations: {}", durations.join(", "));
    s
}
