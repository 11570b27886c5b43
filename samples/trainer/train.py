#!/usr/bin/env python3
"""Fraud-detection trainer: the container the control plane launches for `fraud-detection`.

It reads the train/test split that data-arrival wrote, fits a scikit-learn pipeline, logs params,
metrics and the model to MLflow, tags the run with the control plane's run id, and registers a
model version. The environment contract is documented in README.md next to this file.

Exit codes (match them in the Job's podFailurePolicy):
  0   success
  42  permanent failure: bad configuration or bad data; retrying cannot help (FailJob)
  1   anything else (MLflow or S3 unreachable, ...); worth a retry (counts toward backoffLimit)
"""
from __future__ import annotations

import io
import json
import os
import sys
import time
import traceback
import urllib.parse
import warnings
from pathlib import Path

EXIT_PERMANENT = 42

REQUIRED_ENV = (
    "MLOPS_RUN_ID",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT_NAME",
    "MODEL_NAME",
    "TRAIN_URI",
    "TEST_URI",
    "DATASET_VERSION",
)

METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
RUN_ID_TAG = "mlops.run_id"
DATASET_VERSION_TAG = "mlops.dataset_version"
GIT_COMMIT_TAG = "mlops.git_commit"

# Hyperparameters (a change here, pushed to the trainer's repository, rebuilds and retrains).
REGULARIZATION_C = 1.0  # LogisticRegression's inverse regularization strength


class PermanentError(Exception):
    """A failure that a retry cannot fix (configuration or data)."""


def log(msg: str) -> None:
    print(f"[train] {msg}", file=sys.stderr, flush=True)


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def read_config(env=os.environ) -> dict:
    missing = [k for k in REQUIRED_ENV if not env.get(k, "").strip()]
    if missing:
        raise PermanentError(
            "missing required environment variable(s): " + ", ".join(missing)
            + " (required: " + ", ".join(REQUIRED_ENV) + ")"
        )
    cfg = {k: env[k].strip() for k in REQUIRED_ENV}
    cfg["LABEL_COLUMN"] = env.get("LABEL_COLUMN", "").strip() or "is_fraud"
    drop = env.get("DROP_COLUMNS")
    drop = "transaction_id" if drop is None else drop
    cfg["DROP_COLUMNS"] = [c.strip() for c in drop.split(",") if c.strip()]
    cfg["SKIP_REGISTER"] = truthy(env.get("MLOPS_SKIP_REGISTER"))
    seed = env.get("SEED", "").strip() or "42"
    if not seed.isdigit():
        raise PermanentError(f"SEED must be a non-negative integer, got {seed!r}")
    cfg["SEED"] = int(seed)
    class_weight = env.get("CLASS_WEIGHT", "").strip() or None
    if class_weight not in (None, "balanced"):
        raise PermanentError(f"CLASS_WEIGHT must be empty or 'balanced', got {class_weight!r}")
    cfg["CLASS_WEIGHT"] = class_weight
    # Set by the control plane when a code push started the run: the trainer's source commit.
    cfg["GIT_COMMIT"] = env.get("MLOPS_GIT_COMMIT", "").strip() or None
    return cfg


def run_tags(cfg: dict, dataset_version: str) -> dict:
    tags = {RUN_ID_TAG: cfg["MLOPS_RUN_ID"], DATASET_VERSION_TAG: dataset_version}
    if cfg.get("GIT_COMMIT"):
        tags[GIT_COMMIT_TAG] = cfg["GIT_COMMIT"]
    return tags


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

def _format_of(uri: str) -> str:
    path = urllib.parse.urlparse(uri).path if "://" in uri else uri
    lower = path.lower()
    for suffix in (".gz", ".bz2", ".zst", ".xz"):
        if lower.endswith(suffix) and lower[: -len(suffix)].endswith(".csv"):
            return "csv"
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith(".parquet") or lower.endswith(".pq"):
        return "parquet"
    raise PermanentError(f"cannot tell the format of {uri!r}: expected a .csv or .parquet name")


