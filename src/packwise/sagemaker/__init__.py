"""Amazon SageMaker as a compute and registry backend: training jobs, batch transform, S3 staging.

Plain functions over injected boto3 clients, like the rest of ``packwise``; ``packwise.compute.sagemaker``
(the SageMaker `Compute`) drives them for the train, evaluate and score-shard steps.

- ``session``: clients from the standard AWS credential chain, S3 locations and transfers, one-line errors;
- ``naming``: job names derived from what a job computes, so a retried step finds its job;
- ``container``: the XGBoost 3.0-5 container image of a region;
- ``jobs``: create-or-attach, wait (boto3 waiters) with interval and timeout, stop on cancel;
- ``training``: stage CSV channels and run a training job; ``transform``: batch transform of product rows.

Nothing here is imported by the local path; boto3 loads only when a SageMaker function runs.
"""
