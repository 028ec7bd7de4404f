"""The weekly training job's steps: one plain function per training component, named like it.

extract, validate, split, train, evaluate, compare, register, notify: each takes paths and validated
config objects, does one step, and returns a JSON-friendly summary; the KFP component around it only
unpacks artifact paths. Train and evaluate ask `packwise.compute` for the heavy work (local or SageMaker,
from ``compute.training`` / ``compute.evaluation``). All of it runs without KFP.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from packwise.config import (
    ComputeConfig,
    FeatureConfig,
    GateConfig,
    ModelConfig,
    NotifyConfig,
    RegistryConfig,
    SageMakerConfig,
    SplitConfig,
    WarehouseConfig,
    package_type_names,
)
from packwise.errors import PackwiseError
from packwise.progress import task_report

if TYPE_CHECKING:
    from packwise.compute import TrainedCandidate
    from packwise.gate import GateDecision


class TrainSummary(BaseModel):
    """What the gate needs to know about a candidate's training data (JSON: ``model_dump_json``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    package_type: str
    model_type: str
    candidate_key: str
    data_fingerprint: str
    label_count: int
    positive_rate: float
    n_features: int
    seconds: float


def train(
    train_path: Path,
    validation_path: Path,
    package_type: str,
    features: FeatureConfig,
    model: ModelConfig,
    model_out: Path,
    candidate_key: str,
    data_fingerprint: str,
    compute: ComputeConfig | None = None,
    sagemaker: SageMakerConfig | None = None,
) -> TrainedCandidate:
    """Trains the candidate of one package type on its labelled training products.

    Args:
        train_path: The training split (parquet, one row per product, a label column per type).
        validation_path: The validation split (SageMaker's container reports its metrics on it).
        package_type: Which type's labels to learn.
        features: Feature configuration.
        model: Model type and hyperparameters.
        model_out: Where model.tar.gz is written.
        candidate_key: The candidate's identity (see `packwise.lineage`).
        data_fingerprint: Fingerprint of the label snapshot it was trained from.
        compute: The ``compute`` section: ``compute.training`` says where the work runs; local when None.
        sagemaker: The ``sagemaker`` section, for ``compute.training: sagemaker``.

    Returns:
        The gate's summary and, in ``details``, where the work ran.
    """
    from packwise.compute import TrainRequest, open_compute
    from packwise.faults import maybe_fail

    with task_report("train", package_type):
        maybe_fail("train", package_type)
        request = TrainRequest(
            train_path, validation_path, package_type, features, model, model_out, candidate_key, data_fingerprint
        )
        return open_compute("training", compute or ComputeConfig(), sagemaker).train(request)


@dataclass(frozen=True)
class LabelQualityInputs:
    """What the evaluate step needs to measure label quality against the champion's snapshot.

    Attributes:
        snapshot_dir: This run's snapshot directory.
        snapshots_root: `storage.snapshots`, where the champion's snapshot is found by its fingerprint.
        train_ratio: `split.train_ratio`.
        split_seed: `split.seed`.
        confident: `gate.confident_probability`.
    """

    snapshot_dir: Path | str
    snapshots_root: Path | str
    train_ratio: float
    split_seed: int
    confident: float

    def measure(self, package_type: str, candidate: Any, champion: Any, version: Any) -> Any:
        """The `LabelQuality` of the candidate against the champion `version`; None if its snapshot is gone.

        With an ``s3://`` storage root both snapshots are staged into the task first.
        """
        from packwise.label_quality import champion_label_quality
        from packwise.snapshot import MANIFEST_FILE
        from packwise.storage import is_object_store, join, task_storage

        def run(snapshot_dir: Path | str, snapshots_root: Path | str) -> Any:
            return champion_label_quality(
                package_type,
                candidate,
                champion,
                version.data_fingerprint,
                Path(snapshot_dir),
                Path(snapshots_root),
                self.train_ratio,
                self.split_seed,
                self.confident,
            )

        if not is_object_store(self.snapshots_root):
            return run(self.snapshot_dir, self.snapshots_root)
        with task_storage(str(self.snapshots_root).rsplit("/", 1)[0], write=False) as storage:
            here = stage_snapshot(storage, self.snapshot_dir)
            if version.data_fingerprint:
                storage.stage_in(join(self.snapshots_root, version.data_fingerprint), MANIFEST_FILE)
            return run(here, storage.local(self.snapshots_root))


