"""The C tier of protobuf decoding: :mod:`._otlpfast` (``_otlpfast.c``) output -> a batch.

The extension walks the wire format of the common shape of a request straight into column buffers
(see the C file's header for what it hands back instead: events or links, unstorable ids or times,
invalid UTF-8, a singular message given twice, malformed data). It is optional: when it did not
build (no C compiler at install), :func:`decode` always answers ``None`` and the mirror-message tier
of :mod:`.fastdecode` does the work.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .attrcolumns import add_resource, add_scope, span_attributes
from .attributes import MapBuilder, Problems
from .batch import DecodedBatch, ResourceScopeColumns, SpanColumns, build_batch, new_event_link_columns

try:
    from . import _otlpfast  # built from _otlpfast.c; optional (no C compiler: the paths above)
except ImportError:  # pragma: no cover - depends on the build
    _otlpfast = None

#: The C decoder's per-span record (``struct fixed_rec`` in _otlpfast.c, packed, little-endian).
_FIXED_DTYPE = np.dtype(
    [
        ("start", "<u8"),
        ("end", "<u8"),
        ("kind", "<i4"),
        ("flags", "<u4"),
        ("dropped_attrs", "<u4"),
        ("dropped_events", "<u4"),
        ("dropped_links", "<u4"),
        ("status_code", "<i4"),
        ("res_idx", "<i4"),
        ("scope_idx", "<i4"),
    ]
)
if _otlpfast is not None and _FIXED_DTYPE.itemsize != _otlpfast.FIXED_RECORD:  # pragma: no cover
    _otlpfast = None


def _strings(n: int, offsets: bytes, data: bytes) -> pa.StringArray:
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def _hex_ids(n: int, data: bytes, width: int) -> pa.StringArray:
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def decode(body: bytes) -> DecodedBatch | None:
    """The batch of ``body`` when the C decoder takes its shape, else ``None`` (use another tier).

    Raises :class:`~.attrcolumns.NeedsSlowPath` when a limit rule applies to an attribute.
    """
    columns = None if _otlpfast is None else _otlpfast.decode(body)
    return None if columns is None else _from_columns(columns)


def _from_columns(columns: tuple) -> DecodedBatch:
    """The :class:`~.decode.DecodedBatch` of the C decoder's output (see ``_otlpfast.c``)."""
    (n, fixed, tid, sid, pid, names, tstate, smsg, attr_idx, attr_counts, kvs, resources, scopes) = columns[
        :13
    ]
    rows = np.frombuffer(columns[13], np.int32), np.frombuffer(columns[14], np.int32)
    problems = Problems()
    rc = ResourceScopeColumns([], [], [], MapBuilder(), [], [], [], [], MapBuilder())
    for encoded, schema_url in resources:
        add_resource(rc, encoded, schema_url, problems)
    for encoded, schema_url in scopes:
        add_scope(rc, encoded, schema_url, problems)
    rec = np.frombuffer(fixed, _FIXED_DTYPE)

    def col(name):
        return np.ascontiguousarray(rec[name])

    ev_offsets, ev, ln_offsets, ln = new_event_link_columns()
    no_items = np.zeros(n + 1, np.int32)
    return build_batch(
        problems,
        SpanColumns(
            col("start"),
            col("end"),
            _hex_ids(n, tid, 32),
            _hex_ids(n, sid, 16),
            _strings(n, *pid),
            _strings(n, *tstate),
            _strings(n, *names),
            col("kind"),
            col("status_code"),
            _strings(n, *smsg),
            col("flags"),
            col("dropped_attrs"),
            col("dropped_events"),
            col("dropped_links"),
            col("res_idx"),
            col("scope_idx"),
            no_items,
            ev,
            no_items,
            ln,
        ),
        span_attributes(kvs, np.frombuffer(attr_idx, np.int32), np.frombuffer(attr_counts, np.int32), rows),
        None,
        rc,
        prechecked=True,
    )
