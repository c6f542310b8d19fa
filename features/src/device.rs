//! Device type from a user agent, with woothee's categories.
//!
//! The ids are the original kit's. Anything woothee cannot place (an empty agent, `-`, an unknown
//! string) is `Unknown` (6) in training *and* serving: the original imputed a random 0..5 in
//! training and 6 in the load client, which is skew by construction.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum DeviceType {
    Smartphone = 0,
    Mobilephone = 1,
    Appliance = 2,
    Pc = 3,
    Crawler = 4,
    Misc = 5,
    Unknown = 6,
}

impl DeviceType {
    pub const ALL: [DeviceType; 7] = [
        DeviceType::Smartphone,
        DeviceType::Mobilephone,
        DeviceType::Appliance,
        DeviceType::Pc,
        DeviceType::Crawler,
        DeviceType::Misc,
        DeviceType::Unknown,
    ];

    pub fn id(self) -> u8 {
        self as u8
    }

    /// woothee's category name (`UNKNOWN` for [`DeviceType::Unknown`]).
    pub fn category(self) -> &'static str {
        match self {
            DeviceType::Smartphone => "smartphone",
            DeviceType::Mobilephone => "mobilephone",
            DeviceType::Appliance => "appliance",
            DeviceType::Pc => "pc",
            DeviceType::Crawler => "crawler",
            DeviceType::Misc => "misc",
            DeviceType::Unknown => "UNKNOWN",
        }
    }

    pub fn from_category(category: &str) -> DeviceType {
        match category {
            "smartphone" => DeviceType::Smartphone,
            "mobilephone" => DeviceType::Mobilephone,
            "appliance" => DeviceType::Appliance,
            "pc" => DeviceType::Pc,
            "crawler" => DeviceType::Crawler,
            "misc" => DeviceType::Misc,
            _ => DeviceType::Unknown,
        }
    }
}

fn parser() -> &'static woothee::parser::Parser {
    static PARSER: OnceLock<woothee::parser::Parser> = OnceLock::new();
    PARSER.get_or_init(woothee::parser::Parser::new)
}

/// Classifies a user agent; `None` (a missing agent) is [`DeviceType::Unknown`].
pub fn device_type(user_agent: Option<&str>) -> DeviceType {
    let Some(ua) = user_agent else {
        return DeviceType::Unknown;
    };
    match parser().parse(ua.trim()) {
        Some(result) => DeviceType::from_category(result.category),
        None => DeviceType::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_original_kits() {
        let ids: Vec<u8> = DeviceType::ALL.iter().map(|d| d.id()).collect();
        assert_eq!(ids, vec![0, 1, 2, 3, 4, 5, 6]);
        for d in DeviceType::ALL {
            assert_eq!(DeviceType::from_category(d.category()), d);
        }
    }

    #[test]
    fn missing_and_blank_agents_are_unknown() {
        assert_eq!(device_type(None), DeviceType::Unknown);
        assert_eq!(device_type(Some("")), DeviceType::Unknown);
        assert_eq!(device_type(Some("-")), DeviceType::Unknown);
        assert_eq!(device_type(Some("null")), DeviceType::Unknown);
    }

    #[test]
    fn ipinyou_agents_with_gfe_suffix_still_classify() {
        let ua = "Mozilla/5.0 (Windows NT 5.1) AppleWebKit/537.1 (KHTML, like Gecko) Chrome/21.0.1180.89 Safari/537.1,gzip(gfe)";
        assert_eq!(device_type(Some(ua)), DeviceType::Pc);
    }
}
