//! The command-line surface of every binary, read from its own `--help`: each flag has an
//! `RTB_...` twin named after it, and a twin shared by several commands means the same there.

use std::collections::BTreeMap;
use std::process::Command;

use crate::support::binary;

/// `(flag, env)` for each long option of one command's help.
fn options(help: &str) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        // option lines are indented by at most 6 columns, their descriptions by 10
        let option_line = line.len() - trimmed.len() <= 6 && trimmed.starts_with('-');
        let flag = trimmed
            .strip_prefix("--")
            .or_else(|| trimmed.split_once(", --").map(|(_, f)| f));
        if let Some(flag) = flag.filter(|_| option_line) {
            let name: String = flag
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            out.push((name, None));
        }
        if let (Some(last), Some(at)) = (out.last_mut(), line.find("[env: ")) {
            let env: String = line[at + 6..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            last.1 = Some(env);
        }
    }
    out
}

fn help(bin: &str, sub: Option<&str>) -> String {
    let mut cmd = Command::new(binary(bin));
    cmd.env_clear();
    if let Some(sub) = sub {
        cmd.arg(sub);
    }
    let out = cmd.arg("--help").output().expect("runs");
    assert!(out.status.success(), "{bin} {sub:?} --help");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn every_flag_has_an_env_twin_named_after_it() {
    // twins several commands read, each meaning the same thing in all of them
    const SHARED: [&str; 7] = [
        "RTB_CONFIG",
        "RTB_LOG_FORMAT",
        "RTB_PARAMETER_STORE",
        "RTB_STATSD",
        "RTB_SCHEDULER_PORT",
        // the one health check the images share
        "RTB_HEALTH_URL",
        "RTB_HEALTH_TIMEOUT_SECONDS",
    ];
    let mut commands: Vec<(String, String)> = Vec::new();
    for bin in ["rtb-etl", "rtb-trainer", "rtb-scorer", "rtb-adserver-sim"] {
        for sub in subcommands(&help(bin, None)) {
            let text = help(bin, Some(&sub));
            commands.push((format!("{bin} {sub}"), text));
        }
    }
    for bin in ["rtb-scheduler", "rtb-executor"] {
        commands.push((bin.to_owned(), help(bin, None)));
    }
    assert!(commands.len() >= 10, "{commands:?}");
    let mut problems = Vec::new();
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut checked = 0;
    for (command, text) in &commands {
        for (flag, env) in options(text) {
            if flag == "help" || flag == "version" {
                continue;
            }
            checked += 1;
            let Some(env) = env else {
                problems.push(format!("{command} --{flag} has no RTB_ twin"));
                continue;
            };
            let named = flag.to_uppercase().replace('-', "_");
            if env != format!("RTB_{named}") && !env.ends_with(&format!("_{named}")) {
                problems.push(format!(
                    "{command} --{flag} has twin {env}, not named after it"
                ));
            }
            users.entry(env).or_default().push(command.clone());
        }
    }
    for (env, commands) in &users {
        let mut distinct = commands.clone();
        distinct.dedup();
        if distinct.len() > 1 && !SHARED.contains(&env.as_str()) {
            problems.push(format!("{env} is read by {distinct:?}"));
        }
    }
    assert!(checked > 100, "the help texts were read: {checked} flags");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
