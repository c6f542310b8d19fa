//! Feature jobs are SQL files: a header of directives, then named steps.
//!
//! ```sql
//! -- job: bid-filtering
//! -- param: split_seed = 42
//! -- categorical: AdvertiserID, Domain
//! -- step: transformed
//! SELECT ... FROM bids ...;
//! ```
//! `${name}` in a step is replaced by the parameter `name`. See `etl/jobs/bid-filtering.sql`.

use std::collections::BTreeMap;

use thiserror::Error;

/// The job that ships with the kit, used when no `--job` is given.
pub const BID_FILTERING: &str = include_str!("../jobs/bid-filtering.sql");

#[derive(Debug, Error, PartialEq, Eq)]
pub enum JobError {
    #[error("job line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("job has no `-- step: NAME` statements")]
    NoSteps,
    #[error(
        "job step {step} uses ${{{param}}} but no such parameter is declared; add `-- param: {param} = VALUE` or pass --param {param}=VALUE"
    )]
    UnknownParam { step: String, param: String },
    #[error(
        "parameter {name} = {value:?} must be a number or a plain word (letters, digits, _ . -)"
    )]
    BadParamValue { name: String, value: String },
    #[error("--param {0:?} must look like name=value")]
    BadParamArg(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub sql: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub name: String,
    pub params: BTreeMap<String, String>,
    pub categorical: Vec<String>,
    pub steps: Vec<Step>,
}