class EvaluationResult(BaseModel):
    """Candidate and champion, both scored on this run's validation split (JSON: ``model_dump_json``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    package_type: str
    candidate: dict[str, Any]
    champion: dict[str, Any] | None
    champion_version: int | None
    champion_label_stats: dict[str, Any] | None
    label_quality: dict[str, Any] | None = None  # packwise.label_quality.LabelQuality.model_dump()


def evaluate(
    model_path: Path,
    validation_path: Path,
    package_type: str,
    threshold: float,
    registry_config: RegistryConfig,
    scratch_dir: Path,
    data_fingerprint: str = "",
    compute: ComputeConfig | None = None,
    sagemaker: SageMakerConfig | None = None,
    label_quality: LabelQualityInputs | None = None,
) -> tuple[EvaluationResult, list[str]]:
    """Scores the candidate and re-scores the current champion on the same validation rows.

    Stored champion metrics come from an older split and are not comparable, so the champion's model
    is fetched from the registry and scored here (both at once where the compute runs jobs); the metrics
    are computed here from the probabilities, wherever the scoring ran.

    Args:
        model_path: The candidate's model.tar.gz.
        validation_path: The validation split.
        package_type: The package type.
        threshold: Decision threshold (confusion matrix).
        registry_config: The ``registry`` section, to fetch the champion.
        scratch_dir: Where the champion's model file is downloaded.
        data_fingerprint: Fingerprint of the split's data (names SageMaker's jobs and staged inputs).
        compute: The ``compute`` section: ``compute.evaluation`` says where the scoring runs; local when None.
        sagemaker: The ``sagemaker`` section, for ``compute.evaluation: sagemaker``.
        label_quality: When given, this run's labels are also measured against the champion's snapshot
            (`packwise.label_quality`) for the gate.

    Returns:
        The evaluation, and the names of the jobs that scored (none when local).
    """
    from packwise.artifact import load_model_artifact
    from packwise.compute import ModelToScore, open_compute
    from packwise.evaluation import score_metrics
    from packwise.faults import maybe_fail
    from packwise.registry import open_registry
    from packwise.split import read_split

    with task_report("evaluate", package_type):
        maybe_fail("evaluate", package_type)
        products, labels = read_split(validation_path, package_type)
        models = [ModelToScore("candidate", package_type, model_path, load_model_artifact(model_path).spec)]
        registry = open_registry(registry_config)
        champ = registry.champion(package_type)
        if champ is not None:
            scratch_dir.mkdir(parents=True, exist_ok=True)
            champ_file = registry.download_model(package_type, champ.version, scratch_dir)
            models.append(ModelToScore("champion", package_type, champ_file, load_model_artifact(champ_file).spec))
        prob, jobs = open_compute("evaluation", compute or ComputeConfig(), sagemaker).score(
            products, models, data_fingerprint
        )
        champ_metrics = None
        quality = None
        if champ is not None:
            champ_metrics = score_metrics(labels, prob["champion"], threshold).model_dump(mode="json")
            if label_quality is not None:
                quality = label_quality.measure(
                    package_type, load_model_artifact(model_path), load_model_artifact(champ_file), champ
                )
        result = EvaluationResult(
            package_type=package_type,
            candidate=score_metrics(labels, prob["candidate"], threshold).model_dump(mode="json"),
            champion=champ_metrics,
            champion_version=None if champ is None else champ.version,
            champion_label_stats=None if champ is None else dict(champ.label_stats),
            label_quality=None if quality is None else quality.model_dump(),
        )
        return result, jobs


def compare(train_json: str, evaluation_json: str, gate: GateConfig) -> GateDecision:
    """Runs the promotion gate on a candidate's evidence; returns the `GateDecision`."""
    from packwise.faults import maybe_fail

    summary = TrainSummary.model_validate_json(train_json)
    with task_report("compare", summary.package_type):
        maybe_fail("compare", summary.package_type)
        from packwise.gate import Evidence, evaluate_gate

        ev = EvaluationResult.model_validate_json(evaluation_json)
        cand = Evidence(
            package_type=summary.package_type,
            version=None,
            auc=ev.candidate["auc"],
            pr_auc=ev.candidate["pr_auc"],
            log_loss=ev.candidate["log_loss"],
            label_count=summary.label_count,
            positive_rate=summary.positive_rate,
        )
        champ = None
        if ev.champion is not None and ev.champion_label_stats is not None:
            champ = Evidence(
                package_type=summary.package_type,
                version=ev.champion_version,
                auc=ev.champion["auc"],
                pr_auc=ev.champion["pr_auc"],
                log_loss=ev.champion["log_loss"],
                label_count=int(ev.champion_label_stats["count"]),
                positive_rate=float(ev.champion_label_stats["positive_rate"]),
            )
        from packwise.label_quality import LabelQuality

        quality = None if ev.label_quality is None else LabelQuality.model_validate(ev.label_quality)
        return evaluate_gate(cand, champ, gate, quality)


