"""Where the heavy work of a step runs: the `Compute` protocol and `open_compute`.

Three operations carry all of Packwise's heavy work:

- ``train``: a candidate from its training split (the model.tar.gz and its `TrainSummary`);
- ``score``: probabilities of named models on a frame of products (the validation split, for evaluation);
- ``score_shard``: one inference shard with every package type's model, in the local scorer's schema.

``compute.training``, ``compute.evaluation`` and ``compute.inference`` each choose ``local``
(`packwise.compute.local`) or ``sagemaker`` (`packwise.compute.sagemaker`: training jobs and batch
transform) for that step. The steps in `packwise.training` and `packwise.inference` ask `open_compute`
for the work and do everything else (metrics, the gate's evidence, statistics) themselves, so the result
does not depend on where the work ran.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from packwise.config import ComputeConfig, FeatureConfig, InferenceConfig, ModelConfig, SageMakerConfig
    from packwise.features import FeatureSpec
    from packwise.training import TrainSummary

Step = Literal["training", "evaluation", "inference"]


@dataclass(frozen=True)
class TrainRequest:
    """What training one candidate needs.

    Attributes:
        train_path: The training split (parquet, one row per product, a label column per type).
        validation_path: The validation split (SageMaker's container reports its metrics on it).
        package_type: Which type's labels to learn.
        features: Feature configuration.
        model: Model type and hyperparameters.
        model_out: Where model.tar.gz is written.
        candidate_key: The candidate's identity (see `packwise.lineage`).
        data_fingerprint: Fingerprint of the label snapshot.
    """

    train_path: Path
    validation_path: Path
    package_type: str
    features: FeatureConfig
    model: ModelConfig
    model_out: Path
    candidate_key: str
    data_fingerprint: str

    def summary(self, labels: pd.Series, n_features: int, start: float) -> TrainSummary:
        """The gate's summary of this candidate: its labels, its feature count and the seconds since `start`
        (a `time.perf_counter()` reading), whatever compute trained it."""
        import time

        from packwise.training import TrainSummary

        return TrainSummary(
            package_type=self.package_type,
            model_type=self.model.type,
            candidate_key=self.candidate_key,
            data_fingerprint=self.data_fingerprint,
            label_count=len(labels),
            positive_rate=float(labels.mean()),
            n_features=n_features,
            seconds=round(time.perf_counter() - start, 3),
        )


@dataclass(frozen=True)
class TrainedCandidate:
    """A trained candidate: the gate's summary and where the work ran (artifact metadata)."""

    summary: TrainSummary
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelToScore:
    """A model file to score with, under ``key`` (e.g. candidate, champion)."""

    key: str
    package_type: str
    model_file: Path
    spec: FeatureSpec


class Compute(Protocol):
    """Somewhere to train candidates and score products."""

    def train(self, request: TrainRequest) -> TrainedCandidate:
        """Trains one candidate and writes its model.tar.gz to ``request.model_out``."""
        ...

    def score(
        self, products: pd.DataFrame, models: Sequence[ModelToScore], data_fingerprint: str
    ) -> tuple[dict[str, np.ndarray], list[str]]:
        """Probabilities per model key (aligned with ``products``) and the names of the jobs that ran, if any."""
        ...

    def score_shard(self, shard_path: Path, plan: Mapping[str, Any], out_path: Path) -> dict[str, Any]:
        """Scores one inference shard into ``out_path``; returns its statistics (rows, recommended, unseen,
        seconds, seconds_predict)."""
        ...


def open_compute(
    step: Step,
    compute: ComputeConfig,
    sagemaker: SageMakerConfig | None = None,
    inference: InferenceConfig | None = None,
) -> Compute:
    """The compute that ``compute.<step>`` chooses.

    Args:
        step: training, evaluation or inference.
        compute: The ``compute`` section.
        sagemaker: The ``sagemaker`` section (needed when the step runs on SageMaker).
        inference: The ``inference`` section (batch rows and threads of local shard scoring; the
            recommendation policy and costs of shard scoring, local or on SageMaker).

    Raises:
        ConfigError: The step runs on SageMaker and the ``sagemaker`` section is missing.
    """
    from packwise.errors import ConfigError

    target = getattr(compute, step)
    if target == "sagemaker":
        if sagemaker is None:
            raise ConfigError(f"compute.{step} is sagemaker but no sagemaker section was given; set it in the config")
        from packwise.compute.sagemaker import SageMakerCompute

        return SageMakerCompute(sagemaker, inference=inference)
    from packwise.compute.local import LocalCompute

    return LocalCompute(inference)
