"""Training components: interface only. Each body unpacks its inputs and calls the packwise function of
its name in `packwise.training` (extract, validate, split, train, evaluate, compare, register, notify).

The functions are plain Python; `build_training_components(images)` turns them into lightweight KFP
components on their own images (`install_kfp_package=False`: the images already carry kfp and packwise,
so nothing is installed when a task starts). Config sections arrive as JSON strings so that changing one
section invalidates only the tasks that read it. Train and evaluate take the `compute` and `sagemaker`
sections: `compute.training` / `compute.evaluation` say whether the work runs in the task or as SageMaker
jobs (AWS credentials come from the pod's environment, IRSA on EKS, never from here).
"""

from dataclasses import dataclass
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output
from kfp.dsl.base_component import BaseComponent

from packwise_components.images import ImageSet, lightweight_component


def extract(
    warehouse_json: str,
    storage_root: str,
    week: int,
    run_id: str,
    job_id: str,
    snapshot: Output[Dataset],
) -> NamedTuple("ExtractOutputs", [("fingerprint", str), ("snapshot_dir", str)]):  # type: ignore[valid-type]
    """Extracts the week's labels and products into a content-addressed snapshot.

    Args:
        warehouse_json: The `warehouse` config section (JSON).
        storage_root: Root of Packwise's storage (snapshots, run records): a local directory or s3://bucket/prefix.
        week: Label snapshot week: every label observed up to this week; 0: the newest labelled week.
        run_id: Run id chosen by the caller; empty to use the orchestrator's job id.
        job_id: The orchestrator's job id (a placeholder filled in by KFP).
        snapshot: The snapshot's manifest, for lineage in the KFP UI.

    Returns:
        The data fingerprint and the snapshot directory every later task reads (its s3:// URI on an object store).
    """
    import json
    from pathlib import Path

    from packwise.config import WarehouseConfig
    from packwise.lineage import effective_run_id
    from packwise.storage import storage_path
    from packwise.training import extract as run

    record = run(
        WarehouseConfig.model_validate_json(warehouse_json),
        storage_path(storage_root),
        week,
        effective_run_id(run_id, job_id),
    )
    Path(snapshot.path).write_text(json.dumps(record, indent=2))
    snapshot.metadata.update({"fingerprint": record["fingerprint"], "n_labels": record["n_labels"]})
    return (record["fingerprint"], record["snapshot_dir"])


def validate(snapshot_dir: str, features_json: str, package_types: list, model_json: str) -> str:
    """Stops the run before training if the snapshot is unfit (one-line reason).

    Args:
        snapshot_dir: Content-addressed snapshot directory (its name is the data fingerprint).
        features_json: The `features` config section (JSON).
        package_types: Package type names, least protective first.
        model_json: The `model` config section (JSON); decides whether titles are needed.

    Returns:
        Snapshot statistics as JSON.
    """
    import json

    from packwise.config import FeatureConfig, ModelConfig
    from packwise.storage import storage_path
    from packwise.training import validate as run

    stats = run(
        storage_path(snapshot_dir),
        FeatureConfig.model_validate_json(features_json),
        list(package_types),
        ModelConfig.model_validate_json(model_json),
    )
    return json.dumps(stats)


def split(
    snapshot_dir: str,
    split_json: str,
    package_types: list,
    train_split: Output[Dataset],
    validation_split: Output[Dataset],
) -> str:
    """Splits products into training and validation (no product in both, stratified by labels).

    Args:
        snapshot_dir: Content-addressed snapshot directory.
        split_json: The `split` config section (JSON): train_ratio and seed.
        package_types: Package type names.
        train_split: Training products with one label column per package type.
        validation_split: Validation products, same columns.

    Returns:
        Split summary as JSON.
    """
    import json
    from pathlib import Path

    from packwise.config import SplitConfig
    from packwise.storage import storage_path
    from packwise.training import split as run

    summary = run(
        storage_path(snapshot_dir),
        Path(train_split.path),
        Path(validation_split.path),
        SplitConfig.model_validate_json(split_json),
        list(package_types),
    )
    # The fingerprint travels with the data it describes (artifact metadata), so every task downstream
    # keys its cache on it.
    for artifact in (train_split, validation_split):
        artifact.metadata.update({"fingerprint": summary["fingerprint"]})
    return json.dumps(summary)


