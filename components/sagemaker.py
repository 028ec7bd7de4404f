"""SageMaker components: the train and evaluate steps (and inference scoring) with SageMaker as compute.

Interface only, like ``components/training.py``: each body unpacks artifact paths and calls one function
of ``packwise.sagemaker.steps``. They take and give the same artifacts and outputs as their local twins,
so the pipelines pick one or the other at build time (``compute.*``) and wire the rest unchanged. The
``sagemaker`` config section reaches them as a constant of the compiled pipeline (the compute choice is
made at build time too). AWS credentials come from the pod's environment (IRSA on EKS), never from here.
"""

from dataclasses import dataclass

from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output
from kfp.dsl.base_component import BaseComponent

from packwise_components.images import ImageSet, lightweight_component


def train_sagemaker(
    train_split: Input[Dataset],
    validation_split: Input[Dataset],
    package_type: str,
    features_json: str,
    split_json: str,
    model_json: str,
    sagemaker_json: str,
    model: Output[Model],
) -> str:
    """Trains the candidate classifier of one package type in a SageMaker training job (XGBoost 3.0-5).

    A retried or resumed task attaches to the job it already started (the job name derives from the
    candidate's identity and data fingerprint); a cancelled task stops its job.

    Args:
        train_split: Training products and labels; its metadata carries the data fingerprint.
        validation_split: Validation products and labels (the container's validation channel).
        package_type: The package type whose suitability labels are learnt.
        features_json: The `features` config section (JSON).
        split_json: The `split` config section (JSON), part of the candidate's identity.
        model_json: The `model` config section (JSON): type and hyperparameters.
        sagemaker_json: The `sagemaker` config section (JSON): region, role, bucket, instances, polling.
        model: The model.tar.gz SageMaker trained, stamped with Packwise's feature recipe.

    Returns:
        Training summary as JSON (label count and positive rate for the gate).
    """
    from pathlib import Path

    from packwise.config import FeatureConfig, ModelConfig, SageMakerConfig
    from packwise.lineage import candidate_key
    from packwise.sagemaker.steps import train_candidate_sagemaker

    fingerprint = train_split.metadata["fingerprint"]
    result = train_candidate_sagemaker(
        Path(train_split.path),
        Path(validation_split.path),
        package_type,
        FeatureConfig.model_validate_json(features_json),
        ModelConfig.model_validate_json(model_json),
        SageMakerConfig.model_validate_json(sagemaker_json),
        Path(model.path),
        candidate_key(fingerprint, package_type, features_json, split_json, model_json),
        fingerprint,
    )
    model.metadata.update(
        {
            "package_type": package_type,
            "framework": "xgboost",
            "labels": result.summary.label_count,
            "sagemaker_training_job": result.job_name,
            "sagemaker_model_data": result.model_data,
        }
    )
    return result.summary.to_json()


def evaluate_sagemaker(
    model: Input[Model],
    validation_split: Input[Dataset],
    package_type: str,
    thresholds: dict,
    registry_json: str,
    sagemaker_json: str,
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
) -> str:
    """Scores the candidate and re-scores the champion on the validation split with SageMaker batch transform.

    Args:
        model: The candidate's model.tar.gz.
        validation_split: Validation products and labels; its metadata carries the data fingerprint.
        package_type: The package type.
        thresholds: Decision threshold per package type (confusion matrix); 0.5 when absent.
        registry_json: The `registry` config section (JSON), to fetch the champion.
        sagemaker_json: The `sagemaker` config section (JSON).
        metrics: AUC, PR-AUC and log loss of candidate and champion.
        classification: ROC curve and confusion matrix of the candidate.

    Returns:
        Evaluation of both models as JSON.
    """
    import tempfile
    from pathlib import Path

    from packwise.config import RegistryConfig, SageMakerConfig
    from packwise.sagemaker.steps import evaluate_candidate_sagemaker
    from packwise_components.ui_artifacts import record_evaluation

    with tempfile.TemporaryDirectory() as scratch:
        result, jobs = evaluate_candidate_sagemaker(
            Path(model.path),
            Path(validation_split.path),
            package_type,
            float(thresholds.get(package_type, 0.5)),
            RegistryConfig.model_validate_json(registry_json),
            SageMakerConfig.model_validate_json(sagemaker_json),
            validation_split.metadata["fingerprint"],
            Path(scratch),
        )
    metrics.metadata["sagemaker_transform_jobs"] = ",".join(jobs)
    record_evaluation(result, metrics, classification)
    return result.to_json()


def score_shard_sagemaker(shard: str, plan: Input[Artifact], sagemaker_json: str, scored: Output[Dataset]) -> str:
    """Scores one shard with SageMaker batch transform: a probability per package type and the recommendation.

    Args:
        shard: The shard file.
        plan: The scoring plan (models and thresholds).
        sagemaker_json: The `sagemaker` config section (JSON).
        scored: The shard's predictions (parquet, the local scorer's schema); its metadata carries the
            shard's statistics.

    Returns:
        The shard's statistics as JSON.
    """
    import json
    from pathlib import Path

    from packwise.config import SageMakerConfig
    from packwise.sagemaker.steps import score_shard_sagemaker as run

    stats = run(
        Path(shard),
        json.loads(Path(plan.path).read_text()),
        SageMakerConfig.model_validate_json(sagemaker_json),
        Path(scored.path),
    )
    scored.metadata.update({"stats": json.dumps(stats, sort_keys=True)})
    return json.dumps(stats, sort_keys=True)


@dataclass(frozen=True)
class SageMakerComponents:
    train: BaseComponent
    evaluate: BaseComponent
    score_shard: BaseComponent


def build_sagemaker_components(images: ImageSet) -> SageMakerComponents:
    """Each SageMaker step as a lightweight component on the `sagemaker` image."""

    return SageMakerComponents(
        train=lightweight_component(train_sagemaker, "train-sagemaker", images),
        evaluate=lightweight_component(evaluate_sagemaker, "evaluate-sagemaker", images),
        score_shard=lightweight_component(score_shard_sagemaker, "score-shard-sagemaker", images),
    )
