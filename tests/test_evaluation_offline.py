"""Evaluation datasets without a server: listed whole in every crawl, an incremental run that no
longer lists one removes it (other datasets, met only through runs, are not), the mass-removal
threshold guards them like any other kind; the listing is paged, and a server without the API
(MLflow 2.x) is told once, not failed."""
import json

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


def _crawl_with(answer):
    from urllib.parse import urlsplit

    from connector.report import Report
    from connector.source.crawl_records import CrawlSettings, EvaluationDatasetRecord
    from connector.source.crawler import MlflowCrawler
    from connector.source.http_backend import HttpBackend
    from tests.fake_http import ScriptedServer
    from tests.test_source_http import FAST

    def routed(request):
        path = urlsplit(request["path"]).path
        if path == "/api/3.0/mlflow/datasets/search":
            return answer(json.loads(request["body"] or b"{}"))
        return 200, {}, None

    with ScriptedServer(routed) as server:
        report = Report()
        with MlflowCrawler(HttpBackend(server.url, server.url, FAST),
                           CrawlSettings(include_runs=False, include_evaluation_datasets=True), report) as crawler:
            records = [r for r in crawler.crawl(crawler.list_mlflow()) if isinstance(r, EvaluationDatasetRecord)]
        calls = [json.loads(r["body"]) for r in server.requests if "datasets/search" in r["path"]]
    return records, calls, report


def test_an_mlflow2_server_without_the_dataset_api_is_an_info_not_a_failure():
    records, calls, report = _crawl_with(lambda body: (404, b"<html>Not Found</html>", None))
    assert records == [] and len(calls) == 1
    assert [i["title"] for i in report.infos].count("No evaluation datasets") == 1
    assert not report.failures and [w["title"] for w in report.warnings] == ["Empty registry"]


def test_evaluation_datasets_are_paged_and_a_malformed_one_fails_alone():
    pages = {None: ({"datasets": [{"dataset_id": "d-1", "name": "a", "schema": "{\"inputs\": {\"q\": \"string\"}}"},
                                  {"dataset_id": "d-bad", "created_time": "yesterday"}], "next_page_token": "p2"}),
             "p2": {"datasets": [{"dataset_id": "d-2", "name": "b", "tags": "{\"team\": \"x\"}"}]}}
    records, calls, report = _crawl_with(lambda body: (200, pages[body.get("page_token")], None))
    assert [(r.dataset.dataset_id, r.dataset.tags) for r in records] == [("d-1", {}), ("d-2", {"team": "x"})]
    assert [c.get("page_token") for c in calls] == [None, "p2"] and calls[0]["max_results"] == 1000
    assert report.crawled["evaluation_datasets"] == 2 and len(report.failures) == 1