def register(
    model_path: Path,
    train_json: str,
    evaluation_json: str,
    decision_json: str,
    registry_config: RegistryConfig,
    who: str = "packwise-pipeline",
    training: Any = None,
) -> dict[str, Any]:
    """Registers the candidate as the gate decided: Approved (the new champion), Rejected or
    PendingManualApproval; the decision's outcome says which.

    `training` (a `packwise.registry.TrainingRecord`, see `training_record`) is what the version's MLflow
    run shows of how the candidate was trained.

    Idempotent: a candidate already registered (same candidate key) is returned as it is. An approved
    candidate needs the champion to still be the one the gate compared against; if a person or another
    run changed it meanwhile, the candidate goes to manual review instead of silently replacing a champion
    it was never compared with.
    """
    from packwise.faults import maybe_fail

    summary = TrainSummary.model_validate_json(train_json)
    with task_report("register", summary.package_type):
        maybe_fail("register", summary.package_type)
        from packwise.gate import GateDecision
        from packwise.registry import Candidate, Status, open_registry

        ev = EvaluationResult.model_validate_json(evaluation_json)
        decision = GateDecision.from_dict(json.loads(decision_json))
        registry = open_registry(registry_config)
        existing = registry.find_by_candidate_key(summary.package_type, summary.candidate_key)
        # A re-run goes through register() too: it completes a registration a crash interrupted.
        status = Status(decision.status) if existing is None else existing.status
        reason = decision.reason if existing is None else (existing.reason or decision.reason)
        if existing is None and decision.approved != (status == Status.APPROVED):
            raise PackwiseError(
                f"{summary.package_type}: decision {decision.outcome} with status {status} is inconsistent; "
                "re-run compare"
            )
        if decision.approved and existing is None:
            current = registry.champion(summary.package_type)
            current_version = None if current is None else current.version
            if current_version != ev.champion_version:
                status = Status.PENDING
                reason = (
                    f"review: champion changed from v{ev.champion_version} to v{current_version} after the "
                    "comparison; approve with `packwise registry approve` if still wanted"
                )
        version = registry.register(
            Candidate(
                package_type=summary.package_type,
                model_file=model_path,
                status=status,
                candidate_key=summary.candidate_key,
                data_fingerprint=summary.data_fingerprint,
                model_type=summary.model_type,
                metrics=_version_metrics(ev),
                label_stats={"count": summary.label_count, "positive_rate": summary.positive_rate},
                gate_report=decision.report_markdown(),
                reason=reason,
                who=who,
                run_id="",  # a cached task cannot know its run; the run's exit handler stamps it
                training=training,
            )
        )
        return {"version": version.version, "status": str(version.status), "reused": existing is not None}


