#!/usr/bin/env python3
"""What PySpark 3.5 itself makes of odd input, for the `spark_semantics` test to compare with.

usage: spark_semantics.py DIR
  DIR/lines.tsv    raw bytes, read as the original kit reads a log: spark.read.csv with TAB,
                   no header, an explicit schema (`a string, b long, c string, d string,
                   e string`), PERMISSIVE
  DIR/values.json  a JSON list of strings, each cast as the original's SQL casts: CAST(s AS INT)
                   (the hour), dayofweek(s) (the day of week, via Spark's string-to-date cast)
writes DIR/spark.json: {"rows": [[a, b, c, d, e], ...] in file order,
                        "casts": [[int, dayofweek], ...] in list order}
"""
import json
import os
import sys

from pyspark.sql import SparkSession
from pyspark.sql.types import StringType, StructField, StructType


def main(folder):
    spark = (
        SparkSession.builder.master("local[1]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    assert spark.version.startswith("3.5."), f"expected PySpark 3.5, found {spark.version}"
    df = spark.read.option("delimiter", "\t").format("csv").load(
        os.path.join(folder, "lines.tsv"),
        inferSchema=False,
        header=False,
        schema="a string, b long, c string, d string, e string",
    )
    rows = [[r.a, r.b, r.c, r.d, r.e] for r in df.collect()]
    with open(os.path.join(folder, "values.json"), encoding="utf-8") as f:
        values = json.load(f)
    schema = StructType([StructField("i", StringType()), StructField("s", StringType())])
    frame = spark.createDataFrame([(str(n), v) for n, v in enumerate(values)], schema)
    frame.createOrReplaceTempView("v")
    casts = {}
    for r in spark.sql("SELECT i, CAST(s AS INT) AS h, dayofweek(s) AS d FROM v").collect():
        casts[int(r.i)] = [r.h, r.d]
    out = {"rows": rows, "casts": [casts[n] for n in range(len(values))]}
    with open(os.path.join(folder, "spark.json"), "w", encoding="utf-8") as f:
        json.dump(out, f)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1])
