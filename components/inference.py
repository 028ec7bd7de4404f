"""Inference components: interface only. Each body unpacks its inputs and calls one packwise function.

`build_inference_components(images)` turns them into lightweight KFP components on their own images.
Config sections arrive as JSON strings, as in training. What the scoring loop needs travels as the
`plan` artifact, never as a task output parameter: kfp.local replaces task output parameters inside a
ParallelFor body with the loop item.
"""

from dataclasses import dataclass
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output
from kfp.dsl.base_component import BaseComponent

from packwise_components.images import ImageSet, lightweight_component


def extract_products(
    mode: str,
    warehouse_json: str,
    inference_json: str,
    storage_root: str,
    run_id: str,
    job_id: str,
    products: Output[Dataset],
) -> NamedTuple(  # type: ignore[valid-type]
    "ExtractOutputs", [("extract_dir", str), ("since", str), ("watermark", str), ("n_products", int)]
):
    """Streams the products of the mode out of the warehouse into a content-addressed parquet file.

    Args:
        mode: daily (products added after the watermark) or monthly (the whole inventory).
        warehouse_json: The `warehouse` config section (JSON).
        inference_json: The `inference` config section (JSON): the products queries.
        storage_root: Root of Packwise's storage: a local directory or s3://bucket/prefix.
        run_id: Run id chosen by the caller; empty to use the orchestrator's job id.
        job_id: The orchestrator's job id (a placeholder filled in by KFP).
        products: The extract's run record, for lineage in the KFP UI.

    Returns:
        The extract directory (named by the data fingerprint), the watermark the products were selected
        after and the largest added_at among them (ISO strings, empty when none), and the product count.
    """
    import json
    from pathlib import Path

    from packwise.config import InferenceConfig, WarehouseConfig
    from packwise.inference import extract_products as run
    from packwise.lineage import effective_run_id
    from packwise.storage import storage_path

    record = run(
        WarehouseConfig.model_validate_json(warehouse_json),
        InferenceConfig.model_validate_json(inference_json),
        storage_path(storage_root),
        mode,
        effective_run_id(run_id, job_id),
    )
    Path(products.path).write_text(json.dumps(record, indent=2))
    products.metadata.update({"fingerprint": record["fingerprint"], "n_products": record["n_products"]})
    return (record["extract_dir"], record["since"] or "", record["watermark"] or "", record["n_products"])


def resolve_models(
    registry_json: str,
    package_types: list,
    thresholds: dict,
    pinned_models: dict,
    storage_root: str,
    run_id: str,
    job_id: str,
) -> str:
    """Picks the model of every package type: its champion, or the pinned version.

    Args:
        registry_json: The `registry` config section (JSON).
        package_types: Package type names, least protective first.
        thresholds: Recommendation threshold per package type.
        pinned_models: Package type -> version to use instead of the champion.
        storage_root: Root of Packwise's storage (model files are copied under it).
        run_id: Run id chosen by the caller; empty to use the orchestrator's job id.
        job_id: The orchestrator's job id.

    Returns:
        The models (version, status, file, feature recipe, threshold per type) as JSON.
    """
    import json

    from packwise.config import RegistryConfig
    from packwise.inference import resolve_models as run
    from packwise.lineage import effective_run_id
    from packwise.storage import storage_path

    models = run(
        RegistryConfig.model_validate_json(registry_json),
        list(package_types),
        {str(k): float(v) for k, v in thresholds.items()},
        {str(k): int(v) for k, v in pinned_models.items()},
        storage_path(storage_root),
        effective_run_id(run_id, job_id),
    )
    return json.dumps(models, sort_keys=True)


def prepare_products(extract_dir: str, models_json: str, mode: str, inference_json: str, plan: Output[Artifact]) -> int:
    """Checks the products against the columns the models read; writes the scoring plan.

    Args:
        extract_dir: The extract directory (named by the data fingerprint).
        models_json: The resolved models (JSON).
        mode: daily or monthly (names the query to fix in errors).
        inference_json: The `inference` config section (JSON).
        plan: The scoring plan: products file, columns, models. Its metadata carries the model versions.

    Returns:
        The number of products to score.
    """
    import json
    from pathlib import Path

    from packwise.config import InferenceConfig
    from packwise.inference import model_versions
    from packwise.inference import prepare_products as run
    from packwise.storage import storage_path

    models = json.loads(models_json)
    batch_rows = InferenceConfig.model_validate_json(inference_json).batch_rows
    result = run(storage_path(extract_dir), models, mode, batch_rows)
    Path(plan.path).write_text(json.dumps(result, indent=2, sort_keys=True))
    plan.metadata.update({"n_products": result["n_products"], "models": model_versions(models)})
    return int(result["n_products"])


def shard_products(plan: Input[Artifact], inference_json: str) -> list:
    """Cuts the products into shard files of the configured target rows or bytes.

    Args:
        plan: The scoring plan.
        inference_json: The `inference` config section (JSON): shard targets.

    Returns:
        The shard files (at least one; an empty run has one empty shard).
    """
    import json
    from pathlib import Path

    from packwise.config import InferenceConfig
    from packwise.inference import shard_products as run

    return run(json.loads(Path(plan.path).read_text()), InferenceConfig.model_validate_json(inference_json))


