//! The simulated ad server: it replays the bid requests the ETL wrote for inference at the
//! scorer, the way an ad server would call it, and measures what it sees.
//!
//! [`requests`] loads the ETL's JSON lines (local or S3), counting bad files and lines without
//! stopping.

pub mod error;
pub mod requests;

pub use error::SimError;
