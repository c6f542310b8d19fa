//! Feature jobs are SQL files: a header of directives, then named steps.
//!
//! ```sql
//! -- job: bid-filtering
//! -- param: split_seed = 42
//! -- categorical: AdvertiserID, Domain
//! -- step: transformed
//! SELECT ... FROM bids ...;
//! -- step: inference_requests
//! SELECT BidID AS bidId, ..., label FROM transformed;
//! -- step: features
//! SELECT hour, encode('Domain', domainId) AS IndexDomain FROM inference_requests;
//! ```
//! `${name}` in a step is replaced by the parameter `name`. See `etl/jobs/bid-filtering.sql`
//! and `docs/jobs.md`.

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
    #[error(
        "job has no `-- step: {0}`; a job needs transformed (the joined rows), inference_requests (the request) and features (the model inputs over the request), see docs/jobs.md"
    )]
    MissingStep(&'static str),
    #[error(
        "job steps must come in the order transformed, inference_requests, features (other steps may sit between them)"
    )]
    StepOrder,
}

/// What the runner does with a step's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepRole {
    /// Any other name: a table later steps read.
    View,
    /// `transformed`: joined, unencoded rows, written as Parquet; the vocabulary is fitted on it.
    Transformed,
    /// `inference_requests`: one row per request, its columns the request fields (plus the
    /// label and price, which ride along for training and are not request fields).
    Requests,
    /// `features`: the model inputs, scalar expressions over `inference_requests`.
    Features,
}

impl StepRole {
    pub fn of(name: &str) -> StepRole {
        match name {
            "transformed" => StepRole::Transformed,
            "inference_requests" => StepRole::Requests,
            "features" => StepRole::Features,
            _ => StepRole::View,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub role: StepRole,
    pub sql: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub name: String,
    pub params: BTreeMap<String, String>,
    pub categorical: Vec<String>,
    /// The request field that identifies a request (`-- key:`, default `bidId`).
    pub key: String,
    /// The `inference_requests` column holding the label (`-- label:`, default `label`).
    pub label: String,
    /// The `inference_requests` column holding the price paid (`-- price:`); by default
    /// `PayingPrice` when the step has it.
    pub price: Option<String>,
    /// `-- openrtb: field = source` lines, added to the default sources.
    pub openrtb: BTreeMap<String, String>,
    /// The zone of the logs' timestamps (`-- time-zone:`, default Asia/Shanghai, iPinYou's).
    pub time_zone: String,
    /// `-- set: datafusion.KEY = VALUE` lines: query engine settings for this job, embedded and
    /// on a cluster alike (checked against the engine's option list when the run starts).
    pub settings: BTreeMap<String, String>,
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
            key: "bidId".into(),
            label: "label".into(),
            price: None,
            openrtb: BTreeMap::new(),
            time_zone: "Asia/Shanghai".into(),
            settings: BTreeMap::new(),
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
                    role: StepRole::of(name),
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
            } else if let Some((directive, value)) = ["key:", "label:", "price:"]
                .iter()
                .find_map(|p| d.strip_prefix(p).map(|v| (*p, v.trim())))
            {
                if !is_identifier(value) {
                    return Err(syntax(format!(
                        "`-- {directive}` names a column; {value:?} is not an identifier"
                    )));
                }
                match directive {
                    "key:" => job.key = value.to_owned(),
                    "label:" => job.label = value.to_owned(),
                    _ => job.price = Some(value.to_owned()),
                }
            } else if let Some(setting) = d.strip_prefix("set:") {
                let (key, value) = setting.split_once('=').ok_or_else(|| {
                    syntax("write an engine setting as `-- set: datafusion.KEY = VALUE`".into())
                })?;
                let (key, value) = (key.trim(), value.trim());
                // the runner owns the memory, spill and parallelism settings (flags), and a
                // setting outside `datafusion.` would not reach a cluster's executors
                if !key.starts_with("datafusion.") || !is_plain(key) || !is_plain(value) {
                    return Err(syntax(format!(
                        "engine setting `{key} = {value}` must be `datafusion.KEY = VALUE` with a plain value"
                    )));
                }
                job.settings.insert(key.to_owned(), value.to_owned());
            } else if let Some(zone) = d.strip_prefix("time-zone:") {
                job.time_zone = zone.trim().to_owned();
            } else if let Some(mapping) = d.strip_prefix("openrtb:") {
                let (field, source) = mapping.split_once('=').ok_or_else(|| {
                    syntax("write an openrtb source as `-- openrtb: field = device.ua`".into())
                })?;
                let (field, source) = (field.trim(), source.trim());
                if !is_identifier(field) {
                    return Err(syntax(format!(
                        "openrtb field {field:?} must be an identifier"
                    )));
                }
                rtb_features::openrtb::Source::parse(source).map_err(|e| syntax(e.to_string()))?;
                job.openrtb.insert(field.to_owned(), source.to_owned());
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

    pub fn step_of(&self, role: StepRole) -> Option<&Step> {
        self.steps.iter().find(|s| s.role == role)
    }

    /// A parameter as a number, or `default` when the job does not set it.
    pub fn number(&self, name: &str, default: f64) -> Result<f64, JobError> {
        match self.params.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| JobError::BadParamValue {
                name: name.to_owned(),
                value: v.clone(),
            }),
        }
    }

