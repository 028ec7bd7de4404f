"""Arrow record batches regrouped into tables of a fixed row count, whatever sizes the source yields; and
whether a stream of keys comes strictly increasing (so every key in it is distinct)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa


def fixed_size_tables(
    batches: Iterable[pa.RecordBatch], rows: int, schema: pa.Schema | None = None
) -> Iterator[pa.Table]:
    """The batches' rows, in order, as tables of exactly `rows` rows, the last one shorter (none when there
    are no rows). A table may hold several chunks: the batches' own, sliced. `schema`: the batches' (by
    default the first batch's)."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        held += batch.num_rows
        while held >= rows:
            buffered = pa.Table.from_batches(pending, schema)
            yield buffered.slice(0, rows)
            rest = buffered.slice(rows)
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(pending, schema)


class OutOfOrderError(Exception):
    """A key came null, or not above the one before it, where keys were expected strictly increasing."""


def increasing_after(last: Any, keys: pa.Array | pa.ChunkedArray) -> Any:
    """The last of `keys` when they are non-null and strictly increasing, starting above `last` (None: no
    key before them); else raises `OutOfOrderError`. Arrow compares strings bytewise, as DuckDB orders
    VARCHAR by default; for telling that keys are distinct, any strict order does."""
    import pyarrow.compute as pc

    n = len(keys)
    if n == 0:
        return last
    if keys.null_count:
        raise OutOfOrderError
    first = keys[0].as_py()
    increasing = n < 2 or pc.all(pc.less(keys.slice(0, n - 1), keys.slice(1))).as_py()
    if not increasing or (last is not None and not last < first):
        raise OutOfOrderError
    return keys[n - 1].as_py()


class KeyOrder:
    """Counts the rows of a stream of key batches and notes whether the keys came strictly increasing from
    the first to the last: then they are all distinct, with no hash of them built anywhere."""

    def __init__(self) -> None:
        self.rows = 0
        self.increasing = True
        self._last: Any = None

    def see(self, keys: pa.Array | pa.ChunkedArray) -> None:
        self.rows += len(keys)
        if self.increasing:
            try:
                self._last = increasing_after(self._last, keys)
            except OutOfOrderError:
                self.increasing = False

    def distinct_rows(self) -> int | None:
        """The rows seen when their keys came strictly increasing (so all distinct), else None."""
        return self.rows if self.increasing else None
