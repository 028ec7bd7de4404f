"""Label-quality evidence for the gate: does this week's data agree with the data the champion learnt from?

Scoring both models on this run's validation split cannot see label noise that keeps the positive rate:
the split carries the same noise, so both models look equally bad, and the label-shift criterion reads
zero. Three measurements look at the labels against the champion's snapshot instead (the registry keeps
the fingerprint of the snapshot every version was trained on; snapshots are content-addressed under
`storage.root/snapshots/<fingerprint>`):

- label churn: of the products labelled for this type in both snapshots, the share whose label changed.
  Labels of the past rarely change (feedback corrects a few shipments); a backfill that rewrites them
  shows up here.
- champion disagreement: of this week's new labels (product and type absent from the champion's
  snapshot), the share the champion contradicts with high confidence (it says >= `confident` for a 0, or
  <= 1 - `confident` for a 1), minus the same share on the champion's own validation labels. The champion
  never trained on either set, so on clean data the two shares agree; random labels raise the first.
- frozen reference: candidate and champion scored on the champion's validation products with the labels
  as they were in the champion's snapshot. A candidate that learnt from corrupted labels cannot hide
  behind a corrupted validation split there.

The gate imports `LabelQuality` from here, so numpy and pandas are imported only where they are used.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from packwise.errors import DataValidationError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from packwise.artifact import LoadedModel

DEFAULT_CONFIDENT = 0.9
"""A prediction at least this far towards one class counts as a confident one."""


class LabelQuality(BaseModel):
    """Label-quality evidence of one candidate against its champion's snapshot.

    Attributes:
        package_type: The package type measured.
        champion_fingerprint: Fingerprint of the champion's snapshot.
        n_common: Products labelled for the type in both snapshots.
        n_changed: Of those, products whose label changed.
        n_new: Labels of this snapshot whose product has no label of the type in the champion's.
        n_new_contradicted: Of those, labels the champion contradicts with high confidence.
        n_reference: The champion's validation labels (in its own snapshot).
        n_reference_contradicted: Of those, labels the champion contradicts with high confidence.
        confident: The confidence that counts as high.
        n_frozen: Champion validation products scored for the frozen reference.
        frozen_candidate_auc: Candidate ROC AUC on them (labels as in the champion's snapshot).
        frozen_champion_auc: Champion ROC AUC on them.
        frozen_candidate_log_loss: Candidate log loss on them.
        frozen_champion_log_loss: Champion log loss on them.
    """

    model_config = ConfigDict(frozen=True)

    package_type: str
    champion_fingerprint: str
    n_common: int
    n_changed: int
    n_new: int
    n_new_contradicted: int
    n_reference: int
    n_reference_contradicted: int
    confident: float
    n_frozen: int
    frozen_candidate_auc: float
    frozen_champion_auc: float
    frozen_candidate_log_loss: float
    frozen_champion_log_loss: float

    @property
    def churn_rate(self) -> float:
        """Share of the commonly labelled products whose label changed (0 when none are common)."""
        return self.n_changed / self.n_common if self.n_common else 0.0

    @property
    def new_contradiction_rate(self) -> float:
        """Share of the new labels the champion contradicts with high confidence."""
        return self.n_new_contradicted / self.n_new if self.n_new else 0.0

    @property
    def reference_contradiction_rate(self) -> float:
        """Share of the champion's validation labels it contradicts with high confidence."""
        return self.n_reference_contradicted / self.n_reference if self.n_reference else 0.0

    @property
    def disagreement_excess(self) -> float | None:
        """New-label contradiction share minus the reference share; None without new labels."""
        if not self.n_new or not self.n_reference:
            return None
        return self.new_contradiction_rate - self.reference_contradiction_rate


def _type_labels(labels_path: Path, package_type: str) -> pd.Series:
    import numpy as np
    import pandas as pd

    frame = pd.read_parquet(labels_path, columns=["product_id", "package_type", "label"])
    frame = frame[frame["package_type"] == package_type]
    return pd.Series(frame["label"].to_numpy(dtype=np.int8), index=frame["product_id"].astype(str).to_numpy())


def _contradicted(prob: np.ndarray, labels: np.ndarray, confident: float) -> int:

    return int((((labels == 0) & (prob >= confident)) | ((labels == 1) & (prob <= 1.0 - confident))).sum())


def _products(products_path: Path, ids: pd.Index) -> pd.DataFrame:
    import pandas as pd

    products = pd.read_parquet(products_path)
    products = products.set_index(products["product_id"].astype(str), drop=False)
    return products.loc[ids].reset_index(drop=True)


def _log_loss(labels: np.ndarray, prob: np.ndarray) -> float:
    import numpy as np

    p = np.clip(prob, 1e-15, 1 - 1e-15)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))) if len(labels) else math.nan


def _auc(labels: np.ndarray, prob: np.ndarray) -> float:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    if len(np.unique(labels)) < 2:
        return math.nan
    return float(roc_auc_score(labels, prob))


