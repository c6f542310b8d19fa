//! What training and serving must agree on.
//!
//! The ETL computes features from raw iPinYou logs and the scorer recomputes them from a live bid
//! request. Every rule that decides a feature value lives here, once, so the two cannot drift:
//! the raw log layouts and their line reader, the device type classifier, the Spark-compatible
//! `StringIndexer` vocabulary, the feature contract a job writes (its request, its features as
//! SQL expressions) and how an OpenRTB request maps onto a job's request.

pub mod contract;
pub mod device;
pub mod layout;
pub mod manifest;
pub mod openrtb;
pub mod reader;
pub mod spark;
pub mod split;
pub mod timestamp;
pub mod vocabulary;

pub use contract::{
    ContractError, FeatureContract, FeatureDef, FieldType, LABEL_NAME, PRICE_NAME, RequestField,
};
pub use device::{DeviceType, device_type};
pub use layout::{BidLayout, Compression, ImpLayout, LogKind};
pub use manifest::{EtlManifest, FileReport, SplitCounts};
pub use openrtb::{OpenRtbError, OpenRtbRequest, RequestTime};
pub use reader::{BidRow, Dialect, ImpRow, LineReader, RejectReason};
pub use split::Split;
pub use timestamp::{BidTimestamp, TimestampError};
pub use vocabulary::{FeatureVocabulary, StringIndexer, VocabularyError};
