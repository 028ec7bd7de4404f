"""Gate replay: training and the gate over past weekly snapshots, under today's policy and a proposed one.

For every week, the week's snapshot is extracted (content-addressed: an existing one is reused) and split
as the training pipeline splits it; one candidate per package type is trained, then each policy judges it
against its own champion. Champions live in memory: a policy's champion of a type is the last candidate
it approved, so two policies that decide differently go on with different champions, as they would have
in production. Nothing is written to the registry; models and splits go to a temporary directory.

The same loop measures the gate's statistics on synthetic scenarios (`bench/` and the tests use it).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from packwise.errors import ConfigError

if TYPE_CHECKING:
    from packwise.artifact import LoadedModel
    from packwise.config import GateConfig, PackwiseConfig
    from packwise.gate import GateDecision


_BLOCKING = {"review": "review", "reject": "reject"}


@dataclass(frozen=True)
class _Champion:
    week: int
    model: LoadedModel
    snapshot_dir: Path
    label_count: int
    positive_rate: float


@dataclass
class ReplayResult:
    """The decisions of every policy, per week and package type.

    Attributes:
        weeks: The weeks replayed, in order.
        package_types: The package types, in config order.
        decisions: Policy name -> week -> package type -> the gate's decision.
        fingerprints: Week -> fingerprint of its snapshot.
    """

    weeks: list[int]
    package_types: list[str]
    decisions: dict[str, dict[int, dict[str, GateDecision]]] = field(default_factory=dict)
    fingerprints: dict[int, str] = field(default_factory=dict)

    def status(self, policy: str, week: int, package_type: str) -> str:
        """The registry status the policy's decision would have set."""
        return self.decisions[policy][week][package_type].status

    def differing_criteria(self, week: int, package_type: str) -> list[str]:
        """Criteria that hold a candidate back (review or reject) under some policies but not all, for that
        cell, in report order. Pass, off and n/a all let it through, so they count as the same."""
        cells = [self.decisions[p][week][package_type] for p in self.decisions]
        names = [c.name for c in cells[0].criteria]
        verdicts = [{c.name: _BLOCKING.get(c.verdict, "through") for c in cell.criteria} for cell in cells]
        return [n for n in names if len({v.get(n, "through") for v in verdicts}) > 1]


def parse_weeks(text: str) -> list[int]:
    """`1-4` -> [1, 2, 3, 4]; `3` -> [3]; `1,3` -> [1, 3].

    Raises:
        ConfigError: The text is not a week, a range or a comma list of them.
    """
    weeks: list[int] = []
    try:
        for part in text.split(","):
            first, _, last = part.strip().partition("-")
            lo, hi = int(first), int(last or first)
            if lo < 1 or hi < lo:
                raise ValueError
            weeks.extend(range(lo, hi + 1))
    except ValueError:
        raise ConfigError(f"--weeks {text!r}: expected weeks like 1-4, 3 or 1,3 (1 or later, ascending)") from None
    if weeks != sorted(set(weeks)):
        raise ConfigError(f"--weeks {text!r}: weeks must ascend without repeats, e.g. 1-4")
    return weeks


def replay_gate(
    config: PackwiseConfig,
    weeks: Sequence[int],
    policies: Mapping[str, GateConfig],
    workdir: Path | None = None,
) -> ReplayResult:
    """Replays training and every policy's gate over the weekly snapshots.

    Args:
        config: The resolved configuration (warehouse, storage, features, model, split, package types).
        weeks: Weeks to replay, ascending; champions start empty before the first.
        policies: Policy name -> gate configuration, e.g. {"today": ..., "proposed": ...}.
        workdir: Where splits and models go; a temporary directory (removed afterwards) when None.

    Returns:
        Every policy's decision per week and package type.
    """
    if not policies:
        raise ConfigError("gate replay needs at least one policy")
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="packwise-replay-") as tmp:
            return _replay(config, weeks, policies, Path(tmp))
    return _replay(config, weeks, policies, workdir)


def _replay(
    config: PackwiseConfig, weeks: Sequence[int], policies: Mapping[str, GateConfig], workdir: Path
) -> ReplayResult:
    from packwise.artifact import load_model_artifact
    from packwise.evaluation import score_metrics
    from packwise.gate import Evidence, evaluate_gate
    from packwise.label_quality import measure_label_quality
    from packwise.models import get_model_type
    from packwise.models.base import predict
    from packwise.snapshot import extract_snapshot
    from packwise.split import read_split, split_snapshot
    from packwise.training import train as train_candidate
    from packwise.validation import validate_snapshot

    names = config.package_type_names
    thresholds = {t.name: t.threshold for t in config.package_types}
    result = ReplayResult(weeks=list(weeks), package_types=list(names))
    champions: dict[str, dict[str, _Champion]] = {p: {} for p in policies}
    uses_text = get_model_type(config.model.type).uses_text
    for week in weeks:
        snapshot = extract_snapshot(config, week)
        result.fingerprints[week] = snapshot.fingerprint
        validate_snapshot(snapshot.path, config.features, names, uses_text)
        week_dir = workdir / f"week-{week}"
        week_dir.mkdir(parents=True, exist_ok=True)
        train_path, val_path = week_dir / "train.parquet", week_dir / "validation.parquet"
        split_snapshot(snapshot.path, train_path, val_path, config.split.train_ratio, config.split.seed, names)
        for package_type in names:
            model_path = week_dir / f"{package_type}.tar.gz"
            summary = train_candidate(
                train_path,
                val_path,
                package_type,
                config.features,
                config.model,
                model_path,
                f"replay-{week}-{package_type}",
                snapshot.fingerprint,
            ).summary
            candidate_model = load_model_artifact(model_path)
            products, labels = read_split(val_path, package_type)
            prob, _ = predict(candidate_model.booster, candidate_model.spec, products, config.inference.engine)
            cand = score_metrics(labels, prob, thresholds[package_type])
            candidate = Evidence(
                package_type=package_type,
                version=None,
                auc=cand.auc,
                pr_auc=cand.pr_auc,
                log_loss=cand.log_loss,
                label_count=summary.label_count,
                positive_rate=summary.positive_rate,
            )
            champion_scores: dict[int, Evidence] = {}  # champion week -> its evidence, shared by policies
            for policy, gate in policies.items():
                champ = champions[policy].get(package_type)
                champion = quality = None
                if champ is not None:
                    if champ.week not in champion_scores:
                        champ_prob, _ = predict(
                            champ.model.booster, champ.model.spec, products, config.inference.engine
                        )
                        m = score_metrics(labels, champ_prob, thresholds[package_type])
                        champion_scores[champ.week] = Evidence(
                            package_type=package_type,
                            version=champ.week,
                            auc=m.auc,
                            pr_auc=m.pr_auc,
                            log_loss=m.log_loss,
                            label_count=champ.label_count,
                            positive_rate=champ.positive_rate,
                        )
                    champion = champion_scores[champ.week]
                    quality = measure_label_quality(
                        package_type,
                        candidate_model,
                        champ.model,
                        snapshot.path,
                        champ.snapshot_dir,
                        config.split.train_ratio,
                        config.split.seed,
                        gate.confident_probability,
                    )
                decision = evaluate_gate(candidate, champion, gate, quality)
                result.decisions.setdefault(policy, {}).setdefault(week, {})[package_type] = decision
                if decision.approved:
                    champions[policy][package_type] = _Champion(
                        week=week,
                        model=candidate_model,
                        snapshot_dir=snapshot.path,
                        label_count=summary.label_count,
                        positive_rate=summary.positive_rate,
                    )
    return result