def _open(uri: str):
    """Returns something pandas can read: a local path or an in-memory buffer."""
    if "://" not in uri:
        parsed = None
    else:
        parsed = urllib.parse.urlparse(uri)
    if parsed is not None and parsed.scheme == "s3":
        import boto3  # honours AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 (moto) and the usual credentials
        from botocore.exceptions import ClientError

        bucket, key = parsed.netloc, parsed.path.lstrip("/")
        if not bucket or not key:
            raise PermanentError(f"bad S3 URI {uri!r}: expected s3://bucket/key")
        try:
            body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in {"NoSuchKey", "NoSuchBucket", "404", "AccessDenied", "403"}:
                raise PermanentError(f"cannot read {uri}: {code}") from e
            raise
        return io.BytesIO(body), key
    if parsed is None:
        path = uri
    elif parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise PermanentError(f"file URI with a host is not supported: {uri!r} (use file:///abs/path)")
        path = urllib.parse.unquote(parsed.path)
    else:
        raise PermanentError(f"unsupported URI scheme {parsed.scheme!r} in {uri!r} (use s3://, file:// or a path)")
    if not Path(path).is_file():
        raise PermanentError(f"no such file: {path} (from {uri})")
    return path, path


def load_frame(uri: str):
    import pandas as pd

    fmt = _format_of(uri)
    source, name = _open(uri)
    try:
        if fmt == "csv":
            compression = "infer" if isinstance(source, str) else _compression_of(name)
            return pd.read_csv(source, compression=compression)
        try:
            import pyarrow  # noqa: F401
        except ImportError as e:
            raise PermanentError(f"{uri} is parquet but pyarrow is not installed") from e
        return pd.read_parquet(source)
    except PermanentError:
        raise
    except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise PermanentError(f"cannot parse {uri} as {fmt}: {e}") from e


def _compression_of(name: str):
    for suffix, comp in ((".gz", "gzip"), (".bz2", "bz2"), (".zst", "zstd"), (".xz", "xz")):
        if name.lower().endswith(suffix):
            return comp
    return None


def split_xy(df, label: str, drop: list[str], uri: str):
    import pandas as pd

    if label not in df.columns:
        raise PermanentError(f"{uri}: label column {label!r} not found (columns: {', '.join(map(str, df.columns))})")
    unlabeled = int(df[label].isna().sum())
    if unlabeled:
        # data-arrival drops these; a hand-made split may still hold some.
        log(f"{uri}: dropping {unlabeled} row(s) with an empty {label!r}")
        df = df[df[label].notna()]
    if df.empty:
        raise PermanentError(f"{uri}: no labelled rows")
    y = df[label]
    if pd.api.types.is_bool_dtype(y):
        y = y.astype("int64")
    elif pd.api.types.is_float_dtype(y) and (y == y.round()).all():
        y = y.astype("int64")  # 0.0/1.0 read back from a CSV that had empty cells
    values = set(y.unique().tolist())
    if not values <= {0, 1}:
        shown = ", ".join(sorted(map(repr, values))[:10])
        raise PermanentError(f"{uri}: label column {label!r} must be binary 0/1, found {shown}")
    X = df.drop(columns=[label] + [c for c in drop if c in df.columns])
    if X.shape[1] == 0:
        raise PermanentError(f"{uri}: no feature columns left after dropping {drop} and the label")
    # Booleans and integers become doubles: the logged signature then accepts a request whose
    # integer column has a missing value (JSON null), which an int64 schema would refuse.
    for col in X.columns:
        if pd.api.types.is_bool_dtype(X[col]) or pd.api.types.is_integer_dtype(X[col]):
            X[col] = X[col].astype("float64")
    return X, y


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------

def build_pipeline(X, seed: int, class_weight: str | None):
    """One-hot for string columns; numerics imputed (median), arcsinh-compressed (amounts and
    distances are heavy-tailed; arcsinh is log-like but defined for every real) and scaled; then a
    logistic regression behind a fixed decision threshold, which `fit_pipeline` tunes for F1 by
    cross-validation (fraud is ~2 % of rows, so 0.5 is far from the best cut)."""
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import FixedThresholdClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    numeric = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c])]
    categorical = [c for c in X.columns if c not in numeric]
    numeric_steps = Pipeline([
        ("impute", SimpleImputer(strategy="median")),
        ("arcsinh", FunctionTransformer(np.arcsinh, feature_names_out="one-to-one")),
        ("scale", StandardScaler()),
    ])
    categorical_steps = Pipeline([
        ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
    ])
    pre = ColumnTransformer(
        [("categorical", categorical_steps, categorical), ("numeric", numeric_steps, numeric)],
        verbose_feature_names_out=False,
    )
    params = {
        "estimator": "LogisticRegression",
        "C": REGULARIZATION_C,
        "class_weight": class_weight,
        "max_iter": 2000,
        "threshold_scoring": "f1",
        "threshold_cv": 5,
        "random_state": seed,
    }
    lr = LogisticRegression(C=params["C"], class_weight=class_weight, max_iter=params["max_iter"])
    model = FixedThresholdClassifier(lr, threshold=0.5, response_method="predict_proba")
    return Pipeline([("preprocess", pre), ("model", model)]), params, numeric, categorical