    /// Checks what can be checked without planning: the three steps the runner needs, in an
    /// order where each reads the one before.
    pub fn check_roles(&self) -> Result<(), JobError> {
        let position = |role| self.steps.iter().position(|s| s.role == role);
        let (t, r, f) = (
            position(StepRole::Transformed),
            position(StepRole::Requests),
            position(StepRole::Features),
        );
        for (found, name) in [
            (t, "transformed"),
            (r, "inference_requests"),
            (f, "features"),
        ] {
            if found.is_none() {
                return Err(JobError::MissingStep(name));
            }
        }
        if !(t < r && r < f) {
            return Err(JobError::StepOrder);
        }
        Ok(())
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
                "inference_requests",
                "features"
            ]
        );
        assert_eq!(job.params.get("split_seed").map(String::as_str), Some("42"));
        assert_eq!((job.key.as_str(), job.label.as_str()), ("bidId", "label"));
        assert_eq!(job.price.as_deref(), Some("PayingPrice"));
        assert_eq!(job.time_zone, "Asia/Shanghai");
        assert_eq!(
            job.settings["datafusion.optimizer.repartition_joins"],
            "false"
        );
        job.check_roles().expect("the three steps, in order");
        let features = job.step_of(StepRole::Features).expect("features");
        let sql = job.render(features).expect("renders");
        assert!(sql.contains("encode('Domain', \"domainId\")"), "{sql}");
        assert!(!sql.ends_with(';'));
    }

    #[test]
    fn roles_directives_and_their_mistakes() {
        let job = Job::parse(
            "-- key: id\n-- openrtb: slot = imp.banner.pos\n-- time-zone: UTC\n-- step: features\nSELECT 1 AS a FROM inference_requests;\n-- step: transformed\nSELECT 1;\n-- step: inference_requests\nSELECT 1 AS id;",
        )
        .expect("parses");
        assert_eq!(job.key, "id");
        assert_eq!(job.openrtb["slot"], "imp.banner.pos");
        assert_eq!(job.check_roles(), Err(JobError::StepOrder));
        let no_requests =
            Job::parse("-- step: transformed\nSELECT 1;\n-- step: features\nSELECT 1;")
                .expect("parses");
        assert_eq!(
            no_requests.check_roles(),
            Err(JobError::MissingStep("inference_requests"))
        );
        assert!(matches!(
            Job::parse("-- openrtb: slot = imp\n-- step: a\nSELECT 1"),
            Err(JobError::Syntax { line: 1, .. })
        ));
        assert!(matches!(
            Job::parse("-- key: bid id\n-- step: a\nSELECT 1"),
            Err(JobError::Syntax { line: 1, .. })
        ));
        for bad in [
            "-- set: datafusion.execution.batch_size",
            "-- set: ballista.shuffle.sort_based.memory_limit_per_task_bytes = 1",
            "-- set: datafusion.execution.batch_size = 1; DROP TABLE y",
        ] {
            assert!(
                matches!(
                    Job::parse(&format!("{bad}\n-- step: a\nSELECT 1")),
                    Err(JobError::Syntax { line: 1, .. })
                ),
                "{bad}"
            );
        }
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
