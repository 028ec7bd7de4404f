"""The SageMaker built-in XGBoost 3.0-5 container image of a region.

The account that hosts ``sagemaker-xgboost`` per region, from the SageMaker Python SDK's
``image_uri_config/xgboost.json``: every ``sagemaker-xgboost`` version from 0.90-1 to 2.1-0 uses the same
account map, and 3.0-5 is published in the same repositories. Its xgboost (3.0.5) is the one Packwise
pins, so a model file moves both ways. ``sagemaker.xgboost_image_uri`` overrides the lookup (a private
ECR mirror, or a region missing here).
"""

from __future__ import annotations

from packwise.sagemaker.errors import SageMakerError

XGBOOST_VERSION = "3.0-5"
REPOSITORY = "sagemaker-xgboost"

XGBOOST_ACCOUNTS: dict[str, str] = {
    "af-south-1": "510948584623",
    "ap-east-1": "651117190479",
    "ap-northeast-1": "354813040037",
    "ap-northeast-2": "366743142698",
    "ap-northeast-3": "867004704886",
    "ap-south-1": "720646828776",
    "ap-south-2": "628508329040",
    "ap-southeast-1": "121021644041",
    "ap-southeast-2": "783357654285",
    "ap-southeast-3": "951798379941",
    "ap-southeast-4": "106583098589",
    "ca-central-1": "341280168497",
    "ca-west-1": "190319476487",
    "cn-north-1": "450853457545",
    "cn-northwest-1": "451049120500",
    "eu-central-1": "492215442770",
    "eu-central-2": "680994064768",
    "eu-north-1": "662702820516",
    "eu-south-1": "978288397137",
    "eu-south-2": "104374241257",
    "eu-west-1": "141502667606",
    "eu-west-2": "764974769150",
    "eu-west-3": "659782779980",
    "il-central-1": "898809789911",
    "me-central-1": "272398656194",
    "me-south-1": "801668240914",
    "sa-east-1": "737474898029",
    "us-east-1": "683313688378",
    "us-east-2": "257758044811",
    "us-gov-east-1": "237065988967",
    "us-gov-west-1": "414596584902",
    "us-west-1": "746614075791",
    "us-west-2": "246618743249",
}


def xgboost_image_uri(region: str, override: str | None = None) -> str:
    """``<account>.dkr.ecr.<region>.amazonaws.com[.cn]/sagemaker-xgboost:3.0-5``, or ``override``.

    Raises:
        SageMakerError: The region has no known image and no override is set.
    """
    if override:
        return override
    account = XGBOOST_ACCOUNTS.get(region)
    if account is None:
        raise SageMakerError(
            f"no SageMaker XGBoost {XGBOOST_VERSION} image is known for region {region!r}; "
            "set sagemaker.xgboost_image_uri to the image of your region"
        )
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{domain}/{REPOSITORY}:{XGBOOST_VERSION}"
