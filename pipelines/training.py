"""The weekly training pipeline: wiring only.

extract -> validate -> split -> for each package type (in parallel): train -> evaluate (candidate and
re-scored champion on this run's validation split) -> compare (the gate) -> If approve: register as the
new champion; Else: register as Rejected or PendingManualApproval -> exit handler: notify the decision of
every type. One type failing its gate or its training never blocks the others.

Where train and evaluate run is chosen when the pipeline is built, from `compute.training` and
`compute.evaluation`: the local components or their SageMaker twins (same inputs, same outputs), so the
rest of the DAG is wired once. With everything local the pipeline is exactly the local one.
"""

from kfp import dsl
from kfp.dsl.base_component import BaseComponent

from packwise.config import PackwiseConfig
from packwise_components.images import ImageSet
from packwise_components.sagemaker import build_sagemaker_components
from packwise_components.training import build_training_components
from packwise_pipelines.platform import configure_tasks

PIPELINE_NAME = "packwise-training"


def build_training_pipeline(images: ImageSet, defaults: PackwiseConfig) -> BaseComponent:
    """The training pipeline on `images`, its parameters defaulting to `defaults` (already resolved)."""
    c = build_training_components(images)
    sm = build_sagemaker_components(images) if defaults.compute.uses_sagemaker else None
    # Build-time constant like the compute choice itself; absent from the all-local pipeline.
    sagemaker_json = defaults.section_json("sagemaker")

    @dsl.pipeline(name=PIPELINE_NAME, description="Weekly training of one suitability classifier per package type.")
    def training(
        week: int = 1,
        run_id: str = "",
        storage_root: str = str(defaults.storage.root),
        package_types: list = defaults.package_type_names,
        thresholds: dict = {p.name: p.threshold for p in defaults.package_types},  # noqa: B006
        warehouse_json: str = defaults.section_json("warehouse"),
        features_json: str = defaults.section_json("features"),
        split_json: str = defaults.section_json("split"),
        model_json: str = defaults.section_json("model"),
        gate_json: str = defaults.section_json("gate"),
        registry_json: str = defaults.section_json("registry"),
        notify_json: str = defaults.section_json("notify"),
    ) -> None:
        """Trains, evaluates and gates one classifier per package type on the week's label snapshot.

        Args:
            week: Label snapshot week (labels observed up to it).
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
                if sm is not None and defaults.compute.training == "sagemaker":
                    train_task = sm.train(
                        train_split=split_task.outputs["train_split"],
                        validation_split=split_task.outputs["validation_split"],
                        package_type=package_type,
                        features_json=features_json,
                        split_json=split_json,
                        model_json=model_json,
                        sagemaker_json=sagemaker_json,
                    )
                else:
                    train_task = c.train(
                        train_split=split_task.outputs["train_split"],
                        package_type=package_type,
                        features_json=features_json,
                        split_json=split_json,
                        model_json=model_json,
                    )
                if sm is not None and defaults.compute.evaluation == "sagemaker":
                    evaluate_task = sm.evaluate(
                        model=train_task.outputs["model"],
                        validation_split=split_task.outputs["validation_split"],
                        package_type=package_type,
                        thresholds=thresholds,
                        registry_json=registry_json,
                        sagemaker_json=sagemaker_json,
                    )
                else:
                    evaluate_task = c.evaluate(
                        model=train_task.outputs["model"],
                        validation_split=split_task.outputs["validation_split"],
                        package_type=package_type,
                        thresholds=thresholds,
                        registry_json=registry_json,
                    )
                compare_task = c.compare(
                    train_summary=train_task.outputs["Output"],
                    evaluation=evaluate_task.outputs["Output"],
                    gate_json=gate_json,
                )
                with dsl.If(compare_task.outputs["outcome"] == "approve", name="approved"):
                    c.register(
                        model=train_task.outputs["model"],
                        train_summary=train_task.outputs["Output"],
                        evaluation=evaluate_task.outputs["Output"],
                        decision=compare_task.outputs["decision"],
                        promote=True,
                        registry_json=registry_json,
                    ).set_display_name("register-champion")
                with dsl.Else(name="not-approved"):
                    c.register(
                        model=train_task.outputs["model"],
                        train_summary=train_task.outputs["Output"],
                        evaluation=evaluate_task.outputs["Output"],
                        decision=compare_task.outputs["decision"],
                        promote=False,
                        registry_json=registry_json,
                    ).set_display_name("register-rejected")
        configure_tasks(defaults)

    return training