def training_record(
    train_path: Path,
    package_type: str,
    features: FeatureConfig,
    model: ModelConfig,
    split: SplitConfig,
    week: int,
    snapshot_dir: str,
    evaluation_json: str,
    example_rows: int = 3,
) -> Any:
    """The `TrainingRecord` of a candidate: params, split, week, label counts, a raw input example, metrics.

    Args:
        train_path: The training split (the input example's rows and the label counts come from it).
        package_type: The package type.
        features: The ``features`` section (which raw columns the model reads).
        model: The ``model`` section (type and hyperparameters).
        split: The ``split`` section.
        week: The training week.
        snapshot_dir: The label snapshot (logged as the run's dataset).
        evaluation_json: The evaluation (candidate and re-scored champion metrics).
        example_rows: Rows of the input example.
    """
    from packwise.models import get_model_type
    from packwise.registry import TrainingRecord
    from packwise.split import read_split

    ev = EvaluationResult.model_validate_json(evaluation_json)
    columns = features.input_columns(get_model_type(model.type).uses_text)
    products, labels = read_split(train_path, package_type, columns)
    example = products.head(example_rows).astype(object).where(products.head(example_rows).notna(), None)
    positives = int(labels.sum())
    return TrainingRecord(
        week=week,
        model_params={**model.params, "num_boost_round": model.num_boost_round, "type": model.type},
        split={"train_ratio": split.train_ratio, "seed": split.seed},
        label_counts={"positive": positives, "negative": len(labels) - positives},
        input_example=json.loads(example.to_json(orient="records", date_format="iso")),
        snapshot_uri=snapshot_dir,
        candidate_metrics=ev.candidate,
        champion_metrics=ev.champion,
        champion_version=ev.champion_version,
    )


def _version_metrics(ev: EvaluationResult) -> dict[str, float]:
    """The candidate's scores, and the champion's on the same split, as recorded with the version."""
    names = ("auc", "pr_auc", "log_loss")
    metrics = {k: float(ev.candidate[k]) for k in names}
    if ev.champion is not None:
        metrics.update({f"champion_{k}": float(ev.champion[k]) for k in names})
    return metrics


def extract(warehouse: WarehouseConfig, storage_root: str | Path, week: int, run_id: str) -> dict[str, Any]:
    """Unloads the week's label snapshot (content-addressed) and records it against the run.

    Week 0 means the newest week that has labels; the record holds the resolved week.

    Always runs (it must look at the data to fingerprint it); everything downstream keys its cache on the
    snapshot's directory, which is named by the fingerprint. With an ``s3://`` root the snapshot is built in
    the task's temporary mirror and uploaded to ``snapshots/<fingerprint>`` (manifest last; an existing one
    is kept), and ``snapshot_dir`` is its URI.
    """
    from packwise.config import PackwiseConfig, StorageConfig
    from packwise.faults import maybe_fail
    from packwise.lineage import write_run_record
    from packwise.snapshot import MANIFEST_FILE, extract_snapshot, resolve_training_week
    from packwise.storage import task_storage
    from packwise.warehouse import open_warehouse

    with task_report("extract", None), task_storage(storage_root) as storage:
        maybe_fail("extract")
        with open_warehouse(warehouse, read_only=True) as wh:
            # week 0 (the schedules) becomes the newest labelled week; a week past the history is refused.
            # Whether the week brings new labels is checked by `packwise train` (--allow-no-new-labels).
            week = resolve_training_week(wh, week, True, warehouse.label_weeks_query)
        config = PackwiseConfig(storage=StorageConfig(root=storage.local_root), warehouse=warehouse)
        info = extract_snapshot(config, week)
        record = {
            "run_id": run_id,
            "pipeline": "training",
            "week": week,
            "fingerprint": info.fingerprint,
            "snapshot_dir": storage.stage_out(info.path, MANIFEST_FILE),
            "n_products": info.n_products,
            "n_labels": info.n_labels,
        }
        write_run_record(storage_root, run_id, record)
        return record


