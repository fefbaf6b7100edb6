"""`mlflow-catalog lineage`: the output drawn as one offline HTML page, opened in real headless
Chromium (Debian's `chromium`, installed by `make install-browser`)."""
import base64
import gzip
import json
import re
import socket
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path

import pytest

from connector.lineage.graph import build_graph
from tests.cli_in_process import run_cli

GOLDEN = Path(__file__).parent / "golden"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,900", "--virtual-time-budget=8000"]
browser = pytest.mark.browser


def _records(name: str) -> list[dict]:
    return json.loads((GOLDEN / name).read_text())["proposals"]


def _write_output(tmp_path: Path, records: list[dict]) -> Path:
    path = tmp_path / "out.json"
    path.write_text(json.dumps([{**r, "systemMetadata": {"lastObserved": 1, "runId": "t"}} for r in records]))
    return path


def _page(tmp_path: Path, records: list[dict]) -> Path:
    page = tmp_path / "lineage.html"
    proc = run_cli("lineage", _write_output(tmp_path, records), "-o", page)
    assert proc.returncode == 0, proc.stderr
    assert re.match(r"lineage of \d+ entities and \d+ links written to ", proc.stdout)
    return page


def _chromium(tmp_path: Path, url: str, *extra: str) -> str:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    proc = subprocess.run(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


class _Dom(HTMLParser):
    """The elements the page's script builds: entity and edge index, search results, body data."""

    def __init__(self, text: str):
        super().__init__()
        self.entities, self.edges, self.results, self.body = {}, set(), [], {}
        self._list = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = a
        elif tag == "ul" or tag == "ol":
            self._list = a.get("id")
        elif tag == "li" and self._list == "entity-index":
            self.entities[a["data-urn"]] = a["data-kind"]
        elif tag == "li" and self._list == "edge-index":
            self.edges.add((a["data-source"], a["data-target"]))
        elif tag == "li" and self._list == "results" and "data-urn" in a:
            self.results.append(a["data-urn"])


def _expected_edges(records: list[dict]) -> set[tuple[str, str]]:
    """The links of the output, read straight from the aspects (data flows source -> target)."""
    edges = set()
    for r in records:
        urn, name, value = r["entityUrn"], r["aspectName"], r["aspect"]["json"]
        if name == "dataProcessInstanceInput":
            edges |= {(d, urn) for d in value.get("inputs", [])}
        elif name == "dataProcessInstanceOutput":
            edges |= {(urn, d) for d in value.get("outputs", [])}
        elif name == "upstreamLineage":
            edges |= {(u["dataset"], urn) for u in value["upstreams"]}
        elif name == "container":
            edges.add((urn, value["container"]))
        elif name == "mlModelProperties":
            edges |= {(urn, g) for g in value.get("groups", [])} | {(j, urn) for j in value.get("trainingJobs", [])}
            edges |= {(urn, d) for d in value.get("deployments", [])}
        elif name == "mlModelTrainingData":
            edges |= {(d["dataset"], urn) for d in value["trainingData"]}
    return edges


def test_graph_orients_links_the_way_data_flows():
    s3 = "urn:li:dataset:(urn:li:dataPlatform:s3,bucket/train.csv,PROD)"
    data = "urn:li:dataset:(urn:li:dataPlatform:mlflow,train@abc,PROD)"
    run, exp = "urn:li:dataProcessInstance:r1", "urn:li:container:e1"
    version, group = ("urn:li:mlModel:(urn:li:dataPlatform:mlflow,m_1,PROD)",
                      "urn:li:mlModelGroup:(urn:li:dataPlatform:mlflow,m,PROD)")

    def rec(urn, aspect, value):
        return {"entityUrn": urn, "aspectName": aspect, "aspect": {"json": value}}

    graph = build_graph([
        rec(data, "upstreamLineage", {"upstreams": [{"dataset": s3, "type": "COPY"}]}),
        rec(run, "dataProcessInstanceInput", {"inputs": [data]}),
        rec(run, "container", {"container": exp}),
        rec(version, "mlModelProperties", {"name": "m_1", "groups": [group], "trainingJobs": [run],
                                           "customProperties": {"x": "urn:li:corpuser:nobody"}}),
        rec(version, "ownership", {"owners": [{"owner": "urn:li:corpuser:ann"}]}),
        rec(version, "somethingNew", {"uses": "urn:li:mlModelGroup:(urn:li:dataPlatform:mlflow,other,PROD)"}),
    ])
    assert {(e.source, e.target, e.kind) for e in graph.edges} == {
        (s3, data, "upstream"), (data, run, "input"), (run, exp, "in"), (version, group, "version of"),
        (run, version, "trained by"),
        (version, "urn:li:mlModelGroup:(urn:li:dataPlatform:mlflow,other,PROD)", "somethingNew.uses")}
    assert graph.nodes[s3].in_output is False and graph.nodes[version].in_output is True
    assert "urn:li:corpuser:ann" not in graph.nodes  # owners are details, not lineage


@browser
@pytest.mark.parametrize("golden", ["seeded-0.json", "mlflow3-0.json"])
def test_the_page_shows_every_entity_and_link_of_the_output(tmp_path, golden):
    records = _records(golden)
    dom = _Dom(_chromium(tmp_path, _page(tmp_path, records).as_uri(), "--dump-dom"))
    assert dom.body.get("data-ready") == "1"
    named = {u for edge in _expected_edges(records) for u in edge}
    assert set(dom.entities) == {r["entityUrn"] for r in records} | named
    assert _expected_edges(records) <= dom.edges
    assert len(dom.edges) == len(build_graph(records).edges)
    assert {dom.entities[u] for u in dom.entities} >= {"dataProcessInstance", "mlModel", "mlModelGroup", "container"}


@browser
def test_search_finds_a_model_and_focus_keeps_its_lineage(tmp_path):
    records = _records("seeded-0.json")
    versions = sorted(r["entityUrn"] for r in records if r["aspectName"] == "versionProperties")
    groups = sorted({r["entityUrn"] for r in records if r["entityType"] == "mlModelGroup"})
    group_name = re.match(r"urn:li:mlModelGroup:\(urn:li:dataPlatform:mlflow,(.+),PROD\)", groups[0]).group(1)
    page = _page(tmp_path, records)
    dom = _Dom(_chromium(tmp_path, f"{page.as_uri()}#search={group_name}", "--dump-dom"))
    assert groups[0] in dom.results

    version = versions[0]
    lineage, frontier = {version}, [version]
    edges = _expected_edges(records) - {e for e in _expected_edges(records) if e[1].startswith("urn:li:container:")}
    for forward in (True, False):
        frontier = [version]
        while frontier:
            at = frontier.pop()
            for a, b in edges:
                nxt = b if forward and a == at else a if not forward and b == at else None
                if nxt and nxt not in lineage:
                    lineage.add(nxt)
                    frontier.append(nxt)
    containers = {r["aspect"]["json"]["container"] for r in records
                  if r["aspectName"] == "container" and r["entityUrn"] in lineage}
    dom = _Dom(_chromium(tmp_path, f"{page.as_uri()}#focus={version}", "--dump-dom"))
    assert dom.body.get("data-focus") == version
    assert int(dom.body["data-focus-count"]) == len(lineage | containers)


# Chromium's own services, which it calls whatever the page (a blank page too): not the page's requests.
_BROWSER_HOSTS = re.compile(r"^[\w.-]*(google\.com|googleapis\.com|gvt1\.com)(:\d+)?$")


class _RecordingProxy:
    """A proxy that only listens: every request the browser makes reaches it (the host it asked
    for is kept), and none is answered."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.hosts: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(2)
            try:
                line = conn.recv(4096).split(b"\r\n", 1)[0].decode("latin-1")
            except OSError:
                line = "? unreadable"
            target = line.split(" ")[1] if line.count(" ") >= 2 else line
            self.hosts.append(re.sub(r"^\w+://", "", target).split("/", 1)[0])
            conn.close()

    def page_requests(self) -> list[str]:
        return [h for h in self.hosts if not _BROWSER_HOSTS.match(h)]


@browser
def test_a_screenshot_and_no_network_request(tmp_path):
    page = _page(tmp_path, _records("mlflow3-0.json"))
    text = page.read_text()
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", text)  # everything inlined
    assert not re.search(r"google\.com|googleapis\.com|gvt1\.com", text)  # so those requests are the browser's
    proxy = _RecordingProxy()
    shot = tmp_path / "lineage.png"
    _chromium(tmp_path, page.as_uri(), f"--proxy-server=http://127.0.0.1:{proxy.sock.getsockname()[1]}",
              "--proxy-bypass-list=<-loopback>", f"--screenshot={shot}")
    proxy.sock.close()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    assert proxy.page_requests() == []


def test_the_data_in_the_page_is_the_graph_and_a_bad_file_is_refused(tmp_path):
    records = _records("seeded-0.json")
    text = _page(tmp_path, records).read_text()
    blob = re.search(r'<script id="lineage-data" type="application/octet-stream">([^<]+)</script>', text).group(1)
    data = json.loads(gzip.decompress(base64.b64decode(blob)))
    assert {n["i"] for n in data["nodes"]} == set(build_graph(records).nodes)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    proc = run_cli("lineage", bad, "-o", tmp_path / "x.html")
    assert proc.returncode == 2 and "is not JSON" in proc.stderr and not (tmp_path / "x.html").exists()


def test_numbers_are_shown_to_six_digits_and_a_large_page_leaves_run_parameters_out():
    from connector.lineage import page
    from connector.lineage.page import graph_data

    def run(i):
        return {"entityUrn": f"urn:li:dataProcessInstance:r{i}", "aspectName": "mlTrainingRunProperties",
                "aspect": {"json": {"hyperParams": [{"name": "lr", "value": "0.123456789"}],
                                    "trainingMetrics": [{"name": "auc", "value": "0.987654321"},
                                                        {"name": "loss", "value": "NaN"}]}}}

    small = graph_data(build_graph([run(i) for i in range(3)]))
    assert small["lean"] is False
    assert small["nodes"][0]["d"] == {"metrics": [["auc", "0.987654"], ["loss", "NaN"]], "params": [["lr", "0.123457"]]}
    many = page.LEAN_ABOVE_RUNS + 1
    large = graph_data(build_graph([run(i) for i in range(many)]))
    assert large["lean"] is True and len(large["nodes"]) == many
    assert large["nodes"][0]["d"] == {"metrics": [["auc", "0.987654"], ["loss", "NaN"]]}


def test_a_live_crawl_draws_the_same_graph_as_the_output_and_touches_no_state(seeded_server, tmp_path):
    url = seeded_server[0]
    state = tmp_path / "state.json"
    state.write_text("not a state file")  # neither read nor replaced by a picture
    recipe = tmp_path / "recipe.yml"
    recipe.write_text(f"pipeline_name: p\nsource: {{type: mlflow, config: {{tracking_uri: '{url}', incremental: true}}}}\n"
                      f"sink: {{type: file, config: {{filename: '{tmp_path / 'out.json'}'}}}}\n"
                      f"state: {{path: '{state}'}}\n")
    live = subprocess.run([sys.executable, "-m", "connector.cli", "lineage", "-c", str(recipe), "-o",
                           str(tmp_path / "live.html")], capture_output=True, text=True, timeout=300)
    assert live.returncode == 0, live.stderr
    assert state.read_text() == "not a state file" and not (tmp_path / "out.json").exists()
    plain = recipe.read_text().replace(f"state: {{path: '{state}'}}\n", "").replace(", incremental: true", "")
    recipe.write_text(plain.replace("pipeline_name: p\n", ""))
    ingest = subprocess.run([sys.executable, "-m", "connector.cli", "ingest", "-c", str(recipe)],
                            capture_output=True, text=True, timeout=300)
    assert ingest.returncode == 0, ingest.stderr
    from_file = build_graph(json.loads((tmp_path / "out.json").read_text()))

    def nodes_in(page: Path) -> set:
        blob = re.search(r'id="lineage-data" type="application/octet-stream">([^<]+)<', page.read_text()).group(1)
        return {n["i"] for n in json.loads(gzip.decompress(base64.b64decode(blob)))["nodes"]}

    assert nodes_in(tmp_path / "live.html") == set(from_file.nodes)


def test_a_hand_made_file_with_odd_aspects_is_drawn_and_the_page_never_replaces_its_input(tmp_path):
    odd = [{"entityUrn": "urn:li:mlModel:(urn:li:dataPlatform:mlflow,m_1,PROD)", "aspectName": "versionProperties",
            "aspect": {"json": {"version": "1", "aliases": "x"}}},
           {"entityUrn": "urn:li:dataProcessInstance:a", "aspectName": "container",
            "aspect": {"json": {"container": ["urn:li:container:x"]}}},
           {"entityUrn": "urn:li:dataProcessInstance:a", "aspectName": "dataProcessInstanceProperties",
            "aspect": {"json": {"externalUrl": "javascript:alert(1)", "created": {"time": "soon"}, "customProperties": 1}}}]
    text = _page(tmp_path, odd).read_text()
    blob = re.search(r'id="lineage-data" type="application/octet-stream">([^<]+)<', text).group(1)
    nodes = {n["i"]: n for n in json.loads(gzip.decompress(base64.b64decode(blob)))["nodes"]}
    assert "g" not in nodes["urn:li:dataProcessInstance:a"] and "created" not in nodes["urn:li:dataProcessInstance:a"]["d"]
    source = tmp_path / "out.json"
    before = source.read_text()
    proc = run_cli("lineage", source, "-o", source)
    assert proc.returncode == 2 and "what the page is drawn from" in proc.stderr and source.read_text() == before
