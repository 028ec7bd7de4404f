"""Errors of the SageMaker backend; each says what went wrong and what to do, in one line."""

from __future__ import annotations

from packwise.errors import PackwiseError


class SageMakerError(PackwiseError):
    """A SageMaker or S3 call failed in a way the user can act on."""


class JobFailedError(SageMakerError):
    """A SageMaker job ended Failed or Stopped."""


class JobTimeoutError(SageMakerError):
    """A SageMaker job did not finish within ``sagemaker.timeout_s``."""


class StepCancelled(BaseException):
    """The step was cancelled (SIGTERM from the orchestrator) while it waited for a job."""
