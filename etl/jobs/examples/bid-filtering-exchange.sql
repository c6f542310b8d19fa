-- job: bid-filtering-exchange
--
-- The worked example of docs/jobs.md: bid-filtering.sql plus the ad exchange (categorical) and
-- the slot's floor price (numeric) as model inputs. Only SQL changes: the trainer trains on
-- these features and the scorer computes them from a request, with no Rust change.
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
-- categorical: AdvertiserID, Domain, RegionID, CityID, AdExchange
-- key: bidId
-- label: label
-- price: PayingPrice
-- the impressions (a few percent of the bids) are joined as one in-memory table that every
-- task probes, so the bids are not shuffled again by BidID for the join
-- set: datafusion.optimizer.repartition_joins = false

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
-- dow: Spark's dayofweek, 1 = Sunday ... 7 = Saturday; hour: Timestamp characters 9-10 as Spark
-- casts them, so the job reads the same under --compat spark. A value that does not parse
-- becomes NULL (spark_*, TRY_CAST), never an aborted job.
-- The impression side is the build side of the join: it is the small one (a few percent).
SELECT b.BidID,
       spark_dayofweek(substr(b."Timestamp", 1, 4) || '-' || substr(b."Timestamp", 5, 2)
                       || '-' || substr(b."Timestamp", 7, 2)) AS dow,
       spark_int(substr(b."Timestamp", 9, 2)) AS hour,
       b.RegionID, b.CityID, b.Domain, b.AdvertiserID,
       b.UserAgent,
       b.AdExchange,
       TRY_CAST(b.AdSlotFloorPrice AS BIGINT) AS floor_price,
       TRY_CAST(b.BiddingPrice AS BIGINT) AS BiddingPrice,
       TRY_CAST(i.PayingPrice AS BIGINT) AS PayingPrice,
       CASE WHEN i.PayingPrice IS NOT NULL THEN 1 ELSE 0 END AS label
FROM imps_grouped i
RIGHT JOIN bids_grouped b ON i.BidID = b.BidID;

-- step: inference_requests
-- the original's request fields (its Thrift BidRequest), named as its clients send them
SELECT BidID AS "bidId", dow AS "dayOfWeek", hour AS "hour",
       RegionID AS "regionId", CityID AS "cityId", Domain AS "domainId",
       AdvertiserID AS "advertiserId", UserAgent AS "userAgent",
       BiddingPrice AS "biddingPrice",
       AdExchange AS "adExchange", floor_price AS "adSlotFloorPrice",
       label, PayingPrice
FROM transformed;

-- step: features
SELECT "dayOfWeek" AS dow,
       "hour" AS hour,
       encode('AdvertiserID', "advertiserId") AS "IndexAdvertiserID",
       encode('Domain', "domainId") AS "IndexDomain",
       encode('RegionID', "regionId") AS "IndexRegionID",
       encode('CityID', "cityId") AS "IndexCityID",
       device_type("userAgent") AS device_type_id,
       encode('AdExchange', "adExchange") AS "IndexAdExchange",
       "adSlotFloorPrice" AS floor_price
FROM inference_requests;
