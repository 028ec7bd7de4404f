"""What scoring a file did (`ScoreStats`), in a module of its own.

collect-scores sums every shard's statistics; importing them from `packwise.scoring` would load the tree
engines (XGBoost or daal4py, with scikit-learn and SciPy: seconds of start-up) in a task that only adds
numbers. `packwise.scoring` re-exports the class.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, field_serializer


class ScoreStats(BaseModel):
    """What scoring one file did; `seconds_predict` is the time inside the tree engine's predict.

    ``model_dump()`` is its JSON form (seconds rounded to 0.1 ms); ``model_validate`` reads it back.
    """

    rows: int = 0
    recommended: dict[str, int] = Field(default_factory=dict)
    unseen: dict[str, int] = Field(default_factory=dict)
    seconds: float = 0.0
    seconds_predict: float = 0.0
    expected_cost: float | None = None  # summed expected cost of the picks; None without configured costs

    def add(self, other: ScoreStats) -> None:
        if other.expected_cost is not None:
            self.expected_cost = (self.expected_cost or 0.0) + other.expected_cost
        self.rows += other.rows
        for k, v in other.recommended.items():
            self.recommended[k] = self.recommended.get(k, 0) + v
        for k, v in other.unseen.items():
            self.unseen[k] = self.unseen.get(k, 0) + v
        self.seconds += other.seconds
        self.seconds_predict += other.seconds_predict

    @field_serializer("seconds", "seconds_predict")
    def _rounded(self, value: float) -> float:
        return round(value, 4)
