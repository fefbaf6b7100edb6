"""The HTTP backend's resilience, against real sockets on loopback."""
import time

import pytest

from connector.source.errors import MlflowApiError, SourceAuthError, SourceUnreachable
from connector.http import HttpSettings, RetryPolicy
from connector.secrets import redact_url
from connector.source.http_backend import HttpBackend
from tests.cli_in_process import run_cli
from tests.fake_http import ScriptedServer
from tests.mlflow_server import free_port

FAST = HttpSettings(retry=RetryPolicy(max_retries=3, backoff_sec=0.01, budget_sec=5))
EXPERIMENTS = {"experiments": [{"experiment_id": "0", "name": "Default"}]}


def test_retries_5xx_and_429_then_succeeds_honouring_retry_after():
    answers = [(503, {}, None), (429, {}, {"Retry-After": "0.2"}), (200, EXPERIMENTS, None)]
    with ScriptedServer(answers) as server:
        backend = HttpBackend(server.url, server.url, FAST)
        started = time.monotonic()
        items, token = backend.search_experiments("ALL", 10, None)
        assert time.monotonic() - started >= 0.2  # waited as Retry-After asked
    assert items == EXPERIMENTS["experiments"] and token is None
    assert backend.requests_made == 3 and backend.retries_made == 2


def test_gives_up_after_retries_naming_the_url():
    with ScriptedServer([(502, {}, None)]) as server:
        backend = HttpBackend(server.url, server.url, FAST)
        with pytest.raises(SourceUnreachable, match=server.url.replace(".", r"\.")):
            backend.search_experiments("ALL", 10, None)
    assert backend.requests_made == 4  # one try + 3 retries


def test_unreachable_server_fails_fast():
    url = f"http://127.0.0.1:{free_port()}"
    backend = HttpBackend(url, url, HttpSettings(retry=RetryPolicy(backoff_sec=0.05)))
    started = time.monotonic()
    with pytest.raises(SourceUnreachable, match="127.0.0.1"):
        backend.search_registered_models(10, None)
    assert time.monotonic() - started < 5


def test_auth_rejection_is_clear_and_hides_credentials():
    with ScriptedServer([(401, {"error_code": "UNAUTHENTICATED"}, None)]) as server:
        url_with_secret = server.url.replace("http://", "http://bob:s3cret-pw@")
        backend = HttpBackend(url_with_secret, url_with_secret, FAST, token="tok-123")
        with pytest.raises(SourceAuthError) as err:
            backend.search_experiments("ALL", 10, None)
        sent = server.requests[0]["headers"]
    assert "rejected the credentials" in str(err.value)
    assert "s3cret-pw" not in str(err.value) and "tok-123" not in str(err.value)
    assert sent["Authorization"] == "Bearer tok-123"
    assert backend.requests_made == 1  # 401 is not retried
    assert redact_url("https://u:p@host:8443/x") == "https://host:8443/x"
    assert redact_url("sqlite:///tmp/a.db") == "sqlite:///tmp/a.db"


def test_other_4xx_is_an_api_error_with_the_servers_message():
    answer = (400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "bad filter"}, None)
    with ScriptedServer([answer]) as server:
        backend = HttpBackend(server.url, server.url, FAST)
        with pytest.raises(MlflowApiError, match="bad filter") as err:
            backend.search_model_versions("", 10, None)
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"


def test_rate_limit_spaces_requests():
    with ScriptedServer([(200, EXPERIMENTS, None)]) as server:
        backend = HttpBackend(server.url, server.url, HttpSettings(max_requests_per_second=20))
        started = time.monotonic()
        for _ in range(5):
            backend.search_experiments("ALL", 10, None)
    assert time.monotonic() - started >= 4 / 20 * 0.9


def test_cli_unreachable_exits_nonzero_names_url_and_keeps_old_output(write_recipe, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    out = tmp_path / "out.json"
    out.write_text("[]\n")  # a previous good run's output must survive
    recipe = write_recipe(f"""
source: {{type: mlflow, config: {{tracking_uri: "{url}", max_retries: 1, retry_backoff_sec: 0.1}}}}
sink: {{type: file, config: {{filename: "{out}"}}}}
""")
    started = time.monotonic()
    proc = run_cli("ingest", "-c", recipe)
    assert proc.returncode == 1
    assert url in proc.stderr and "did not answer" in proc.stderr
    assert time.monotonic() - started < 20
    assert out.read_text() == "[]\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.json")] == []
    proc = run_cli("check", "-c", recipe)
    assert proc.returncode == 1 and "[FAIL] tracking server" in proc.stdout and url in proc.stdout


def test_registry_that_refuses_a_global_version_listing_is_read_model_by_model():
    """Unity Catalog requires a model name filter: fall back to per-model listing, automatically."""
    from urllib.parse import parse_qs, urlsplit

    from connector.report import Report
    from connector.source.crawler import MlflowCrawler
    from connector.source.crawl_records import CrawlSettings, ModelGroupRecord

    def answer(request):
        url = urlsplit(request["path"])
        query = parse_qs(url.query)
        if url.path.endswith("registered-models/search"):
            return 200, {"registered_models": [{"name": "cat.sch.a"}, {"name": "cat.sch.b"}]}, None
        if url.path.endswith("model-versions/search"):
            if "filter" not in query:
                return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "name filter required"}, None
            name = query["filter"][0].split("'")[1]
            return 200, {"model_versions": [{"name": name, "version": "1"}, {"name": name, "version": "2"}]}, None
        return 200, {}, None

    with ScriptedServer(answer) as server:
        report = Report()
        with MlflowCrawler(HttpBackend(server.url, server.url, FAST),
                           CrawlSettings(include_experiments=False), report) as crawler:
            groups = [r for r in crawler.crawl(crawler.list_mlflow()) if isinstance(r, ModelGroupRecord)]
    assert {g.model.name: [v.version for v in g.versions] for g in groups} == {
        "cat.sch.a": ["1", "2"], "cat.sch.b": ["1", "2"]}
    assert any(i["title"] == "Per-model version listing" for i in report.infos)
    assert not report.warnings and not report.failures


