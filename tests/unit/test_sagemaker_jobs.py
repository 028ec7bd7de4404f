"""SageMaker job lifecycle without AWS: names, image URIs, and with botocore's Stubber the failure, stop,
timeout, cancel and retry paths (moto's jobs complete at once, so these paths are only reachable here).
The waits are boto3's waiters; their sleeps are recorded instead of slept."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from packwise.config import parse_config
from packwise.errors import ConfigError
from packwise.sagemaker.container import xgboost_image_uri
from packwise.sagemaker.errors import JobFailedError, JobTimeoutError, SageMakerError, StepCancelled
from packwise.sagemaker.jobs import (
    TRAINING,
    TRANSFORM,
    JobHandle,
    start_or_attach,
    stop_on_cancel,
    wait_for_jobs,
    waiter_config,
)
from packwise.sagemaker.naming import attempt_name, job_name, model_name

NAME_PATTERN = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"


@pytest.fixture
def client() -> Iterator[Any]:
    sm = boto3.session.Session(
        region_name="eu-west-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    ).client("sagemaker")
    yield sm


def _training(status: str, **extra: Any) -> dict[str, Any]:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    return {
        "TrainingJobName": "job",
        "TrainingJobArn": "arn:aws:sagemaker:eu-west-1:123456789012:training-job/job",
        "TrainingJobStatus": status,
        "SecondaryStatus": "Completed" if status == "Completed" else "Training",
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ModelArtifacts": {"S3ModelArtifacts": "s3://b/k/model.tar.gz"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "CreationTime": now,
        **extra,
    }


REQUEST: dict[str, Any] = {
    "RoleArn": "arn:aws:iam::123456789012:role/pw",
    "AlgorithmSpecification": {"TrainingInputMode": "File", "TrainingImage": "img"},
    "OutputDataConfig": {"S3OutputPath": "s3://b/o"},
    "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
    "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def waiter_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The sleeps of boto3's waiters between checks, recorded instead of slept."""
    import botocore.waiter

    sleeps: list[float] = []
    monkeypatch.setattr(botocore.waiter.time, "sleep", sleeps.append)
    return sleeps


def test_waiter_config_checks_every_interval_until_the_timeout() -> None:
    assert waiter_config(30, 90) == {"Delay": 30, "MaxAttempts": 3}
    assert waiter_config(30, 100) == {"Delay": 30, "MaxAttempts": 4}
    assert waiter_config(600, 1) == {"Delay": 600, "MaxAttempts": 1}


def test_job_names_are_stable_short_valid_and_differ_by_identity() -> None:
    import re

    a = job_name("train", "own_container", "3fb2e018da42aa11bb", "candidate-1")
    assert a == job_name("train", "own_container", "3fb2e018da42aa11bb", "candidate-1")
    assert a != job_name("train", "own_container", "3fb2e018da42aa11bb", "candidate-2")
    assert a != job_name("train", "own_container", "ffffe018da42aa11bb", "candidate-1")
    assert a.startswith("pw-train-own-container-3fb2e018da42-")
    long = job_name("eval", "a_very_long_package_type_name_that_goes_on_and_on_forever", "f" * 64, "x")
    for name in (a, long, attempt_name(long, 12), model_name("own_container", "ab" * 32)):
        assert len(name) <= 63 and re.match(NAME_PATTERN, name), name
    assert attempt_name(a, 1) == a and attempt_name(a, 2) == f"{a}-r2"


def test_xgboost_image_uri_per_region_and_override() -> None:
    assert xgboost_image_uri("us-east-1") == "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
    assert xgboost_image_uri("eu-west-1") == "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:3.0-5"
    assert xgboost_image_uri("cn-north-1").endswith(".dkr.ecr.cn-north-1.amazonaws.com.cn/sagemaker-xgboost:3.0-5")
    assert xgboost_image_uri("xx-nowhere-1", "my/mirror:1") == "my/mirror:1"
    with pytest.raises(SageMakerError, match=r"sagemaker\.xgboost_image_uri"):
        xgboost_image_uri("xx-nowhere-1")


