"""The weekly training job's steps: one plain function per training component.

Each function takes paths and validated config objects, does one step, and returns a JSON-friendly
summary; the KFP component around it only unpacks artifact paths. All of it runs without KFP.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from packwise.config import (
    FeatureConfig,
    GateConfig,
    ModelConfig,
    NotifyConfig,
    RegistryConfig,
    SplitConfig,
    WarehouseConfig,
    package_type_names,
)
from packwise.errors import PackwiseError
from packwise.progress import task_report


@dataclass(frozen=True)
class TrainSummary:
    """What the gate needs to know about a candidate's training data."""

    package_type: str
    model_type: str
    candidate_key: str
    data_fingerprint: str
    label_count: int
    positive_rate: float
    n_features: int
    seconds: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainSummary:
        return cls(**json.loads(text))


def train_candidate(
    train_path: Path,
    package_type: str,
    features: FeatureConfig,
    model: ModelConfig,
    model_out: Path,
    candidate_key: str,
    data_fingerprint: str,
) -> TrainSummary:
    """Trains the candidate of one package type on its labelled training products.

    Args:
        train_path: The training split (parquet, one row per product, a label column per type).
        package_type: Which type's labels to learn.
        features: Feature configuration.
        model: Model type and hyperparameters.
        model_out: Where model.tar.gz is written.
        candidate_key: The candidate's identity (see `packwise.lineage`).
        data_fingerprint: Fingerprint of the label snapshot it was trained from.
    """
    from packwise.artifact import save_model_artifact
    from packwise.faults import maybe_fail
    from packwise.models import get_model_type
    from packwise.split import read_split

    with task_report("train", package_type):
        maybe_fail("train", package_type)
        start = time.perf_counter()
        plugin = get_model_type(model.type)
        products, labels = read_split(train_path, package_type, features.input_columns(plugin.uses_text))
        spec = plugin.fit_spec(products, features, model)
        from packwise.features import build_features

        rows = build_features(products, spec)
        booster = plugin.train(rows, labels, model)
        save_model_artifact(booster, spec, model.type, package_type, model_out)
        return TrainSummary(
            package_type=package_type,
            model_type=model.type,
            candidate_key=candidate_key,
            data_fingerprint=data_fingerprint,
            label_count=len(labels),
            positive_rate=float(labels.mean()),
            n_features=len(spec.names),
            seconds=round(time.perf_counter() - start, 3),
        )


@dataclass(frozen=True)
class EvaluationResult:
    """Candidate and champion, both scored on this run's validation split."""

    package_type: str
    candidate: dict[str, Any]
    champion: dict[str, Any] | None
    champion_version: int | None
    champion_label_stats: dict[str, Any] | None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EvaluationResult:
        return cls(**json.loads(text))


def evaluate_candidate(
    model_path: Path,
    validation_path: Path,
    package_type: str,
    threshold: float,
    registry_config: RegistryConfig,
    scratch_dir: Path,
) -> EvaluationResult:
    """Scores the candidate and re-scores the current champion on the same validation rows.

    Stored champion metrics come from an older split and are not comparable, so the champion's model
    is fetched from the registry and scored here.
    """
    from packwise.artifact import load_model_artifact
    from packwise.evaluation import score_metrics
    from packwise.faults import maybe_fail
    from packwise.models.base import predict
    from packwise.registry import open_registry
    from packwise.split import read_split

    with task_report("evaluate", package_type):
        maybe_fail("evaluate", package_type)
        products, labels = read_split(validation_path, package_type)
        candidate = load_model_artifact(model_path)
        prob, _ = predict(candidate.booster, candidate.spec, products)
        cand_metrics = score_metrics(labels, prob, threshold)

        registry = open_registry(registry_config)
        champ = registry.champion(package_type)
        champ_metrics = None
        if champ is not None:
            scratch_dir.mkdir(parents=True, exist_ok=True)
            champ_file = registry.download_model(package_type, champ.version, scratch_dir)
            champion = load_model_artifact(champ_file)
            champ_prob, _ = predict(champion.booster, champion.spec, products)
            champ_metrics = score_metrics(labels, champ_prob, threshold).to_dict()
        return EvaluationResult(
            package_type=package_type,
            candidate=cand_metrics.to_dict(),
            champion=champ_metrics,
            champion_version=None if champ is None else champ.version,
            champion_label_stats=None if champ is None else dict(champ.label_stats),
        )


def compare_with_champion(train_json: str, evaluation_json: str, gate: GateConfig) -> Any:
    """Runs the promotion gate on a candidate's evidence; returns the `GateDecision`."""
    from packwise.faults import maybe_fail

    with task_report("compare", json.loads(train_json)["package_type"]):
        maybe_fail("compare", json.loads(train_json)["package_type"])
        from packwise.gate import Evidence, evaluate_gate

        summary = TrainSummary.from_json(train_json)
        ev = EvaluationResult.from_json(evaluation_json)
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
        return evaluate_gate(cand, champ, gate)


