#!/usr/bin/env python3
"""Baselines for the trainer: Python xgboost (the original kit's algorithm and parameters, as in
reference section 3) and Python lightgbm (rtb-trainer's defaults), trained on the same Parquet
splits of one committed ETL run with the same number of threads, early stopping on the valid
split, scored on the test split. Optionally runs rtb-trainer on the same run in the same session.

Prints one JSON document: per trainer, train time (dataset construction + boosting, the same span
rtb-trainer reports as training_time_ms; Parquet reading is excluded everywhere), the best
iteration, and test ROC AUC. With --repeats N each trainer runs N times; times are listed and
their median reported, AUCs must not differ between runs (seeded, deterministic).

Usage:
  bench/setup.sh   # once: pins below in bench/setup.sh
  python3 bench/train_baselines.py --run data/demo/features --threads 2 --repeats 3 \
      --rtb-trainer "$CARGO_TARGET_DIR/release/rtb-trainer" --out bench-train.json
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from urllib.parse import unquote, urlparse

import numpy as np
import pyarrow.parquet as pq

LABEL = "label"
FEATURES = ["dow", "hour", "IndexAdvertiserID", "IndexDomain", "IndexRegionID", "IndexCityID",
            "device_type_id"]

# reference section 3: SageMaker built-in XGBoost
XGB_PARAMS = {
    "objective": "binary:logistic",
    "max_depth": 5,
    "eta": 0.2,
    "gamma": 4,
    "min_child_weight": 6,
    "subsample": 0.8,
    "tree_method": "hist",
    "eval_metric": "logloss",
    "seed": 42,
}
XGB_ROUNDS, XGB_PATIENCE = 50, 20

# rtb-trainer's defaults (trainer/src/params.rs), the same LightGBM core (4.7)
LGB_PARAMS = {
    "objective": "binary",
    "metric": "binary_logloss",
    "learning_rate": 0.2,
    "max_depth": 5,
    "num_leaves": 32,
    "min_sum_hessian_in_leaf": 6.0,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "min_gain_to_split": 4.0,
    "lambda_l2": 1.0,
    "seed": 42,
    "deterministic": True,
    "force_row_wise": True,
    "verbosity": -1,
}
LGB_ROUNDS, LGB_PATIENCE = 50, 20


def local(url):
    """A file:// URL or a path, as a local path."""
    if url.startswith("file://"):
        return unquote(urlparse(url).path)
    if "://" in url:
        sys.exit(f"{url}: only local runs are supported; copy the run to disk first")
    return url


def find_manifest(run):
    """The manifest of a run folder, a manifest.json, or an ETL output folder (latest.json)."""
    run = local(run)
    candidates = [run] if run.endswith(".json") else [
        os.path.join(run, "manifest.json"), os.path.join(run, "latest.json")]
    for path in candidates:
        if os.path.isfile(path):
            with open(path) as f:
                doc = json.load(f)
            if "outputs" not in doc and "manifest" in doc:
                with open(local(doc["manifest"])) as f:
                    doc = json.load(f)
            return doc
    sys.exit(f"no committed ETL run at {run}")


def read_split(url):
    table = pq.read_table(local(url), columns=[LABEL] + FEATURES)
    x = np.column_stack([table.column(c).to_numpy().astype(np.float64) for c in FEATURES])
    y = table.column(LABEL).to_numpy().astype(np.float64)
    return x, y