def train(
    train_split: Input[Dataset],
    validation_split: Input[Dataset],
    package_type: str,
    features_json: str,
    split_json: str,
    model_json: str,
    compute_json: str,
    sagemaker_json: str,
    model: Output[Model],
) -> str:
    """Trains the candidate classifier of one package type (SageMaker XGBoost model layout).

    With `compute.training: sagemaker` the work is a SageMaker training job: a retried or resumed task
    attaches to the job it already started; a cancelled task stops its job.

    Args:
        train_split: Training products and labels; its metadata carries the data fingerprint.
        validation_split: Validation products and labels (SageMaker's validation channel).
        package_type: The package type whose suitability labels are learnt.
        features_json: The `features` config section (JSON).
        split_json: The `split` config section (JSON), part of the candidate's identity.
        model_json: The `model` config section (JSON): type and hyperparameters.
        compute_json: The `compute` config section (JSON): where the training runs.
        sagemaker_json: The `sagemaker` config section (JSON): region, role, bucket, instances, polling.
        model: The model.tar.gz holding `xgboost-model`.

    Returns:
        Training summary as JSON (label count and positive rate for the gate).
    """
    from pathlib import Path

    from packwise.config import ComputeConfig, FeatureConfig, ModelConfig, SageMakerConfig
    from packwise.lineage import candidate_key
    from packwise.training import train as run

    fingerprint = train_split.metadata["fingerprint"]
    trained = run(
        Path(train_split.path),
        Path(validation_split.path),
        package_type,
        FeatureConfig.model_validate_json(features_json),
        ModelConfig.model_validate_json(model_json),
        Path(model.path),
        candidate_key(fingerprint, package_type, features_json, split_json, model_json),
        fingerprint,
        ComputeConfig.model_validate_json(compute_json),
        SageMakerConfig.model_validate_json(sagemaker_json),
    )
    labels = trained.summary.label_count
    model.metadata.update({"package_type": package_type, "framework": "xgboost", "labels": labels, **trained.details})
    return trained.summary.model_dump_json()


def evaluate(
    model: Input[Model],
    validation_split: Input[Dataset],
    package_type: str,
    thresholds: dict,
    registry_json: str,
    compute_json: str,
    sagemaker_json: str,
    storage_root: str,
    split_json: str,
    gate_json: str,
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
) -> str:
    """Scores the candidate and re-scores the champion on this run's validation split.

    With `compute.evaluation: sagemaker` both are scored in SageMaker batch transform jobs. This run's
    labels are also measured against the champion's snapshot (label churn, agreement with the champion,
    the frozen reference) for the gate's label-quality criteria.

    Args:
        model: The candidate's model.tar.gz.
        validation_split: Validation products and labels; its metadata carries the data fingerprint.
        package_type: The package type.
        thresholds: Decision threshold per package type (confusion matrix); 0.5 when absent.
        registry_json: The `registry` config section (JSON), to fetch the champion.
        compute_json: The `compute` config section (JSON): where the scoring runs.
        sagemaker_json: The `sagemaker` config section (JSON).
        storage_root: Root of Packwise's storage, where this run's and the champion's snapshots are found by
            their fingerprints (this run's is the validation split's; kfp.local resolves an upstream output
            passed into a ParallelFor task as the loop item, so the snapshot path is not a parameter).
        split_json: The `split` config section (JSON): how the champion's validation products were chosen.
        gate_json: The `gate` config section (JSON): what counts as a confident champion prediction.
        metrics: AUC, PR-AUC and log loss of candidate and champion.
        classification: ROC curve and confusion matrix of the candidate.

    Returns:
        Evaluation of both models as JSON.
    """
    import tempfile
    from pathlib import Path

    from packwise.config import ComputeConfig, GateConfig, RegistryConfig, SageMakerConfig, SplitConfig
    from packwise.storage import join
    from packwise.training import LabelQualityInputs
    from packwise.training import evaluate as run

    split = SplitConfig.model_validate_json(split_json)
    snapshots = join(storage_root, "snapshots")
    quality = LabelQualityInputs(
        join(snapshots, validation_split.metadata["fingerprint"]),
        snapshots,
        split.train_ratio,
        split.seed,
        GateConfig.model_validate_json(gate_json).confident_probability,
    )
    from packwise_components.ui_artifacts import record_evaluation

    with tempfile.TemporaryDirectory() as scratch:
        result, jobs = run(
            Path(model.path),
            Path(validation_split.path),
            package_type,
            float(thresholds.get(package_type, 0.5)),
            RegistryConfig.model_validate_json(registry_json),
            Path(scratch),
            validation_split.metadata["fingerprint"],
            ComputeConfig.model_validate_json(compute_json),
            SageMakerConfig.model_validate_json(sagemaker_json),
            quality,
        )
    if jobs:
        metrics.metadata["sagemaker_transform_jobs"] = ",".join(jobs)
    record_evaluation(result, metrics, classification)
    return result.model_dump_json()


