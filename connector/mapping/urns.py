"""Every URN the connector (and its SDK) builds. One builder per entity type.

For plain names these equal the URNs of DataHub's own MLflow source, so a
catalog fed by both has no duplicates. Two rules go further than DataHub's encoder:

- `%` is encoded too (`%25`), so that distinct names never share a URN (`pct,name`
  and `pct%2Cname` stay apart). DataHub's own URN differs for names holding `%`.
- A URN whose URL-encoded form would pass GMS's 512-byte limit gets a stable shortened
  name: the longest prefix that fits, then `%E2%80%A6` (an encoded `…`, which the
  encoder never produces on its own) and 32 hex digits of the full name's SHA-256.

With a platform instance, every URN that names an MLflow object carries it, as DataHub's builders
do (`make_dataset_urn_with_platform_instance`): a name-based URN names `INSTANCE.NAME`, a GUID-based
one has `"instance": INSTANCE` in its GUID's dict (as DataHub's container keys). Without one, every
URN is what it always was.
"""
from __future__ import annotations

import functools
import hashlib
import json
import string
from typing import Callable, Optional

PLATFORM = "mlflow"
MAX_URN_BYTES = 512  # GMS: URLEncoder.encode(urn).length() > URN_NUM_BYTES_LIMIT is refused
SHORTENED_MARK = "%E2%80%A6"
_RESERVED = {"%": "%25", ",": "%2C", "(": "%28", ")": "%29", "\u241f": "%E2%90%9F"}
_URLENCODER_SAFE = frozenset(string.ascii_letters + string.digits + ".-*_ ")  # java.net.URLEncoder; " " -> "+"


def encode(name: str) -> str:
    """Percent-encode the characters that would break a URN tuple, and `%` itself."""
    if not any(c in name for c in _RESERVED):
        return name
    return "".join(_RESERVED.get(c, c) for c in name)


def url_encoded_length(text: str) -> int:
    """Length of `text` as GMS measures a URN (java.net.URLEncoder, UTF-8)."""
    return sum(1 if c in _URLENCODER_SAFE else 3 * len(c.encode("utf-8", "surrogatepass")) for c in text)


def is_shortened(urn: str) -> bool:
    return SHORTENED_MARK in urn


def _shortened(name: str, budget: int, simple: bool = False) -> str:
    """The encoded `name` cut to fit `budget` URL-encoded bytes, mark and digest included."""
    tail = SHORTENED_MARK + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    room = budget - url_encoded_length(tail)
    if room < 0:
        raise ValueError(f"no room for a name in a URN ({budget} bytes left)")
    pieces, used, leading = [], 0, simple
    for char in name:
        leading = leading and char <= " "
        piece = f"%{ord(char):02X}" if leading else encode(char)
        cost = url_encoded_length(piece)
        if used + cost > room:
            break
        pieces.append(piece)
        used += cost
    return "".join(pieces) + tail


def _simple_id(encoded: str) -> str:
    """A non-tuple URN id: GMS refuses a URN with leading or trailing whitespace (Java's trim:
    every character up to the space), so those are percent-encoded."""
    start, end = 0, len(encoded)
    while start < end and encoded[start] <= " ":
        start += 1
    while end > start and encoded[end - 1] <= " ":
        end -= 1
    return "".join(f"%{ord(c):02X}" for c in encoded[:start]) + encoded[start:end] + \
        "".join(f"%{ord(c):02X}" for c in encoded[end:])


def _fit(build: Callable[[str], str], name: str, simple: bool = False) -> str:
    """build(encoded name), shortening the name when the URN would be over GMS's limit.
    `simple`: the id of a non-tuple URN (corpuser, tag)."""
    urn = build(_simple_id(encode(name)) if simple else encode(name))
    # (each UTF-8 byte is at most 3 once URL-encoded: most URNs are short enough not to count)
    if 3 * len(urn.encode("utf-8", "surrogatepass")) <= MAX_URN_BYTES or url_encoded_length(urn) <= MAX_URN_BYTES:
        return urn
    return build(_shortened(name, MAX_URN_BYTES - url_encoded_length(build("")), simple))


def guid(fields: dict) -> str:
    return hashlib.md5(
        json.dumps(fields, separators=(",", ":"), sort_keys=True).encode("utf-8")
    ).hexdigest()


@functools.lru_cache(maxsize=1024)  # a few platforms, asked for every entity
def platform_urn(platform: str = PLATFORM) -> str:
    if platform.startswith("urn:li:dataPlatform:"):
        return platform
    return _fit(lambda n: f"urn:li:dataPlatform:{n}", platform)


def platform_instance_urn(instance: str, platform: str = PLATFORM) -> str:
    return _fit(lambda n: f"urn:li:dataPlatformInstance:({platform_urn(platform)},{n})", instance)


def qualified(name: str, instance: Optional[str] = None) -> str:
    """`INSTANCE.NAME`, DataHub's name of an object of a platform instance; the name without one."""
    return f"{instance}.{name}" if instance else name


