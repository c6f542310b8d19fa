-- job: bid-filtering-exchange
--
-- The worked example of docs/jobs.md: bid-filtering.sql plus the ad exchange (categorical) and
-- the slot's floor price (numeric) as model inputs.
--
-- Inputs: tables `bids` and `imps` hold every column of the iPinYou layouts as strings (NULL
-- where a season's layout lacks the column). Malformed lines were already rejected and counted.
--
-- Each `-- step: NAME` statement becomes a table that later steps can read. The runner writes:
--   transformed         joined, unencoded rows (Parquet); `-- categorical:` columns are fitted
--                       on it, giving tables vocabulary_<Column>(label, idx) and one row
--                       vocabulary_size(<Column>, ...) holding the "unknown" index per column
--   features            label, model inputs and PayingPrice (not an input: the trainer reports
--                       the spend a filter keeps), plus `split` (train/valid/test): one
--                       Parquet folder per split, without the split column
--   inference_requests  the requests the simulator replays (JSON lines)
-- `${name}` is replaced by the job parameter `name` (defaults below, `--param name=value`).
--
-- param: split_seed = 42
-- param: train_fraction = 0.8
-- param: valid_fraction = 0.1
-- categorical: AdvertiserID, Domain, RegionID, CityID, AdExchange

-- step: bids_grouped
-- exact duplicate bid rows collapse, as in the original's GROUP BY
-- (the user agent and bid price ride along: they are the bid's, known at bid time)
SELECT BidID, "Timestamp", RegionID, CityID, Domain, AdvertiserID, UserAgent, BiddingPrice,
       AdExchange, AdSlotFloorPrice
FROM bids
GROUP BY BidID, "Timestamp", RegionID, CityID, Domain, AdvertiserID, UserAgent, BiddingPrice,
         AdExchange, AdSlotFloorPrice;

-- step: imps_grouped
SELECT BidID, BiddingPrice, PayingPrice, UserAgent
FROM imps
GROUP BY BidID, BiddingPrice, PayingPrice, UserAgent;

-- step: transformed
-- dow: Spark's dayofweek, 1 = Sunday ... 7 = Saturday; hour: Timestamp characters 9-10.
-- The impression side is the build side of the join: it is the small one (a few percent).
SELECT b.BidID,
       CAST(date_part('dow', to_date(substr(b."Timestamp", 1, 8), '%Y%m%d')) AS INT) + 1 AS dow,
       CAST(substr(b."Timestamp", 9, 2) AS INT) AS hour,
       b.RegionID, b.CityID, b.Domain, b.AdvertiserID,
       b.UserAgent,
       b.AdExchange,
       CAST(b.AdSlotFloorPrice AS BIGINT) AS floor_price,
       CAST(b.BiddingPrice AS BIGINT) AS BiddingPrice,
       CAST(i.PayingPrice AS BIGINT) AS PayingPrice,
       CASE WHEN i.PayingPrice IS NOT NULL THEN 1 ELSE 0 END AS label
FROM imps_grouped i
RIGHT JOIN bids_grouped b ON i.BidID = b.BidID;

-- step: features
SELECT CAST(t.label AS INT) AS label,
       t.dow,
       t.hour,
       CAST(COALESCE(va.idx, n.AdvertiserID) AS INT) AS IndexAdvertiserID,
       CAST(COALESCE(vd.idx, n.Domain) AS INT) AS IndexDomain,
       CAST(COALESCE(vr.idx, n.RegionID) AS INT) AS IndexRegionID,
       CAST(COALESCE(vc.idx, n.CityID) AS INT) AS IndexCityID,
       CAST(device_type(t.UserAgent) AS INT) AS device_type_id,
       CAST(COALESCE(ve.idx, n.AdExchange) AS INT) AS IndexAdExchange,
       CAST(t.floor_price AS INT) AS floor_price,
       t.PayingPrice,
       split_of(t.BidID, ${split_seed}, ${train_fraction}, ${valid_fraction}) AS split
FROM transformed t
CROSS JOIN vocabulary_size n
LEFT JOIN vocabulary_AdvertiserID va ON t.AdvertiserID = va.label
LEFT JOIN vocabulary_Domain vd ON t.Domain = vd.label
LEFT JOIN vocabulary_RegionID vr ON t.RegionID = vr.label
LEFT JOIN vocabulary_CityID vc ON t.CityID = vc.label
LEFT JOIN vocabulary_AdExchange ve ON t.AdExchange = ve.label;

-- step: inference_requests
SELECT BidID AS "bidId", dow AS "dayOfWeek", hour AS "hour",
       RegionID AS "regionId", CityID AS "cityId", Domain AS "domainId",
       AdvertiserID AS "advertiserId", UserAgent AS "userAgent",
       BiddingPrice AS "biddingPrice", PayingPrice AS "payingPrice"
FROM transformed;