fn is_plain(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

impl Job {
    pub fn parse(text: &str) -> Result<Job, JobError> {
        let mut job = Job {
            name: "job".into(),
            params: BTreeMap::new(),
            categorical: Vec::new(),
            steps: Vec::new(),
        };
        let mut current: Option<Step> = None;
        for (i, line) in text.lines().enumerate() {
            let syntax = |message: String| JobError::Syntax {
                line: i + 1,
                message,
            };
            let directive = line.trim().strip_prefix("--").map(str::trim);
            if let Some(name) = directive.and_then(|d| d.strip_prefix("step:")) {
                let name = name.trim();
                if !is_identifier(name) {
                    return Err(syntax(format!(
                        "step name {name:?} must be a SQL identifier"
                    )));
                }
                if job.steps.iter().any(|s| s.name == name)
                    || current.as_ref().is_some_and(|s| s.name == name)
                {
                    return Err(syntax(format!("step {name} is defined twice")));
                }
                if let Some(step) = current.take() {
                    job.steps.push(step);
                }
                current = Some(Step {
                    name: name.to_owned(),
                    sql: String::new(),
                });
                continue;
            }
            if let Some(step) = current.as_mut() {
                step.sql.push_str(line);
                step.sql.push('\n');
                continue;
            }
            let Some(d) = directive else { continue };
            if let Some(name) = d.strip_prefix("job:") {
                job.name = name.trim().to_owned();
            } else if let Some(param) = d.strip_prefix("param:") {
                let (name, value) = param.split_once('=').ok_or_else(|| {
                    syntax("write a parameter as `-- param: name = value`".into())
                })?;
                let (name, value) = (name.trim(), value.trim());
                if !is_identifier(name) {
                    return Err(syntax(format!(
                        "parameter name {name:?} must be an identifier"
                    )));
                }
                if !is_plain(value) {
                    return Err(JobError::BadParamValue {
                        name: name.into(),
                        value: value.into(),
                    });
                }
                job.params.insert(name.to_owned(), value.to_owned());
            } else if let Some(columns) = d.strip_prefix("categorical:") {
                job.categorical = columns
                    .split(',')
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty())
                    .collect();
                if let Some(bad) = job.categorical.iter().find(|c| !is_identifier(c)) {
                    return Err(syntax(format!(
                        "categorical column {bad:?} must be an identifier"
                    )));
                }
            }
        }
        if let Some(step) = current.take() {
            job.steps.push(step);
        }
        for step in &mut job.steps {
            let trimmed = step
                .sql
                .trim_end()
                .trim_end_matches(';')
                .trim_end()
                .to_owned();
            if trimmed
                .lines()
                .all(|l| l.trim().is_empty() || l.trim().starts_with("--"))
            {
                return Err(JobError::Syntax {
                    line: 0,
                    message: format!("step {} has no SQL", step.name),
                });
            }
            step.sql = trimmed;
        }
        if job.steps.is_empty() {
            return Err(JobError::NoSteps);
        }
        Ok(job)
    }

    /// Overrides declared parameters with `name=value` pairs (new names are allowed).
    pub fn with_params<'a>(
        mut self,
        overrides: impl IntoIterator<Item = &'a str>,
    ) -> Result<Job, JobError> {
        for arg in overrides {
            let (name, value) = arg
                .split_once('=')
                .ok_or_else(|| JobError::BadParamArg(arg.to_owned()))?;
            let (name, value) = (name.trim(), value.trim());
            if !is_identifier(name) {
                return Err(JobError::BadParamArg(arg.to_owned()));
            }
            if !is_plain(value) {
                return Err(JobError::BadParamValue {
                    name: name.into(),
                    value: value.into(),
                });
            }
            self.params.insert(name.to_owned(), value.to_owned());
        }
        Ok(self)
    }

    /// The step's SQL with `${name}` replaced.
    pub fn render(&self, step: &Step) -> Result<String, JobError> {
        let mut out = String::with_capacity(step.sql.len());
        let mut rest = step.sql.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(JobError::Syntax {
                    line: 0,
                    message: format!("step {} has an unclosed ${{", step.name),
                });
            };
            let name = &after[..end];
            let value = self
                .params
                .get(name)
                .ok_or_else(|| JobError::UnknownParam {
                    step: step.name.clone(),
                    param: name.to_owned(),
                })?;
            out.push_str(value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_job_parses() {
        let job = Job::parse(BID_FILTERING).expect("parses");
        assert_eq!(job.name, "bid-filtering");
        assert_eq!(
            job.categorical,
            ["AdvertiserID", "Domain", "RegionID", "CityID"]
        );
        let names: Vec<&str> = job.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "bids_grouped",
                "imps_grouped",
                "transformed",
                "features",
                "inference_requests"
            ]
        );
        assert_eq!(job.params.get("split_seed").map(String::as_str), Some("42"));
        let features = job.step("features").expect("features");
        let sql = job.render(features).expect("renders");
        assert!(sql.contains("split_of(t.BidID, 42, 0.8, 0.1)"), "{sql}");
        assert!(!sql.ends_with(';'));
    }

    #[test]
    fn parameters_are_checked_and_overridable() {
        let job = Job::parse("-- param: seed = 1\n-- step: a\nSELECT ${seed}, ${other};\n")
            .expect("parses");
        assert_eq!(
            job.render(&job.steps[0]),
            Err(JobError::UnknownParam {
                step: "a".into(),
                param: "other".into()
            })
        );
        let job = job.with_params(["other=7", "seed=2"]).expect("overrides");
        assert_eq!(job.render(&job.steps[0]).expect("renders"), "SELECT 2, 7");
        assert!(matches!(
            job.clone().with_params(["x=1; DROP TABLE y"]),
            Err(JobError::BadParamValue { .. })
        ));
        assert!(matches!(
            job.with_params(["novalue"]),
            Err(JobError::BadParamArg(_))
        ));
    }

    #[test]
    fn malformed_jobs_say_where() {
        assert_eq!(Job::parse("SELECT 1"), Err(JobError::NoSteps));
        assert!(matches!(
            Job::parse("-- step: a\nSELECT 1;\n-- step: a\nSELECT 2;"),
            Err(JobError::Syntax { line: 3, .. })
        ));
        assert!(matches!(
            Job::parse("-- step: a\n-- only a comment\n"),
            Err(JobError::Syntax { .. })
        ));
        assert!(matches!(
            Job::parse("-- step: 1a\nSELECT 1"),
            Err(JobError::Syntax { line: 1, .. })
        ));
    }
}
