"""The training and evaluation steps with SageMaker as their compute: what ``components/sagemaker.py`` calls.

They return exactly what their local twins in ``packwise.training`` return (``TrainSummary``,
``EvaluationResult``), so compare, register and notify do not know where the work ran.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packwise.config import FeatureConfig, ModelConfig, RegistryConfig, SageMakerConfig
from packwise.progress import task_report
from packwise.sagemaker.session import Clients
from packwise.training import EvaluationResult, TrainSummary


@dataclass(frozen=True)
class SageMakerTraining:
    """The local summary plus where SageMaker did the work."""

    summary: TrainSummary
    job_name: str
    job_created: bool
    model_data: str


def train_candidate_sagemaker(
    train_path: Path,
    validation_path: Path,
    package_type: str,
    features: FeatureConfig,
    model: ModelConfig,
    sagemaker: SageMakerConfig,
    model_out: Path,
    candidate_key: str,
    data_fingerprint: str,
    clients: Clients | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> SageMakerTraining:
    """Trains the candidate of one package type in a SageMaker training job.

    Args:
        train_path: The training split.
        validation_path: The validation split (the container's validation channel).
        package_type: Which type's labels to learn.
        features: Feature configuration.
        model: Model type and hyperparameters; the type must be tabular (CSV channels).
        sagemaker: The ``sagemaker`` section.
        model_out: Where the model.tar.gz (SageMaker's booster, stamped with the feature recipe) is written.
        candidate_key: The candidate's identity; names the job with the fingerprint.
        data_fingerprint: Fingerprint of the label snapshot.
        clients: AWS clients; opened from ``sagemaker`` when None.
        sleep: Sleep between polls (tests pass a fake).
        clock: Monotonic clock (tests pass a fake).
    """
    from packwise.artifact import load_model_artifact, save_model_artifact
    from packwise.errors import ConfigError
    from packwise.faults import maybe_fail
    from packwise.features import build_features
    from packwise.models import get_model_type
    from packwise.sagemaker.session import open_clients
    from packwise.sagemaker.training import run_training_job
    from packwise.split import read_split

    with task_report("train", package_type):
        maybe_fail("train", package_type)
        start = time.perf_counter()
        plugin = get_model_type(model.type)
        if plugin.uses_text:
            raise ConfigError(
                f"model.type {model.type} reads text, which SageMaker's CSV channels cannot carry; use a tabular "
                "model type or set compute.training to local"
            )
        columns = features.input_columns(False)
        products, labels = read_split(train_path, package_type, columns)
        val_products, val_labels = read_split(validation_path, package_type, columns)
        spec = plugin.fit_spec(products, features, model)
        clients = clients or open_clients(sagemaker)
        with tempfile.TemporaryDirectory(prefix="packwise-sm-train-") as tmp:
            raw = Path(tmp) / "model.tar.gz"
            job = run_training_job(
                clients,
                sagemaker,
                model,
                package_type,
                candidate_key,
                data_fingerprint,
                (build_features(products, spec), labels),
                (build_features(val_products, spec), val_labels),
                raw,
                after_create=lambda _: maybe_fail("sagemaker-job-created", package_type),
                sleep=sleep,
                clock=clock,
            )
            # SageMaker's booster knows nothing of Packwise: stamp the recipe on it (the trees are untouched)
            trained = load_model_artifact(raw, spec=spec)
            save_model_artifact(trained.booster, spec, model.type, package_type, model_out)
        summary = TrainSummary(
            package_type=package_type,
            model_type=model.type,
            candidate_key=candidate_key,
            data_fingerprint=data_fingerprint,
            label_count=len(labels),
            positive_rate=float(labels.mean()),
            n_features=len(spec.names),
            seconds=round(time.perf_counter() - start, 3),
        )
        return SageMakerTraining(summary, job.job_name, job.created, job.model_data)


def evaluate_candidate_sagemaker(
    model_path: Path,
    validation_path: Path,
    package_type: str,
    threshold: float,
    registry_config: RegistryConfig,
    sagemaker: SageMakerConfig,
    data_fingerprint: str,
    scratch_dir: Path,
    clients: Clients | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[EvaluationResult, list[str]]:
    """Scores the candidate and re-scores the champion on the validation split in batch transform jobs.

    Both jobs run at the same time; the metrics are computed here from their outputs, exactly as the local
    evaluation computes them. Returns the evaluation and the transform job names.
    """
    from packwise.artifact import load_model_artifact
    from packwise.evaluation import score_metrics
    from packwise.faults import maybe_fail
    from packwise.registry import open_registry
    from packwise.sagemaker.session import open_clients
    from packwise.sagemaker.transform import TransformModel, score_with_transform
    from packwise.split import read_split

    with task_report("evaluate", package_type):
        maybe_fail("evaluate", package_type)
        products, labels = read_split(validation_path, package_type)
        candidate = load_model_artifact(model_path)
        models = [TransformModel("candidate", package_type, model_path, candidate.spec)]

        registry = open_registry(registry_config)
        champ = registry.champion(package_type)
        if champ is not None:
            scratch_dir.mkdir(parents=True, exist_ok=True)
            champ_file = registry.download_model(package_type, champ.version, scratch_dir)
            champion_model = load_model_artifact(champ_file)
            models.append(TransformModel("champion", package_type, champ_file, champion_model.spec))

        clients = clients or open_clients(sagemaker)
        prob, runs = score_with_transform(
            clients, sagemaker, products, models, "eval", data_fingerprint, sleep=sleep, clock=clock
        )
        cand_metrics = score_metrics(labels, prob["candidate"].astype("float64"), threshold)
        champ_metrics: dict[str, Any] | None = None
        if champ is not None:
            champ_metrics = score_metrics(labels, prob["champion"].astype("float64"), threshold).to_dict()
        result = EvaluationResult(
            package_type=package_type,
            candidate=cand_metrics.to_dict(),
            champion=champ_metrics,
            champion_version=None if champ is None else champ.version,
            champion_label_stats=None if champ is None else dict(champ.label_stats),
        )
        return result, [r.job.name for r in runs]


def score_shard_sagemaker(
    shard_path: Path,
    plan: dict[str, Any],
    sagemaker: SageMakerConfig,
    out_path: Path,
    clients: Clients | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Scores one inference shard with every package type's model in parallel batch transform jobs.

    The output file has the local scorer's schema (``packwise.scoring.output_schema``: product_id,
    ``prob_<type>`` per type, ``recommended_type``) and the statistics its shape, so collect and load do not
    know where the shard was scored. Job names derive from the shard's content digest, the shard name and
    each model file, so a retried task attaches to its jobs.

    Args:
        shard_path: The shard (parquet with product_id and the models' input columns).
        plan: The scoring plan (``package_types`` in order; per type ``path``, ``version``, ``threshold``).
        sagemaker: The ``sagemaker`` section.
        out_path: The scored file.
        clients: AWS clients; opened from ``sagemaker`` when None.
        sleep: Sleep between polls (tests pass a fake).
        clock: Monotonic clock (tests pass a fake).

    Returns:
        Rows, recommended type counts, unseen category counts and timings of the shard.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from packwise.faults import maybe_fail
    from packwise.files import sha256_file
    from packwise.inference import load_scoring_models, shard_name
    from packwise.sagemaker.session import open_clients
    from packwise.sagemaker.transform import TransformModel, score_with_transform
    from packwise.scoring import PRODUCT_ID, Scorer, output_schema, recommend

    name = shard_name(shard_path)
    with task_report("score-shard", name):
        maybe_fail("score-shard", name)
        start = time.perf_counter()
        models = load_scoring_models(plan)
        scorer = Scorer(models, threads=1)
        products = pq.read_table(shard_path, columns=scorer.input_columns).to_pandas()
        transform_models = [
            TransformModel(m.package_type, m.package_type, Path(plan["models"][m.package_type]["path"]), m.spec)
            for m in models
        ]
        clients = clients or open_clients(sagemaker)
        predicted = time.perf_counter()
        prob_by_type, _ = score_with_transform(
            clients, sagemaker, products, transform_models, "score", sha256_file(shard_path), (name,), sleep, clock
        )
        seconds_predict = time.perf_counter() - predicted
        package_types = [m.package_type for m in models]
        prob = np.column_stack([prob_by_type[t] for t in package_types]).astype(np.float32)
        rec = recommend(prob, [m.threshold for m in models])
        schema = output_schema(package_types)
        columns: list[pa.Array] = [pa.array(products[PRODUCT_ID].astype(str).to_numpy(), type=pa.string())]
        columns += [pa.array(prob[:, j]) for j in range(prob.shape[1])]
        columns.append(pa.DictionaryArray.from_arrays(pa.array(rec, type=pa.int32()), pa.array(package_types)))
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_path.with_name(f".{out_path.name}.tmp")
        pq.write_table(pa.Table.from_arrays(columns, schema=schema), tmp, compression="zstd")
        tmp.replace(out_path)
        counts = np.bincount(rec, minlength=len(package_types))
        return {
            "shard": name,
            "rows": len(products),
            "recommended": {t: int(c) for t, c in zip(package_types, counts, strict=True)},
            "unseen": scorer.unseen(scorer.features(products)),
            "seconds": round(time.perf_counter() - start, 4),
            "seconds_predict": round(seconds_predict, 4),
        }
