//! The values generated logs draw from: real-looking user agents, advertisers, geography (the
//! real iPinYou region/city table), slot sizes and floor prices.

use rtb_features::DeviceType;

use crate::rng::{Rng, mix};

/// User agents of 2013 Chinese web traffic, with woothee's category (checked by a test) and a
/// share of traffic. Tablets classify as smartphones, as woothee does.
pub const USER_AGENTS: &[(&str, DeviceType, f64)] = &[
    (
        "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)",
        DeviceType::Pc,
        8.0,
    ),
    (
        "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 5.1; Trident/4.0; .NET CLR 2.0.50727)",
        DeviceType::Pc,
        6.0,
    ),
    (
        "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.1; Trident/4.0; QQDownload 714)",
        DeviceType::Pc,
        7.0,
    ),
    (
        "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; WOW64; Trident/4.0; SLCC2; .NET CLR 2.0.50727)",
        DeviceType::Pc,
        6.0,
    ),
    (
        "Mozilla/5.0 (compatible; MSIE 9.0; Windows NT 6.1; WOW64; Trident/5.0)",
        DeviceType::Pc,
        5.0,
    ),
    (
        "Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.1; WOW64; Trident/6.0)",
        DeviceType::Pc,
        2.0,
    ),
    (
        "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 5.1; 360SE)",
        DeviceType::Pc,
        6.0,
    ),
    (
        "Mozilla/5.0 (Windows NT 5.1) AppleWebKit/537.1 (KHTML, like Gecko) Chrome/21.0.1180.89 Safari/537.1",
        DeviceType::Pc,
        9.0,
    ),
    (
        "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.17 (KHTML, like Gecko) Chrome/24.0.1312.57 Safari/537.17",
        DeviceType::Pc,
        5.0,
    ),
    (
        "Mozilla/5.0 (Windows NT 6.1) AppleWebKit/535.1 (KHTML, like Gecko) Chrome/14.0.802.30 Safari/535.1 SE 2.X MetaSr 1.0",
        DeviceType::Pc,
        4.0,
    ),
    (
        "Mozilla/5.0 (Windows NT 6.1; rv:19.0) Gecko/20100101 Firefox/19.0",
        DeviceType::Pc,
        3.0,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_8_2) AppleWebKit/536.26.17 (KHTML, like Gecko) Version/6.0.2 Safari/536.26.17",
        DeviceType::Pc,
        1.5,
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.11 (KHTML, like Gecko) Chrome/23.0.1271.97 Safari/537.11",
        DeviceType::Pc,
        0.5,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 6_1_2 like Mac OS X) AppleWebKit/536.26 (KHTML, like Gecko) Version/6.0 Mobile/10B146 Safari/8536.25",
        DeviceType::Smartphone,
        5.0,
    ),
    (
        "Mozilla/5.0 (Linux; U; Android 4.0.4; zh-cn; MI-ONE Plus Build/IMM76D) AppleWebKit/534.30 (KHTML, like Gecko) Version/4.0 Mobile Safari/534.30",
        DeviceType::Smartphone,
        4.0,
    ),
    (
        "Mozilla/5.0 (Linux; U; Android 2.3.6; zh-cn; GT-S5830i Build/GINGERBREAD) AppleWebKit/533.1 (KHTML, like Gecko) Version/4.0 Mobile Safari/533.1",
        DeviceType::Smartphone,
        3.0,
    ),
    (
        "Mozilla/5.0 (Linux; Android 4.1.2; GT-I9300 Build/JZO54K) AppleWebKit/537.22 (KHTML, like Gecko) Chrome/25.0.1364.123 Mobile Safari/537.22",
        DeviceType::Smartphone,
        2.0,
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 6_1 like Mac OS X) AppleWebKit/536.26 (KHTML, like Gecko) Version/6.0 Mobile/10B141 Safari/8536.25",
        DeviceType::Smartphone,
        2.5,
    ),
    (
        "Mozilla/5.0 (Linux; U; Android 4.0.3; zh-cn; GT-P5100 Build/IML74K) AppleWebKit/534.30 (KHTML, like Gecko) Version/4.0 Safari/534.30",
        DeviceType::Smartphone,
        1.0,
    ),
    (
        "Mozilla/5.0 (SymbianOS/9.2; U; Series60/3.1 NokiaE66-1/500.21.009; Profile/MIDP-2.0 Configuration/CLDC-1.1 ) AppleWebKit/413 (KHTML, like Gecko) Safari/413",
        DeviceType::Mobilephone,
        1.5,
    ),
    (
        "Huawei/1.0/H12HW/B000 Browser/Obigo-Browser/Q04A",
        DeviceType::Mobilephone,
        0.7,
    ),
    (
        "DoCoMo/2.0 P903i(c100;TB;W24H12)",
        DeviceType::Mobilephone,
        0.3,
    ),
    (
        "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
        DeviceType::Crawler,
        1.0,
    ),
    (
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        DeviceType::Crawler,
        0.5,
    ),
    (
        "Sogou web spider/4.0(+http://www.sogou.com/docs/help/webmasters.htm#07)",
        DeviceType::Crawler,
        0.5,
    ),
    (
        "Mozilla/5.0 (PLAYSTATION 3; 3.55)",
        DeviceType::Appliance,
        0.3,
    ),
    (
        "Opera/9.30 (Nintendo Wii; U; ; 3642; en)",
        DeviceType::Appliance,
        0.2,
    ),
    ("Wget/1.12 (linux-gnu)", DeviceType::Misc, 0.4),
    ("Java/1.5.0_17", DeviceType::Misc, 0.4),
    (
        "Apache-HttpClient/UNAVAILABLE (java 1.4)",
        DeviceType::Misc,
        0.4,
    ),
    ("", DeviceType::Unknown, 2.0),
    ("-", DeviceType::Unknown, 1.0),
    ("Mozilla/5.0", DeviceType::Unknown, 0.8),
];