def validation_ids(product_ids: pd.Index, train_ratio: float, seed: int) -> pd.Index:
    """The products of `product_ids` that `packwise.split` puts in validation (its side is by id alone)."""
    import numpy as np
    import pandas as pd

    from packwise.split import _hash_order

    unit = _hash_order(pd.Series(product_ids, dtype=str), seed).astype(np.float64) / float(2**64)
    return product_ids[unit >= train_ratio]


def measure_label_quality(
    package_type: str,
    candidate: LoadedModel,
    champion: LoadedModel,
    snapshot_dir: Path,
    champion_snapshot_dir: Path,
    train_ratio: float,
    split_seed: int,
    confident: float = DEFAULT_CONFIDENT,
) -> LabelQuality:
    """Measures this run's labels of one type against the champion's snapshot.

    Args:
        package_type: The package type.
        candidate: The candidate model.
        champion: The champion model.
        snapshot_dir: This run's snapshot.
        champion_snapshot_dir: The snapshot the champion was trained on.
        train_ratio: `split.train_ratio` (the champion's validation products are the ids the split puts
            in validation; the side of a product depends on its id, the ratio and the seed only).
        split_seed: `split.seed`.
        confident: A probability this far towards a class is a confident prediction.

    Returns:
        The evidence; counts are zero where a set is empty.

    Raises:
        DataValidationError: A snapshot lacks its Parquet files.
    """

    from packwise.models.base import predict
    from packwise.snapshot import LABELS_FILE, PRODUCTS_FILE

    for directory in (snapshot_dir, champion_snapshot_dir):
        if not (directory / LABELS_FILE).exists() or not (directory / PRODUCTS_FILE).exists():
            raise DataValidationError(
                f"label quality: snapshot {directory} is incomplete; re-run extract for its week or turn the "
                "label-quality criteria off"
            )
    current = _type_labels(snapshot_dir / LABELS_FILE, package_type)
    before = _type_labels(champion_snapshot_dir / LABELS_FILE, package_type)

    common = current.index.intersection(before.index)
    n_changed = int((current.loc[common].to_numpy() != before.loc[common].to_numpy()).sum())

    new_ids = current.index.difference(before.index)
    n_new_contradicted = 0
    if len(new_ids):
        prob, _ = predict(champion.booster, champion.spec, _products(snapshot_dir / PRODUCTS_FILE, new_ids))
        n_new_contradicted = _contradicted(prob, current.loc[new_ids].to_numpy(), confident)

    ref_ids = validation_ids(before.index, train_ratio, split_seed)
    ref_labels = before.loc[ref_ids].to_numpy()
    frozen_products = _products(champion_snapshot_dir / PRODUCTS_FILE, ref_ids)
    champ_prob, _ = predict(champion.booster, champion.spec, frozen_products)
    cand_prob, _ = predict(candidate.booster, candidate.spec, frozen_products)
    return LabelQuality(
        package_type=package_type,
        champion_fingerprint=champion_snapshot_dir.name,
        n_common=len(common),
        n_changed=n_changed,
        n_new=len(new_ids),
        n_new_contradicted=n_new_contradicted,
        n_reference=len(ref_ids),
        n_reference_contradicted=_contradicted(champ_prob, ref_labels, confident),
        confident=confident,
        n_frozen=len(ref_ids),
        frozen_candidate_auc=_auc(ref_labels, cand_prob),
        frozen_champion_auc=_auc(ref_labels, champ_prob),
        frozen_candidate_log_loss=_log_loss(ref_labels, cand_prob),
        frozen_champion_log_loss=_log_loss(ref_labels, champ_prob),
    )


def champion_label_quality(
    package_type: str,
    candidate: LoadedModel,
    champion: LoadedModel,
    champion_fingerprint: str,
    snapshot_dir: Path,
    snapshots_root: Path,
    train_ratio: float,
    split_seed: int,
    confident: float = DEFAULT_CONFIDENT,
) -> LabelQuality | None:
    """`measure_label_quality` against the champion's stored snapshot; None when it is not in storage.

    Args:
        package_type: The package type.
        candidate: The candidate model.
        champion: The champion model.
        champion_fingerprint: The registry version's `data_fingerprint`.
        snapshot_dir: This run's snapshot.
        snapshots_root: `storage.snapshots` (snapshots are content-addressed there by fingerprint).
        train_ratio: `split.train_ratio`.
        split_seed: `split.seed`.
        confident: `gate.confident_probability`.
    """
    from packwise.snapshot import LABELS_FILE, PRODUCTS_FILE

    champion_dir = Path(snapshots_root) / champion_fingerprint
    stored = all((champion_dir / name).exists() for name in (LABELS_FILE, PRODUCTS_FILE))
    if not champion_fingerprint or not stored:
        return None  # pruned or never local: the label-quality criteria read n/a rather than block
    return measure_label_quality(
        package_type, candidate, champion, Path(snapshot_dir), champion_dir, train_ratio, split_seed, confident
    )