def roc_auc(scores, labels):
    """Probability that a random win outscores a random loss, ties counted half."""
    order = np.argsort(scores, kind="mergesort")
    s, y = scores[order], labels[order]
    _, first, counts = np.unique(s, return_index=True, return_counts=True)
    mid_ranks = np.repeat(first + (counts + 1) / 2.0, counts)  # 1-based average ranks
    pos = y.sum()
    neg = len(y) - pos
    return float((mid_ranks[y > 0.5].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def run_xgboost(data, threads):
    import xgboost as xgb
    (xt, yt), (xv, yv), (xs, ys) = data
    params = dict(XGB_PARAMS, nthread=threads)
    t0 = time.perf_counter()
    dtrain = xgb.DMatrix(xt.astype(np.float32), label=yt, nthread=threads)
    dvalid = xgb.DMatrix(xv.astype(np.float32), label=yv, nthread=threads)
    booster = xgb.train(params, dtrain, num_boost_round=XGB_ROUNDS,
                        evals=[(dvalid, "valid")], early_stopping_rounds=XGB_PATIENCE,
                        verbose_eval=False)
    train_s = time.perf_counter() - t0
    best = booster.best_iteration + 1
    scores = booster.predict(xgb.DMatrix(xs.astype(np.float32), nthread=threads),
                             iteration_range=(0, best))
    return {"train_s": train_s, "best_iteration": best,
            "trees_trained": booster.num_boosted_rounds(), "test_auc": roc_auc(scores, ys)}


def run_lightgbm(data, threads):
    import lightgbm as lgb
    (xt, yt), (xv, yv), (xs, ys) = data
    params = dict(LGB_PARAMS, num_threads=threads)
    t0 = time.perf_counter()
    dtrain = lgb.Dataset(xt, label=yt, free_raw_data=False)
    dvalid = lgb.Dataset(xv, label=yv, reference=dtrain, free_raw_data=False)
    booster = lgb.train(params, dtrain, num_boost_round=LGB_ROUNDS, valid_sets=[dvalid],
                        callbacks=[lgb.early_stopping(LGB_PATIENCE, verbose=False)])
    train_s = time.perf_counter() - t0
    best = booster.best_iteration or booster.current_iteration()
    scores = booster.predict(xs, num_iteration=best, num_threads=threads)
    return {"train_s": train_s, "best_iteration": best,
            "trees_trained": booster.current_iteration(), "test_auc": roc_auc(scores, ys)}


def run_rtb_trainer(binary, run, threads):
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [binary, "train", "--run", run, "--out", tmp, "--threads", str(threads),
               "--parameter-store", os.path.join(tmp, "parameter-store.json")]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall_s = time.perf_counter() - t0
        if done.returncode != 0:
            sys.exit(f"rtb-trainer failed:\n{done.stderr}")
        with open(os.path.join(tmp, "parameter-store.json")) as f:
            pointer = json.load(f)["/aik/model/manifest"]
        with open(local(pointer)) as f:
            m = json.load(f)
    return {"train_s": m["training_time_ms"] / 1000.0, "best_iteration": m["best_iteration"],
            "trees_trained": m["trees_trained"], "test_auc": m["metrics"]["roc_auc"],
            "process_wall_s": wall_s, "read_s": m["durations_ms"]["read"] / 1000.0}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True,
                    help="ETL run folder, its manifest.json, or an ETL output folder")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--trainers", default="xgboost,lightgbm",
                    help="comma-separated: xgboost, lightgbm (rtb-trainer via --rtb-trainer)")
    ap.add_argument("--rtb-trainer", help="path of the rtb-trainer binary to run as well")
    ap.add_argument("--out", help="also write the JSON here")
    a = ap.parse_args()

    manifest = find_manifest(a.run)
    t0 = time.perf_counter()
    data = [read_split(manifest["outputs"][s]) for s in ("train", "valid", "test")]
    read_s = time.perf_counter() - t0

    runners = {"xgboost": run_xgboost, "lightgbm": run_lightgbm}
    results = {}
    for name in [t.strip() for t in a.trainers.split(",") if t.strip()]:
        results[name] = [runners[name](data, a.threads) for _ in range(a.repeats)]
    if a.rtb_trainer:
        run = a.run if not a.run.endswith(".json") else os.path.dirname(local(a.run))
        results["rtb-trainer"] = [run_rtb_trainer(a.rtb_trainer, run, a.threads)
                                  for _ in range(a.repeats)]

    versions = {"numpy": np.__version__}
    for module in ("xgboost", "lightgbm"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            pass
    summary = {
        name: {
            "train_s_median": statistics.median(r["train_s"] for r in runs),
            "test_auc": runs[0]["test_auc"],
            "auc_identical_across_runs": len({round(r["test_auc"], 12) for r in runs}) == 1,
            "best_iteration": runs[0]["best_iteration"],
            "runs": runs,
        }
        for name, runs in results.items()
    }
    doc = {
        "etl_run_id": manifest["run_id"],
        "rows": {s: int(len(d[1])) for s, d in zip(("train", "valid", "test"), data)},
        "threads": a.threads,
        "repeats": a.repeats,
        "python_parquet_read_s": read_s,
        "versions": versions,
        "xgboost_params": dict(XGB_PARAMS, num_boost_round=XGB_ROUNDS,
                               early_stopping_rounds=XGB_PATIENCE),
        "lightgbm_params": dict(LGB_PARAMS, num_boost_round=LGB_ROUNDS,
                                early_stopping_rounds=LGB_PATIENCE),
        "results": summary,
    }
    text = json.dumps(doc, indent=2)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
