#!/usr/bin/env python3
"""Baseline: the original kit's feature ETL as DuckDB SQL, on 2 threads.

Same logic as bench/pyspark_etl.py (reference section 2), with two approximations, noted inline:
device type is a SQL CASE on the user agent, not woothee; the 80/10/10 split uses hash(BidID)
instead of Spark's randomSplit.
"""
import argparse
import os
import time

T0 = time.time()
import duckdb

BID_COLS = ("BidID Timestamp iPinYouID UserAgent IP RegionID CityID AdExchange Domain URL "
            "AnonymousURL AdSlotID AdSlotWidth AdSlotHeight AdSlotVisibility AdSlotFormat "
            "AdSlotFloorPrice CreativeID BiddingPrice AdvertiserID UserProfileIDs").split()
IMP_COLS = ("BidID Timestamp LogType iPinYouID UserAgent IP RegionID CityID AdExchange Domain "
            "URL AnonymousURL AdSlotID AdSlotWidth AdSlotHeight AdSlotVisibility AdSlotFormat "
            "AdSlotFloorPrice CreativeID BiddingPrice PayingPrice LandingPageURL AdvertiserID "
            "UserProfileIDs").split()
CATEGORICAL = ["AdvertiserID", "Domain", "RegionID", "CityID"]

# APPROXIMATION of woothee's categories (smartphone 0, pc 3, crawler 4, misc 5; 6 = unknown
# or missing, as in the Rust job). Mobilephone (1) and appliance (2) are not detected.
DEVICE_CASE = """CASE
    WHEN UserAgent IS NULL OR trim(UserAgent) IN ('', '-', 'null') THEN 6
    WHEN UserAgent ILIKE '%spider%' OR UserAgent ILIKE '%bot%' THEN 4
    WHEN UserAgent LIKE '%iPhone%' OR UserAgent LIKE '%iPad%' OR UserAgent LIKE '%Android%' THEN 0
    WHEN UserAgent LIKE '%Windows%' OR UserAgent LIKE '%Macintosh%' OR UserAgent LIKE '%Linux%' THEN 3
    ELSE 5 END"""


def read_tsv(path, cols):
    columns = "{" + ", ".join(f"'{c}': 'VARCHAR'" for c in cols) + "}"
    # quote/escape '' turn quoting off: user agents and URLs may hold '"'.
    return (f"read_csv('{path}', delim='\\t', header=false, quote='', escape='', "
            f"auto_detect=false, columns={columns})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bids", required=True)
    ap.add_argument("--imps", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--memory-limit", help="e.g. 2GB")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.execute("SET preserve_insertion_order = false")
    if a.memory_limit:
        con.execute(f"SET memory_limit = '{a.memory_limit}'")

    # dayofweek: DuckDB 0 = Sunday, Spark 1 = Sunday, hence + 1.
    con.execute(f"""
        CREATE TEMP TABLE joined AS
        WITH b AS (
            SELECT BidID, dayofweek(strptime(substr(Timestamp, 1, 8), '%Y%m%d')) + 1 AS dow,
                   substr(Timestamp, 9, 2) AS hour, RegionID, CityID, Domain, AdvertiserID,
                   UserAgent, BiddingPrice
            FROM {read_tsv(a.bids, BID_COLS)}
            GROUP BY BidID, Timestamp, RegionID, CityID, Domain, AdvertiserID, UserAgent,
                     BiddingPrice),
        i AS (
            SELECT BidID, BiddingPrice, PayingPrice, UserAgent FROM {read_tsv(a.imps, IMP_COLS)}
            GROUP BY BidID, BiddingPrice, PayingPrice, UserAgent)
        SELECT b.*, i.PayingPrice FROM b LEFT JOIN i USING (BidID)""")

    con.execute(f"COPY joined TO '{a.out}/transformed.parquet' (FORMAT PARQUET)")
    con.execute(f"COPY joined TO '{a.out}/inference.json' (FORMAT JSON)")  # JSON lines

    # StringIndexer(handleInvalid="keep"): count desc, label asc; NULL/unseen -> number of labels.
    for c in CATEGORICAL:
        con.execute(f"""CREATE TEMP TABLE idx_{c} AS
            SELECT {c} AS value, row_number() OVER (ORDER BY count(*) DESC, {c}) - 1 AS idx
            FROM joined WHERE {c} IS NOT NULL GROUP BY {c}""")
    index_cols = ", ".join(
        f"coalesce(idx_{c}.idx, (SELECT count(*) FROM idx_{c})) AS Index{c}" for c in CATEGORICAL)
    index_joins = " ".join(
        f"LEFT JOIN idx_{c} ON joined.{c} = idx_{c}.value" for c in CATEGORICAL)
    con.execute(f"""
        CREATE TEMP TABLE final AS
        SELECT (PayingPrice IS NOT NULL)::INT AS label, dow, hour::INT AS hour, {index_cols},
               {DEVICE_CASE} AS device_type_id,
               hash(BidID) % 10 AS bucket  -- split: 0-7 train, 8 valid, 9 test
        FROM joined {index_joins}""")
    for name, cond in [("train", "bucket < 8"), ("valid", "bucket = 8"), ("test", "bucket = 9")]:
        con.execute(f"COPY (SELECT * EXCLUDE (bucket) FROM final WHERE {cond}) "
                    f"TO '{a.out}/{name}.parquet' (FORMAT PARQUET)")
    print(f"duckdb_etl wall_seconds={time.time() - T0:.2f}")


if __name__ == "__main__":
    main()
