"""The lineage graph as one self-contained HTML page: works offline, from a file, with no server.

Everything is inlined: the graph library (Cytoscape.js, vendored from its npm package, see
static/README.md), our own script and style, and the graph itself as gzip-compressed JSON in base64
(the browser inflates it with its built-in DecompressionStream), so 50,000 runs stay a few MB.
A Content-Security-Policy forbids every network request the page could make."""
from __future__ import annotations

import base64
import gzip
import html
import json
from importlib import resources
from typing import Any, Optional

from connector.lineage.graph import LineageGraph, Node, display_name

_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
        "connect-src 'none'; form-action 'none'; base-uri 'none'")


def _static(name: str) -> str:
    return resources.files("connector.lineage").joinpath("static").joinpath(name).read_text(encoding="utf-8")


# A page is for looking: numbers to 6 significant digits (the exact values are in MLflow, one click
# away), and above this many runs their parameters stay out of the page (a run's random-looking
# numbers are what a large page is made of; its metrics stay).
SIGNIFICANT_DIGITS = 6
LEAN_ABOVE_RUNS = 10_000


def _shown_number(value: Any) -> Any:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return f"{number:.{SIGNIFICANT_DIGITS}g}" if number == number else value  # NaN as MLflow wrote it


def _pairs(items: Any) -> list:
    return [[str(i.get("name")), _shown_number(i.get("value"))] for i in _list_of(items) if isinstance(i, dict)]


def _strip(urn: str, prefix: str) -> str:
    return urn[len(prefix):] if urn.startswith(prefix) else urn


def _run_result(node: Node) -> Optional[str]:
    events = _list_of(node.aspects.get("runEvents"))
    done = [e for e in events if isinstance(e, dict) and e.get("status") == "COMPLETE"]
    if done:
        return str(_dict(done[-1].get("result")).get("type") or "COMPLETE")
    return "RUNNING" if events else None


def _dict(value: Any) -> dict:
    """An aspect or field that should be an object (a hand-made file may hold anything)."""
    return value if isinstance(value, dict) else {}


def _list_of(value: Any) -> list:
    return value if isinstance(value, list) else []


def _listed(aspect: Any, key: str, field: str, prefix: str = "") -> Optional[list]:
    items = [_strip(str(i.get(field, "")), prefix) for i in _list_of(_dict(aspect).get(key)) if isinstance(i, dict)]
    return items or None


def _created(props: dict) -> Optional[int]:
    time = _dict(props.get("created")).get("time")
    return time if isinstance(time, int) and not isinstance(time, bool) else None


def details(node: Node, lean: bool = False) -> dict:
    """What the page shows when the node is clicked (compact keys: the page holds many); `lean`:
    a run's parameters are left out."""
    a = node.aspects
    props = _dict(next((a[k] for k in a if k.endswith("Properties") or k == "aiAgentInfo"), None))
    run = _dict(a.get("mlTrainingRunProperties"))
    version = _dict(a.get("versionProperties"))

    def either(key: str) -> Any:  # an entity's own properties, else its run's
        return props.get(key) or run.get(key)

    found = {
        "desc": props.get("description"),
        "url": either("externalUrl"),
        "props": _dict(props.get("customProperties")),
        "metrics": _pairs(either("trainingMetrics")),
        "params": _pairs(either("hyperParams")),
        "owners": _listed(a.get("ownership"), "owners", "owner", "urn:li:corpuser:"),
        "tags": _listed(a.get("globalTags"), "tags", "tag", "urn:li:tag:"),
        "aliases": _listed(version, "aliases", "versionTag"),
        "version": _dict(version.get("version")).get("versionTag"),
        "types": _list_of(_dict(a.get("subTypes")).get("typeNames")),
        "result": _run_result(node),
        "created": _created(props),
        "removed": bool(_dict(a.get("status")).get("removed")),
    }
    if lean and node.kind == "dataProcessInstance":
        del found["params"]
    return {key: value for key, value in found.items() if value not in (None, "", [], {}, False)}


def graph_data(graph: LineageGraph) -> dict:
    """The JSON the page's script reads: nodes, edges by index, edge kinds by index."""
    index = {urn: i for i, urn in enumerate(graph.nodes)}
    lean = graph.node_count("dataProcessInstance") > LEAN_ABOVE_RUNS
    kinds: dict[str, int] = {}
    nodes = []
    for node in graph.nodes.values():
        item: dict[str, Any] = {"i": node.urn, "k": node.kind, "n": display_name(node)}
        container = _dict(node.aspects.get("container")).get("container")
        if isinstance(container, str) and container in index:
            item["g"] = index[container]
        parent = _dict(node.aspects.get("dataProcessInstanceRelationships")).get("parentInstance")
        if isinstance(parent, str) and parent in index:
            item["p"] = index[parent]
        if not node.in_output:
            item["x"] = 1  # only named by others (e.g. where a dataset's data lives)
        info = details(node, lean)
        if info:
            item["d"] = info
        nodes.append(item)
    edges = [[index[e.source], index[e.target], kinds.setdefault(e.kind, len(kinds))] for e in graph.edges]
    return {"nodes": nodes, "edges": edges, "kinds": list(kinds), "lean": lean}


def _packed(data: dict) -> str:
    raw = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    return base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0)).decode("ascii")


def _inline_script(code: str) -> str:
    return code.replace("</script", "<\\/script").replace("<!--", "<\\!--")


def render_page(graph: LineageGraph, title: str = "MLflow lineage") -> str:
    """The whole page as one HTML string."""
    return _static("page.html").format(
        title=html.escape(title), csp=_CSP, style=_static("lineage.css"),
        library=_inline_script(_static("cytoscape.min.js")), data=_packed(graph_data(graph)),
        app=_inline_script(_static("lineage.js")),
    )
