"""`stacked_text`: a linear text model on the title, stacked under XGBoost on the tabular attributes.

Where `xgboost_text` lets the trees split on hashed title n-grams, this type learns the title with a
model suited to sparse text: TF-IDF word 1-2-grams and character 2-5-grams (within word boundaries, so
misspellings and compounds still match) into an L2 logistic regression. Its logit becomes one more
booster input, `title_logit`, beside the tabular attributes.

No leakage: the booster trains on out-of-fold logits (5 stratified folds, shuffled with the model's
seed), each row's logit from a text model that never saw its label. The text model fitted on every
training row is the one saved, and computes `title_logit` when scoring.

The text model is saved as JSON (`packwise-stacked.json` in model.tar.gz): the two vocabularies in
index order, their IDF weights, the coefficients and the intercept, written with sorted keys so the same
data and seed give the same bytes. JSON rather than pickle or skops: loading it runs no code from the
file (a pickle can run anything; skops checks types against a trust list but still rebuilds arbitrary
sklearn objects), it is a few hundred kB, and it stays readable by any language. Loading rebuilds the
same scikit-learn vectorizers with the saved vocabulary and IDF, so scoring runs the code training ran.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from packwise.config import FeatureConfig, ModelConfig
from packwise.errors import DataValidationError, PackwiseError
from packwise.features import FeatureRows, FeatureSpec, build_features, fit_feature_spec
from packwise.models.base import XGBoostBinary

if TYPE_CHECKING:
    import scipy.sparse as sp
    import xgboost as xgb
    from sklearn.feature_extraction.text import TfidfVectorizer

FOLDS = 5
LOGIT_COLUMN = "title_logit"
_FORMAT = 1

# The analyzers. Fixed here, not configurable: they are part of the saved format's meaning.
_VECTORIZERS: dict[str, dict[str, Any]] = {
    "word": {"analyzer": "word", "ngram_range": (1, 2), "min_df": 2, "max_features": 50_000},
    "char": {"analyzer": "char_wb", "ngram_range": (2, 5), "min_df": 2, "max_features": 100_000},
}
_C = 4.0  # inverse L2 strength; the validation AUC on the synthetic titles was flat from 1 to 10


def _vectorizer(params: dict[str, Any]) -> TfidfVectorizer:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(lowercase=True, sublinear_tf=True, dtype=np.float64, **params)


def _titles(values: pd.Series) -> list[str]:
    return values.fillna("").astype(str).tolist()


@dataclass(frozen=True)
class LinearTextModel:
    """TF-IDF word and character n-grams into a logistic regression; its logit is `title_logit`.

    Conforms to `packwise.features.StackedColumns`.
    """

    column: str
    vocabularies: dict[str, tuple[str, ...]]
    idf: dict[str, tuple[float, ...]]
    coef: tuple[float, ...]
    intercept: float
    KIND: ClassVar[str] = "linear_text"
    _vectorizers: dict[str, TfidfVectorizer] = field(init=False, compare=False, repr=False)
    _bytes: bytes = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        vectorizers = {}
        for name, params in _VECTORIZERS.items():
            vocab = self.vocabularies[name]
            vec = _vectorizer({**params, "vocabulary": {term: i for i, term in enumerate(vocab)}})
            vec.idf_ = np.asarray(self.idf[name], dtype=np.float64)
            vectorizers[name] = vec
        object.__setattr__(self, "_vectorizers", vectorizers)
        n_terms = sum(len(v) for v in self.vocabularies.values())
        if len(self.coef) != n_terms:
            raise PackwiseError(f"text model: {len(self.coef)} coefficients for {n_terms} terms; re-run training")
        object.__setattr__(self, "_bytes", self._serialise())

    @property
    def kind(self) -> str:
        return self.KIND

    @property
    def names(self) -> tuple[str, ...]:
        return (LOGIT_COLUMN,)

    @property
    def input_columns(self) -> tuple[str, ...]:
        return (self.column,)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self._bytes).hexdigest()

    def matrix(self, titles: list[str]) -> sp.csr_matrix:
        """The TF-IDF rows of `titles`: word block, then character block."""
        import scipy.sparse as sparse

        return sparse.hstack([self._vectorizers[n].transform(titles) for n in _VECTORIZERS], format="csr")

    def logit(self, titles: list[str]) -> np.ndarray:
        """The text model's log-odds of suitability for each title."""
        if not titles:  # scikit-learn refuses a matrix of no rows
            return np.empty(0, dtype=np.float64)
        coef = np.asarray(self.coef, dtype=np.float64)
        return np.asarray(self.matrix(titles) @ coef, dtype=np.float64) + self.intercept

    def transform(self, products: pd.DataFrame) -> np.ndarray:
        # Each distinct title once (a row's TF-IDF depends on its own title only): 37% of the synthetic
        # catalogue's titles repeat, and the character analyzer is most of the scoring time.
        codes, distinct = pd.factorize(products[self.column].fillna("").astype(str))
        return self.logit([str(t) for t in distinct])[codes].astype(np.float32).reshape(-1, 1)

    def to_bytes(self) -> bytes:
        return self._bytes

    def _serialise(self) -> bytes:
        doc = {
            "format": _FORMAT,
            "kind": self.kind,
            "column": self.column,
            "vectorizers": {
                n: {"params": _params_json(_VECTORIZERS[n]), "vocabulary": list(v), "idf": list(self.idf[n])}
                for n, v in self.vocabularies.items()
            },
            "coef": list(self.coef),
            "intercept": self.intercept,
        }
        # repr of a float64 round-trips exactly, so the loaded model computes the same logits
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LinearTextModel:
        """The model `to_bytes` wrote."""
        try:
            doc = json.loads(data)
            if doc.get("format") != _FORMAT or doc.get("kind") != cls.KIND:
                raise ValueError(f"format {doc.get('format')} kind {doc.get('kind')}")
            vecs = doc["vectorizers"]
            if set(vecs) != set(_VECTORIZERS) or any(
                vecs[n]["params"] != _params_json(p) for n, p in _VECTORIZERS.items()
            ):
                raise ValueError("analyzers differ from this Packwise version's")
            return cls(
                column=str(doc["column"]),
                vocabularies={n: tuple(vecs[n]["vocabulary"]) for n in _VECTORIZERS},
                idf={n: tuple(float(x) for x in vecs[n]["idf"]) for n in _VECTORIZERS},
                coef=tuple(float(x) for x in doc["coef"]),
                intercept=float(doc["intercept"]),
            )
        except (ValueError, KeyError, TypeError) as err:
            raise PackwiseError(
                f"text model: cannot read the saved linear text model ({err}); re-run training with this version"
            ) from None

    @classmethod
    def fit(cls, column: str, titles: list[str], labels: np.ndarray) -> LinearTextModel:
        """Fits the vectorizers and the logistic regression on every given title."""
        import scipy.sparse as sparse

        vectorizers = {n: _vectorizer(p) for n, p in _VECTORIZERS.items()}
        x = sparse.hstack([v.fit_transform(titles) for v in vectorizers.values()], format="csr")
        clf = _classifier().fit(x, labels)
        return cls(
            column=column,
            vocabularies={n: tuple(v.get_feature_names_out()) for n, v in vectorizers.items()},
            idf={n: tuple(float(x) for x in v.idf_) for n, v in vectorizers.items()},
            coef=tuple(float(x) for x in clf.coef_[0]),
            intercept=float(clf.intercept_[0]),
        )