def _keyed(fields: dict, instance: Optional[str]) -> dict:
    return {**fields, "instance": instance} if instance else fields


def model_group_urn(name: str, env: str, platform: str = PLATFORM, instance: Optional[str] = None) -> str:
    return _fit(lambda n: f"urn:li:mlModelGroup:({platform_urn(platform)},{n},{env})", qualified(name, instance))


def model_urn(name: str, version: str, separator: str, env: str, platform: str = PLATFORM,
              instance: Optional[str] = None) -> str:
    return plain_model_urn(f"{name}{separator}{version}", env, platform, instance)


def plain_model_urn(name: str, env: str, platform: str = PLATFORM, instance: Optional[str] = None) -> str:
    """A model that is not a registry version (a LoggedModel, or built by hand through the SDK)."""
    return _fit(lambda n: f"urn:li:mlModel:({platform_urn(platform)},{n},{env})", qualified(name, instance))


@functools.lru_cache(maxsize=4096)  # asked for by every version of a model
def version_set_urn(model_name: str, platform: str = PLATFORM, instance: Optional[str] = None) -> str:
    return f"urn:li:versionSet:({guid(_keyed({'platform': platform, 'name': model_name}, instance))},mlModel)"


def ai_agent_urn(name: str, instance: Optional[str] = None) -> str:
    """An agent (DataHub 1.7's aiAgent entity) by its catalog name, `INSTANCE.NAME` with an instance."""
    return _fit(lambda n: f"urn:li:aiAgent:{n}", qualified(name, instance), simple=True)


def agent_version_set_urn(experiment_id: str, name: str, instance: Optional[str] = None) -> str:
    """The agents of one name in one experiment: the versions of one agent."""
    fields = {"platform": PLATFORM, "experiment_id": experiment_id, "name": name}
    return f"urn:li:versionSet:({guid(_keyed(fields, instance))},aiAgent)"


@functools.lru_cache(maxsize=4096)  # asked for by every run of an experiment
def experiment_urn(name: str, instance: Optional[str] = None, platform: str = PLATFORM) -> str:
    return f"urn:li:container:{guid(_keyed({'platform': platform_urn(platform), 'id': name}, instance))}"


@functools.lru_cache(maxsize=4096)  # a run's URN is asked for by its own aspects and its versions
def run_urn(run_id: str, orchestrator: str = PLATFORM, instance: Optional[str] = None) -> str:
    """Run ids are random UUIDs, yet two servers restored from one backup share them: with an
    instance, the run's GUID carries it like every other MLflow object's identity."""
    return f"urn:li:dataProcessInstance:{guid(_keyed({'orchestrator': orchestrator, 'id': run_id}, instance))}"


def dataset_urn(platform: str, name: str, env: str, instance: Optional[str] = None) -> str:
    """`instance`: only for datasets MLflow holds (the mlflow platform), not for where data lives."""
    return _fit(lambda n: f"urn:li:dataset:({platform_urn(platform)},{n},{env})", qualified(name, instance))


def tag_urn(name: str) -> str:
    return _fit(lambda n: f"urn:li:tag:{n}", name, simple=True)


def stage_tag_name(stage: str) -> str:
    return f"{PLATFORM}_{stage.lower()}"


@functools.lru_cache(maxsize=4096)  # a few users, asked for every run and version
def corpuser_urn(user: str) -> str:
    """An MLflow user name (or, from the SDK, a corpuser URN already) as a corpuser URN."""
    prefix = "urn:li:corpuser:"
    if user.startswith(prefix) and user == corpuser_urn(user[len(prefix):]):
        return user
    return _fit(lambda n: f"{prefix}{n}", user, simple=True)


def deployment_urn(platform: str, name: str, env: str, instance: Optional[str] = None) -> str:
    """`instance`: the MLflow server's, for deployments named after its models (aliases, tags)."""
    return _fit(lambda n: f"urn:li:mlModelDeployment:({platform_urn(platform)},{n},{env})", qualified(name, instance))


def feature_urn(namespace: str, name: str, instance: Optional[str] = None) -> str:
    """Both parts may be long: the namespace (a model name, `INSTANCE.NAME` with an instance)
    gets at most half of the limit."""
    half = MAX_URN_BYTES // 2 - url_encoded_length("urn:li:mlFeature:(,)")
    namespace = qualified(namespace, instance)
    space = encode(namespace)
    if url_encoded_length(space) > half:
        space = _shortened(namespace, half)
    return _fit(lambda n: f"urn:li:mlFeature:({space},{n})", name)


def entity_type(urn: str) -> str:
    """`urn:li:mlModel:(...)` -> `mlModel`."""
    return urn.split(":", 3)[2]


def checkpoint_job_urn(pipeline_name: str, job_name: str) -> str:
    """The dataJob DataHub keeps a pipeline's ingestion checkpoints on (`make_data_job_urn("datahub", ...)`)."""
    return f"urn:li:dataJob:(urn:li:dataFlow:(datahub,{encode(pipeline_name)},prod),{encode(job_name)})"
