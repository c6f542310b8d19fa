//! The edge every binary shares.
//!
//! Settings come from, strongest first: command-line flags, `RTB_*` environment variables, an
//! optional TOML file (`--config` / `RTB_CONFIG`), built-in defaults. The file is applied by
//! turning its keys into flags placed *before* the user's own, for keys whose environment twin
//! is unset; commands are built with `args_override_self`, so a later flag wins.

pub mod health;
pub mod statsd;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

/// The flags every binary takes before its subcommand (`#[command(flatten)]` them).
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// TOML file with one table per subcommand ([run], [serve], ...); flags and RTB_*
    /// variables win.
    #[arg(long, env = "RTB_CONFIG", global = true)]
    pub config: Option<String>,
    /// Log format: text or json.
    #[arg(long, env = "RTB_LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: String,
}

/// The arguments with the config file's settings for `subcommand` merged in.
///
/// The file holds one table per subcommand (`[generate]`, `[run]`, ...) with keys named like
/// the long flags (`bids-per-day = 1000000`, `bids_per_day` also accepted).
pub fn args_with_config_file(args: Vec<OsString>) -> anyhow::Result<Vec<OsString>> {
    let config_path = config_path(&args).or_else(|| std::env::var_os("RTB_CONFIG"));
    let Some(config_path) = config_path else {
        return Ok(args);
    };
    let Some(sub_pos) = subcommand_position(&args) else {
        return Ok(args);
    };
    let subcommand = args[sub_pos].to_string_lossy().into_owned();
    let injected = flags_from_file(Path::new(&config_path), &subcommand)?;
    let mut merged = args[..=sub_pos].to_vec();
    merged.extend(injected);
    merged.extend_from_slice(&args[sub_pos + 1..]);
    Ok(merged)
}

/// For a binary without subcommands (`rtb-scheduler`, `rtb-executor`): the arguments with the
/// config file's `[table]` merged in; flags and RTB_* variables still win.
pub fn args_with_config_table(args: Vec<OsString>, table: &str) -> anyhow::Result<Vec<OsString>> {
    let Some(config_path) = config_path(&args).or_else(|| std::env::var_os("RTB_CONFIG")) else {
        return Ok(args);
    };
    let injected = flags_from_file(Path::new(&config_path), table)?;
    let mut merged = args[..1.min(args.len())].to_vec();
    merged.extend(injected);
    merged.extend_from_slice(&args[1.min(args.len())..]);
    Ok(merged)
}

/// Global flags that take a separate value, so their value is not taken for the subcommand.
const GLOBAL_VALUE_FLAGS: [&str; 2] = ["--config", "--log-format"];

fn subcommand_position(args: &[OsString]) -> Option<usize> {
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if GLOBAL_VALUE_FLAGS.contains(&a.as_ref()) {
            i += 2;
        } else if a.starts_with('-') {
            i += 1;
        } else {
            return Some(i);
        }
    }
    None
}

fn config_path(args: &[OsString]) -> Option<OsString> {
    let mut iter = args.iter();
    while let Some(a) = iter.next() {
        let s = a.to_string_lossy();
        if s == "--config" {
            return iter.next().cloned();
        }
        if let Some(v) = s.strip_prefix("--config=") {
            return Some(v.into());
        }
    }
    None
}

fn flags_from_file(path: &Path, subcommand: &str) -> anyhow::Result<Vec<OsString>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("config file {} is not valid toml", path.display()))?;
    let Some(section) = table.get(subcommand) else {
        return Ok(Vec::new());
    };
    let Some(section) = section.as_table() else {
        bail!(
            "config file {}: [{subcommand}] must be a table",
            path.display()
        );
    };
    let mut flags = Vec::new();
    for (key, value) in section {
        let flag = key.replace('_', "-");
        let env = format!("RTB_{}", flag.replace('-', "_").to_uppercase());
        if std::env::var_os(&env).is_some() {
            continue;
        }
        let text = match value {
            // our boolean flags are switches (`--start-unready`), which take no value: true is
            // the switch, false its absence (every switch defaults to off)
            toml::Value::Boolean(true) => {
                flags.push(format!("--{flag}").into());
                continue;
            }
            toml::Value::Boolean(false) => continue,
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(","),
            other => bail!(
                "config file {}: {subcommand}.{key} has unsupported value {other}",
                path.display()
            ),
        };
        flags.push(format!("--{flag}={text}").into());
    }
    Ok(flags)
}

