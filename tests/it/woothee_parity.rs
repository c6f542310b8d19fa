//! Device types as the original kit computed them: Python woothee 1.10.1 itself (PyPI, the
//! version the original's EMR bootstrap installs) classifies a few thousand varied agents
//! (`bench/woothee_parity.py`), and ours must agree on every one.

use std::collections::BTreeMap;
use std::process::Command;

use rtb_features::{DeviceType, device_type};

use crate::support::repo_root;

#[test]
fn every_agent_is_classified_as_python_woothee_does() {
    let out = tempfile::tempdir().expect("tempdir");
    let file = out.path().join("woothee.json");
    let script = repo_root().join("bench/woothee_parity.py");
    let status = Command::new("python3")
        .arg(&script)
        .arg(&file)
        .status()
        .expect("python3 runs");
    assert!(
        status.success(),
        "{} failed: python woothee 1.10.1 is needed (scripts/setup.sh installs it)",
        script.display()
    );
    let agents: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&file).expect("classified agents")).expect("json");
    assert!(agents.len() > 3000, "a large set: {}", agents.len());
    let mut differ: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for a in &agents {
        let (Some(agent), Some(category)) = (a["agent"].as_str(), a["category"].as_str()) else {
            panic!("not an agent and its category: {a}");
        };
        let ours = device_type(Some(agent));
        if DeviceType::from_category(category) != ours {
            differ
                .entry((category, ours.category()))
                .or_default()
                .push(agent);
        }
    }
    let report: Vec<String> = differ
        .iter()
        .map(|((python, ours), agents)| {
            format!(
                "python {python}, ours {ours}: {} agents, e.g. {:?}",
                agents.len(),
                &agents[..agents.len().min(3)]
            )
        })
        .collect();
    assert!(
        differ.is_empty(),
        "{} of {} agents differ:\n{}",
        differ.values().map(Vec::len).sum::<usize>(),
        agents.len(),
        report.join("\n")
    );
}
