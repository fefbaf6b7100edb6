"""Proposals (the file sink's records) -> the lineage graph a page draws: one node per entity, and
one edge per link an aspect makes, oriented the way data flows (dataset -> run -> model -> group).

Pure: no I/O. Every URN an aspect names becomes an edge, known or not (a kind of link this module
does not know yet is drawn from the entity to what it names), except references that are details
rather than lineage (owners, actors, platforms, version sets, tags)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Optional

# (aspect, field path) -> (edge kind, True when data flows from the named URN to the entity)
_KNOWN: dict[tuple[str, str], tuple[str, bool]] = {
    ("upstreamLineage", "upstreams.dataset"): ("upstream", True),
    ("upstreamLineage", "fineGrainedLineages"): ("upstream", True),
    ("dataProcessInstanceInput", "inputs"): ("input", True),
    ("dataProcessInstanceInput", "inputEdges.destinationUrn"): ("input", True),
    ("dataProcessInstanceOutput", "outputs"): ("output", False),
    ("dataProcessInstanceOutput", "outputEdges.destinationUrn"): ("output", False),
    ("dataProcessInstanceRelationships", "parentInstance"): ("parent run", True),
    ("dataProcessInstanceRelationships", "upstreamInstances"): ("upstream run", True),
    ("container", "container"): ("in", False),
    ("mlModelProperties", "groups"): ("version of", False),
    ("mlModelProperties", "trainingJobs"): ("trained by", True),
    ("mlModelProperties", "downstreamJobs"): ("used by", False),
    ("mlModelProperties", "deployments"): ("deployed as", False),
    ("mlModelProperties", "mlFeatures"): ("feature", True),
    ("mlModelGroupProperties", "trainingJobs"): ("trained a version of", False),
    ("mlModelGroupProperties", "downstreamJobs"): ("used by", False),
    ("mlModelTrainingData", "trainingData.dataset"): ("training data", True),
    ("mlModelEvaluationData", "evaluationData.dataset"): ("evaluated on", True),
    ("mlFeatureProperties", "sources"): ("source", True),
    ("deprecation", "replacement"): ("replaced by", False),
    ("aiAgentDependencies", "models"): ("uses", True),
}
# URN kinds that are details of an entity, not lineage
_DETAIL_KINDS = {"corpuser", "corpGroup", "dataPlatform", "dataPlatformInstance", "versionSet", "tag",
                 "ownershipType", "dataType", "glossaryTerm", "structuredProperty"}
_NAME_ASPECTS = ("containerProperties", "dataProcessInstanceProperties", "mlModelProperties", "mlModelGroupProperties",
                 "datasetProperties", "mlFeatureProperties", "mlModelDeploymentProperties", "tagProperties",
                 "aiAgentInfo", "dataFlowInfo", "dataJobInfo")
_TIMESERIES = {"dataProcessInstanceRunEvent"}


def entity_kind(urn: str) -> str:
    return urn.split(":", 3)[2] if urn.count(":") >= 3 else "unknown"


@dataclass
class Node:
    urn: str
    kind: str
    aspects: dict[str, Any] = field(default_factory=dict)  # latest value of each aspect
    in_output: bool = True  # False: only named by another entity (e.g. an S3 upstream)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: str


@dataclass
class LineageGraph:
    nodes: dict[str, Node]
    edges: list[Edge]

    def node_count(self, kind: str) -> int:
        return sum(1 for n in self.nodes.values() if n.kind == kind)


def _urns_in(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(field path, URN) for every URN string in an aspect value; list indexes are left out."""
    if isinstance(value, str):
        if value.startswith("urn:li:"):
            yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _urns_in(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for item in value:
            yield from _urns_in(item, path)


def _known(aspect: str, path: str) -> Optional[tuple[str, bool]]:
    found = _KNOWN.get((aspect, path))
    if found is None and aspect == "upstreamLineage" and path.startswith("fineGrainedLineages"):
        found = _KNOWN[("upstreamLineage", "fineGrainedLineages")]
    return found


def _edges_of(urn: str, aspect: str, value: Any) -> Iterator[Edge]:
    for path, named in _urns_in(value):
        if named == urn or entity_kind(named) in _DETAIL_KINDS:
            continue
        known = _known(aspect, path)
        kind, inward = known if known else (f"{aspect}.{path}", False)
        yield Edge(named, urn, kind) if inward else Edge(urn, named, kind)


def aspect_value(record: dict) -> Any:
    aspect = record.get("aspect") or {}
    if isinstance(aspect, dict) and "json" in aspect:
        return aspect["json"]
    return aspect


def build_graph(records: Iterable[dict]) -> LineageGraph:
    """The graph of a stream of file-sink records (later values of an aspect replace earlier ones)."""
    nodes: dict[str, Node] = {}
    for record in records:
        urn = record.get("entityUrn")
        name = record.get("aspectName")
        if not isinstance(urn, str) or not isinstance(name, str) or name in _TIMESERIES:
            if isinstance(urn, str) and name in _TIMESERIES:
                _node(nodes, urn).aspects.setdefault("runEvents", []).append(aspect_value(record))
            continue
        _node(nodes, urn).aspects[name] = aspect_value(record)
    edges: dict[tuple[str, str], Edge] = {}
    for node in list(nodes.values()):
        for aspect, value in node.aspects.items():
            for edge in _edges_of(node.urn, aspect, value):
                if edge.source not in nodes:
                    nodes[edge.source] = Node(edge.source, entity_kind(edge.source), in_output=False)
                if edge.target not in nodes:
                    nodes[edge.target] = Node(edge.target, entity_kind(edge.target), in_output=False)
                edges.setdefault((edge.source, edge.target), edge)  # one edge per pair: the first kind named
    return LineageGraph(nodes, list(edges.values()))


def _node(nodes: dict[str, Node], urn: str) -> Node:
    node = nodes.get(urn)
    if node is None:
        node = nodes[urn] = Node(urn, entity_kind(urn))
    return node


def display_name(node: Node) -> str:
    for aspect in _NAME_ASPECTS:
        value = node.aspects.get(aspect)
        if isinstance(value, dict) and isinstance(value.get("name"), str) and value["name"]:
            return value["name"]
    return _name_from_urn(node.urn)


def _name_from_urn(urn: str) -> str:
    """`urn:li:dataset:(urn:li:dataPlatform:s3,bucket/key,PROD)` -> `bucket/key`."""
    rest = urn.split(":", 3)[3] if urn.count(":") >= 3 else urn
    if rest.startswith("(") and rest.endswith(")"):
        inner = rest[1:-1]
        if inner.startswith("urn:li:"):
            inner = inner.split(",", 1)[1] if "," in inner else inner
            return inner.rsplit(",", 1)[0] if inner.count(",") else inner
        return inner.split(",")[-1]
    return rest
