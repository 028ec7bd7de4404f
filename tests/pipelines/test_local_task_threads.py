"""Local tasks share the cores: each gets OMP_NUM_THREADS (XGBoost's default thread count) as its share.

kfp.local runs two tasks at once; two XGBoost tasks each on every core oversubscribed a two-core machine
and OpenMP's spinning barriers made a 0.3 s training take 7-35 s (the local DAG on 100k labels took
62 s instead of 23 s).
"""

# No `from __future__ import annotations`: kfp reads the component's annotations as types.

import json
import os
from pathlib import Path

import numpy as np
import pytest
from kfp import dsl

from packwise.config import ModelConfig
from packwise.cores import available_cores, task_threads
from packwise.scoring import Scorer, ScoringModel
from packwise_pipelines import local as local_runner
from tests.conftest import make_config


def test_each_concurrent_task_gets_its_share_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert local_runner.task_environment() == {"OMP_NUM_THREADS": "4"}
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert local_runner.task_environment() == {"OMP_NUM_THREADS": "1"}
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the caller's choice wins
    assert local_runner.task_environment() == {"OMP_NUM_THREADS": "3"}


def test_cores_are_counted_where_there_is_no_affinity_call(monkeypatch: pytest.MonkeyPatch) -> None:
    # macOS has no os.sched_getaffinity: the count falls back to os.cpu_count()
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert available_cores() == 6
    assert task_threads() == 6
    assert local_runner.task_environment() == {"OMP_NUM_THREADS": "3"}


def test_a_subprocess_task_sees_the_share_and_the_environment_is_restored_after_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cfg = make_config(tmp_path / "state")
    seen = tmp_path / "seen.json"

    @dsl.component(base_image="unused-by-the-subprocess-runner", install_kfp_package=False)
    def report_threads(path: str) -> None:
        import json
        import os

        from packwise.cores import task_threads

        with open(path, "w") as out:
            json.dump({"omp": os.environ.get("OMP_NUM_THREADS"), "task_threads": task_threads()}, out)

    @dsl.pipeline(name="threads")
    def threads(path: str, run_id: str = "") -> None:
        report_threads(path=path).set_caching_options(False)

    run = local_runner.run_pipeline_locally(threads, {"path": str(seen)}, cfg, "threads-run")
    assert run.succeeded, run.log_path.read_text()[-2000:]
    share = max(1, available_cores() // local_runner.LOCAL_CONCURRENT_TASKS)
    assert json.loads(seen.read_text()) == {"omp": str(share), "task_threads": share}
    assert "OMP_NUM_THREADS" not in os.environ


def test_docker_tasks_get_the_share_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("docker")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PACKWISE_FAIL_TASK", "evaluate:box")
    env = local_runner.docker_run_args(make_config(tmp_path / "state"))["environment"]
    assert env == {"OMP_NUM_THREADS": "1", "PACKWISE_FAIL_TASK": "evaluate:box"}


def test_the_scorer_uses_the_task_share_unless_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import xgboost as xgb

    from packwise.features import FeatureSpec

    booster = xgb.train(
        {**ModelConfig().params, "objective": "binary:logistic"},
        xgb.DMatrix(np.random.default_rng(0).random((50, 2)), label=np.arange(50) % 2),
        num_boost_round=2,
    )
    spec = FeatureSpec(numeric=("a", "b"), boolean=(), categorical={}, derived=())

    def nthread(scorer: Scorer) -> int:
        return int(json.loads(scorer.models[0].booster.save_config())["learner"]["generic_param"]["nthread"])

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert task_threads() == 1
    assert nthread(Scorer([ScoringModel("box", 1, booster, spec, 0.5)])) == 1
    assert nthread(Scorer([ScoringModel("box", 1, booster, spec, 0.5)], threads=3)) == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert task_threads() == available_cores() == len(os.sched_getaffinity(0))


def test_docker_tasks_on_an_s3_root_get_the_aws_settings_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The containers' S3 client needs the caller's endpoint, region and credentials; nothing of the bucket is
    mounted (it is reached over the network), only the local workspace kfp.local writes."""
    pytest.importorskip("docker")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("PACKWISE_FAIL_TASK", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    aws = {
        "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "id",
        "AWS_SECRET_ACCESS_KEY": "secret",
    }
    for key, value in aws.items():
        monkeypatch.setenv(key, value)
    cfg = make_config(tmp_path / "state", storage={"root": "s3://bucket/p", "local_dir": str(tmp_path / "local")})
    args = local_runner.docker_run_args(cfg)
    assert args["environment"] == {"OMP_NUM_THREADS": "1", **aws}
    assert str(tmp_path / "local") in [m["Target"] for m in args["mounts"]]
