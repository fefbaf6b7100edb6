"""Links ingestion shares with other writers (the SDK): which ones it owns, and the aspect it
writes once the links it does not own are kept. Pure: the REST sink reads the current aspect
and calls `ForeignLinks.merge`.

Ingestion writes `mlModelProperties` and `dataProcessInstanceOutput` whole (an UPSERT). Left
alone, a full crawl would drop the deployments and output datasets the SDK linked. So in
those link lists ingestion keeps every link it does not own, and replaces the ones it owns
(a link it owned that MLflow no longer gives, such as a deployment whose alias moved, goes):
- `deployments`: ingestion owns the deployments its rules can name (a rule's platform and env,
  and a name its `name_template` gives with the rule's alias, any model and version); every
  other deployment is kept.
- `groups`, `trainingJobs`, `downstreamJobs`: a version's group and run never change, so
  ingestion owns none to remove; the SDK's are kept.
- a run's `outputs` (and `outputEdges`): ingestion owns the models (versions and LoggedModels
  the run produced, as MLflow says); the datasets the SDK added are kept.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Optional

from connector.mapping import urns

# aspect -> the link lists in it that other writers add to
SHARED_LINK_FIELDS = {
    "mlModelProperties": ("deployments", "groups", "trainingJobs", "downstreamJobs"),
    "dataProcessInstanceOutput": ("outputs",),
}
_EDGES = {"outputs": "outputEdges"}  # a URN list written beside its edges
_DEPLOYMENT = re.compile(r"^urn:li:mlModelDeployment:\(urn:li:dataPlatform:([^,]+),(.+),([^,]+)\)$")


def _name_pattern(rule, instance: Optional[str] = None) -> re.Pattern:
    """The deployment names a rule can give: its alias (and tag value, when it names one) as
    written, a version as digits, a model name as any text; `INSTANCE.` before it with a
    platform instance (as the mapping names them)."""
    fixed = {"alias": rule.alias or "", "tag_value": rule.tag_value}
    parts = [re.escape(urns.encode(f"{instance}."))] if instance else []
    for literal, field_name, _spec, _conv in string.Formatter().parse(rule.name_template):
        parts.append(re.escape(urns.encode(literal)))
        if field_name == "version":
            parts.append(r"\d+")
        elif field_name is not None and fixed.get(field_name) is not None:
            parts.append(re.escape(urns.encode(fixed[field_name])))
        elif field_name is not None:
            parts.append(".+")
    return re.compile("^" + "".join(parts) + "$")


@dataclass(frozen=True)
class ForeignLinks:
    """What ingestion owns, from the recipe's deployment rules and env."""

    deployment_rules: tuple = ()
    default_env: str = "PROD"
    platform_instance: Optional[str] = None

    @property
    def aspects(self) -> frozenset:
        return frozenset(SHARED_LINK_FIELDS)

    def owns(self, list_field: str, link: str) -> bool:
        if list_field == "outputs":
            return urns.entity_type(link) == "mlModel"
        if list_field == "deployments":
            return self._rule_named(link)
        return False

    def _rule_named(self, deployment: str) -> bool:
        found = _DEPLOYMENT.match(deployment)
        if not found:
            return False
        platform, name, env = found.groups()
        return any(rule.platform == platform and (rule.env or self.default_env) == env
                   and (urns.is_shortened(deployment) or _name_pattern(rule, self.platform_instance).match(name))
                   for rule in self.deployment_rules)

    def merge(self, aspect_name: str, current: Optional[dict], written: dict) -> dict:
        """`written` (ingestion's value) plus the links of `current` ingestion does not own."""
        merged = dict(written)
        for list_field in SHARED_LINK_FIELDS.get(aspect_name, ()):
            ours = list(merged.get(list_field) or [])
            kept = [link for link in (current or {}).get(list_field) or []
                    if isinstance(link, str) and link not in ours and not self.owns(list_field, link)]
            if kept:
                merged[list_field] = ours + kept
                if list_field in _EDGES:
                    _keep_edges(merged, current or {}, _EDGES[list_field], kept)
        return merged


def _keep_edges(merged: dict, current: dict, edge_field: str, kept: list) -> None:
    """The edges of the kept links, as the catalog holds them (their properties and stamps too)."""
    current_edges = {e.get("destinationUrn"): e for e in current.get(edge_field) or [] if isinstance(e, dict)}
    merged[edge_field] = list(merged.get(edge_field) or []) + [
        current_edges.get(link, {"destinationUrn": link}) for link in kept]
