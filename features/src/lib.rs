//! What training and serving must agree on.
//!
//! The ETL computes features from raw iPinYou logs and the scorer recomputes them from a live bid
//! request. Every rule that decides a feature value lives here, once, so the two cannot drift:
//! the raw log layouts and their line reader, the device type classifier, the Spark-compatible
//! `StringIndexer` vocabulary, the feature order, the bid request type and the OpenRTB request
//! fields it is read from.

pub mod device;
pub mod layout;
pub mod openrtb;
pub mod reader;
pub mod request;
pub mod split;
pub mod timestamp;
pub mod vocabulary;

pub use device::{DeviceType, device_type};
pub use layout::{BidLayout, Compression, ImpLayout, LogKind};
pub use openrtb::{OpenRtbError, OpenRtbRequest, RequestTime};
pub use reader::{BidRow, ImpRow, LineReader, RejectReason};
pub use request::{BidRequest, FEATURE_NAMES, LABEL_NAME, PRICE_NAME};
pub use split::Split;
pub use timestamp::{BidTimestamp, TimestampError};
pub use vocabulary::{CategoricalColumn, FeatureVocabulary, StringIndexer, VocabularyError};
