"""The crawl's fast paths must give what the field-by-field checks give: a run's params, tags
and metrics read in bulk when they are plain (ASCII text, numbers), the checks otherwise; and the
file sink's background syncs must leave the file it wrote byte for byte."""
import json
import math
import os
import threading

import pytest

from connector.mapping.common import Mcp
from connector.sinks import file as file_sink
from connector.source.mlflow_objects import MalformedRecord, Run


def run_json(params=None, metrics=None, tags=None) -> dict:
    return {"info": {"run_id": "r1", "experiment_id": "1", "start_time": 5},
            "data": {"params": params or [], "metrics": metrics or [], "tags": tags or []}}


def test_plain_params_tags_and_metrics_are_read_as_they_are():
    run = Run.from_json(run_json(
        params=[{"key": "lr", "value": "0.1"}, {"key": "depth", "value": "6"}],
        metrics=[{"key": "auc", "value": 0.91, "step": 3, "timestamp": 1700},
                 {"key": "loss", "value": 2, "timestamp": 1800}],
        tags=[{"key": "team", "value": "fraud"}]))
    assert run.params == {"lr": "0.1", "depth": "6"}
    assert run.metrics == {"auc": 0.91, "loss": 2.0} and type(run.metrics["loss"]) is float
    assert run.metric_order == {"auc": (3, 1700), "loss": (0, 1800)}
    assert run.tags == {"team": "fraud"}


@pytest.mark.parametrize("metrics, values, order", [
    # MLflow's spellings of non-finite values, times and steps as strings, a missing step
    ([{"key": "m", "value": "NaN", "step": "2", "timestamp": "17"}], {"m": math.nan}, {"m": (2, 17)}),
    ([{"key": "m", "value": "-Infinity", "timestamp": 9}], {"m": -math.inf}, {"m": (0, 9)}),
    ([{"key": "m", "value": 1.5, "step": None, "timestamp": None}], {"m": 1.5}, {"m": (0, 0)}),
    ([{"key": "m"}], {"m": math.nan}, {"m": (0, 0)}),  # no value: NaN, as before
    ([{"key": "précision", "value": 0.5, "step": 1, "timestamp": 2}], {"précision": 0.5}, {"précision": (1, 2)}),
    ([{"key": "m", "value": 1, "step": 1, "timestamp": 1}, {"key": "m", "value": 2, "step": 2, "timestamp": 2}],
     {"m": 2.0}, {"m": (2, 2)}),  # a key twice: the last one, as before
])
def test_metrics_that_are_not_plain_take_the_checks_and_read_as_before(metrics, values, order):
    run = Run.from_json(run_json(metrics=metrics))
    assert {k: (str(v) if math.isnan(v) else v) for k, v in run.metrics.items()} == \
        {k: (str(v) if math.isnan(v) else v) for k, v in values.items()}
    assert run.metric_order == order


@pytest.mark.parametrize("params, expected", [
    ([{"key": "n", "value": 3}], {"n": "3"}),                      # a number: as text
    ([{"key": "empty"}], {"empty": ""}),                           # no value: ""
    ([{"key": "名前", "value": "モデル"}], {"名前": "モデル"}),       # text beyond ASCII
])
def test_params_that_are_not_plain_take_the_checks_and_read_as_before(params, expected):
    assert Run.from_json(run_json(params=params)).params == expected


@pytest.mark.parametrize("field, items, named", [
    ("params", [{"key": "k", "value": "bad \ud800"}], "data.params[0].value"),
    ("params", ["not an object"], "data.params[0]"),
    ("tags", [{"value": "no key"}], "data.tags[0]"),
    ("metrics", [{"key": "m", "value": 1, "timestamp": "yesterday"}], "timestamp"),
    ("metrics", [{"key": ["a list"], "value": 1}], "data.metrics[0].key"),
])
def test_odd_fields_are_still_named(field, items, named):
    with pytest.raises(MalformedRecord) as caught:
        Run.from_json(run_json(**{field: items}))
    assert named in str(caught.value) and "run r1" in str(caught.value)