def fit_pipeline(pipe, params: dict, X, y) -> float:
    """Tunes the decision threshold for F1 with cross-validation on the training split, then fits
    the final pipeline with it. Returns the threshold. (The tuned wrapper itself is not what gets
    logged: it carries scorer objects that skops refuses to load.)"""
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, TunedThresholdClassifierCV
    from sklearn.pipeline import Pipeline

    probe = Pipeline([("preprocess", clone(pipe.named_steps["preprocess"])),
                      ("model", clone(pipe.named_steps["model"].estimator))])
    folds = min(params["threshold_cv"], int(y.value_counts().min()))
    if folds >= 2:
        cv = StratifiedKFold(folds, shuffle=True, random_state=params["random_state"])
        tuner = TunedThresholdClassifierCV(probe, scoring=params["threshold_scoring"], cv=cv)
        threshold = float(tuner.fit(X, y).best_threshold_)
    else:
        log("too few positives to tune the threshold: using 0.5")
        threshold = 0.5
    pipe.set_params(model__threshold=threshold)
    pipe.fit(X, y)
    return threshold


def evaluate(pipe, X, y) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    pred = pipe.predict(X)
    metrics = {
        "accuracy": accuracy_score(y, pred),
        "precision": precision_score(y, pred, zero_division=0),
        "recall": recall_score(y, pred, zero_division=0),
        "f1": f1_score(y, pred, zero_division=0),
    }
    if y.nunique() == 2:
        metrics["roc_auc"] = roc_auc_score(y, pipe.predict_proba(X)[:, 1])
    else:
        log("test split has a single class: roc_auc is undefined and not logged")
    return {k: float(v) for k, v in metrics.items()}


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

def connect_mlflow(cfg: dict):
    # stdout carries only the result line; no usage telemetry from a training pod.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
    warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")  # the 0/1 output
    import mlflow

    mlflow.set_tracking_uri(cfg["MLFLOW_TRACKING_URI"])
    return mlflow.set_experiment(cfg["MLFLOW_EXPERIMENT_NAME"])


def find_finished_run(cfg: dict, experiment_id: str):
    """A retried pod (spot interruption, node drain) must not log a second run for the same
    control-plane run id: returns the newest FINISHED run tagged with it, if any."""
    import mlflow

    runs = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string=f"tags.`{RUN_ID_TAG}` = '{cfg['MLOPS_RUN_ID']}' AND attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return runs[0] if runs else None


def existing_version(cfg: dict):
    from mlflow import MlflowClient

    found = MlflowClient().search_model_versions(
        f"name = '{cfg['MODEL_NAME']}' AND tags.`{RUN_ID_TAG}` = '{cfg['MLOPS_RUN_ID']}'"
    )
    return max(found, key=lambda mv: int(mv.version)) if found else None


