#!/usr/bin/env python3
"""PyTorch variant of the fraud trainer: a small MLP for EKS GPU nodes (g5/g6 from Karpenter).

Same environment contract, exit codes, MLflow tags and stdout result line as train.py (whose data
helpers it reuses), plus optional knobs:

  EPOCHS (default 30), BATCH_SIZE (default 512), LEARNING_RATE (default 1e-3), HIDDEN (default "64,32")

It uses CUDA when torch sees a GPU (request `nvidia.com/gpu` in the pod), otherwise the CPU.
Under a Kubeflow PyTorchJob or TrainJob (torchrun), WORLD_SIZE/RANK/MASTER_ADDR are set and the
ranks train with DistributedDataParallel; only rank 0 talks to MLflow.

The logged model is an MLflow pyfunc that carries its own preprocessing (imputation values,
scaling, one-hot vocabularies) next to the network weights, so it takes the raw feature columns,
like the scikit-learn model does, and predicts 0/1 with the F1-tuned threshold.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train as common  # noqa: E402  (data loading, config, exit codes)

from train import (  # noqa: E402
    DATASET_VERSION_TAG,
    EXIT_PERMANENT,
    RUN_ID_TAG,
    PermanentError,
    load_frame,
    log,
    read_config,
    split_xy,
)

import mlflow.pyfunc  # noqa: E402  (PythonModel must be a base class at import time)
import pandas as pd  # noqa: E402  (predict()'s type hint; MLflow warns at class creation without one)


# ---------------------------------------------------------------------------------------------
# Preprocessing as plain data (JSON), so the served model needs only numpy, pandas and torch
# ---------------------------------------------------------------------------------------------

def fit_preprocessing(X) -> dict:
    import numpy as np
    import pandas as pd

    numeric = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c])]
    categorical = [c for c in X.columns if c not in numeric]
    spec = {"numeric": [], "categorical": []}
    for c in numeric:
        col = X[c].astype("float64")
        median = float(col.median()) if col.notna().any() else 0.0
        z = np.arcsinh(col.fillna(median).to_numpy())
        std = float(z.std())
        spec["numeric"].append({"name": c, "median": median, "mean": float(z.mean()), "std": std if std > 0 else 1.0})
    for c in categorical:
        values = sorted(X[c].dropna().astype(str).unique().tolist())
        spec["categorical"].append({"name": c, "values": values})
    return spec


def transform(spec: dict, X):
    """Raw frame -> float32 matrix: arcsinh + standardised numerics, one-hot categoricals
    (unknown and missing categories become all zeros)."""
    import numpy as np

    parts = []
    for f in spec["numeric"]:
        col = X[f["name"]].astype("float64").fillna(f["median"]).to_numpy()
        parts.append(((np.arcsinh(col) - f["mean"]) / f["std"])[:, None])
    for f in spec["categorical"]:
        col = X[f["name"]].astype("object").where(X[f["name"]].notna(), None)
        index = {v: i for i, v in enumerate(f["values"])}
        onehot = np.zeros((len(X), len(f["values"])), dtype=np.float64)
        for row, value in enumerate(col):
            i = index.get(None if value is None else str(value))
            if i is not None:
                onehot[row, i] = 1.0
        parts.append(onehot)
    return np.hstack(parts).astype(np.float32) if parts else np.zeros((len(X), 0), dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------

def build_mlp(n_in: int, hidden: list[int], dropout: float = 0.1):
    import torch.nn as nn

    layers, width = [], n_in
    for h in hidden:
        layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Dropout(dropout)]
        width = h
    layers.append(nn.Linear(width, 1))  # one logit
    return nn.Sequential(*layers)


class FraudMLP(mlflow.pyfunc.PythonModel):
    """Serving wrapper: artifacts `weights` (state dict) and `preprocessing` (JSON)."""

    def load_context(self, context):
        import torch

        with open(context.artifacts["preprocessing"]) as f:
            meta = json.load(f)
        self.spec, self.threshold = meta["spec"], meta["threshold"]
        self.columns = meta["columns"]
        self.net = build_mlp(meta["n_in"], meta["hidden"])
        self.net.load_state_dict(torch.load(context.artifacts["weights"], map_location="cpu"))
        self.net.eval()

    def predict(self, context, model_input: pd.DataFrame, params=None):
        import numpy as np
        import torch

        X = transform(self.spec, model_input[self.columns])
        with torch.no_grad():
            p = torch.sigmoid(self.net(torch.from_numpy(X))).squeeze(1).numpy()
        return (p >= self.threshold).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip() or str(default)
    if not raw.isdigit() or int(raw) <= 0:
        raise PermanentError(f"{name} must be a positive integer, got {raw!r}")
    return int(raw)


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip() or str(default)
    try:
        value = float(raw)
    except ValueError:
        raise PermanentError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise PermanentError(f"{name} must be positive, got {raw!r}")
    return value


def best_f1_threshold(y, p) -> float:
    import numpy as np

    order = np.argsort(-p)
    y_sorted, p_sorted = np.asarray(y)[order], p[order]
    tp = np.cumsum(y_sorted)
    fp = np.cumsum(1 - y_sorted)
    positives = max(int(y_sorted.sum()), 1)
    f1 = 2 * tp / (tp + fp + positives)
    i = int(np.argmax(f1))
    return float(p_sorted[i])


def metrics_of(y, p, threshold: float) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    pred = (p >= threshold).astype(int)
    m = {
        "accuracy": accuracy_score(y, pred),
        "precision": precision_score(y, pred, zero_division=0),
        "recall": recall_score(y, pred, zero_division=0),
        "f1": f1_score(y, pred, zero_division=0),
    }
    if len(set(y.tolist())) == 2:
        m["roc_auc"] = roc_auc_score(y, p)
    return {k: float(v) for k, v in m.items()}


def predict_proba(net, X, device, batch: int = 8192):
    import numpy as np
    import torch

    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(X), batch):
            xb = torch.from_numpy(X[i:i + batch]).to(device)
            out.append(torch.sigmoid(net(xb)).squeeze(1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def main_train(cfg: dict) -> dict | None:
    import numpy as np
    import torch
    import torch.distributed as dist
    from torch.utils.data import DataLoader, TensorDataset
    from torch.utils.data.distributed import DistributedSampler

    epochs = env_int("EPOCHS", 30)
    batch_size = env_int("BATCH_SIZE", 512)
    lr = env_float("LEARNING_RATE", 1e-3)
    try:
        hidden = [int(h) for h in (os.environ.get("HIDDEN", "").strip() or "64,32").split(",")]
    except ValueError:
        raise PermanentError("HIDDEN must be a comma list of layer widths, e.g. 64,32") from None

    world = int(os.environ.get("WORLD_SIZE", "1"))
    distributed = world > 1
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if distributed else 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    torch.manual_seed(cfg["SEED"] + rank)
    if rank == 0:
        gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
        log(f"torch {torch.__version__}, device {device} (GPU: {gpu}), world size {world}")

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

    # Hold out 10 % of train (stratified, deterministic) to tune the decision threshold.
    rng = np.random.default_rng(cfg["SEED"])
    holdout = np.zeros(len(y_train), dtype=bool)
    for cls in (0, 1):
        idx = np.flatnonzero(y_train.to_numpy() == cls)
        holdout[rng.choice(idx, size=max(1, len(idx) // 10), replace=False)] = True
    spec = fit_preprocessing(X_train[~holdout])
    Xtr = transform(spec, X_train[~holdout])
    ytr = y_train.to_numpy()[~holdout].astype(np.float32)
    Xval, yval = transform(spec, X_train[holdout]), y_train.to_numpy()[holdout]
    Xte, yte = transform(spec, X_test), y_test.to_numpy()

    net = build_mlp(Xtr.shape[1], hidden).to(device)
    model = torch.nn.parallel.DistributedDataParallel(net, device_ids=[local_rank] if device.type == "cuda" else None) \
        if distributed else net
    pos = float(ytr.sum())
    pos_weight = torch.tensor([(len(ytr) - pos) / max(pos, 1.0)], device=device)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    data = TensorDataset(torch.from_numpy(Xtr), torch.from_numpy(ytr))
    sampler = DistributedSampler(data, shuffle=True, seed=cfg["SEED"]) if distributed else None
    loader = DataLoader(data, batch_size=batch_size, shuffle=sampler is None, sampler=sampler,
                        pin_memory=device.type == "cuda", drop_last=len(data) > batch_size)

    history = []
    t1 = time.monotonic()
    for epoch in range(epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        model.train()
        total, n = 0.0, 0
        for xb, yb in loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb).squeeze(1), yb)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(xb)
            n += len(xb)
        history.append(total / max(n, 1))
    fit_s = time.monotonic() - t1

    if distributed:
        dist.barrier()
    if rank != 0:
        dist.destroy_process_group()
        return None

    threshold = best_f1_threshold(yval, predict_proba(net, Xval, device))
    metrics = metrics_of(yte, predict_proba(net, Xte, device), threshold)
    log(f"trained {epochs} epochs in {fit_s:.2f}s; " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))

    experiment = common.connect_mlflow(cfg)
    import mlflow
    from mlflow.models import infer_signature

    tags = {RUN_ID_TAG: cfg["MLOPS_RUN_ID"], DATASET_VERSION_TAG: cfg["DATASET_VERSION"]}
    run_name = f"{cfg['MODEL_NAME']}-{cfg['MLOPS_RUN_ID']}"[:250]
    with mlflow.start_run(experiment_id=experiment.experiment_id, run_name=run_name, tags=tags) as run:
        mlflow.log_params({
            "model_type": "torch.MLP",
            "hidden": ",".join(map(str, hidden)),
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": lr,
            "world_size": world,
            "device": str(device),
            "label_column": cfg["LABEL_COLUMN"],
            "train_uri": cfg["TRAIN_URI"],
            "test_uri": cfg["TEST_URI"],
            "dataset_version": cfg["DATASET_VERSION"],
            "train_rows": int(len(Xtr)),
            "test_rows": int(len(Xte)),
        })
        for epoch, value in enumerate(history):
            mlflow.log_metric("train_loss", value, step=epoch)
        mlflow.log_metrics({**metrics, "decision_threshold": threshold, "fit_seconds": fit_s})

        with tempfile.TemporaryDirectory() as tmp:
            weights = os.path.join(tmp, "weights.pt")
            torch.save({k: v.cpu() for k, v in net.state_dict().items()}, weights)
            prep = os.path.join(tmp, "preprocessing.json")
            with open(prep, "w") as f:
                json.dump({"spec": spec, "threshold": threshold, "n_in": int(Xtr.shape[1]),
                           "hidden": hidden, "columns": list(X_train.columns)}, f)
            example = X_train.head(5)
            wrapper = FraudMLP()
            net.eval()
            with torch.no_grad():
                example_pred = (torch.sigmoid(net(torch.from_numpy(transform(spec, example)).to(device)))
                                .squeeze(1).cpu().numpy() >= threshold).astype(np.int64)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=wrapper,
                artifacts={"weights": weights, "preprocessing": prep},
                signature=infer_signature(example, example_pred),
                input_example=example,
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy", "pandas",
                                  f"mlflow-skinny=={mlflow.__version__}"],
                tags=tags,
            )
        mlflow_run_id = run.info.run_id

    result = {
        "mlops_run_id": cfg["MLOPS_RUN_ID"],
        "mlflow_run_id": mlflow_run_id,
        "experiment_id": experiment.experiment_id,
        "model_uri": info.model_uri,
        "model_name": cfg["MODEL_NAME"],
        "model_version": None,
        "metrics": metrics,
    }
    if cfg["SKIP_REGISTER"]:
        log("MLOPS_SKIP_REGISTER is set: not registering a model version")
    else:
        mv = common.existing_version(cfg)
        if mv is None:
            mv = mlflow.register_model(info.model_uri, cfg["MODEL_NAME"], tags=tags)
            log(f"registered {cfg['MODEL_NAME']} version {mv.version} (source {mv.source})")
        result["model_version"] = str(mv.version)
    result["wall_seconds"] = round(time.monotonic() - t0, 3)
    if distributed:
        dist.destroy_process_group()
    return result


def main() -> int:
    try:
        cfg = read_config()
        try:
            import torch  # noqa: F401
        except ImportError as e:
            raise PermanentError("torch is not installed in this image (use train.py for the CPU model)") from e
        result = main_train(cfg)
    except PermanentError as e:
        log(f"error: {e}")
        return EXIT_PERMANENT
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        log(f"error: {type(e).__name__}: {e}")
        return 1
    if result is not None:  # rank 0 only
        print(json.dumps(result, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