def test_background_syncs_leave_the_file_byte_for_byte(tmp_path, monkeypatch):
    monkeypatch.setattr(file_sink, "SYNC_EVERY", 2_000)  # a sync every ~20 records
    syncs = []
    real = file_sink.AtomicFile.sync_in_background
    monkeypatch.setattr(file_sink.AtomicFile, "sync_in_background",
                        lambda self: (syncs.append(threading.active_count()), real(self)))
    proposals = [Mcp(f"urn:li:mlModel:(urn:li:dataPlatform:mlflow,m{i},PROD)", "mlModelProperties",
                     {"customProperties": {"i": str(i), "pad": "x" * 60}}) for i in range(500)]
    system_metadata = {"runId": "r", "lastObserved": 1}
    synced, plain = file_sink.FileSink(str(tmp_path / "synced.json")), tmp_path / "plain.json"
    for proposal in proposals:
        synced.write(proposal, system_metadata)
    assert synced.commit().delivered == 500
    assert len(syncs) >= 10
    expected = [file_sink.file_record(p, system_metadata) for p in proposals]
    assert json.loads((tmp_path / "synced.json").read_text()) == expected
    plain.write_text("[" + ",".join("\n" + json.dumps(r, ensure_ascii=False) for r in expected) + "\n]\n")
    assert (tmp_path / "synced.json").read_bytes() == plain.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.json", "synced.json"]  # no temporary file left


def test_an_aborted_file_with_a_sync_under_way_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(file_sink, "SYNC_EVERY", 100)
    sink = file_sink.FileSink(str(tmp_path / "out.json"))
    for i in range(50):
        sink.write(Mcp(f"urn:li:mlModel:(urn:li:dataPlatform:mlflow,m{i},PROD)", "status", {"removed": False}),
                   {"runId": "r", "lastObserved": 1})
    result = sink.abort()
    assert result.delivered == 0 and result.failed == 50
    assert list(tmp_path.iterdir()) == []
    assert not any(t.name == "atomic-file-sync" for t in threading.enumerate())


@pytest.mark.parametrize("field, items, named", [
    # a bad value hidden by a later item with the same key: the bulk read kept only the last one
    ("params", [{"key": "k", "value": True}, {"key": "k", "value": "ok"}], "data.params[0].value"),
    ("tags", [{"key": "k", "value": "bad \ud800"}, {"key": "k", "value": "ok"}], "data.tags[0].value"),
    ("tags", [{"key": "k", "value": {"nested": 1}}, {"key": "k", "value": "ok"}], "data.tags[0].value"),
    # a metric that is no object, or has no key: named, not a Python error's text
    ("metrics", [None], "data.metrics[0]"),
    ("metrics", [{"key": "m", "value": 1}, 1.5], "data.metrics[1]"),
    ("metrics", [{"value": 1}], "data.metrics[0]"),
    # a whole number past any double: a malformed record (it failed the whole run with OverflowError)
    ("metrics", [{"key": "m", "value": 10 ** 400, "step": 1, "timestamp": 2}], "data.metrics[0].value"),
])
def test_every_item_is_checked_and_named_even_when_a_later_one_is_plain(field, items, named):
    with pytest.raises(MalformedRecord) as caught:
        Run.from_json(run_json(**{field: items}))
    assert named in str(caught.value) and "run r1" in str(caught.value)
    assert "MLflow sends (" not in str(caught.value)  # not "a field is not what MLflow sends ('key')"


def test_a_key_given_twice_with_plain_values_keeps_the_last_as_before():
    run = Run.from_json(run_json(params=[{"key": "k", "value": "a"}, {"key": "j", "value": "b"},
                                         {"key": "k", "value": "c"}]))
    assert run.params == {"k": "c", "j": "b"} and list(run.params) == ["k", "j"]


