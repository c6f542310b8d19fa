//! The bid request as the scorer receives it and as the ETL writes it for replay, and the
//! feature order the model is trained and served with.

use serde::{Deserialize, Serialize};

use crate::device::{DeviceType, device_type};
use crate::reader::non_null;
use crate::vocabulary::{CategoricalColumn, FeatureVocabulary};

pub const LABEL_NAME: &str = "label";

/// Not a model input: what a won impression cost (`PayingPrice`, CPM), null for a lost bid.
/// Train/valid/test carry it so the trainer can report the spend a filter keeps.
pub const PRICE_NAME: &str = "PayingPrice";

/// Model input columns, in training order. Train/valid/test Parquet files carry `label` first,
/// then these, then [`PRICE_NAME`].
pub const FEATURE_NAMES: [&str; 7] = [
    "dow",
    "hour",
    "IndexAdvertiserID",
    "IndexDomain",
    "IndexRegionID",
    "IndexCityID",
    "device_type_id",
];

/// The original kit's request fields. As in the logs, `""` and `"null"` mean "no value": they
/// take the vocabulary's unknown index, as the ETL's NULLs do.
/// (its Thrift `BidRequest`), in JSON with its field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BidRequest {
    pub bid_id: String,
    /// Spark convention: 1 = Sunday ... 7 = Saturday.
    pub day_of_week: u8,
    pub hour: u8,
    pub region_id: Option<String>,
    pub city_id: Option<String>,
    pub domain_id: Option<String>,
    pub advertiser_id: Option<String>,
    pub user_agent: Option<String>,
    /// Accepted for compatibility with the original's requests; not a model input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bidding_price: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paying_price: Option<i64>,
}

impl BidRequest {
    pub fn device_type(&self) -> DeviceType {
        device_type(non_null(self.user_agent.as_deref()))
    }

    /// The model's input row, in [`FEATURE_NAMES`] order.
    pub fn features(&self, vocabulary: &FeatureVocabulary) -> [f64; FEATURE_NAMES.len()] {
        let index = |column: CategoricalColumn, value: &Option<String>| {
            f64::from(vocabulary.indexer(column).index(non_null(value.as_deref())))
        };
        [
            f64::from(self.day_of_week),
            f64::from(self.hour),
            index(CategoricalColumn::AdvertiserId, &self.advertiser_id),
            index(CategoricalColumn::Domain, &self.domain_id),
            index(CategoricalColumn::RegionId, &self.region_id),
            index(CategoricalColumn::CityId, &self.city_id),
            f64::from(self.device_type().id()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_uses_the_original_field_names() {
        let json = r#"{"bidId":"b1","dayOfWeek":2,"hour":13,"regionId":"1","cityId":"1",
            "domainId":"d","advertiserId":null,"userAgent":"","biddingPrice":300}"#;
        let req: BidRequest = serde_json::from_str(json).expect("parses");
        assert_eq!(req.day_of_week, 2);
        assert_eq!(req.advertiser_id, None);
        assert_eq!(req.device_type(), DeviceType::Unknown);
        let back = serde_json::to_value(&req).expect("serializes");
        assert_eq!(back["bidId"], "b1");
        assert!(back.get("payingPrice").is_none());
    }
}
