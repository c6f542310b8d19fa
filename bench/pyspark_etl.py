#!/usr/bin/env python3
"""Baseline: the original kit's feature ETL (PySpark), run on local[2].

Follows /work/shared/reference/original-pipeline.md section 2. Deviations, each noted inline:
UserAgent and BiddingPrice come from the bid log (as in our Rust job, no target leak); a user
agent woothee cannot place gets 6, not a random 0..5; no orderBy(rand()) before randomSplit;
the joined rows are cached since five outputs are written from them.
"""
import argparse
import time

T0 = time.time()

import woothee
from pyspark.ml import Pipeline
from pyspark.ml.feature import StringIndexer
from pyspark.sql import SparkSession, functions as F
from pyspark.sql.types import IntegerType, StringType, StructField, StructType

BID_COLS = ("BidID Timestamp iPinYouID UserAgent IP RegionID CityID AdExchange Domain URL "
            "AnonymousURL AdSlotID AdSlotWidth AdSlotHeight AdSlotVisibility AdSlotFormat "
            "AdSlotFloorPrice CreativeID BiddingPrice AdvertiserID UserProfileIDs").split()
IMP_COLS = ("BidID Timestamp LogType iPinYouID UserAgent IP RegionID CityID AdExchange Domain "
            "URL AnonymousURL AdSlotID AdSlotWidth AdSlotHeight AdSlotVisibility AdSlotFormat "
            "AdSlotFloorPrice CreativeID BiddingPrice PayingPrice LandingPageURL AdvertiserID "
            "UserProfileIDs").split()
CATEGORICAL = ["AdvertiserID", "Domain", "RegionID", "CityID"]
DEVICE_IDS = {"smartphone": 0, "mobilephone": 1, "appliance": 2, "pc": 3, "crawler": 4, "misc": 5}


@F.udf(IntegerType())
def device_type_id(ua):
    # The original imputes a random 0..5 for UNKNOWN; we use 6 like the Rust job and the
    # original's load client. Same cost either way.
    if not ua:
        return 6
    return DEVICE_IDS.get(woothee.parse(ua.strip()).get("category"), 6)


def read_tsv(spark, path, cols):
    schema = StructType([StructField(c, StringType()) for c in cols])
    # quote="" turns quoting off: user agents and URLs may hold '"'.
    return spark.read.csv(path, schema=schema, sep="\t", header=False, quote="")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bids", required=True)
    ap.add_argument("--imps", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--driver-memory", default="4g")
    ap.add_argument("--shuffle-partitions", default="8")  # 200 (Spark's default) is slow on 2 cores
    a = ap.parse_args()

    spark = (SparkSession.builder.master("local[2]").appName("aik-etl-baseline")
             .config("spark.driver.memory", a.driver_memory)
             .config("spark.sql.shuffle.partitions", a.shuffle_partitions)
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("WARN")
    read_tsv(spark, a.bids, BID_COLS).createOrReplaceTempView("bids")
    read_tsv(spark, a.imps, IMP_COLS).createOrReplaceTempView("imps")

    bids = spark.sql("""
        SELECT BidID, dayofweek(to_date(substring(Timestamp, 1, 8), 'yyyyMMdd')) AS dow,
               substring(Timestamp, 9, 2) AS hour, RegionID, CityID, Domain, AdvertiserID,
               UserAgent, BiddingPrice
        FROM bids
        GROUP BY BidID, Timestamp, RegionID, CityID, Domain, AdvertiserID, UserAgent, BiddingPrice""")
    imps = spark.sql("""
        SELECT BidID, BiddingPrice, PayingPrice, UserAgent FROM imps
        GROUP BY BidID, BiddingPrice, PayingPrice, UserAgent""")
    joined = (bids.join(imps.select("BidID", "PayingPrice"), on="BidID", how="left")
              .persist())

    # The joined, unencoded rows: "transformed" Parquet and the inference JSON lines.
    joined.write.mode("overwrite").parquet(f"{a.out}/transformed")
    joined.write.mode("overwrite").json(f"{a.out}/inference")

    indexers = [StringIndexer(inputCol=c, outputCol=f"Index{c}", handleInvalid="keep")
                for c in CATEGORICAL]
    model = Pipeline(stages=indexers).fit(joined)
    final = (model.transform(joined)
             .withColumn("label", F.col("PayingPrice").isNotNull().cast("int"))
             .withColumn("hour", F.col("hour").cast("int"))
             .withColumn("device_type_id", device_type_id("UserAgent"))
             .select("label", "dow", "hour", *[f"Index{c}" for c in CATEGORICAL],
                     "device_type_id")
             .persist())  # randomSplit scans its input once per split

    for name, part in zip(["train", "valid", "test"], final.randomSplit([0.8, 0.1, 0.1], seed=42)):
        part.write.mode("overwrite").parquet(f"{a.out}/{name}")
    spark.stop()
    print(f"pyspark_etl wall_seconds={time.time() - T0:.2f}")


if __name__ == "__main__":
    main()