def test_config_requires_the_sagemaker_settings_it_uses_and_carries_them_to_the_registry() -> None:
    with pytest.raises(ConfigError, match=r"sagemaker\.region is required"):
        parse_config({"compute": {"training": "sagemaker"}})
    with pytest.raises(ConfigError, match=r"sagemaker\.role_arn is required"):
        parse_config({"compute": {"inference": "sagemaker"}, "sagemaker": {"region": "eu-west-1", "bucket": "bkt"}})
    with pytest.raises(ConfigError, match=r"registry\.mirror needs registry\.backend sagemaker"):
        parse_config({"registry": {"mirror": "mlflow"}})
    with pytest.raises(ConfigError, match="IAM role ARN"):
        parse_config({"sagemaker": {"role_arn": "my-role"}})
    with pytest.raises(ConfigError, match="bucket name"):
        parse_config({"sagemaker": {"bucket": "s3://bkt/prefix"}})
    local = parse_config({}).resolved()
    assert local.registry.sagemaker is None and not local.compute.uses_sagemaker
    remote = parse_config(
        {
            "registry": {"backend": "sagemaker", "mirror": "mlflow"},
            "sagemaker": {"region": "eu-west-1", "bucket": "bkt"},
        }
    ).resolved()
    assert remote.registry.sagemaker is not None and remote.registry.sagemaker.bucket == "bkt"


def test_a_failed_job_fails_the_step_with_its_failure_reason(client: Any, waiter_sleeps: list[float]) -> None:
    with Stubber(client) as stub:
        stub.add_response("describe_training_job", _training("InProgress"), {"TrainingJobName": "job"})
        reason = "AlgorithmError: label column has values other than 0 and 1"
        failed = _training("Failed", FailureReason=reason)
        stub.add_response("describe_training_job", failed, {"TrainingJobName": "job"})
        with pytest.raises(JobFailedError) as err:
            wait_for_jobs(client, [JobHandle(TRAINING, "job", True)], 30, 3600)
    assert reason in str(err.value) and "ended Failed" in str(err.value)
    assert "/aws/sagemaker/TrainingJobs/job" in str(err.value)
    assert waiter_sleeps == [30]


def test_a_stopped_job_fails_the_step(client: Any) -> None:
    stopped = _training("Stopped", FailureReason="stopped by user")
    with Stubber(client) as stub:
        stub.add_response("describe_training_job", stopped, {"TrainingJobName": "job"})  # the waiter's check
        stub.add_response("describe_training_job", stopped, {"TrainingJobName": "job"})  # Stopped is its success
        with pytest.raises(JobFailedError, match="ended Stopped: stopped by user"):
            wait_for_jobs(client, [JobHandle(TRAINING, "job", True)], 1, 10)


def test_timeout_stops_the_job_and_fails(client: Any, waiter_sleeps: list[float]) -> None:
    with Stubber(client) as stub:
        for _ in range(3):
            stub.add_response("describe_training_job", _training("InProgress"), {"TrainingJobName": "job"})
        stub.add_response("stop_training_job", {}, {"TrainingJobName": "job"})
        with pytest.raises(JobTimeoutError, match=r"did not finish within 90s"):
            wait_for_jobs(client, [JobHandle(TRAINING, "job", True)], 30, 90)
        stub.assert_no_pending_responses()
    assert waiter_sleeps == [30, 30], "three checks 30 s apart fill the 90 s"


