"""The writer's group commit on a real DuckDB file (no server): batches from several requests
are inserted with one statement, resources and scopes stay matched to their spans."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from tracehound.collector.decode import decode_request
from tracehound.collector.fastdecode import decode_protobuf
from tracehound.collector.store import open_database
from tracehound.collector.writer import ROW_GROUP_ROWS, SpanWriter

from bench.spans import make_request
from tests.collector_rows import stored_spans
from tracehound.server import DUCKDB_THREADS


def _request(service: str, scope: str, first_id: int, n: int) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for r in range(2):
        rs = request.resource_spans.add()
        rs.resource.attributes.add(key="service.name", value=AnyValue(string_value=f"{service}-{r}"))
        ss = rs.scope_spans.add()
        ss.scope.name = f"{scope}-{r}"
        for i in range(n):
            span_id = (first_id + r * 1000 + i).to_bytes(8, "big")
            ss.spans.add(
                trace_id=b"\x01" * 16,
                span_id=span_id,
                name=f"{service}-{r}",
                start_time_unix_nano=1_700_000_000_000_000_000 + i,
                end_time_unix_nano=1_700_000_000_000_000_009,
            )
    return request


def test_group_commit_keeps_resources_and_scopes_with_their_spans(tmp_path):
    db = tmp_path / "w.duckdb"
    con = open_database(db)
    writer = SpanWriter(con, queue_max_spans=10_000)
    batches = [decode_request(_request(f"svc{k}", f"scope{k}", 1 + k * 10_000, 3)) for k in range(4)]
    futures = [writer.submit(b) for b in batches]  # queued before the thread starts: one group
    assert writer.pending_spans == 24
    writer.start()
    assert [f.result(timeout=30) for f in futures] == [6, 6, 6, 6]
    assert writer.stats.commits == 1 and writer.stats.spans_committed == 24
    writer.stop()
    con.close()
    rows = stored_spans(db).values()
    assert len(rows) == 24
    for row in rows:
        assert row["ServiceName"] == row["SpanName"]
        assert row["ScopeName"] == row["SpanName"].replace("svc", "scope")
        assert row["ResourceAttributes"] == {"service.name": row["SpanName"]}


def test_full_queue_refuses_and_stopped_writer_refuses(tmp_path):
    con = open_database(tmp_path / "w.duckdb")
    writer = SpanWriter(con, queue_max_spans=10)
    big = decode_request(_request("a", "s", 1, 8))  # 16 spans: over the limit, but the queue is empty
    assert writer.submit(big) is not None
    assert writer.submit(decode_request(_request("b", "s", 50_000, 1))) is None
    writer.start()
    writer.stop()
    assert writer.stats.spans_committed == 16
    assert writer.submit(decode_request(_request("c", "s", 90_000, 1))) is None
    con.close()


@pytest.mark.slow
def test_checkpoint_when_a_row_group_fills_leaves_no_free_blocks(tmp_path):
    """250 x 512 benchmark spans, all queued before the writer starts (as under overload), cross
    one row group (122,880 rows): the writer cuts its group commit at the boundary and checkpoints
    there, and after the shutdown checkpoint the file has no free blocks (DuckDB's WAL-size
    trigger, checkpointing at arbitrary points, left dozens on the same load)."""
    db = tmp_path / "rg.duckdb"
    con = open_database(db)
    # as `tracehound serve` runs DuckDB (tracehound/server.py DUCKDB_THREADS): with a second
    # DuckDB thread, one 122,880-row insert is appended in parallel pieces that leave free blocks
    con.execute(f"SET threads = {DUCKDB_THREADS}")
    writer = SpanWriter(con, queue_max_spans=1_000_000)
    futures = []
    for i in range(250):
        body = make_request(
            512, seed=i, start_ns=1_700_000_000_000_000_000 + i * 50_000_000
        ).SerializeToString()
        futures.append(writer.submit(decode_protobuf(body)))
    writer.start()
    assert sum(f.result(timeout=120) for f in futures) == 250 * 512 > ROW_GROUP_ROWS
    writer.stop()
    assert writer.stats.checkpoints == 1 and writer.stats.commits == 2  # 240 + 10 requests
    con.execute("CHECKPOINT")
    free, used = con.execute("SELECT free_blocks, used_blocks FROM pragma_database_size()").fetchone()
    con.close()
    assert free == 0 and used > 0


def test_bad_batch_among_good_ones_is_rejected_alone(tmp_path):
    """Four requests share one group commit; DuckDB refuses one of them (a NULL TraceId breaks
    NOT NULL): the group insert fails, each is retried alone, the three good ones are committed
    and acknowledged, and the bad one fails with SpansRejected naming the cause."""
    import pyarrow as pa
    from tracehound.collector.writer import SpansRejected

    db = tmp_path / "bad.duckdb"
    con = open_database(db)
    writer = SpanWriter(con, queue_max_spans=10_000)
    batches = [decode_request(_request(f"svc{k}", f"scope{k}", 1 + k * 10_000, 2)) for k in range(4)]
    bad = batches[2]
    column = bad.spans.schema.get_field_index("TraceId")
    bad.spans = bad.spans.set_column(column, "TraceId", pa.nulls(bad.spans.num_rows, pa.string()))
    futures = [writer.submit(b) for b in batches]
    writer.start()
    assert [futures[k].result(timeout=30) for k in (0, 1, 3)] == [4, 4, 4]
    with pytest.raises(SpansRejected, match="refused these spans.*NOT NULL"):
        futures[2].result(timeout=30)
    writer.stop()
    assert writer.stats.spans_committed == 12 and writer.stats.storage_errors == 1
    assert writer.pending_spans == 0
    con.close()
    rows = stored_spans(db).values()
    assert sorted({r["ServiceName"].split("-")[0] for r in rows}) == ["svc0", "svc1", "svc3"]
    assert len(rows) == 12
