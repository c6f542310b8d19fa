//! `rtb-etl gc`: deletes the folders that killed or failed runs (`runs/<id>/`) and trainings
//! (`models/<id>/`) left without their manifest. Committed ones are never touched.

use clap::Args;
use rtb_storage::Location;
use rtb_storage::commit::{Leftover, leftovers};

use crate::run::MANIFEST;

#[derive(Debug, Clone, Args)]
pub struct GcArgs {
    /// The `--out` of the runs or of the trainer: folder or s3:// prefix.
    #[arg(long = "out", env = "RTB_GC_OUT", default_value = "data/features")]
    pub out: String,
    /// Leave folders written to within this many minutes (a run may still be staging them).
    #[arg(long, env = "RTB_GC_MIN_IDLE_MINUTES", default_value_t = 60)]
    pub min_idle_minutes: u64,
    /// List what would be deleted, delete nothing.
    #[arg(long, env = "RTB_GC_DRY_RUN")]
    pub dry_run: bool,
}

/// Uncommitted run folders under `out`, for the warning a run prints and for `gc`.
pub async fn uncommitted_runs(out: &Location) -> anyhow::Result<Vec<Leftover>> {
    Ok(leftovers(out, "runs", MANIFEST).await?)
}

/// Uncommitted run and model folders under `out`.
pub async fn uncommitted(out: &Location) -> anyhow::Result<Vec<Leftover>> {
    let mut all = uncommitted_runs(out).await?;
    all.extend(
        leftovers(
            out,
            rtb_model::manifest::MODELS_DIR,
            rtb_model::manifest::MANIFEST_FILE,
        )
        .await?,
    );
    Ok(all)
}

pub fn describe(l: &Leftover) -> String {
    format!(
        "{} ({} objects, {} bytes, last written {} s ago)",
        l.url, l.objects, l.bytes, l.idle_seconds
    )
}

pub async fn run(args: &GcArgs) -> anyhow::Result<String> {
    let out = Location::parse(&args.out)?;
    let mut report = String::new();
    let (mut deleted, mut kept) = (0, 0);
    for l in uncommitted(&out).await? {
        if l.idle_seconds < args.min_idle_minutes * 60 {
            kept += 1;
            report.push_str(&format!(
                "kept (recent, may be running): {}\n",
                describe(&l)
            ));
        } else if args.dry_run {
            report.push_str(&format!("would delete: {}\n", describe(&l)));
        } else {
            out.delete_prefix(&l.prefix).await;
            deleted += 1;
            report.push_str(&format!("deleted: {}\n", describe(&l)));
        }
    }
    report.push_str(&format!(
        "{deleted} uncommitted folder(s) deleted, {kept} recent one(s) kept; committed runs are never touched\n"
    ));
    Ok(report)
}
