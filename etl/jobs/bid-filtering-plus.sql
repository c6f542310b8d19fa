-- job: bid-filtering-plus
--
-- The kit's job (bid-filtering.sql: leak fixed) plus every signal a bid request carries that
-- can tell a winnable bid from a lost one: the exchange, the slot (size, area, visibility,
-- format), its floor price and the floor's share of the advertiser's bid, and the time as hour
-- of week. All are known when the request arrives, so the scorer computes them from the
-- request alone. Train and serve it with no Rust change:
--   rtb-etl run --job etl/jobs/bid-filtering-plus.sql ...; rtb-trainer train; rtb-scorer serve
--
-- param: split_seed = 42
-- param: train_fraction = 0.8
-- param: valid_fraction = 0.1
-- categorical: AdvertiserID, Domain, RegionID, CityID, AdExchange, AdSlotVisibility, AdSlotFormat
-- key: bidId
-- label: label
-- price: PayingPrice
-- the impressions (a few percent of the bids) are joined as one in-memory table that every
-- task probes, so the bids are not shuffled again by BidID for the join
-- set: datafusion.optimizer.repartition_joins = false

-- step: bids_grouped
SELECT BidID, "Timestamp", RegionID, CityID, Domain, AdvertiserID, UserAgent, BiddingPrice,
       AdExchange, AdSlotWidth, AdSlotHeight, AdSlotVisibility, AdSlotFormat, AdSlotFloorPrice
FROM bids
GROUP BY BidID, "Timestamp", RegionID, CityID, Domain, AdvertiserID, UserAgent, BiddingPrice,
         AdExchange, AdSlotWidth, AdSlotHeight, AdSlotVisibility, AdSlotFormat, AdSlotFloorPrice;

-- step: imps_grouped
SELECT BidID, BiddingPrice, PayingPrice, UserAgent
FROM imps
GROUP BY BidID, BiddingPrice, PayingPrice, UserAgent;

-- step: transformed
SELECT b.BidID,
       spark_dayofweek(substr(b."Timestamp", 1, 4) || '-' || substr(b."Timestamp", 5, 2)
                       || '-' || substr(b."Timestamp", 7, 2)) AS dow,
       spark_int(substr(b."Timestamp", 9, 2)) AS hour,
       b.RegionID, b.CityID, b.Domain, b.AdvertiserID,
       b.UserAgent,
       b.AdExchange, b.AdSlotVisibility, b.AdSlotFormat,
       TRY_CAST(b.AdSlotWidth AS BIGINT) AS AdSlotWidth,
       TRY_CAST(b.AdSlotHeight AS BIGINT) AS AdSlotHeight,
       TRY_CAST(b.AdSlotFloorPrice AS BIGINT) AS AdSlotFloorPrice,
       TRY_CAST(b.BiddingPrice AS BIGINT) AS BiddingPrice,
       TRY_CAST(i.PayingPrice AS BIGINT) AS PayingPrice,
       CASE WHEN i.PayingPrice IS NOT NULL THEN 1 ELSE 0 END AS label
FROM imps_grouped i
RIGHT JOIN bids_grouped b ON i.BidID = b.BidID;

-- step: inference_requests
SELECT BidID AS "bidId", dow AS "dayOfWeek", hour AS "hour",
       RegionID AS "regionId", CityID AS "cityId", Domain AS "domainId",
       AdvertiserID AS "advertiserId", UserAgent AS "userAgent",
       BiddingPrice AS "biddingPrice",
       AdExchange AS "adExchange",
       AdSlotWidth AS "adSlotWidth", AdSlotHeight AS "adSlotHeight",
       AdSlotVisibility AS "adSlotVisibility", AdSlotFormat AS "adSlotFormat",
       AdSlotFloorPrice AS "adSlotFloorPrice",
       label, PayingPrice
FROM transformed;

-- step: features
SELECT "dayOfWeek" AS dow,
       "hour" AS hour,
       ("dayOfWeek" - 1) * 24 + "hour" AS hour_of_week,
       encode('AdvertiserID', "advertiserId") AS "IndexAdvertiserID",
       encode('Domain', "domainId") AS "IndexDomain",
       encode('RegionID', "regionId") AS "IndexRegionID",
       encode('CityID', "cityId") AS "IndexCityID",
       device_type("userAgent") AS device_type_id,
       encode('AdExchange', "adExchange") AS "IndexAdExchange",
       encode('AdSlotVisibility', "adSlotVisibility") AS "IndexAdSlotVisibility",
       encode('AdSlotFormat', "adSlotFormat") AS "IndexAdSlotFormat",
       "adSlotWidth" AS slot_width,
       "adSlotHeight" AS slot_height,
       "adSlotWidth" * "adSlotHeight" AS slot_area,
       "adSlotFloorPrice" AS floor_price,
       CASE WHEN "biddingPrice" > 0 THEN CAST("adSlotFloorPrice" AS DOUBLE) / "biddingPrice" END
           AS floor_to_bid,
       CASE WHEN "adSlotFloorPrice" >= "biddingPrice" THEN 1 ELSE 0 END AS floor_above_bid
FROM inference_requests;
