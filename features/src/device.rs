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

/// The token of the one Google rule the `woothee` crate (0.13) has and Python woothee 1.10.1
/// does not: Python reads such an agent as the browser and OS it names.
const ADSBOT_MOBILE: &str = "compatible; AdsBot-Google-Mobile;";

/// Classifies a user agent as Python woothee 1.10.1 does (the original kit's classifier; see
/// docs/woothee-differences.md for where the `woothee` crate differs and how this corrects it);
/// `None` (a missing agent) is [`DeviceType::Unknown`].
pub fn device_type(user_agent: Option<&str>) -> DeviceType {
    let Some(ua) = user_agent else {
        return DeviceType::Unknown;
    };
    let ua = ua.trim();
    let classify = |ua: &str| {
        parser()
            .parse(ua)
            .map(|r| DeviceType::from_category(r.category))
    };
    let device = if ua.contains(ADSBOT_MOBILE) {
        // the rest of the agent as Python sees it: the token without "Google", which is what
        // the crate's other rules and Python's all key on
        classify(&ua.replace(ADSBOT_MOBILE, "compatible; AdsBot-G-Mobile;"))
    } else {
        classify(ua)
    };
    match device {
        Some(DeviceType::Unknown) | None if windows_of_unknown_version(ua) => DeviceType::Pc,
        Some(device) => device,
        None => DeviceType::Unknown,
    }
}

/// Python woothee places any agent naming Windows (not an Xbox) as a pc, of version
/// "UNKNOWN" when the version is not one it knows (`Windows NT 5.2`, `Windows XP`,
/// `Windows 9x 4.90`, `Windows NT`); the crate gives up on those and leaves the agent unknown.
/// Python reaches that rule for every agent the crate leaves unknown.
fn windows_of_unknown_version(ua: &str) -> bool {
    ua.contains("Windows") && !ua.contains("Xbox")
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
    fn windows_of_versions_woothee_does_not_know_are_pcs() {
        for ua in [
            "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.2; Trident/4.0)",
            "Mozilla/4.0 (compatible; MSIE 6.0; Windows XP)",
            "Mozilla/4.0 (compatible; MSIE 6.0; Windows 9x 4.90)",
        ] {
            assert_eq!(device_type(Some(ua)), DeviceType::Pc, "{ua}");
        }
        assert_eq!(
            device_type(Some(
                "Mozilla/5.0 (Windows Phone 8.0; Trident/6.0; IEMobile/10.0; ARM; Touch; NOKIA; Lumia 920)"
            )),
            DeviceType::Smartphone
        );
    }

    #[test]
    fn adsbot_mobile_is_the_browser_it_names() {
        let ua = "Mozilla/5.0 (Linux; Android 5.0; SM-G920A) AppleWebKit (KHTML, like Gecko) Chrome Mobile Safari (compatible; AdsBot-Google-Mobile; +http://www.google.com/mobile/adsbot.html)";
        assert_eq!(device_type(Some(ua)), DeviceType::Smartphone);
        assert_eq!(
            device_type(Some("AdsBot-Google (+http://www.google.com/adsbot.html)")),
            DeviceType::Crawler
        );
    }

    #[test]
    fn ipinyou_agents_with_gfe_suffix_still_classify() {
        let ua = "Mozilla/5.0 (Windows NT 5.1) AppleWebKit/537.1 (KHTML, like Gecko) Chrome/21.0.1180.89 Safari/537.1,gzip(gfe)";
        assert_eq!(device_type(Some(ua)), DeviceType::Pc);
    }
}
