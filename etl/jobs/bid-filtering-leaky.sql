-- job: bid-filtering-leaky
--
-- DO NOT USE FOR A MODEL. The original kit's logic kept as it was, target leak included: the user
-- agent (and the bidding price) come from the *impression* log, so they are known only for bids
-- that won, and the device type encodes the label. It exists to measure the leak (docs/leak.md)
-- and, run with `--compat spark`, to reproduce the original's features exactly
-- (docs/spark-compat.md; the spark_parity test runs PySpark on the same files).
--
-- Inputs: tables `bids` and `imps` hold every column of the iPinYou layouts as strings (NULL
-- where a season's layout lacks the column). Malformed lines were already rejected and counted.
--
-- Each `-- step: NAME` statement becomes a table that later steps can read. Three names mean
-- something to the runner (docs/jobs.md):
--   transformed         joined, unencoded rows (Parquet); the `-- categorical:` columns are
--                       fitted on it, and `encode('Column', value)` reads those vocabularies
--   inference_requests  the request the scorer receives: its columns are the request fields,
--                       except the label and the price, which ride along for training only.
--                       Written as JSON lines, the requests the simulator replays
--   features            the model inputs: scalar expressions over inference_requests. The
--                       scorer evaluates exactly these on each request; the runner adds the
--                       label, the price and the split (a stable hash of the key)
-- `${name}` is replaced by the job parameter `name` (defaults below, `--param name=value`).
--
-- param: split_seed = 42
-- param: train_fraction = 0.8
-- param: valid_fraction = 0.1
-- categorical: AdvertiserID, Domain, RegionID, CityID
-- key: bidId
-- label: label
-- price: PayingPrice
-- the impressions (a few percent of the bids) are joined as one in-memory table that every
-- task probes, so the bids are not shuffled again by BidID for the join
-- set: datafusion.optimizer.repartition_joins = false

-- step: bids_grouped
-- the original's bid query: exact duplicate bid rows collapse in its GROUP BY
SELECT BidID, "Timestamp", RegionID, CityID, Domain, AdvertiserID
FROM bids
GROUP BY BidID, "Timestamp", RegionID, CityID, Domain, AdvertiserID;

-- step: imps_grouped
-- the original's impression query: the bidding price and the user agent come from here
SELECT BidID, BiddingPrice, PayingPrice, UserAgent
FROM imps
GROUP BY BidID, BiddingPrice, PayingPrice, UserAgent;

-- step: transformed
-- the original's left join of bids to impressions, and its derived columns with Spark's own
-- casts: dow is dayofweek('yyyy-MM-dd' built from Timestamp characters 1-8; 1 = Sunday),
-- hour is CAST(characters 9-10 AS INT). An odd value gives NULL, as in Spark, never an abort.
SELECT b.BidID,
       spark_dayofweek(substr(b."Timestamp", 1, 4) || '-' || substr(b."Timestamp", 5, 2)
                       || '-' || substr(b."Timestamp", 7, 2)) AS dow,
       spark_int(substr(b."Timestamp", 9, 2)) AS hour,
       b.RegionID, b.CityID, b.Domain, b.AdvertiserID,
       TRY_CAST(i.BiddingPrice AS BIGINT) AS BiddingPrice,
       TRY_CAST(i.PayingPrice AS BIGINT) AS PayingPrice,
       i.UserAgent,
       CASE WHEN i.PayingPrice IS NOT NULL THEN 1 ELSE 0 END AS label
FROM imps_grouped i
RIGHT JOIN bids_grouped b ON i.BidID = b.BidID;

-- step: inference_requests
-- the original's request fields (its Thrift BidRequest), named as its clients send them
SELECT BidID AS "bidId", dow AS "dayOfWeek", hour AS "hour",
       RegionID AS "regionId", CityID AS "cityId", Domain AS "domainId",
       AdvertiserID AS "advertiserId", UserAgent AS "userAgent",
       BiddingPrice AS "biddingPrice",
       label, PayingPrice
FROM transformed;

-- step: features
SELECT "dayOfWeek" AS dow,
       "hour" AS hour,
       encode('AdvertiserID', "advertiserId") AS "IndexAdvertiserID",
       encode('Domain', "domainId") AS "IndexDomain",
       encode('RegionID', "regionId") AS "IndexRegionID",
       encode('CityID', "cityId") AS "IndexCityID",
       device_type("userAgent") AS device_type_id
FROM inference_requests;
