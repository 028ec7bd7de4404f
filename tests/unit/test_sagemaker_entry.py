"""The container entry (`python -m packwise.sagemaker.entry train|score`) under SageMaker's directory layout.

A temporary directory stands for ``/opt/ml`` (``SM_ROOT``), laid out as SageMaker mounts it for a
training job (channels, hyperparameters.json) and a Processing job (models, data). The model the entry
writes must load in the local scorer and predict what a locally trained model predicts on the same data
and seed; a bad hyperparameter must reach ``output/failure`` (SageMaker's FailureReason) with exit 1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from packwise.config import PackwiseConfig
from packwise.sagemaker.entry import main
from tests.conftest import make_config, seed
from tests.sagemaker_layout import (
    assert_scored_like,
    change_model_hyperparameter,
    lay_out_scoring,
    lay_out_training,
    train_locally,
)
from tests.split_data import extracted_splits

TEXT_TYPES = ["xgboost_text", "stacked_text"]


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> PackwiseConfig:
    config = make_config(tmp_path_factory.mktemp("sm-entry") / "state", model={"num_boost_round": 20})
    seed(config, seed=7, n_products=1_500, weeks=1, labels_per_week=900)
    return config


@pytest.fixture(scope="module")
def splits(cfg: PackwiseConfig) -> dict[str, Path]:
    return extracted_splits(cfg, "sm-entry")


@pytest.mark.parametrize("model_type", TEXT_TYPES)
def test_the_entry_trains_a_model_the_local_scorer_loads_and_that_predicts_like_local_training(
    cfg: PackwiseConfig, splits: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_type: str
) -> None:
    from packwise.artifact import load_model_artifact
    from packwise.models.base import predict
    from packwise.split import read_split

    model = cfg.model.model_copy(update={"type": model_type})
    root = tmp_path / "opt-ml"
    lay_out_training(root, splits, "box", cfg, model)
    monkeypatch.setenv("SM_ROOT", str(root))
    assert main(["train"]) == 0, (root / "output" / "failure").read_text()
    assert not (root / "output" / "failure").exists()

    local_file = train_locally(cfg, splits, model, tmp_path / "local.tar.gz")
    theirs, ours = load_model_artifact(root / "model" / "model.tar.gz"), load_model_artifact(local_file)
    assert theirs.model_type == model_type and theirs.package_type == "box"
    assert theirs.spec.text_columns == ours.spec.text_columns != []
    products, _ = read_split(splits["validation"], "box")
    remote_prob, _ = predict(theirs.booster, theirs.spec, products)
    local_prob, _ = predict(ours.booster, ours.spec, products)
    np.testing.assert_allclose(remote_prob, local_prob, rtol=0, atol=1e-6)
    assert remote_prob.std() > 0.01, "a model that learned something"

    # the same model scored by the entry's `score` under a Processing job's layout
    lay_out_scoring(root, root / "model" / "model.tar.gz", products)
    assert main(["score"]) == 0
    assert_scored_like(root, products, local_prob)


def test_a_bad_hyperparameter_writes_the_failure_file_and_exits_non_zero(
    cfg: PackwiseConfig, splits: dict[str, Path], tmp_path: Path
) -> None:
    root = tmp_path / "opt-ml"
    lay_out_training(root, splits, "box", cfg, cfg.model.model_copy(update={"type": "xgboost_text"}))
    change_model_hyperparameter(root, num_boost_round=0)

    result = subprocess.run(
        [sys.executable, "-m", "packwise.sagemaker.entry", "train"],
        env={**os.environ, "SM_ROOT": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    failure = (root / "output" / "failure").read_text()
    assert failure.startswith("ConfigError: hyperparameters model/features are invalid")
    assert "num_boost_round" in failure
    assert failure.count("\n") == 1, "one line, as SageMaker shows it"
    assert not (root / "model" / "model.tar.gz").exists()


def test_an_unknown_model_type_and_an_empty_channel_fail_with_their_reason(
    cfg: PackwiseConfig, splits: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "opt-ml"
    lay_out_training(root, splits, "box", cfg, cfg.model)
    monkeypatch.setenv("SM_ROOT", str(root))
    change_model_hyperparameter(root, type="nope")
    assert main(["train"]) == 1
    assert "unknown model type 'nope'" in (root / "output" / "failure").read_text()

    change_model_hyperparameter(root, type=cfg.model.type)
    for part in (root / "input" / "data" / "train").iterdir():
        part.unlink()
    assert main(["train"]) == 1
    assert "holds no .parquet file" in (root / "output" / "failure").read_text()


def _http(url: str, body: bytes | None = None, content_type: str = "") -> tuple[int, bytes, str]:
    import urllib.error
    import urllib.request

    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers.get("Content-Type", "")


@pytest.mark.parametrize("model_type", ["xgboost", "stacked_text"])
def test_serve_answers_sagemaker_ping_and_invocations_with_the_local_scorers_probabilities(
    cfg: PackwiseConfig, splits: dict[str, Path], tmp_path: Path, model_type: str
) -> None:
    """What SageMaker runs for a model package on Packwise's image: the package's model.tar.gz extracted
    under /opt/ml/model, ``serve`` on a port, parquet of raw product columns in and probabilities out."""
    import io
    import tarfile
    import threading

    from packwise.artifact import load_model_artifact
    from packwise.models.base import predict
    from packwise.sagemaker.entry import make_server
    from packwise.split import read_split
    from packwise.training import train

    model_file = tmp_path / "model.tar.gz"
    model = cfg.model.model_copy(update={"type": model_type})
    train(splits["train"], splits["validation"], "box", cfg.features, model, model_file, "k", "fp")
    root = tmp_path / "opt-ml"
    with tarfile.open(model_file) as tar:  # as SageMaker extracts a package's ModelDataUrl
        tar.extractall(root / "model", filter="data")

    server = make_server(root, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert _http(f"{url}/ping")[0] == 200
        products, _ = read_split(splits["validation"], "box")
        sent = products.drop(columns=[c for c in products.columns if c.startswith("label")])
        body = io.BytesIO()
        sent.to_parquet(body, index=False)
        status, answer, content_type = _http(f"{url}/invocations", body.getvalue(), "application/x-parquet")
        assert status == 200, answer.decode(errors="replace")
        assert content_type == "application/x-parquet"
        scored = pq.read_table(io.BytesIO(answer)).to_pandas()
        assert list(scored.columns) == ["product_id", "suitability_probability"]
        assert scored["product_id"].tolist() == products["product_id"].astype(str).tolist()
        local = load_model_artifact(model_file)
        local_prob, _ = predict(local.booster, local.spec, products)
        np.testing.assert_allclose(scored["suitability_probability"].to_numpy(), local_prob, rtol=0, atol=1e-9)

        status, answer, _ = _http(f"{url}/invocations", b"a,b\n1,2\n", "text/csv")
        assert status == 415 and b"send application/x-parquet" in answer
        short = io.BytesIO()
        sent.drop(columns=[local.spec.input_columns[0]]).to_parquet(short, index=False)
        status, answer, _ = _http(f"{url}/invocations", short.getvalue(), "application/x-parquet")
        assert status == 400 and f"lack column(s) {local.spec.input_columns[0]}".encode() in answer
    finally:
        server.shutdown()
        server.server_close()


def test_serve_without_a_model_exits_with_the_reason(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "packwise.sagemaker.entry", "serve"],
        env={**os.environ, "SM_ROOT": str(tmp_path), "SAGEMAKER_BIND_TO_PORT": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "cannot serve" in result.stderr and "does not exist" in result.stderr