def stage_snapshot(storage: Any, snapshot_dir: str | Path) -> Path:
    """The local path of a snapshot directory (a local path, or an ``s3://`` URI staged into the task).

    Raises:
        DataValidationError: An ``s3://`` snapshot without its manifest (absent, or its upload never finished).
    """
    from packwise.errors import DataValidationError
    from packwise.snapshot import MANIFEST_FILE
    from packwise.storage import is_object_store

    local = Path(storage.stage_in(snapshot_dir, MANIFEST_FILE))
    if is_object_store(snapshot_dir) and not (local / MANIFEST_FILE).exists():
        raise DataValidationError(f"{snapshot_dir} has no {MANIFEST_FILE}; re-run the extract step to rebuild it")
    return local


def _snapshot_storage(snapshot_dir: str | Path) -> Any:
    """The task storage a step reading one snapshot stages it through (checked for reading)."""
    from packwise.storage import task_storage

    return task_storage(snapshot_dir, write=False)


def validate(
    snapshot_dir: str | Path, features: FeatureConfig, package_types: list[Any], model: ModelConfig
) -> dict[str, Any]:
    """Validates the snapshot before any training; raises DataValidationError on the first problem.

    `snapshot_dir` is a local directory or the ``s3://`` URI of one (staged into the task first).
    """
    from packwise.faults import maybe_fail
    from packwise.models import get_model_type
    from packwise.validation import validate_snapshot

    with task_report("validate", None), _snapshot_storage(snapshot_dir) as storage:
        maybe_fail("validate")
        names = package_type_names(package_types)
        local = stage_snapshot(storage, snapshot_dir)
        stats = validate_snapshot(local, features, names, get_model_type(model.type).uses_text)
        for line in stats.warnings:
            print(f"validate: warning: {line}", flush=True)
        result: dict[str, Any] = stats.model_dump(mode="json")
        return result


def split(
    snapshot_dir: str | Path,
    train_out: Path,
    validation_out: Path,
    split_config: SplitConfig,
    package_types: list[Any],
) -> dict[str, Any]:
    """Splits by product, stratified; see `packwise.split`. `snapshot_dir` as in `validate`."""
    from packwise.faults import maybe_fail
    from packwise.snapshot import load_snapshot_manifest
    from packwise.split import split_snapshot

    with task_report("split", None), _snapshot_storage(snapshot_dir) as storage:
        maybe_fail("split")
        names = package_type_names(package_types)
        local = stage_snapshot(storage, snapshot_dir)
        summary = split_snapshot(local, train_out, validation_out, split_config.train_ratio, split_config.seed, names)
        result: dict[str, Any] = summary.model_dump(mode="json")
        result["fingerprint"] = load_snapshot_manifest(local).fingerprint
        return result


def notify(
    storage_root: str | Path,
    run_id: str,
    registry: RegistryConfig,
    notify: NotifyConfig,
    package_types: list[Any],
    features_json: str,
    split_json: str,
    model_json: str,
    pipeline_state: str,
    error_message: str,
) -> dict[str, Any]:
    """Sends the decision of every package type; runs whether the body succeeded or not."""
    with task_report("notify", None):
        from packwise.notify import open_notifier
        from packwise.run_summary import summarize_training_run, summary_markdown

        summary = summarize_training_run(
            storage_root,
            run_id,
            registry,
            package_type_names(package_types),
            features_json,
            split_json,
            model_json,
            pipeline_state,
            error_message,
        )
        subject, body = summary_markdown(summary)
        open_notifier(notify).send(subject, body, summary)
        return summary