/// Real iPinYou advertiser ids (seasons 2 and 3), their share of bids and their fixed bid price.
pub const ADVERTISERS: &[(&str, f64, u32)] = &[
    ("1458", 0.22, 300),
    ("3358", 0.12, 300),
    ("3386", 0.15, 227),
    ("3427", 0.12, 300),
    ("3476", 0.09, 238),
    ("2259", 0.07, 277),
    ("2261", 0.06, 241),
    ("2821", 0.10, 294),
    ("2997", 0.07, 238),
];

pub const SLOT_SIZES: &[(u32, u32, f64)] = &[
    (300, 250, 18.0),
    (728, 90, 16.0),
    (950, 90, 12.0),
    (160, 600, 10.0),
    (336, 280, 8.0),
    (1000, 90, 8.0),
    (468, 60, 7.0),
    (250, 250, 6.0),
    (120, 600, 5.0),
    (960, 90, 5.0),
    (200, 200, 5.0),
];

pub const FLOOR_PRICES: &[(u32, f64)] = &[
    (0, 38.0),
    (5, 14.0),
    (10, 8.0),
    (20, 6.0),
    (30, 5.0),
    (50, 6.0),
    (70, 5.0),
    (100, 6.0),
    (133, 3.0),
    (150, 3.0),
    (200, 2.5),
    (238, 1.5),
    (250, 1.0),
    (300, 1.0),
];

/// Ad exchanges 1..=4 and their share of traffic.
pub const EXCHANGE_WEIGHTS: [f64; 4] = [0.36, 0.34, 0.2, 0.1];

pub const USER_TAGS: &[&str] = &[
    "10006", "10024", "10031", "10048", "10052", "10057", "10059", "10063", "10067", "10074",
    "10075", "10076", "10077", "10079", "10083", "10093", "10102", "10110", "10111", "10115",
    "10120", "10125", "10126", "10129", "10131", "10133", "10138", "10140", "10142", "10145",
    "10146", "10147", "10148", "10149", "10684", "11092", "11278", "11379", "11423", "11512",
    "11576", "11632", "11680", "11724", "11944", "13042", "13403", "13496", "13678", "13776",
    "13800", "13866", "13874", "14273", "16593", "16617", "16661", "16706", "16751",
];

/// The real region/city table (`id<TAB>name`): cities first in ascending id, then regions.
const CITY_REGION_NAMES: &str = include_str!("../data/city_region_names.txt");

