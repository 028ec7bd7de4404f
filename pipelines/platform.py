"""Cluster settings of every task, applied in one place: the last statement of each pipeline function.

`configure_tasks(config)` walks the tasks of the pipeline being defined (kfp's pipeline context) and gives
each one, from `config.cluster`:

- CPU and memory requests and limits (`cluster.resources`, per component name, `default` for the rest);
- the `cluster.env_config_map` keys and the `cluster.secret` keys as environment variables, through
  kfp-kubernetes (references only: values never enter the IR);
- the retry policy (`cluster.retries`), except for the components whose failures are verdicts on the data.

Retries only go into IR built for a cluster (`building_for_cluster()`): kfp.local honours them too, and a
local fault drill or a validation error should fail at once, not after minutes of backoff. Everything else
has no effect on the local runners, so it is applied always and a local run exercises the same code.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from kfp.dsl import pipeline_context
from kfp.dsl.pipeline_task import PipelineTask

from packwise.config import ClusterConfig, PackwiseConfig
from packwise.errors import PackwiseError

_FOR_CLUSTER: contextvars.ContextVar[bool] = contextvars.ContextVar("packwise_for_cluster", default=False)


@contextlib.contextmanager
def building_for_cluster() -> Iterator[None]:
    """Pipelines defined inside this block carry the cluster-only settings (retries)."""
    token = _FOR_CLUSTER.set(True)
    try:
        yield
    finally:
        _FOR_CLUSTER.reset(token)


def component_name(task: PipelineTask) -> str:
    """The component's name (`extract`, `score-shard`, ...), the key of cluster.resources and images."""
    return str(task.component_spec.name)


def configure_tasks(config: PackwiseConfig) -> None:
    """Applies `config.cluster`'s pod settings to every task of the pipeline being defined.

    Call it as the last statement of a `@dsl.pipeline` function body, after every task exists.
    """
    pipeline = pipeline_context.Pipeline.get_default_pipeline()
    if pipeline is None:
        raise PackwiseError("configure_tasks() must be called inside a @dsl.pipeline function body")
    # The env vars the config names for its secrets (warehouse.dsn_env, notify.webhook_url_env) come from
    # the Secret too, whatever they are called: a DSN variable missing from secret_keys would leave every
    # pod without its warehouse.
    named = [name for name in (config.warehouse.dsn_env, config.notify.webhook_url_env) if name]
    cluster = config.cluster.model_copy(
        update={
            "secret_keys": [*config.cluster.secret_keys, *(n for n in named if n not in config.cluster.secret_keys)]
        }
    )
    for task in pipeline.tasks.values():
        configure_task(task, cluster, for_cluster=_FOR_CLUSTER.get())


def configure_task(task: PipelineTask, cluster: ClusterConfig, for_cluster: bool = True) -> None:
    """One task's resources, env references and, for a cluster, retry policy and threads.

    No volume is mounted: tasks share nothing but KFP artifacts, the object store (`storage.root`) and the
    services.

    On a cluster, OMP_NUM_THREADS (XGBoost's default thread count) follows the CPU limit: a container
    sees every core of its node, and XGBoost reads only the cgroup v1 quota. kfp.local applies a task's
    env too, so local builds leave it to the local runner's share of the machine.
    """
    from kfp import kubernetes  # kfp-kubernetes: the [cluster] extra, needed only where pipelines are built

    name = component_name(task)
    res = cluster.resources_for(name)
    task.set_cpu_request(res.cpu_request).set_cpu_limit(res.cpu_limit)
    task.set_memory_request(res.memory_request).set_memory_limit(res.memory_limit)
    if cluster.env_config_map and cluster.env_keys:
        kubernetes.use_config_map_as_env(
            task, cluster.env_config_map, {key: key for key in cluster.env_keys}, optional=True
        )
    if cluster.secret and cluster.secret_keys:
        kubernetes.use_secret_as_env(task, cluster.secret, {key: key for key in cluster.secret_keys}, optional=True)
    # Tagged images are immutable here (skaffold's digest tags, the release version): never re-pull.
    kubernetes.set_image_pull_policy(task, "IfNotPresent")
    # The label MLflow's NetworkPolicy admits (manifests/components/mlflow): only Packwise's tasks reach it.
    kubernetes.add_pod_label(task, "app.kubernetes.io/part-of", "packwise")
    if for_cluster:
        task.set_env_variable("OMP_NUM_THREADS", str(res.threads))
    policy = cluster.retries
    if for_cluster and policy.num_retries > 0 and name not in policy.exempt:
        task.set_retry(
            num_retries=policy.num_retries,
            backoff_duration=policy.backoff_duration,
            backoff_factor=policy.backoff_factor,
            backoff_max_duration=policy.backoff_max_duration,
        )
