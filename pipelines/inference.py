"""The inference pipeline: wiring only.

extract products (daily: added after the watermark; monthly: everything) and resolve models (champion or
pinned version of every type) side by side -> prepare (check the products against the columns the models
read) -> shard -> ParallelFor over shards: score -> collect (every product scored once) -> load into the
warehouse exactly once (moves the watermark) -> exit handler: notify with counts, shares and models.

Where shards are scored is chosen when the pipeline is built, from `compute.inference`: the local score
component or its SageMaker twin (batch transform; same output), so the rest of the DAG is wired once. With
`compute.inference: local` the pipeline is exactly the local one.

Only pipeline parameters, build-time constants (the `sagemaker` section) and the `plan` artifact enter
the loop body: kfp.local replaces a task output parameter used inside a ParallelFor with the loop item.
Extract, resolve and load look at live state (warehouse, registry, load ledger) and never come from the
cache; everything between them is keyed on content (the extract directory is named by its fingerprint,
the plan carries the model versions), so a re-run after a failure resumes where it stopped.
"""

from kfp import dsl
from kfp.dsl.base_component import BaseComponent

from packwise.config import PackwiseConfig
from packwise_components.images import ImageSet
from packwise_components.inference import build_inference_components
from packwise_components.sagemaker import build_sagemaker_components
from packwise_pipelines.platform import configure_tasks

PIPELINE_NAME = "packwise-inference"


def build_inference_pipeline(images: ImageSet, defaults: PackwiseConfig) -> BaseComponent:
    """The inference pipeline on `images`, its parameters defaulting to `defaults` (already resolved)."""
    c = build_inference_components(images)
    sm = build_sagemaker_components(images) if defaults.compute.inference == "sagemaker" else None
    # Build-time constant like the compute choice itself (never a task output: see the module docstring).
    sagemaker_json = defaults.section_json("sagemaker")

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Scores new (daily) or all (monthly) products with every package type's model.",
    )
    def inference(
        mode: str = "daily",
        run_id: str = "",
        pinned_models: dict = {},  # noqa: B006
        storage_root: str = str(defaults.storage.root),
        package_types: list = defaults.package_type_names,
        thresholds: dict = {p.name: p.threshold for p in defaults.package_types},  # noqa: B006
        warehouse_json: str = defaults.section_json("warehouse"),
        inference_json: str = defaults.section_json("inference"),
        registry_json: str = defaults.section_json("registry"),
        notify_json: str = defaults.section_json("notify"),
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
            shard_task = c.shard(plan=prepare_task.outputs["plan"], inference_json=inference_json)
            with dsl.ParallelFor(
                shard_task.output, parallelism=defaults.inference.local_parallelism, name="per-shard"
            ) as shard:
                if sm is not None:
                    score_task = sm.score_shard(
                        shard=shard, plan=prepare_task.outputs["plan"], sagemaker_json=sagemaker_json
                    )
                else:
                    score_task = c.score(shard=shard, plan=prepare_task.outputs["plan"], inference_json=inference_json)
            collect_task = c.collect(
                scored=dsl.Collected(score_task.outputs["scored"]), plan=prepare_task.outputs["plan"]
            )
            c.load(
                predictions=collect_task.outputs["predictions"],
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
