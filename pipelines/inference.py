"""The inference pipeline: wiring only.

extract products (daily: added after the watermark; monthly: everything) and resolve models (champion or
pinned version of every type) side by side -> prepare (check the products against the columns the models
read) -> shard -> ParallelFor over shards: score -> load (every product scored once, then into the
warehouse exactly once; moves the watermark) -> exit handler: notify with counts, shares and models.

One set of components whatever the compute: score takes the `compute` and `sagemaker` sections and
scores in the task or in SageMaker batch transform jobs, as `compute.inference` says (same output).

Only pipeline parameters and the `plan` artifact enter the loop body: kfp.local replaces a task output
parameter used inside a ParallelFor with the loop item.
Extract, resolve and load look at live state (warehouse, registry, load ledger) and never come from the
cache, nor does shard, whose files `packwise gc` may have pruned (it reuses them when they are there);
everything between them is keyed on content (the extract directory is named by its fingerprint,
the plan carries the model versions), so a re-run after a failure resumes where it stopped.
"""

from kfp import dsl
from kfp.dsl.base_component import BaseComponent

from packwise.config import PackwiseConfig
from packwise_components.images import ImageSet
from packwise_components.inference import build_inference_components
from packwise_pipelines.arguments import pipeline_arguments
from packwise_pipelines.platform import configure_tasks

PIPELINE_NAME = "packwise-inference"


def build_inference_pipeline(images: ImageSet, defaults: PackwiseConfig) -> BaseComponent:
    """The inference pipeline on `images`, its parameters defaulting to `defaults` (already resolved)."""
    c = build_inference_components(images)
    args = pipeline_arguments(defaults)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Scores new (daily) or all (monthly) products with every package type's model.",
    )
    def inference(
        mode: str = "daily",
        run_id: str = "",
        pinned_models: dict = {},  # noqa: B006
        storage_root: str = args["storage_root"],
        package_types: list = args["package_types"],
        thresholds: dict = args["thresholds"],
        warehouse_json: str = args["warehouse_json"],
        inference_json: str = args["inference_json"],
        registry_json: str = args["registry_json"],
        notify_json: str = args["notify_json"],
        compute_json: str = args["compute_json"],
        sagemaker_json: str = args["sagemaker_json"],
    ) -> None:
        """Scores products with the approved model of every package type and loads the predictions once.

        Args:
            mode: daily (products added after the last loaded watermark) or monthly (the whole inventory).
            run_id: Optional run id (the CLI sets one); defaults to the KFP job id. A run id loads once.
            pinned_models: Package type -> model version to use instead of its champion.
            storage_root: Root of Packwise's storage.
            package_types: Package type names, least protective first.
            thresholds: Recommendation threshold per package type.
            warehouse_json: `warehouse` config section.
            inference_json: `inference` config section.
            registry_json: `registry` config section.
            notify_json: `notify` config section.
            compute_json: `compute` config section (where shards are scored).
            sagemaker_json: `sagemaker` config section.
        """
        notify_task = c.notify(
            storage_root=storage_root,
            run_id=run_id,
            job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            notify_json=notify_json,
            package_types=package_types,
        ).set_caching_options(False)
        notify_task.set_display_name("notify")
        with dsl.ExitHandler(notify_task, name="score-and-load"):
            extract_task = c.extract(
                mode=mode,
                warehouse_json=warehouse_json,
                inference_json=inference_json,
                storage_root=storage_root,
                run_id=run_id,
                job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            ).set_caching_options(False)  # it must look at the warehouse to see what is new
            resolve_task = c.resolve(
                registry_json=registry_json,
                package_types=package_types,
                thresholds=thresholds,
                pinned_models=pinned_models,
                storage_root=storage_root,
                run_id=run_id,
                job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            ).set_caching_options(False)  # the champion may have changed since the last run
            prepare_task = c.prepare(
                extract_dir=extract_task.outputs["extract_dir"],
                models_json=resolve_task.output,
                mode=mode,
                inference_json=inference_json,
            )
            # Not cached: the shard files live under storage.root, which `packwise gc` prunes, and a cluster's
            # KFP cache cannot be seen from there. Re-run, it finds its shards by their layout and reuses
            # them (nothing rewritten), so scoring still comes from the cache; after a gc it cuts them again.
            shard_task = c.shard(plan=prepare_task.outputs["plan"], inference_json=inference_json).set_caching_options(
                False
            )
            with dsl.ParallelFor(
                shard_task.output, parallelism=defaults.inference.local_parallelism, name="per-shard"
            ) as shard:
                score_task = c.score(
                    shard=shard,
                    plan=prepare_task.outputs["plan"],
                    inference_json=inference_json,
                    compute_json=compute_json,
                    sagemaker_json=sagemaker_json,
                )
            c.load(  # first checks every product was scored once (once a task of its own: collect)
                plan=prepare_task.outputs["plan"],
                scored=dsl.Collected(score_task.outputs["scored"]),
                mode=mode,
                since=extract_task.outputs["since"],
                watermark=extract_task.outputs["watermark"],
                warehouse_json=warehouse_json,
                inference_json=inference_json,
                storage_root=storage_root,
                run_id=run_id,
                job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            ).set_caching_options(False)  # the load ledger decides, every time
        configure_tasks(defaults)

    return inference
