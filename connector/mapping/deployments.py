"""Model deployments (mlModelDeployment): aspect construction shared by the SDK and the
MLflow source, and the rules that turn registry aliases / version tags into deployments."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

from connector.mapping import urns
from connector.mapping.common import Mcp, drop_none, mcp, sorted_props, status
from connector.source.mlflow_objects import ModelVersion

DEPLOYMENT_STATUSES = ("IN_SERVICE", "OUT_OF_SERVICE", "CREATING", "UPDATING", "ROLLING_BACK",
                       "DELETING", "FAILED", "UNKNOWN")
TEMPLATE_FIELDS = ("model", "version", "alias", "tag_value")


def deployment_properties(*, status: Optional[str] = None, description: Optional[str] = None,
                          version: Optional[str] = None, created_at: Optional[int] = None,
                          external_url: Optional[str] = None,
                          custom_properties: Optional[dict] = None) -> dict:
    """The `mlModelDeploymentProperties` aspect; fields left None are left out."""
    if status is not None and status not in DEPLOYMENT_STATUSES:
        raise ValueError(f"unknown deployment status {status!r}; one of {', '.join(DEPLOYMENT_STATUSES)}")
    return drop_none({
        "customProperties": sorted_props(custom_properties or {}),
        "externalUrl": external_url,
        "description": description,
        "createdAt": int(created_at) if created_at is not None else None,
        "version": {"versionTag": str(version)} if version is not None else None,
        "status": status,
    })


def deployment_platform_instance(platform: str, instance: Optional[str] = None) -> dict:
    aspect = {"platform": urns.platform_urn(platform)}
    if instance:
        aspect["instance"] = urns.platform_instance_urn(instance, platform)
    return aspect


def map_deployment(urn: str, platform: str, properties: dict,
                   instance: Optional[str] = None) -> Iterator[Mcp]:
    yield mcp(urn, "mlModelDeploymentProperties", properties)
    yield mcp(urn, "dataPlatformInstance", deployment_platform_instance(platform, instance))
    yield mcp(urn, "status", status())


@dataclass(frozen=True)
class DeploymentRule:
    """A registry alias and/or a version tag that means "this version is deployed there".

    With both `alias` and `tag_key`, a version must match both. `tag_value` None matches any value.
    """

    platform: str
    name_template: str
    alias: Optional[str] = None
    tag_key: Optional[str] = None
    tag_value: Optional[str] = None
    env: Optional[str] = None
    status: str = "IN_SERVICE"
    description: Optional[str] = None

    def matches(self, version: ModelVersion) -> bool:
        if self.alias is not None and self.alias not in version.aliases:
            return False
        if self.tag_key is not None:
            if self.tag_key not in version.tags:
                return False
            if self.tag_value is not None and version.tags[self.tag_key] != self.tag_value:
                return False
        return self.alias is not None or self.tag_key is not None

    def deployment_name(self, version: ModelVersion) -> str:
        return self.name_template.format(
            model=version.name, version=version.version, alias=self.alias or "",
            tag_value=version.tags.get(self.tag_key, "") if self.tag_key else "")


@dataclass(frozen=True)
class RuleDeployment:
    """One deployment a rule found for one model version."""

    urn: str
    platform: str
    properties: dict


def deployments_for_version(rules: tuple, version: ModelVersion, default_env: str,
                            instance: Optional[str] = None) -> list[RuleDeployment]:
    """`instance`: the MLflow server's platform instance, in the names of the deployments of its models."""
    found: dict[str, RuleDeployment] = {}
    for rule in rules:
        if not rule.matches(version):
            continue
        urn = urns.deployment_urn(rule.platform, rule.deployment_name(version), rule.env or default_env, instance)
        if urn in found:
            continue  # two rules naming the same deployment: the first one describes it
        custom = {"model": version.name, "model_version": version.version}
        if urns.is_shortened(urn):  # a name too long for a URN: the URN holds a digest, this the name
            custom["full_name"] = rule.deployment_name(version)
        if rule.alias:
            custom["alias"] = rule.alias
        if rule.tag_key:
            custom["tag"] = f"{rule.tag_key}={version.tags.get(rule.tag_key, '')}"
        found[urn] = RuleDeployment(urn, rule.platform, deployment_properties(
            status=rule.status, description=rule.description, version=version.version,
            custom_properties=custom))
    return list(found.values())
