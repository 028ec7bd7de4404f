"""Packwise's train image under SageMaker's container contract: ``python -m packwise.sagemaker.entry train|score``.

``train`` (a training job with ``sagemaker.training_image: packwise``) reads, under the root (``/opt/ml``,
or ``$SM_ROOT``):

- ``input/config/hyperparameters.json``: ``package_type``, ``model`` (the ``model`` section as JSON) and
  ``features`` (the ``features`` section as JSON); SageMaker's hyperparameters are strings;
- ``input/data/train/*.parquet`` and ``input/data/validation/*.parquet``: the split files, filtered to the
  product id, the model type's input columns and the package type's label column;

and trains with the model type's plugin, exactly as the local compute does, into ``model/model.tar.gz``
(Packwise's model file; SageMaker packs ``model/`` into the job's ``output/model.tar.gz``).

``score`` (a Processing job) reads ``processing/input/models/<key>/model.tar.gz`` and
``processing/input/data/*.parquet`` and writes ``processing/output/scores/<file>.parquet``: ``product_id``
and one ``prob__<key>`` column per model, predicted by the local scorer's code.

Either way a failure writes its one-line reason to ``output/failure`` (which SageMaker shows as the job's
FailureReason) and the process exits 1.

``serve`` is what SageMaker runs (``docker run <image> serve``; the train image puts a ``serve`` command on
the PATH) for an endpoint or a batch transform job of a model package registered on Packwise's image: the
package's ``model.tar.gz`` extracted under ``model/``, HTTP on port 8080 (``$SAGEMAKER_BIND_TO_PORT``
overrides it), ``GET /ping`` and ``POST /invocations`` taking parquet (``application/x-parquet``) of raw
product columns and answering parquet with ``product_id`` (when sent) and ``suitability_probability``, the
local scorer's prediction.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT_ENV = "SM_ROOT"
DEFAULT_ROOT = Path("/opt/ml")
PROB_PREFIX = "prob__"
HYPERPARAMETERS = ("package_type", "model", "features")
COMMANDS = ("train", "score", "serve")
PARQUET = "application/x-parquet"
PREDICTION_COLUMN = "suitability_probability"  # as the MLflow model answers
PORT_ENV = "SAGEMAKER_BIND_TO_PORT"
DEFAULT_PORT = 8080


def root_dir() -> Path:
    """The SageMaker root: ``$SM_ROOT`` when set (tests, local runs), else ``/opt/ml``."""
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def _hyperparameters(root: Path) -> dict[str, str]:
    from packwise.errors import ConfigError

    path = root / "input" / "config" / "hyperparameters.json"
    if not path.is_file():
        raise ConfigError(f"{path} is missing; a training job passes package_type, model and features")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not JSON: {err}") from None
    missing = [k for k in HYPERPARAMETERS if k not in values]
    if missing:
        raise ConfigError(f"hyperparameters lack {', '.join(missing)}; set them on the training job")
    return {k: str(v) for k, v in values.items()}


def _parquet_files(folder: Path) -> list[Path]:
    from packwise.errors import DataValidationError

    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        raise DataValidationError(f"{folder} holds no .parquet file; stage the channel's data as parquet")
    return files


def train_in_layout(root: Path) -> Path:
    """Trains the candidate the hyperparameters describe on the ``train`` channel; returns the model file.

    Raises:
        ConfigError: A hyperparameter is missing or invalid.
        DataValidationError: A channel is empty or has no labels for the package type.
    """
    import numpy as np
    import pandas as pd
    from pydantic import ValidationError

    from packwise.artifact import save_model_artifact
    from packwise.config import FeatureConfig, ModelConfig
    from packwise.errors import ConfigError
    from packwise.models import check_model_type, get_model_type
    from packwise.split import read_split

    values = _hyperparameters(root)
    try:
        model = ModelConfig.model_validate_json(values["model"])
        features = FeatureConfig.model_validate_json(values["features"])
    except ValidationError as err:
        problem = err.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "(the whole section)"
        raise ConfigError(
            f"hyperparameters model/features are invalid: {err.title} {where}: {problem['msg']}; fix that setting"
        ) from None
    check_model_type(model.type, "hyperparameters: model.type")
    package_type = values["package_type"]
    start = time.perf_counter()
    plugin = get_model_type(model.type)
    columns = features.input_columns(plugin.uses_text)
    parts = [read_split(p, package_type, columns) for p in _parquet_files(root / "input" / "data" / "train")]
    products = pd.concat([p for p, _ in parts], ignore_index=True)
    labels = np.concatenate([labels for _, labels in parts])
    booster, spec = plugin.fit(products, labels, features, model)
    out = save_model_artifact(booster, spec, model.type, package_type, root / "model" / "model.tar.gz")
    print(
        f"packwise: trained {model.type} for {package_type} on {len(labels)} labels "
        f"in {time.perf_counter() - start:.1f}s -> {out}",
        flush=True,
    )
    return out


def score_in_layout(root: Path) -> list[Path]:
    """Scores every data file with every model under ``processing/input``; returns the files written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from packwise.artifact import load_model_artifact
    from packwise.errors import DataValidationError
    from packwise.files import atomic_write
    from packwise.models.base import predict
    from packwise.scoring import PRODUCT_ID

    base = root / "processing" / "input"
    model_files = sorted((base / "models").glob("*/model.tar.gz"))
    if not model_files:
        raise DataValidationError(f"{base / 'models'} holds no <key>/model.tar.gz; stage the models to score with")
    models = {f.parent.name: load_model_artifact(f) for f in model_files}
    columns = sorted({c for m in models.values() for c in m.spec.input_columns} | {PRODUCT_ID})
    out_dir = root / "processing" / "output" / "scores"
    written = []
    for path in _parquet_files(base / "data"):
        products = pq.read_table(path, columns=columns).to_pandas()
        arrays: list[pa.Array] = [pa.array(products[PRODUCT_ID].astype(str).to_numpy(), type=pa.string())]
        names = [PRODUCT_ID]
        for key, loaded in models.items():
            prob, _ = predict(loaded.booster, loaded.spec, products)
            arrays.append(pa.array(prob, type=pa.float64()))
            names.append(f"{PROB_PREFIX}{key}")
        out = out_dir / path.name
        with atomic_write(out) as tmp:
            pq.write_table(pa.Table.from_arrays(arrays, names=names), tmp, compression="zstd")
        written.append(out)
        print(f"packwise: scored {len(products)} rows of {path.name} with {len(models)} models", flush=True)
    return written