def _params_json(params: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


def _classifier() -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=_C, solver="lbfgs", max_iter=2_000)


def out_of_fold_logits(titles: list[str], labels: np.ndarray, seed: int) -> np.ndarray:
    """Each title's text logit from a model fitted on the other folds (stratified, shuffled by `seed`)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline, make_union

    pipeline = make_pipeline(make_union(*(_vectorizer(p) for p in _VECTORIZERS.values())), _classifier())
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    logits = cross_val_predict(pipeline, np.asarray(titles, dtype=object), labels, cv=folds, method="decision_function")
    return np.asarray(logits, dtype=np.float64)


class StackedText(XGBoostBinary):
    """XGBoost on the tabular attributes plus the out-of-fold logit of a linear title model.

    `fit_spec` is the tabular part of the recipe; `fit` adds the fitted text model to it.
    """

    name = "stacked_text"
    uses_text = True

    def fit_spec(self, products: pd.DataFrame, features: FeatureConfig, model: ModelConfig) -> FeatureSpec:
        return fit_feature_spec(products, features, 0)

    def fit(
        self, products: pd.DataFrame, labels: np.ndarray, features: FeatureConfig, model: ModelConfig
    ) -> tuple[xgb.Booster, FeatureSpec]:
        labels = np.asarray(labels)
        counts = np.bincount(labels.astype(np.int64), minlength=2)
        if len(labels) != len(products) or int(counts.min()) < FOLDS:
            raise DataValidationError(
                f"{self.name}: needs at least {FOLDS} positive and {FOLDS} negative labels for its out-of-fold "
                f"text model, got {int(counts[1])} and {int(counts[0])}; collect more labels or use model.type xgboost"
            )
        if features.text not in products.columns:
            raise DataValidationError(
                f"products: text column {features.text!r} is missing; add it to the products query or set features.text"
            )
        tabular = self.fit_spec(products, features, model)
        titles = _titles(products[features.text])
        seed = int(model.params.get("seed", 0))
        oof = out_of_fold_logits(titles, labels, seed)
        text_model = LinearTextModel.fit(features.text, titles, labels)
        rows = build_features(products, tabular)
        dense = np.hstack([rows.dense, oof.astype(np.float32).reshape(-1, 1)])
        booster = self.train(FeatureRows(dense=dense, unseen=rows.unseen), labels, model)
        return booster, replace(tabular, stacked=text_model)