def score_shard(
    shard: str,
    plan: Input[Artifact],
    inference_json: str,
    compute_json: str,
    sagemaker_json: str,
    scored: Output[Dataset],
) -> str:
    """Scores one shard: a probability per package type and the recommended type of every product.

    With `compute.inference: sagemaker` the shard is scored in SageMaker batch transform jobs (same output).

    Args:
        shard: The shard file.
        plan: The scoring plan (models and thresholds).
        inference_json: The `inference` config section (JSON): batch rows and threads.
        compute_json: The `compute` config section (JSON): where the scoring runs.
        sagemaker_json: The `sagemaker` config section (JSON).
        scored: The shard's predictions (parquet); its metadata carries the shard's statistics.

    Returns:
        The shard's statistics as JSON.
    """
    import json
    from pathlib import Path

    from packwise.config import ComputeConfig, InferenceConfig, SageMakerConfig
    from packwise.inference import score_shard as run
    from packwise.storage import storage_path

    stats = run(
        storage_path(shard),
        json.loads(Path(plan.path).read_text()),
        ComputeConfig.model_validate_json(compute_json),
        SageMakerConfig.model_validate_json(sagemaker_json),
        InferenceConfig.model_validate_json(inference_json),
        Path(scored.path),
    )
    scored.metadata.update({"stats": json.dumps(stats, sort_keys=True)})
    return json.dumps(stats, sort_keys=True)


def load_predictions(
    plan: Input[Artifact],
    scored: Input[list[Dataset]],
    mode: str,
    since: str,
    watermark: str,
    warehouse_json: str,
    inference_json: str,
    storage_root: str,
    run_id: str,
    job_id: str,
) -> str:
    """Checks that every product was scored once, then loads the predictions into the warehouse exactly once
    and moves the mode's watermark.

    Args:
        plan: The scoring plan (rows prepared, model versions).
        scored: Every shard's predictions (the files loaded; each carries its shard's statistics).
        mode: daily or monthly.
        since: The watermark the products were selected after (ISO, empty for none).
        watermark: The largest added_at among the products (ISO, empty for none).
        warehouse_json: The `warehouse` config section (JSON).
        inference_json: The `inference` config section (JSON).
        storage_root: Root of Packwise's storage (run records).
        run_id: Run id chosen by the caller; empty to use the orchestrator's job id.
        job_id: The orchestrator's job id.

    Returns:
        What was loaded (or that the run was loaded before) as JSON.
    """
    import json
    from pathlib import Path

    from packwise.config import InferenceConfig, WarehouseConfig
    from packwise.inference import load_predictions as run
    from packwise.lineage import effective_run_id
    from packwise.storage import storage_path

    result = run(
        json.loads(Path(plan.path).read_text()),
        [(Path(s.path), json.loads(s.metadata["stats"])) for s in scored],
        WarehouseConfig.model_validate_json(warehouse_json),
        InferenceConfig.model_validate_json(inference_json),
        storage_path(storage_root),
        effective_run_id(run_id, job_id),
        mode,
        since or None,
        watermark or None,
    )
    return json.dumps(result, sort_keys=True, default=str)


def notify_inference(
    storage_root: str,
    run_id: str,
    job_id: str,
    notify_json: str,
    package_types: list,
    status: dsl.PipelineTaskFinalStatus,
) -> str:
    """Exit handler: reports products scored, recommended type shares and models, whatever happened.

    Args:
        storage_root: Root of Packwise's storage (run records).
        run_id: Run id chosen by the caller; empty to use the orchestrator's job id.
        job_id: The orchestrator's job id.
        notify_json: The `notify` config section (JSON).
        package_types: Package type names.
        status: Final status of the guarded tasks.

    Returns:
        The run summary as JSON.
    """
    import json

    from packwise.config import NotifyConfig
    from packwise.inference import notify_inference as run
    from packwise.lineage import effective_run_id
    from packwise.storage import storage_path

    summary = run(
        storage_path(storage_root),
        effective_run_id(run_id, job_id),
        NotifyConfig.model_validate_json(notify_json),
        list(package_types),
        status.state,
        status.error_message,
    )
    return json.dumps(summary, default=str)


@dataclass(frozen=True)
class InferenceComponents:
    extract: BaseComponent
    resolve: BaseComponent
    prepare: BaseComponent
    shard: BaseComponent
    score: BaseComponent
    load: BaseComponent
    notify: BaseComponent


def build_inference_components(images: ImageSet) -> InferenceComponents:
    """Each inference function as a lightweight component on its own image (the same whatever the compute)."""
    return InferenceComponents(
        extract=lightweight_component(extract_products, "extract-products", images),
        resolve=lightweight_component(resolve_models, "resolve-models", images),
        prepare=lightweight_component(prepare_products, "prepare-products", images),
        shard=lightweight_component(shard_products, "shard-products", images),
        score=lightweight_component(score_shard, "score-shard", images),
        load=lightweight_component(load_predictions, "load-predictions", images),
        notify=lightweight_component(notify_inference, "notify-inference", images),
    )