class ServedModel:
    """The model a ``serve`` container answers with: Packwise's model file as SageMaker extracted it."""

    def __init__(self, model_dir: Path) -> None:
        from packwise.artifact import load_model_artifact

        self.loaded = load_model_artifact(model_dir)

    def invoke(self, body: bytes, content_type: str) -> tuple[int, bytes, str]:
        """(HTTP status, body, content type) of one ``/invocations`` request; errors are one line of text."""
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        from packwise.errors import first_line
        from packwise.models.base import predict
        from packwise.scoring import PRODUCT_ID

        if content_type.split(";")[0].strip().lower() != PARQUET:
            return _text(415, f"content type {content_type or '(none)'} is not supported; send {PARQUET}")
        try:
            products = pq.read_table(io.BytesIO(body)).to_pandas()
        except Exception as err:
            return _text(400, f"the request body is not parquet ({first_line(err)}); send one parquet file")
        missing = [c for c in self.loaded.spec.input_columns if c not in products.columns]
        if missing:
            return _text(400, f"the products lack column(s) {', '.join(missing)}, which the model reads; send them")
        prob, _ = predict(self.loaded.booster, self.loaded.spec, products)
        arrays: list[pa.Array] = []
        names: list[str] = []
        if PRODUCT_ID in products.columns:
            arrays.append(pa.array(products[PRODUCT_ID].astype(str).to_numpy(), type=pa.string()))
            names.append(PRODUCT_ID)
        arrays.append(pa.array(prob, type=pa.float64()))
        names.append(PREDICTION_COLUMN)
        out = io.BytesIO()
        pq.write_table(pa.Table.from_arrays(arrays, names=names), out)
        return 200, out.getvalue(), PARQUET


def _text(status: int, message: str) -> tuple[int, bytes, str]:
    return status, f"{message}\n".encode(), "text/plain"


def make_server(root: Path, port: int) -> Any:
    """The HTTP server of ``serve`` on ``port`` (0: any free port), its model loaded from ``root/model``."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    model = ServedModel(root / "model")

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # http.server's name
            if self.path == "/ping":
                self._answer(200, b"", "text/plain")
            else:
                self._answer(404, b"GET /ping or POST /invocations\n", "text/plain")

        def do_POST(self) -> None:
            if self.path != "/invocations":
                self._answer(404, b"GET /ping or POST /invocations\n", "text/plain")
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._answer(*model.invoke(body, self.headers.get("Content-Type", "")))

        def log_message(self, format: str, *args: Any) -> None:  # http.server's signature
            print(f"packwise: serve {format % args}", file=sys.stderr, flush=True)

    return ThreadingHTTPServer(("0.0.0.0", port), Handler)  # SageMaker connects from outside the container


def serve(root: Path) -> int:
    """Serves the model under ``root/model`` until stopped; 1 (with the reason on stderr) when it cannot."""
    from packwise.errors import first_line

    try:
        port = int(os.environ.get(PORT_ENV) or DEFAULT_PORT)
        server = make_server(root, port)
    except Exception as err:
        print(f"packwise: cannot serve: {type(err).__name__}: {first_line(err)}", file=sys.stderr, flush=True)
        return 1
    print(f"packwise: serving {root / 'model'} on port {server.server_address[1]}", flush=True)
    with server:
        server.serve_forever()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: ``train``, ``score`` or ``serve`` under ``root_dir()``; 2 on a bad command line."""
    args = list(sys.argv[1:] if argv is None else argv)
    root = root_dir()
    if len(args) != 1 or args[0] not in COMMANDS:
        message = f"usage: python -m packwise.sagemaker.entry train|score|serve (got {' '.join(args) or 'nothing'})"
        _fail(root, message)
        return 2
    if args[0] == "serve":
        return serve(root)
    return run(args[0], root)


def run(command: str, root: Path) -> int:
    """Runs ``train`` or ``score`` under ``root``; 0 on success, 1 (with ``output/failure``) otherwise."""
    from packwise.errors import first_line

    try:
        if command == "train":
            train_in_layout(root)
        else:
            score_in_layout(root)
    except Exception as err:  # every failure must reach output/failure, SageMaker's FailureReason
        _fail(root, f"{type(err).__name__}: {first_line(err)}")
        return 1
    return 0


def _fail(root: Path, message: str) -> None:
    print(f"packwise: {message}", file=sys.stderr, flush=True)
    failure = root / "output" / "failure"
    try:
        failure.parent.mkdir(parents=True, exist_ok=True)
        failure.write_text(message[:1024] + "\n")  # SageMaker keeps the first 1 KiB
    except OSError as err:
        print(f"packwise: cannot write {failure}: {err}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
