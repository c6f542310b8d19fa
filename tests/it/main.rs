//! End-to-end tests: one binary (link once), one module per topic.

mod adserver_sim;
mod cli_surface;
mod cluster;
mod etl_generated;
mod etl_golden;
mod etl_odd_lines;
mod etl_ranges;
mod faults;
mod s3_roundtrip;
mod scorer_hostile;
mod scorer_parity;
mod scorer_service;
mod scorer_support;
mod spark_parity;
mod spark_semantics;
mod support;
mod trainer;
mod woothee_parity;
