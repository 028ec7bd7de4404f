"""The SageMaker compute: training jobs and batch transform (XGBoost 3.0-5), or training and Processing
jobs on Packwise's own image (``sagemaker.training_image: packwise``, every model type), driven from the task.

A retried or resumed task attaches to the jobs it already started (job names derive from what a job
computes); a cancelled task stops its jobs. The outputs have the local compute's shape (a model.tar.gz
stamped with Packwise's feature recipe; probabilities aligned with the products; the local scorer's
parquet schema), so the steps around it do not know where the work ran.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packwise.compute import ModelToScore, TrainedCandidate, TrainRequest

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from packwise.config import InferenceConfig, SageMakerConfig
    from packwise.features import FeatureSpec
    from packwise.sagemaker.session import Clients


class SageMakerCompute:
    """Runs the work as SageMaker jobs.

    Args:
        config: The ``sagemaker`` section.
        clients: AWS clients; opened from ``config`` (the standard credential chain) on first use when None.
    """

    def __init__(
        self, config: SageMakerConfig, clients: Clients | None = None, inference: InferenceConfig | None = None
    ) -> None:
        self.config = config
        self._clients = clients
        self.inference = inference  # the recommendation policy and its costs, as local scoring applies them

    @property
    def clients(self) -> Clients:
        if self._clients is None:
            from packwise.sagemaker.session import open_clients

            self._clients = open_clients(self.config)
        return self._clients

    def train(self, request: TrainRequest, after_create: Callable[[Any], None] | None = None) -> TrainedCandidate:
        """Trains in a training job; ``after_create`` is called once the job exists (fault drills use it)."""
        from packwise.artifact import load_model_artifact, save_model_artifact
        from packwise.errors import ConfigError
        from packwise.faults import maybe_fail
        from packwise.features import build_features
        from packwise.models import get_model_type
        from packwise.sagemaker.training import run_training_job
        from packwise.split import read_split

        start = time.perf_counter()
        model = request.model
        plugin = get_model_type(model.type)
        if self.config.training_image == "packwise":
            return self._train_on_packwise_image(request, plugin.uses_text, start, after_create)
        if plugin.uses_text:
            raise ConfigError(
                f"model.type {model.type} reads text, which the built-in XGBoost container's CSV channels cannot "
                "carry; set sagemaker.training_image: packwise (or compute.training: local)"
            )
        columns = request.features.input_columns(False)
        products, labels = read_split(request.train_path, request.package_type, columns)
        val_products, val_labels = read_split(request.validation_path, request.package_type, columns)
        spec = plugin.fit_spec(products, request.features, model)
        clients = self.clients
        with tempfile.TemporaryDirectory(prefix="packwise-sm-train-") as tmp:
            raw = Path(tmp) / "model.tar.gz"
            job = run_training_job(
                clients,
                self.config,
                model,
                request.package_type,
                request.candidate_key,
                request.data_fingerprint,
                (build_features(products, spec), labels),
                (build_features(val_products, spec), val_labels),
                raw,
                after_create=after_create or (lambda _: maybe_fail("sagemaker-job-created", request.package_type)),
            )
            # SageMaker's booster knows nothing of Packwise: stamp the recipe on it (the trees are untouched)
            trained = load_model_artifact(raw, spec=spec)
            save_model_artifact(trained.booster, spec, model.type, request.package_type, request.model_out)
        summary = request.summary(labels, len(spec.names), start)
        details = {"sagemaker_training_job": job.job_name, "sagemaker_model_data": job.model_data}
        return TrainedCandidate(summary, details)

    def _train_on_packwise_image(
        self, request: TrainRequest, uses_text: bool, start: float, after_create: Callable[[Any], None] | None
    ) -> TrainedCandidate:
        from packwise.artifact import load_model_artifact
        from packwise.faults import maybe_fail
        from packwise.sagemaker.packwise_image import run_packwise_training_job
        from packwise.split import read_split

        columns = request.features.input_columns(uses_text)
        _, labels = read_split(request.train_path, request.package_type, [])
        job = run_packwise_training_job(
            self.clients,
            self.config,
            request.model,
            request.features,
            request.package_type,
            request.candidate_key,
            request.data_fingerprint,
            (request.train_path, request.validation_path),
            columns,
            request.model_out,
            after_create=after_create or (lambda _: maybe_fail("sagemaker-job-created", request.package_type)),
        )
        spec = load_model_artifact(request.model_out).spec
        summary = request.summary(labels, len(spec.names), start)
        details = {"sagemaker_training_job": job.job_name, "sagemaker_model_data": job.model_data}
        return TrainedCandidate(summary, details)

    @property
    def uses_processing(self) -> bool:
        """Scoring runs in Processing jobs on Packwise's image (``training_image: packwise``), else batch
        transform on the built-in container."""
        return self.config.training_image == "packwise"

    def _transform_can_score(self, specs: Sequence[FeatureSpec]) -> None:
        from packwise.errors import ConfigError

        for spec in specs:
            if spec.text_columns:
                raise ConfigError(
                    f"a model reads text ({', '.join(spec.text_columns)}), which batch transform's CSV cannot carry; "
                    "set sagemaker.training_image: packwise to score in Processing jobs"
                )

    def score(
        self, products: pd.DataFrame, models: Sequence[ModelToScore], data_fingerprint: str
    ) -> tuple[dict[str, np.ndarray], list[str]]:
        """Scores in one Processing job (``training_image: packwise``) or parallel batch transform jobs."""
        if self.uses_processing:
            from packwise.sagemaker.packwise_image import ProcessingModel, score_with_processing

            return score_with_processing(
                self.clients,
                self.config,
                products,
                [ProcessingModel(m.key, m.model_file) for m in models],
                "eval",
                data_fingerprint,
            )
        from packwise.sagemaker.transform import TransformModel, score_with_transform

        self._transform_can_score([m.spec for m in models])
        transform_models = [TransformModel(m.key, m.package_type, m.model_file, m.spec) for m in models]
        prob, runs = score_with_transform(
            self.clients, self.config, products, transform_models, "eval", data_fingerprint
        )
        return prob, [r.job.name for r in runs]

    def score_shard(self, shard_path: Path, plan: Mapping[str, Any], out_path: Path) -> dict[str, Any]:
        """Scores a shard with every package type's model in parallel batch transform jobs.

        Job names derive from the shard's content digest, the shard name and each model file, so a retried
        task attaches to its jobs.
        """
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        from packwise.config import InferenceConfig
        from packwise.inference.shards import load_scoring_models, shard_name
        from packwise.recommendation import cost_model
        from packwise.sagemaker.session import sha256_file
        from packwise.sagemaker.transform import FileRows, TransformModel, score_with_transform
        from packwise.score_stats import ScoreStats
        from packwise.scoring import Scorer, output_schema, recommend_with

        start = time.perf_counter()
        name = shard_name(shard_path)
        models = load_scoring_models(plan)
        inference = self.inference or InferenceConfig()
        cost = cost_model(inference.policy, inference.package_costs, inference.damage_cost, plan["package_types"])
        # only its input columns and unseen counts: the jobs score, so no tree engine conversion
        scorer = Scorer(models, threads=1, engine="xgboost")
        # read a slice at a time by the jobs' staging: a 5M-product shard read whole into pandas held 1.1 GiB
        products = FileRows(shard_path, scorer.input_columns)
        transform_models = [
            TransformModel(m.package_type, m.package_type, Path(plan["models"][m.package_type]["path"]), m.spec)
            for m in models
        ]
        predicted = time.perf_counter()
        if self.uses_processing:
            from packwise.sagemaker.packwise_image import ProcessingModel, score_with_processing

            processing_models = [ProcessingModel(m.key, m.model_file) for m in transform_models]
            prob_by_type, _ = score_with_processing(
                self.clients, self.config, products, processing_models, "score", sha256_file(shard_path), (name,)
            )
        else:
            self._transform_can_score([m.spec for m in models])
            prob_by_type, _ = score_with_transform(
                self.clients,
                self.config,
                products,
                transform_models,
                "score",
                sha256_file(shard_path),
                (name,),
            )
        seconds_predict = time.perf_counter() - predicted
        package_types = [m.package_type for m in models]
        prob = np.column_stack([prob_by_type[t] for t in package_types]).astype(np.float32)
        rec = recommend_with(prob, [m.threshold for m in models], cost)
        columns: list[pa.Array] = [products.ids()]
        columns += [pa.array(prob[:, j]) for j in range(prob.shape[1])]
        columns.append(pa.DictionaryArray.from_arrays(pa.array(rec, type=pa.int32()), pa.array(package_types)))
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_path.with_name(f".{out_path.name}.tmp")
        pq.write_table(pa.Table.from_arrays(columns, schema=output_schema(package_types)), tmp, compression="zstd")
        tmp.replace(out_path)
        counts = np.bincount(rec, minlength=len(package_types))
        del columns
        stats = ScoreStats(
            rows=len(rec),
            recommended={t: int(c) for t, c in zip(package_types, counts, strict=True)},
            unseen=scorer.unseen_in_file(shard_path),
            seconds=time.perf_counter() - start,
            seconds_predict=seconds_predict,
            expected_cost=None if cost is None else cost.expected(prob, rec),
        )
        return stats.model_dump()
