"""Arrow record batches regrouped into tables of a fixed row count, whatever sizes the source yields."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

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