def compare(
    train_summary: str, evaluation: str, gate_json: str, report: Output[Markdown]
) -> NamedTuple("CompareOutputs", [("outcome", str), ("decision", str)]):  # type: ignore[valid-type]
    """Compares the candidate with the champion under the configured gate.

    Args:
        train_summary: Training summary (JSON) of the candidate.
        evaluation: Candidate and champion scores on this run's validation split (JSON).
        gate_json: The `gate` config section (JSON).
        report: The gate report: every criterion, its threshold, its value and its verdict.

    Returns:
        outcome (approve, reject or review) and the full decision as JSON.
    """
    import json
    from pathlib import Path

    from packwise.config import GateConfig
    from packwise.training import compare as run

    decision = run(train_summary, evaluation, GateConfig.model_validate_json(gate_json))
    Path(report.path).write_text(decision.report_markdown())
    return (decision.outcome, json.dumps(decision.to_dict()))


def register(
    model: Input[Model],
    train_split: Input[Dataset],
    train_summary: str,
    evaluation: str,
    decision: str,
    registry_json: str,
    features_json: str,
    model_json: str,
    split_json: str,
    week: int,
    storage_root: str,
) -> str:
    """Registers the candidate as the gate decided: the new champion, or Rejected / PendingManualApproval.

    The version is an MLflow Model; its MLflow run shows the training params, split, week, label counts,
    metrics and the snapshot as its dataset.

    Args:
        model: The candidate's model.tar.gz.
        train_split: The training split (the model's input example and label counts).
        train_summary: Training summary (JSON).
        evaluation: Evaluation (JSON).
        decision: The gate decision (JSON) with its outcome and report.
        registry_json: The `registry` config section (JSON).
        features_json: The `features` config section (JSON).
        model_json: The `model` config section (JSON).
        split_json: The `split` config section (JSON).
        week: The training week.
        storage_root: Root of Packwise's storage: the label snapshot the candidate was trained on is found
            there by the split's fingerprint (an upstream output would reach a ParallelFor task as the loop
            item under kfp.local).

    Returns:
        The package type, its registered version and status as JSON.
    """
    import json
    from pathlib import Path

    from packwise.config import FeatureConfig, ModelConfig, RegistryConfig, SplitConfig
    from packwise.storage import join
    from packwise.training import TrainSummary, training_record
    from packwise.training import register as run

    package_type = TrainSummary.model_validate_json(train_summary).package_type
    record = training_record(
        Path(train_split.path),
        package_type,
        FeatureConfig.model_validate_json(features_json),
        ModelConfig.model_validate_json(model_json),
        SplitConfig.model_validate_json(split_json),
        week,
        join(storage_root, "snapshots", train_split.metadata["fingerprint"]),
        evaluation,
    )
    registry = RegistryConfig.model_validate_json(registry_json)
    result = run(Path(model.path), train_summary, evaluation, decision, registry, training=record)
    # the package type travels with the result: a cached register task's line names it (packwise_pipelines.local)
    return json.dumps({"package_type": package_type, **result})


def notify(
    storage_root: str,
    run_id: str,
    job_id: str,
    registry_json: str,
    notify_json: str,
    package_types: list,
    features_json: str,
    split_json: str,
    model_json: str,
    status: dsl.PipelineTaskFinalStatus,
) -> str:
    """Exit handler: reports the decision of every package type, whatever happened to the run.

    Args:
        storage_root: Root of Packwise's storage (run records).
        run_id: Run id chosen by the caller; empty to use the orchestrator's job id.
        job_id: The orchestrator's job id.
        registry_json: The `registry` config section (JSON).
        notify_json: The `notify` config section (JSON).
        package_types: Package type names.
        features_json: The `features` config section (JSON).
        split_json: The `split` config section (JSON).
        model_json: The `model` config section (JSON).
        status: Final status of the guarded tasks.

    Returns:
        The run summary as JSON.
    """
    import json

    from packwise.config import NotifyConfig, RegistryConfig
    from packwise.lineage import effective_run_id
    from packwise.storage import storage_path
    from packwise.training import notify as run

    summary = run(
        storage_path(storage_root),
        effective_run_id(run_id, job_id),
        RegistryConfig.model_validate_json(registry_json),
        NotifyConfig.model_validate_json(notify_json),
        list(package_types),
        features_json,
        split_json,
        model_json,
        status.state,
        status.error_message,
    )
    return json.dumps(summary, default=str)


@dataclass(frozen=True)
class TrainingComponents:
    extract: BaseComponent
    validate: BaseComponent
    split: BaseComponent
    train: BaseComponent
    evaluate: BaseComponent
    compare: BaseComponent
    register: BaseComponent
    notify: BaseComponent


def build_training_components(images: ImageSet) -> TrainingComponents:
    """Each training function as a lightweight component on its own image (the same whatever the compute)."""
    return TrainingComponents(
        extract=lightweight_component(extract, "extract", images),
        validate=lightweight_component(validate, "validate", images),
        split=lightweight_component(split, "split", images),
        train=lightweight_component(train, "train", images),
        evaluate=lightweight_component(evaluate, "evaluate", images),
        compare=lightweight_component(compare, "compare", images),
        register=lightweight_component(register, "register", images),
        notify=lightweight_component(notify, "notify", images),
    )