def test_sigterm_while_waiting_stops_the_job(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.waiter

    jobs = [JobHandle(TRAINING, "job", True)]

    def terminated(_: float) -> None:  # the orchestrator cancels the task while it sleeps
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(botocore.waiter.time, "sleep", terminated)

    before = signal.getsignal(signal.SIGTERM)
    with Stubber(client) as stub:
        stub.add_response("describe_training_job", _training("InProgress"), {"TrainingJobName": "job"})
        stub.add_response("stop_training_job", {}, {"TrainingJobName": "job"})
        with pytest.raises(StepCancelled), stop_on_cancel(client, jobs):
            wait_for_jobs(client, jobs, 5, 100)
        stub.assert_no_pending_responses()
    assert signal.getsignal(signal.SIGTERM) == before, "the previous handler is restored"


def test_ctrl_c_stops_every_job_of_the_step(client: Any) -> None:
    jobs = [JobHandle(TRANSFORM, "t1", True), JobHandle(TRANSFORM, "t2", False)]
    with Stubber(client) as stub:
        stub.add_response("stop_transform_job", {}, {"TransformJobName": "t1"})
        stub.add_response("stop_transform_job", {}, {"TransformJobName": "t2"})
        with pytest.raises(KeyboardInterrupt), stop_on_cancel(client, jobs):
            raise KeyboardInterrupt
        stub.assert_no_pending_responses()


def _not_found(stub: Stubber, name: str) -> None:
    stub.add_client_error(
        "describe_training_job",
        service_error_code="ValidationException",
        service_message="Requested resource not found.",
        expected_params={"TrainingJobName": name},
    )


def test_start_creates_the_job_when_none_exists(client: Any) -> None:
    staged: list[str] = []
    with Stubber(client) as stub:
        _not_found(stub, "pw-job")
        stub.add_response("create_training_job", {"TrainingJobArn": "arn:x"}, {"TrainingJobName": "pw-job", **REQUEST})
        job = start_or_attach(client, TRAINING, "pw-job", lambda _: REQUEST, staged.append)
        stub.assert_no_pending_responses()
    assert job == JobHandle(TRAINING, "pw-job", True) and staged == ["pw-job"]


@pytest.mark.parametrize("status", ["InProgress", "Completed"])
def test_a_retried_step_attaches_to_its_running_or_finished_job(client: Any, status: str) -> None:
    staged: list[str] = []
    with Stubber(client) as stub:
        stub.add_response("describe_training_job", _training(status), {"TrainingJobName": "pw-job"})
        job = start_or_attach(client, TRAINING, "pw-job", lambda _: REQUEST, staged.append)
        stub.assert_no_pending_responses()  # no CreateTrainingJob
    assert job == JobHandle(TRAINING, "pw-job", False) and staged == [], "nothing staged or created again"


def test_a_retry_after_a_failed_or_stopping_attempt_takes_the_next_name(client: Any) -> None:
    clock = FakeClock()
    with Stubber(client) as stub:
        stub.add_response("describe_training_job", _training("Failed", FailureReason="x"), {"TrainingJobName": "pw"})
        stub.add_response("describe_training_job", _training("Stopping"), {"TrainingJobName": "pw-r2"})
        stub.add_response("describe_training_job", _training("Stopped"), {"TrainingJobName": "pw-r2"})
        _not_found(stub, "pw-r3")
        stub.add_response("create_training_job", {"TrainingJobArn": "arn:x"}, {"TrainingJobName": "pw-r3", **REQUEST})
        job = start_or_attach(client, TRAINING, "pw", lambda _: REQUEST, None, clock.sleep, 7)
        stub.assert_no_pending_responses()
    assert job.name == "pw-r3" and job.created and clock.sleeps == [7]


def test_a_job_created_concurrently_by_another_task_is_attached(client: Any) -> None:
    with Stubber(client) as stub:
        _not_found(stub, "pw")
        stub.add_client_error(
            "create_training_job", service_error_code="ResourceInUse", service_message="Job pw already exists"
        )
        job = start_or_attach(client, TRAINING, "pw", lambda _: REQUEST)
    assert job == JobHandle(TRAINING, "pw", False)


def test_permission_errors_say_what_to_check(client: Any) -> None:
    with Stubber(client) as stub:
        _not_found(stub, "pw")
        stub.add_client_error("create_training_job", service_error_code="AccessDeniedException", service_message="no")
        with pytest.raises(SageMakerError, match="cannot create training job pw"):
            start_or_attach(client, TRAINING, "pw", lambda _: REQUEST)


def test_each_step_opens_the_compute_its_compute_setting_names() -> None:
    from packwise.compute import open_compute
    from packwise.compute.local import LocalCompute
    from packwise.compute.sagemaker import SageMakerCompute
    from packwise.config import ComputeConfig, SageMakerConfig

    compute = ComputeConfig(training="sagemaker", evaluation="local", inference="sagemaker")
    sagemaker = SageMakerConfig(region="eu-west-1", bucket="bkt", role_arn="arn:aws:iam::123456789012:role/r")
    assert isinstance(open_compute("training", compute, sagemaker), SageMakerCompute)
    assert isinstance(open_compute("evaluation", compute, sagemaker), LocalCompute)
    assert isinstance(open_compute("inference", compute, sagemaker), SageMakerCompute)
    with pytest.raises(ConfigError, match=r"compute\.training is sagemaker but no sagemaker section"):
        open_compute("training", compute, None)
