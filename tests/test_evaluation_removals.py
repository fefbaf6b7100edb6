"""Evaluation datasets are listed whole in every crawl: an incremental run that no longer lists one
removes it (other datasets, met only through runs, are not), and the mass-removal threshold
guards them like any other kind."""
from connector.change_tracking.changes import ChangeDetector
from connector.change_tracking.removals import gone_entities, removal_refusal
from connector.mapping.catalog_entities import FULLY_LISTED_MARK


def dataset(name):
    return f"urn:li:dataset:(urn:li:dataPlatform:mlflow,{name}@0123456789ab,PROD)"


def test_an_incremental_run_removes_an_evaluation_dataset_it_no_longer_lists():
    previous = {dataset("qa_eval"): FULLY_LISTED_MARK + "aa", dataset("gone_eval"): FULLY_LISTED_MARK + "bb",
                dataset("train"): "cc"}  # train: a run's input, never listed whole
    changes = ChangeDetector(previous, dict(previous), emit_all=False)
    changes.see(dataset("qa_eval"), FULLY_LISTED_MARK + "aa")
    assert gone_entities(previous, changes.current, changes.seen_listed, True, []) == [dataset("gone_eval")]


def test_a_deleted_evaluation_dataset_a_run_still_reads_stays():
    previous = {dataset("qa_eval"): FULLY_LISTED_MARK + "aa"}
    changes = ChangeDetector(previous, dict(previous), emit_all=False)
    changes.see(dataset("qa_eval"), "described-from-the-run-input")
    assert gone_entities(previous, changes.current, changes.seen_listed, True, []) == []


def test_the_threshold_refuses_removing_every_evaluation_dataset():
    previous = {dataset(f"eval_{i}"): FULLY_LISTED_MARK + str(i) for i in range(12)}
    previous["urn:li:container:abc"] = "x"
    removed = sorted(u for u in previous if u.startswith("urn:li:dataset:"))
    current = {"urn:li:container:abc": "x"}
    refusal = removal_refusal(removed, previous, current, max_ratio=0.5)
    assert refusal is not None and "12 of 13 entities" in refusal