/// Installs the global tracing subscriber: `RTB_LOG` (or `RUST_LOG`) filters, `info` by default.
pub fn init_logging(format: &str) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RTB_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        // the AWS SDK logs every provider it tried, with debug dumps, as warnings; what matters
        // reaches the user once, in the error that ends the command. Ballista's client logs
        // each job's queued, running and finished states (a dozen lines a run); its failures
        // are errors, and reach the user in the run's own error too
        .unwrap_or_else(|_| {
            EnvFilter::new(
                "info,aws_config=error,aws_smithy_runtime=error,\
                 ballista_core::execution_plans::distributed_query=warn",
            )
        });
    // colour codes only on a terminal: log files and CloudWatch get plain text
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let result = match format {
        "json" => builder.json().try_init(),
        "text" => builder.try_init(),
        other => bail!("unknown log format {other:?}; use text or json"),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install logger: {e}"))
}

/// A progress bar on a terminal, a hidden one otherwise (CI logs stay clean).
pub fn progress_bar(total: u64, unit: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let template = format!(
        "{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{human_pos}}/{{human_len}} {unit} ({{rate}}, eta {{eta}})"
    );
    let unit = unit.to_owned();
    if let Ok(style) = ProgressStyle::with_template(&template) {
        // indicatif's {per_sec} prints "71,733.1383/s": whole units, named
        bar.set_style(style.with_key(
            "rate",
            move |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(
                    w,
                    "{} {unit}/s",
                    indicatif::HumanCount(state.per_sec() as u64)
                );
            },
        ));
    }
    bar
}

/// A byte-count bar with a message slot (the current phase), hidden when not on a terminal.
pub fn bytes_bar(message: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {msg:24} {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
    ) {
        bar.set_style(style);
    }
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// A spinner with elapsed time on a terminal (work of unknown size), hidden otherwise.
pub fn spinner(message: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}") {
        bar.set_style(style);
    }
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn file_settings_come_before_the_users_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rtb.toml");
        std::fs::write(
            &path,
            "[generate]\nbids_per_day = 5\nseed = 7\n[run]\nx = 1\n",
        )
        .expect("write");
        let path = path.to_string_lossy().into_owned();
        let merged = args_with_config_file(os(&[
            "rtb-etl", "--config", &path, "generate", "--seed", "9",
        ]))
        .expect("merge");
        let merged: Vec<String> = merged
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(merged[..4], ["rtb-etl", "--config", &path, "generate"]);
        assert!(merged.contains(&"--bids-per-day=5".to_owned()));
        assert_eq!(
            merged.last().map(String::as_str),
            Some("9"),
            "the user's flag comes last and wins"
        );
        assert!(!merged.iter().any(|a| a.starts_with("--x")));
    }

    #[test]
    fn booleans_in_the_file_are_switches() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(subcommand)]
            command: Command,
        }
        #[derive(clap::Subcommand)]
        enum Command {
            Replay {
                #[arg(long)]
                run_forever: bool,
                #[arg(long)]
                open_loop: bool,
            },
        }
        use clap::Parser;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rtb.toml");
        std::fs::write(
            &path,
            "[replay]
run-forever = true
open_loop = false
",
        )
        .expect("write");
        let path = path.to_string_lossy().into_owned();
        let merged =
            args_with_config_file(os(&["sim", "--config", &path, "replay"])).expect("merge");
        let merged: Vec<OsString> = merged
            .into_iter()
            .filter(|a| a != "--config" && *a != OsString::from(&path))
            .collect();
        let Command::Replay {
            run_forever,
            open_loop,
        } = Cli::try_parse_from(merged).expect("parses").command;
        assert!(run_forever);
        assert!(!open_loop);
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = args_with_config_file(os(&["rtb-etl", "--config=/nope.toml", "generate"]))
            .expect_err("missing");
        assert!(err.to_string().contains("/nope.toml"));
    }
}

/// An error and its causes on one line, each cause once: library errors often quote their
/// source in their own message too, which `{:#}` would print a second time.
pub fn error_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod error_line_tests {
    #[derive(Debug, thiserror::Error)]
    #[error("cannot write {path}: {source}")]
    struct Write {
        path: &'static str,
        source: std::io::Error,
    }

    #[test]
    fn each_cause_is_printed_once() {
        let io = std::io::Error::other("No space left on device (os error 28)");
        let err = anyhow::Error::new(Write {
            path: "p.json",
            source: io,
        })
        .context("run r is committed");
        assert_eq!(
            super::error_line(&err),
            "run r is committed: cannot write p.json: No space left on device (os error 28)"
        );
        let plain = anyhow::anyhow!("a").context("b");
        assert_eq!(super::error_line(&plain), "b: a");
    }
}
