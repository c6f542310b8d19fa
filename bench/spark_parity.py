#!/usr/bin/env python3
"""The original kit's feature ETL (notebook 2_OpenRTB_EMR), on PySpark 3.5, for comparison.

usage: spark_parity.py RAW_DIR OUT.json [BID_GLOB] [IMP_GLOB]

Runs the notebook's own steps on the bid and impression logs under RAW_DIR (default globs
`bid.*`, `imp.*`), in local[2]: its read options and schemas, its two GROUP BY queries, its left
join, its StringIndexer pipeline (handleInvalid = keep) fitted on the joined rows, its hour cast
and label, and woothee 1.10.1 for the device type. The random device type it imputes for an
unknown agent is left out: OUT records the agent's category, so a comparison is exact.

OUT.json: {"spark": version,
           "vocabulary": {column: [labels in index order]},
           "rows": [[BidID, dow, hour, RegionID, CityID, Domain, AdvertiserID, BiddingPrice,
                     PayingPrice, UserAgent, label, IndexAdvertiserID, IndexDomain,
                     IndexRegionID, IndexCityID], ...],
           "device_types": [[user agent, device type id or null when unknown], ...]}
"""
import json
import os
import sys

import woothee
from pyspark.ml import Pipeline
from pyspark.ml.feature import StringIndexer
from pyspark.sql import SparkSession
from pyspark.sql.functions import col, when
from pyspark.sql.types import IntegerType

BID_COLUMNS = [
    "BidID", "Timestamp", "iPinYouID", "UserAgent", "IP", "RegionID", "CityID", "AdExchange",
    "Domain", "URL", "AnonymousURL", "AdSlotID", "AdSlotWidth", "AdSlotHeight",
    "AdSlotVisibility", "AdSlotFormat", "AdSlotFloorPrice", "CreativeID", "BiddingPrice",
    "AdvertiserID", "UserProfileIDs",
]
IMP_COLUMNS = [
    "BidID", "Timestamp", "LogType", "iPinYouID", "UserAgent", "IP", "RegionID", "CityID",
    "AdExchange", "Domain", "URL", "AnonymousURL", "AdSlotID", "AdSlotWidth", "AdSlotHeight",
    "AdSlotVisibility", "AdSlotFormat", "AdSlotFloorPrice", "CreativeID", "BiddingPrice",
    "PayingPrice", "LandingPageURL", "AdvertiserID", "UserProfileIDs",
]
CATEGORICAL = ["AdvertiserID", "Domain", "RegionID", "CityID"]
CATEGORY_IDS = {"smartphone": 0, "mobilephone": 1, "appliance": 2, "pc": 3, "crawler": 4, "misc": 5}


def schema(columns, longs):
    # the notebook's loop: backquoted names, `long` for the listed columns, else `string`
    return ", ".join(f"`{c}` {'long' if c in longs else 'string'}" for c in columns)


def main(raw, out, bid_glob="bid.*", imp_glob="imp.*"):
    assert woothee.__version__ == "1.10.1", f"woothee {woothee.__version__}, want 1.10.1"
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    assert spark.version.startswith("3.5."), f"expected PySpark 3.5, found {spark.version}"

    bid_df = spark.read.option("delimiter", "\t").format("csv").load(
        os.path.join(raw, bid_glob), inferSchema=False, header=False,
        schema=schema(BID_COLUMNS, set()))
    bid_df.createOrReplaceTempView("bid_table")
    df1 = spark.sql("SELECT \
        BidID, dayofweek(concat(substring(Timestamp, 1, 4), '-', substring(Timestamp, 5, 2), '-', substring(Timestamp, 7, 2))) AS dow, \
        substring(Timestamp, 9, 2) AS hour, RegionID, CityID, Domain, AdvertiserID \
        FROM bid_table GROUP BY BidID, Timestamp, RegionID, CityID, Domain, AdvertiserID")

    imp_df = spark.read.option("delimiter", "\t").format("csv").load(
        os.path.join(raw, imp_glob), inferSchema=False, header=False,
        schema=schema(IMP_COLUMNS, {"BiddingPrice", "PayingPrice"}))
    imp_df.createOrReplaceTempView("imp_table")
    df2 = spark.sql("SELECT \
        BidID, BiddingPrice, PayingPrice, UserAgent \
        FROM imp_table GROUP BY BidID, BiddingPrice, PayingPrice, UserAgent")

    df = df1.join(df2, "BidID", "left").cache()

    indexers = [StringIndexer(inputCol=c, outputCol="Index" + c) for c in CATEGORICAL]
    for indexer in indexers:
        indexer.setHandleInvalid("keep")
    model = Pipeline(stages=indexers).fit(df)
    vocabulary = {c: list(stage.labelsArray[0]) for c, stage in zip(CATEGORICAL, model.stages)}

    encoded = (
        model.transform(df)
        .withColumn("hour", col("hour").cast(IntegerType()))
        .withColumn("label", when(col("PayingPrice").isNull(), 0).otherwise(1))
    )
    rows = [
        [r.BidID, r.dow, r.hour, r.RegionID, r.CityID, r.Domain, r.AdvertiserID,
         r.BiddingPrice, r.PayingPrice, r.UserAgent, r.label,
         int(r.IndexAdvertiserID), int(r.IndexDomain), int(r.IndexRegionID),
         int(r.IndexCityID)]
        for r in encoded.collect()
    ]

    # the notebook: a null agent becomes "", then woothee's category; unknown stays null here
    agents = {r.UserAgent or "" for r in df.select("UserAgent").distinct().collect()}
    device_types = sorted(
        [ua, CATEGORY_IDS.get(woothee.parse(ua)["category"])] for ua in agents
    )
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"spark": spark.version, "vocabulary": vocabulary, "rows": rows,
                   "device_types": device_types}, f)
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:])
