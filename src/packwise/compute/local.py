"""The local compute: training and scoring in the task's own process (xgboost on the task's CPUs)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packwise.compute import ModelToScore, TrainedCandidate, TrainRequest

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from packwise.config import InferenceConfig


class LocalCompute:
    """Trains with the model type's plugin and scores with `packwise.scoring`, here and now.

    Args:
        inference: The ``inference`` section (shard scoring's batch rows and threads); defaults when None.
    """

    def __init__(self, inference: InferenceConfig | None = None) -> None:
        from packwise.config import InferenceConfig

        self.inference = inference or InferenceConfig()

    def train(self, request: TrainRequest) -> TrainedCandidate:
        from packwise.artifact import save_model_artifact
        from packwise.models import get_model_type
        from packwise.split import read_split

        start = time.perf_counter()
        plugin = get_model_type(request.model.type)
        columns = request.features.input_columns(plugin.uses_text)
        products, labels = read_split(request.train_path, request.package_type, columns)
        booster, spec = plugin.fit(products, labels, request.features, request.model)
        save_model_artifact(booster, spec, request.model.type, request.package_type, request.model_out)
        return TrainedCandidate(request.summary(labels, len(spec.names), start))

    def score(
        self, products: pd.DataFrame, models: Sequence[ModelToScore], data_fingerprint: str
    ) -> tuple[dict[str, np.ndarray], list[str]]:
        from packwise.artifact import load_model_artifact
        from packwise.models.base import predict

        prob = {}
        for model in models:
            loaded = load_model_artifact(model.model_file)
            prob[model.key], _ = predict(loaded.booster, loaded.spec, products, self.inference.engine)
        return prob, []

    def score_shard(self, shard_path: Path, plan: Mapping[str, Any], out_path: Path) -> dict[str, Any]:
        from packwise.cores import shard_threads
        from packwise.inference.shards import load_scoring_models
        from packwise.recommendation import cost_model
        from packwise.scoring import Scorer

        inference = self.inference
        cost = cost_model(inference.policy, inference.package_costs, inference.damage_cost, plan["package_types"])
        # a run of fewer shards than are scored at once gives its shards the idle cores (packwise.cores)
        threads = inference.score_threads or shard_threads(int(plan.get("n_shards", 0)), inference.local_parallelism)
        scorer = Scorer(load_scoring_models(plan), threads=threads, cost=cost, engine=inference.engine)
        stats = scorer.score_file(shard_path, out_path, self.inference.batch_rows)
        return stats.model_dump()