def register_candidate(
    model_path: Path,
    train_json: str,
    evaluation_json: str,
    decision_json: str,
    promote: bool,
    registry_config: RegistryConfig,
    who: str = "packwise-pipeline",
) -> dict[str, Any]:
    """Registers the candidate: Approved (the new champion) on the approve path, else as decided.

    Idempotent: a candidate already registered (same candidate key) is returned as it is. On the approve
    path the champion must still be the one the gate compared against; if a person or another run changed
    it meanwhile, the candidate goes to manual review instead of silently replacing a champion it was
    never compared with.
    """
    from packwise.faults import maybe_fail

    with task_report("register", json.loads(train_json)["package_type"]):
        maybe_fail("register", json.loads(train_json)["package_type"])
        from packwise.gate import GateDecision
        from packwise.registry import Candidate, Status, open_registry

        summary = TrainSummary.from_json(train_json)
        ev = EvaluationResult.from_json(evaluation_json)
        decision = GateDecision.from_dict(json.loads(decision_json))
        registry = open_registry(registry_config)
        existing = registry.find_by_candidate_key(summary.package_type, summary.candidate_key)
        # A re-run goes through register() too: it completes a registration a crash interrupted.
        status = Status(decision.status) if existing is None else existing.status
        reason = decision.reason if existing is None else (existing.reason or decision.reason)
        if promote and existing is None and status != Status.APPROVED:
            raise PackwiseError(f"{summary.package_type}: approve branch got a {status} decision (wiring bug)")
        if not promote and existing is None and status == Status.APPROVED:
            raise PackwiseError(f"{summary.package_type}: reject branch got an Approved decision (wiring bug)")
        if promote and existing is None:
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
            )
        )
        return {"version": version.version, "status": str(version.status), "reused": existing is not None}


def _version_metrics(ev: EvaluationResult) -> dict[str, float]:
    """The candidate's scores, and the champion's on the same split, as recorded with the version."""
    names = ("auc", "pr_auc", "log_loss")
    metrics = {k: float(ev.candidate[k]) for k in names}
    if ev.champion is not None:
        metrics.update({f"champion_{k}": float(ev.champion[k]) for k in names})
    return metrics


def extract_labels(warehouse: WarehouseConfig, storage_root: Path, week: int, run_id: str) -> dict[str, Any]:
    """Unloads the week's label snapshot (content-addressed) and records it against the run.

    Always runs (it must look at the data to fingerprint it); everything downstream keys its cache on the
    snapshot's directory, which is named by the fingerprint.
    """
    from packwise.config import PackwiseConfig, StorageConfig
    from packwise.faults import maybe_fail
    from packwise.lineage import write_run_record
    from packwise.snapshot import extract_snapshot

    with task_report("extract", None):
        maybe_fail("extract")
        config = PackwiseConfig(storage=StorageConfig(root=storage_root), warehouse=warehouse)
        info = extract_snapshot(config, week)
        record = {
            "run_id": run_id,
            "pipeline": "training",
            "week": week,
            "fingerprint": info.fingerprint,
            "snapshot_dir": str(info.path),
            "n_products": info.n_products,
            "n_labels": info.n_labels,
        }
        write_run_record(storage_root, run_id, record)
        return record


def check_snapshot(
    snapshot_dir: Path, features: FeatureConfig, package_types: list[Any], model: ModelConfig
) -> dict[str, Any]:
    """Validates the snapshot before any training; raises DataValidationError on the first problem."""
    from packwise.faults import maybe_fail
    from packwise.models import get_model_type
    from packwise.validation import validate_snapshot

    with task_report("validate", None):
        maybe_fail("validate")
        names = package_type_names(package_types)
        stats = validate_snapshot(snapshot_dir, features, names, get_model_type(model.type).uses_text)
        result: dict[str, Any] = stats.to_dict()
        return result


def split_labels(
    snapshot_dir: Path, train_out: Path, validation_out: Path, split: SplitConfig, package_types: list[Any]
) -> dict[str, Any]:
    """Splits by product, stratified; see `packwise.split`."""
    from packwise.faults import maybe_fail
    from packwise.snapshot import load_snapshot_manifest
    from packwise.split import split_snapshot

    with task_report("split", None):
        maybe_fail("split")
        names = package_type_names(package_types)
        summary = split_snapshot(snapshot_dir, train_out, validation_out, split.train_ratio, split.seed, names)
        result: dict[str, Any] = summary.to_dict()
        result["fingerprint"] = load_snapshot_manifest(snapshot_dir).fingerprint
        return result


def notify_run(
    storage_root: Path,
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