def fit_and_log(cfg: dict, experiment_id: str) -> dict:
    import mlflow
    from mlflow.models import infer_signature

    t0 = time.monotonic()
    train_df = load_frame(cfg["TRAIN_URI"])
    test_df = load_frame(cfg["TEST_URI"])
    X_train, y_train = split_xy(train_df, cfg["LABEL_COLUMN"], cfg["DROP_COLUMNS"], cfg["TRAIN_URI"])
    X_test, y_test = split_xy(test_df, cfg["LABEL_COLUMN"], cfg["DROP_COLUMNS"], cfg["TEST_URI"])
    missing = [c for c in X_train.columns if c not in X_test.columns]
    if missing:
        raise PermanentError(f"{cfg['TEST_URI']}: missing feature column(s) {missing}")
    X_test = X_test[list(X_train.columns)]
    if y_train.nunique() < 2:
        raise PermanentError(f"{cfg['TRAIN_URI']}: label {cfg['LABEL_COLUMN']!r} has a single class; cannot train")
    log(f"loaded train={len(X_train)} test={len(X_test)} rows, {X_train.shape[1]} features "
        f"in {time.monotonic() - t0:.2f}s")

    pipe, model_params, numeric, categorical = build_pipeline(X_train, cfg["SEED"], cfg["CLASS_WEIGHT"])
    t1 = time.monotonic()
    threshold = fit_pipeline(pipe, model_params, X_train, y_train)
    fit_s = time.monotonic() - t1
    metrics = evaluate(pipe, X_test, y_test)
    log(f"fitted in {fit_s:.2f}s; " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))

    tags = run_tags(cfg, cfg["DATASET_VERSION"])
    run_name = f"{cfg['MODEL_NAME']}-{cfg['MLOPS_RUN_ID']}"[:250]
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
        log(f"MLflow run {run.info.run_id} in experiment {experiment_id} ({cfg['MLFLOW_EXPERIMENT_NAME']})")
        mlflow.log_params({
            "model_type": type(pipe.named_steps["model"]).__name__,
            **{f"model.{k}": ("None" if v is None else v) for k, v in model_params.items()},
            "label_column": cfg["LABEL_COLUMN"],
            "drop_columns": ",".join(cfg["DROP_COLUMNS"]),
            "numeric_features": ",".join(numeric),
            "categorical_features": ",".join(categorical),
            "train_uri": cfg["TRAIN_URI"],
            "test_uri": cfg["TEST_URI"],
            "dataset_version": cfg["DATASET_VERSION"],
            "train_rows": len(X_train),
            "test_rows": len(X_test),
            "train_positive_rate": round(float(y_train.mean()), 6),
        })
        mlflow.log_metrics({**metrics, "decision_threshold": threshold, "fit_seconds": fit_s})
        for df, uri, context in ((train_df, cfg["TRAIN_URI"], "training"), (test_df, cfg["TEST_URI"], "testing")):
            ds = mlflow.data.from_pandas(df, source=uri, targets=cfg["LABEL_COLUMN"],
                                         name=f"{context}@{cfg['DATASET_VERSION']}"[:500])
            mlflow.log_input(ds, context=context)

        example = X_train.head(5)
        info = mlflow.sklearn.log_model(
            pipe,
            name="model",
            signature=infer_signature(example, pipe.predict(example)),
            input_example=example,
            tags=tags,
            # numpy.dtype is referenced by the encoders' dtype parameter; the file is our own.
            skops_trusted_types=["numpy.dtype"],
        )
    return {"mlflow_run_id": run.info.run_id, "model_id": info.model_id, "metrics": metrics,
            "dataset_version": cfg["DATASET_VERSION"]}


def train(cfg: dict) -> dict:
    t0 = time.monotonic()
    if "'" in cfg["MLOPS_RUN_ID"] or "'" in cfg["MODEL_NAME"]:
        raise PermanentError("MLOPS_RUN_ID and MODEL_NAME must not contain a single quote")
    experiment = connect_mlflow(cfg)
    previous = find_finished_run(cfg, experiment.experiment_id)
    if previous is not None and previous.outputs and previous.outputs.model_outputs:
        # Take the model logged at the largest step, as mlflow.register_model("runs:/...") does.
        model_id = max(previous.outputs.model_outputs, key=lambda o: o.step).model_id
        log(f"run {previous.info.run_id} already finished for {RUN_ID_TAG}={cfg['MLOPS_RUN_ID']}: "
            f"not training again")
        logged = {
            "mlflow_run_id": previous.info.run_id,
            "model_id": model_id,
            "metrics": {k: v for k, v in previous.data.metrics.items() if k in METRICS},
            "dataset_version": previous.data.tags.get(DATASET_VERSION_TAG, cfg["DATASET_VERSION"]),
        }
    else:
        logged = fit_and_log(cfg, experiment.experiment_id)

    result = {
        "mlops_run_id": cfg["MLOPS_RUN_ID"],
        "mlflow_run_id": logged["mlflow_run_id"],
        "experiment_id": experiment.experiment_id,
        "model_uri": f"models:/{logged['model_id']}",
        "model_name": cfg["MODEL_NAME"],
        "model_version": None,
        "metrics": logged["metrics"],
    }
    if cfg["SKIP_REGISTER"]:
        log("MLOPS_SKIP_REGISTER is set: not registering a model version")
    else:
        import mlflow

        mv = existing_version(cfg)
        if mv is not None:
            log(f"{cfg['MODEL_NAME']} version {mv.version} already carries {RUN_ID_TAG}={cfg['MLOPS_RUN_ID']}")
        else:
            tags = run_tags(cfg, logged["dataset_version"])
            mv = mlflow.register_model(result["model_uri"], cfg["MODEL_NAME"], tags=tags)
            log(f"registered {cfg['MODEL_NAME']} version {mv.version} (source {mv.source})")
        result["model_version"] = str(mv.version)
    result["wall_seconds"] = round(time.monotonic() - t0, 3)
    return result


def main() -> int:
    try:
        cfg = read_config()
        result = train(cfg)
    except PermanentError as e:
        log(f"error: {e}")
        return EXIT_PERMANENT
    except Exception as e:  # noqa: BLE001 - the exit code is the contract; the message says what failed
        traceback.print_exc()
        log(f"error: {type(e).__name__}: {e}")
        return 1
    # One JSON line on stdout: what the local executor (and a human) reads back.
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
