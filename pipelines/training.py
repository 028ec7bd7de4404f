"""The weekly training pipeline: wiring only.

extract -> validate -> split -> for each package type (in parallel): train -> evaluate (candidate and
re-scored champion on this run's validation split) -> compare (the gate) -> register (as the gate
decided: the new champion, Rejected or PendingManualApproval) -> exit handler: notify the decision of
every type. One type failing its gate or its training never blocks the others.

One set of components whatever the compute: train and evaluate take the `compute` and `sagemaker`
sections and run their work where `compute.training` / `compute.evaluation` say (`packwise.compute`).
"""

from kfp import dsl
from kfp.dsl.base_component import BaseComponent

from packwise.config import PackwiseConfig
from packwise_components.images import ImageSet
from packwise_components.training import build_training_components
from packwise_pipelines.arguments import pipeline_arguments
from packwise_pipelines.platform import configure_tasks

PIPELINE_NAME = "packwise-training"


def build_training_pipeline(images: ImageSet, defaults: PackwiseConfig) -> BaseComponent:
    """The training pipeline on `images`, its parameters defaulting to `defaults` (already resolved)."""
    c = build_training_components(images)
    args = pipeline_arguments(defaults)

    @dsl.pipeline(name=PIPELINE_NAME, description="Weekly training of one suitability classifier per package type.")
    def training(
        week: int = 1,
        run_id: str = "",
        storage_root: str = args["storage_root"],
        package_types: list = args["package_types"],
        thresholds: dict = args["thresholds"],
        warehouse_json: str = args["warehouse_json"],
        features_json: str = args["features_json"],
        split_json: str = args["split_json"],
        model_json: str = args["model_json"],
        gate_json: str = args["gate_json"],
        registry_json: str = args["registry_json"],
        notify_json: str = args["notify_json"],
        compute_json: str = args["compute_json"],
        sagemaker_json: str = args["sagemaker_json"],
    ) -> None:
        """Trains, evaluates and gates one classifier per package type on the week's label snapshot.

        Args:
            week: Label snapshot week (labels observed up to it); 0: the newest labelled week.
            run_id: Optional run id (the CLI sets one); defaults to the KFP job id.
            storage_root: Root of Packwise's storage.
            package_types: Package type names, least protective first.
            thresholds: Decision threshold per package type (default 0.5).
            warehouse_json: `warehouse` config section.
            features_json: `features` config section.
            split_json: `split` config section.
            model_json: `model` config section.
            gate_json: `gate` config section.
            registry_json: `registry` config section.
            notify_json: `notify` config section.
            compute_json: `compute` config section (where train and evaluate run their work).
            sagemaker_json: `sagemaker` config section.
        """
        notify_task = c.notify(
            storage_root=storage_root,
            run_id=run_id,
            job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            registry_json=registry_json,
            notify_json=notify_json,
            package_types=package_types,
            features_json=features_json,
            split_json=split_json,
            model_json=model_json,
        ).set_caching_options(False)
        notify_task.set_display_name("notify")
        with dsl.ExitHandler(notify_task, name="weekly-training"):
            extract_task = c.extract(
                warehouse_json=warehouse_json,
                storage_root=storage_root,
                week=week,
                run_id=run_id,
                job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            ).set_caching_options(False)  # it must look at the data to fingerprint it
            snapshot_dir = extract_task.outputs["snapshot_dir"]
            validate_task = c.validate(
                snapshot_dir=snapshot_dir,
                features_json=features_json,
                package_types=package_types,
                model_json=model_json,
            )
            split_task = c.split(
                snapshot_dir=snapshot_dir, split_json=split_json, package_types=package_types
            ).after(validate_task)
            with dsl.ParallelFor(package_types, name="per-package-type") as package_type:
                train_task = c.train(
                    train_split=split_task.outputs["train_split"],
                    validation_split=split_task.outputs["validation_split"],
                    package_type=package_type,
                    features_json=features_json,
                    split_json=split_json,
                    model_json=model_json,
                    compute_json=compute_json,
                    sagemaker_json=sagemaker_json,
                )
                evaluate_task = c.evaluate(
                    model=train_task.outputs["model"],
                    validation_split=split_task.outputs["validation_split"],
                    package_type=package_type,
                    thresholds=thresholds,
                    registry_json=registry_json,
                    compute_json=compute_json,
                    sagemaker_json=sagemaker_json,
                    storage_root=storage_root,
                    split_json=split_json,
                    gate_json=gate_json,
                )
                compare_task = c.compare(
                    train_summary=train_task.outputs["Output"],
                    evaluation=evaluate_task.outputs["Output"],
                    gate_json=gate_json,
                )
                c.register(
                    model=train_task.outputs["model"],
                    train_split=split_task.outputs["train_split"],
                    train_summary=train_task.outputs["Output"],
                    evaluation=evaluate_task.outputs["Output"],
                    decision=compare_task.outputs["decision"],
                    registry_json=registry_json,
                    features_json=features_json,
                    model_json=model_json,
                    split_json=split_json,
                    week=week,
                    storage_root=storage_root,
                )
        configure_tasks(defaults)

    return training