def test_mlflow2_server_without_logged_models_is_detected_once():
    from urllib.parse import urlsplit

    from connector.report import Report
    from connector.source.crawler import MlflowCrawler
    from connector.source.crawl_records import CrawlSettings, VersionRecord

    def answer(request):
        path = urlsplit(request["path"]).path
        if path.endswith("registered-models/search"):
            return 200, {"registered_models": [{"name": "a"}, {"name": "b"}]}, None
        if path.endswith("model-versions/search"):
            return 200, {"model_versions": [{"name": "a", "version": "1", "source": "models:/m-1"},
                                            {"name": "b", "version": "1", "source": "models:/m-2"}]}, None
        if path.endswith("experiments/search"):
            return 200, {"experiments": [{"experiment_id": "0", "name": "Default"}]}, None
        if path.endswith("logged-models/search"):
            return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": "No API for logged-models"}, None
        return 200, {}, None

    with ScriptedServer(answer) as server:
        report = Report()
        with MlflowCrawler(HttpBackend(server.url, server.url, FAST),
                           CrawlSettings(include_runs=False, include_logged_models=True), report) as crawler:
            versions = [r for r in crawler.crawl(crawler.list_mlflow()) if isinstance(r, VersionRecord)]
        calls = [r["path"] for r in server.requests if "logged-models" in r["path"]]
    assert [v.version.name for v in versions] == ["a", "b"] and all(v.logged_model is None for v in versions)
    assert [i["title"] for i in report.infos].count("No logged models") == 1
    assert len(calls) == 1 and not report.warnings and not report.failures


def test_a_login_page_instead_of_mlflow_is_a_clear_error(write_recipe, tmp_path):
    page = b"<html><body>Please sign in</body></html>"
    with ScriptedServer([(200, page, None)]) as server:
        recipe = write_recipe(f"""
source: {{type: mlflow, config: {{tracking_uri: "{server.url}"}}}}
sink: {{type: file, config: {{filename: "{tmp_path / 'o.json'}"}}}}
""")
        for command in ("ingest", "check"):
            proc = run_cli(command, "-c", recipe)
            assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout
            assert "not MLflow's JSON" in proc.stderr + proc.stdout and server.url in proc.stderr + proc.stdout


def test_a_server_dripping_its_headers_is_cut_off_at_the_deadline():
    """Each byte resets a socket timeout: only a wall-clock deadline per attempt ends this."""
    import socket
    import threading

    from connector.http import HttpSettings, RetryPolicy

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def drip():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            try:
                while not stop.wait(0.2):
                    conn.sendall(b"X")  # one more byte of a header line that never ends
            except OSError:
                pass
            conn.close()

    threading.Thread(target=drip, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    settings = HttpSettings(timeout_sec=5, deadline_sec=1, retry=RetryPolicy(max_retries=1, backoff_sec=0.01))
    started = time.monotonic()
    try:
        with pytest.raises(SourceUnreachable, match=r"did not answer experiments/search \(.*after 2 attempt"):
            HttpBackend(url, url, settings).search_experiments("ALL", 10, None)
    finally:
        stop.set()
        listener.close()
    assert time.monotonic() - started < 9  # two attempts of about 1 s, not hours


def test_a_listing_answering_the_same_page_under_new_tokens_is_stopped():
    from itertools import count

    from connector.source.paging import Listing, PageLoopError, paged

    tokens = count()
    listing = Listing("runs/search", lambda token: ([{"info": {"run_id": "r1"}}], f"T{next(tokens)}"))
    with pytest.raises(PageLoopError, match="runs/search: the server answered the same page again"):
        for _ in paged(listing):
            pass
    assert next(tokens) == 2  # stopped at the second page


def test_paging_follows_empty_pages_with_new_tokens_up_to_a_bound():
    from itertools import count

    import pytest

    from connector.source.paging import MAX_EMPTY_PAGES, Listing, PageLoopError, paged

    tokens = count()
    pages = {None: ([], "e1"), "e1": ([], "e2"), "e2": ([{"name": "m"}], None)}
    assert list(paged(Listing("registered-models/search", lambda token: pages[token]))) == [{"name": "m"}]
    endless = Listing("registered-models/search", lambda token: ([], f"T{next(tokens)}"))
    with pytest.raises(PageLoopError, match=f"more than {MAX_EMPTY_PAGES} empty pages in a row"):
        list(paged(endless))
    assert next(tokens) == MAX_EMPTY_PAGES + 1  # pages fetched: the bound, and the one past it
    again = Listing("registered-models/search", lambda token: ([], "the-same"))
    with pytest.raises(PageLoopError, match="answered the page token 'the-same' a second time"):
        list(paged(again))