def test_a_logged_models_huge_metric_is_named():
    from connector.source.mlflow_objects import LoggedModel
    with pytest.raises(MalformedRecord) as caught:
        LoggedModel.from_json({"info": {"model_id": "m-1"}, "data": {"metrics": [{"key": "a", "value": 10 ** 400}]}})
    assert "data.metrics[0].value is a number too large" in str(caught.value)


def _write_records(sink, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        sink.write(Mcp(f"urn:li:mlModel:(urn:li:dataPlatform:mlflow,m{i},PROD)", "mlModelProperties",
                       {"customProperties": {"i": str(i), "pad": "x" * 60}}), {"runId": "r", "lastObserved": 1})


def _good_file(path) -> bytes:
    sink = file_sink.FileSink(str(path))
    _write_records(sink, 3)
    sink.commit()
    return path.read_bytes()


def test_a_background_sync_that_failed_fails_the_commit(tmp_path, monkeypatch):
    """Linux reports a write-back error (EIO, or ENOSPC on a filesystem that allocates late) to one
    sync of a descriptor only: after the background sync met it, the sync at commit succeeds. The
    error must not be dropped, or a file whose data never reached the disk replaces the good one."""
    target = tmp_path / "out.json"
    good = _good_file(target)
    failed = []

    def datasync_meets_an_io_error(fd):
        failed.append(fd)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(file_sink, "SYNC_EVERY", 2_000)
    monkeypatch.setattr("os.fdatasync", datasync_meets_an_io_error)
    sink = file_sink.FileSink(str(target))
    _write_records(sink, 100)
    with pytest.raises(file_sink.SinkError, match="out.json: Input/output error"):
        sink.commit()
    assert failed and target.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_without_fdatasync_the_background_sync_uses_fsync(tmp_path, monkeypatch):
    """macOS has no os.fdatasync: the sync thread died with an AttributeError every 8 MB."""
    monkeypatch.setattr(file_sink, "SYNC_EVERY", 2_000)
    monkeypatch.delattr("os.fdatasync")
    died = []
    monkeypatch.setattr(threading, "excepthook", died.append)
    sink = file_sink.FileSink(str(tmp_path / "out.json"))
    _write_records(sink, 200)
    assert sink.commit().delivered == 200
    assert died == []
    assert len(json.loads((tmp_path / "out.json").read_text())) == 200


def test_no_thread_to_be_had_leaves_the_sync_to_the_commit(tmp_path, monkeypatch):
    """A process limit: Thread.start raises RuntimeError (it escaped the sink as no SinkError)."""
    def no_thread(self):
        raise RuntimeError("can't start new thread")
    monkeypatch.setattr(file_sink, "SYNC_EVERY", 2_000)
    monkeypatch.setattr(threading.Thread, "start", no_thread)
    sink = file_sink.FileSink(str(tmp_path / "out.json"))
    _write_records(sink, 200)
    assert sink.commit().delivered == 200
    assert len(json.loads((tmp_path / "out.json").read_text())) == 200


def test_a_full_disk_while_syncing_in_the_background_keeps_the_good_file(tmp_path, monkeypatch):
    import subprocess
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {done.stderr.strip()}")
    try:
        target = mount / "out.json"
        good = _good_file(target)
        monkeypatch.setattr(file_sink, "SYNC_EVERY", 2_000)
        sink = file_sink.FileSink(str(target))
        with pytest.raises(file_sink.SinkError, match="No space left on device"):
            _write_records(sink, 5_000)
        assert sink.abort().delivered == 0
        assert target.read_bytes() == good
        assert [p.name for p in mount.iterdir()] == ["out.json"]
        assert not any(t.name == "atomic-file-sync" for t in threading.enumerate())
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_the_dataset_urn_cache_keeps_no_schema(monkeypatch):
    """A run that logs data of its own (a new digest each time) with a wide table's schema: the
    memoised URNs must not keep 4,096 schemas alive (memory must stay flat to a million runs)."""
    import gc
    import tracemalloc

    from connector.mapping.common import MappingContext
    from connector.mapping.datasets import _dataset_urn, dataset_urn_for
    from connector.source.mlflow_objects import LoggedDataset

    _dataset_urn.cache_clear()
    ctx = MappingContext()
    schema = json.dumps({"mlflow_colspec": [{"type": "double", "name": f"feature_{c:04}"} for c in range(1000)]})
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(200):  # a schema of ~50 KB each: ~10 MB if the cache keeps them
            dataset = LoggedDataset(name="train", digest=f"d{i}", source_type="code", source="{}",
                                    schema=schema + " " * i)  # (each its own string, as parsed from JSON)
            assert dataset_urn_for(ctx, dataset).startswith("urn:li:dataset:(urn:li:dataPlatform:mlflow,train@")
            del dataset
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        _dataset_urn.cache_clear()
    assert kept < 1_000_000, f"{kept} bytes kept after mapping 200 datasets"


def test_memoised_urns_follow_each_runs_settings_in_one_process():
    """Two runs in one process (the SDK, DataHub's pipeline, Airflow) with other settings: every URN
    is what an uncached build gives for that run's settings."""
    from connector.mapping import urns
    from connector.mapping.common import MappingContext
    from connector.mapping.datasets import _dataset_urn, dataset_urn_for
    from connector.source.mlflow_objects import LoggedDataset

    dataset = LoggedDataset(name="train", digest="d1", source_type="s3", source='{"uri": "s3://b/train.csv"}')
    contexts = [MappingContext(), MappingContext(platform_instance="eu"), MappingContext(env="DEV"),
                MappingContext(dataset_urn="name"), MappingContext(env="DEV", platform_instance="eu", dataset_urn="name")]
    seen = [(dataset_urn_for(c, dataset), urns.experiment_urn("exp", c.platform_instance),
             urns.run_urn("r1", instance=c.platform_instance), urns.version_set_urn("m", instance=c.platform_instance))
            for c in contexts * 2]  # each asked twice, interleaved: the second from the caches
    for cached in (_dataset_urn, urns.experiment_urn, urns.run_urn, urns.version_set_urn):
        cached.cache_clear()
    fresh = [(dataset_urn_for(c, dataset), urns.experiment_urn("exp", c.platform_instance),
              urns.run_urn("r1", instance=c.platform_instance), urns.version_set_urn("m", instance=c.platform_instance))
             for c in contexts]
    assert seen == fresh * 2
    assert len({s[0] for s in fresh}) == 5 and len({s[1] for s in fresh}) == 2
    assert fresh[0][0] == "urn:li:dataset:(urn:li:dataPlatform:mlflow,train@" + \
        urns.guid({"source_type": "s3", "location": "s3://b/train.csv"})[:12] + ",PROD)"
    assert fresh[4][0] == "urn:li:dataset:(urn:li:dataPlatform:mlflow,eu.train,DEV)"


_WRITE_UNTIL_STOPPED = """
import sys, threading
from connector import cli
from connector.mapping.common import Mcp
from connector.sinks import file as file_sink
from connector.stopping import Stopped
cli._stop_on_signals()
file_sink.SYNC_EVERY = 5_000
sink = file_sink.FileSink(sys.argv[1])
try:
    i = 0
    while True:
        sink.write(Mcp(f"urn:li:mlModel:(urn:li:dataPlatform:mlflow,m{i},PROD)", "status", {"removed": False}),
                   {"runId": "r", "lastObserved": 1})
        i += 1
        if i == 2_000:
            print("writing", flush=True)
except Stopped:
    result = sink.abort()
    print("aborted", result.delivered, result.failed > 0,
          sorted(t.name for t in threading.enumerate() if t.name == "atomic-file-sync"), flush=True)
"""


def test_sigterm_while_writing_and_syncing_keeps_the_good_file(tmp_path):
    import signal
    import subprocess
    import sys
    target = tmp_path / "out.json"
    good = _good_file(target)
    child = subprocess.Popen([sys.executable, "-c", _WRITE_UNTIL_STOPPED, str(target)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "writing"
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert out.strip() == "aborted 0 True []", err
    assert "Traceback" not in err
    assert target.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_stop_as_the_sync_thread_starts_still_aborts_cleanly(tmp_path, monkeypatch):
    """SIGTERM raises Stopped wherever the main thread is: just as the sync thread was made (seen 1 in
    40 SIGTERMs with a sync per record), abort joined a thread never started: RuntimeError, temp file left."""
    from connector.stopping import Stopped

    def stopped_before_it_started(self):
        raise Stopped("stopped by SIGTERM")
    target = tmp_path / "out.json"
    good = _good_file(target)
    monkeypatch.setattr(file_sink, "SYNC_EVERY", 100)
    sink = file_sink.FileSink(str(target))
    monkeypatch.setattr(threading.Thread, "start", stopped_before_it_started)
    with pytest.raises(Stopped):
        _write_records(sink, 10)
    assert sink.abort().delivered == 0
    assert target.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_file_sink_written_again_after_its_commit_writes_a_whole_new_file(tmp_path):
    """(The SDK's CatalogClient takes a sink: two clients in turn on one FileSink.) The second file
    began `[,` (invalid JSON over the good file) and counted the first file's records as delivered."""
    target = tmp_path / "out.json"
    sink = file_sink.FileSink(str(target))
    _write_records(sink, 2)
    assert sink.commit().delivered == 2
    _write_records(sink, 3, start=10)
    assert sink.commit().delivered == 3
    assert [r["entityUrn"] for r in json.loads(target.read_text())] == \
        [f"urn:li:mlModel:(urn:li:dataPlatform:mlflow,m{i},PROD)" for i in (10, 11, 12)]
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_metric_key_sent_as_a_number_keys_its_order_as_its_value():
    run = Run.from_json(run_json(metrics=[{"key": 3, "value": 0.5, "step": 7, "timestamp": 9}]))
    assert run.metrics == {"3": 0.5} and run.metric_order == {"3": (7, 9)}


def test_an_abort_does_not_wait_for_a_slow_disk(tmp_path, monkeypatch):
    """SIGTERM stops a run within seconds: the file thrown away need not reach the disk, so the
    abort does not wait out a background sync held up by a busy or stalled disk."""
    import time

    release = threading.Event()
    real = os.fdatasync

    def stalled_datasync(fd):
        release.wait(60)
        real(fd)
    target = tmp_path / "out.json"
    good = _good_file(target)
    monkeypatch.setattr(file_sink, "SYNC_EVERY", 2_000)
    monkeypatch.setattr("os.fdatasync", stalled_datasync)
    sink = file_sink.FileSink(str(target))
    _write_records(sink, 100)
    started = time.monotonic()
    try:
        assert sink.abort().delivered == 0
        took = time.monotonic() - started
    finally:
        release.set()
    assert took < 10, f"abort waited {took:.1f} s for the sync"
    assert target.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_the_preview_on_standard_output_is_never_synced_and_matches_the_file(tmp_path, monkeypatch):
    import io
    monkeypatch.setattr(file_sink, "SYNC_EVERY", 500)
    stream = io.StringIO()
    preview, sink = file_sink.StdoutSink(stream), file_sink.FileSink(str(tmp_path / "out.json"))
    for each in (preview, sink):
        _write_records(each, 50)
        assert each.commit().delivered == 50
    assert stream.getvalue() == (tmp_path / "out.json").read_text(encoding="utf-8")
    assert not any(t.name == "atomic-file-sync" for t in threading.enumerate())