#[derive(Debug, Clone)]
pub struct Region {
    pub id: u32,
    pub cities: Vec<u32>,
}

/// Regions with their cities. A city belongs to the region with the largest id not above its
/// own; municipalities (Beijing, Shanghai, ...) have no cities listed and use their own id.
pub fn regions() -> Vec<Region> {
    let ids: Vec<u32> = CITY_REGION_NAMES
        .lines()
        .filter_map(|l| l.split('\t').next()?.trim().parse().ok())
        .collect();
    let split = ids
        .windows(2)
        .position(|w| w[1] < w[0])
        .map_or(ids.len(), |i| i + 1);
    let (cities, region_ids) = ids.split_at(split);
    let mut regions: Vec<Region> = region_ids
        .iter()
        .map(|&id| Region {
            id,
            cities: Vec::new(),
        })
        .collect();
    for &city in cities.iter().filter(|c| **c != 0) {
        if let Some(region) = regions.iter_mut().rev().find(|r| r.id <= city) {
            region.cities.push(city);
        }
    }
    for region in &mut regions {
        if region.cities.is_empty() {
            region.cities.push(region.id);
        }
    }
    regions
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// iPinYou domain ids look like `trqRTudNQquvFs1o5SqfNX`: opaque base62 of 18-23 chars.
pub fn domain_name(seed: u64, index: usize) -> String {
    let mut state = mix(&[seed, 0xD0, index as u64]);
    let mut rng = Rng::new(state);
    state = rng.next_u64();
    let len = 18 + (state % 6) as usize;
    let prefix: &[u8] = if index.is_multiple_of(3) {
        b"trqRTu"
    } else {
        b""
    };
    let mut out = prefix.to_vec();
    while out.len() < len {
        out.push(BASE62[rng.below(62) as usize]);
    }
    String::from_utf8(out).unwrap_or_default()
}

pub fn push_base62(out: &mut Vec<u8>, rng: &mut Rng, len: usize) {
    out.extend((0..len).map(|_| BASE62[rng.below(62) as usize]));
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// 32 lowercase hex digits, as iPinYou's BidIDs, URLs and creative ids.
pub fn push_hex128(out: &mut Vec<u8>, hi: u64, lo: u64) {
    // one copy of a stack buffer: per-byte pushes re-check capacity 32 times
    let mut digits = [0u8; 32];
    let value = (u128::from(hi) << 64) | u128::from(lo);
    for (i, d) in digits.iter_mut().enumerate() {
        *d = HEX[((value >> (124 - 4 * i)) & 0xF) as usize];
    }
    out.extend_from_slice(&digits);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_user_agent_has_its_stated_category() {
        for (ua, expected, _) in USER_AGENTS {
            assert_eq!(rtb_features::device_type(Some(ua)), *expected, "{ua}");
        }
        for d in DeviceType::ALL {
            assert!(
                USER_AGENTS.iter().any(|(_, c, _)| *c == d),
                "no agent of {d:?}"
            );
        }
    }

    #[test]
    fn geography_comes_from_the_real_table() {
        let regions = regions();
        // 34 named provinces and municipalities; 0 "unknown" is handled apart
        assert_eq!(regions.len(), 34);
        let hebei = regions.iter().find(|r| r.id == 3).expect("hebei");
        assert_eq!(hebei.cities.first(), Some(&4));
        assert_eq!(hebei.cities.last(), Some(&14));
        let beijing = regions.iter().find(|r| r.id == 1).expect("beijing");
        assert_eq!(beijing.cities, vec![1]);
        let xinjiang = regions.iter().find(|r| r.id == 374).expect("xinjiang");
        assert!(
            xinjiang.cities.contains(&380),
            "the real season-2 line has region 374 city 380"
        );
    }

    #[test]
    fn domains_look_like_ipinyou_ids() {
        let d = domain_name(1, 0);
        assert!(
            d.starts_with("trqRTu") && (18..=23).contains(&d.len()),
            "{d}"
        );
        assert_eq!(d, domain_name(1, 0));
        assert_ne!(domain_name(1, 1), domain_name(1, 2));
    }
}
