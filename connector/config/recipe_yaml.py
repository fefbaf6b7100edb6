"""Reading a recipe file safely: text only, bounded size, bounded nesting, no alias bombs.

PyYAML shares the object an alias points at, so a "billion laughs" recipe loads in
microseconds and then explodes in whatever walks it (${VAR} expansion, validation).
The loader counts the nodes of the document as if every alias were copied out and
refuses past MAX_EXPANDED_NODES, before anything walks it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_RECIPE_BYTES = 1024 * 1024
MAX_DEPTH = 50
MAX_EXPANDED_NODES = 100_000  # a large real recipe has a few hundred


class RecipeFileError(ValueError):
    """The file is not a recipe we can read; the message names the file and what is wrong."""


class _LimitedLoader(yaml.SafeLoader):
    def __init__(self, stream, source: str):
        super().__init__(stream)
        self._source = source
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        if self._depth > MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise RecipeFileError(f"recipe {self._source} nests deeper than {MAX_DEPTH} levels "
                                  f"(line {mark.line + 1})")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _expanded_size(node: yaml.Node, sizes: dict, open_nodes: set, source: str) -> int:
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise RecipeFileError(f"recipe {source}: an alias refers to a node that contains it "
                              f"(line {node.start_mark.line + 1})")
    open_nodes.add(key)
    size = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    else:
        children = []
    for child in children:
        size += _expanded_size(child, sizes, open_nodes, source)
        if size > MAX_EXPANDED_NODES:
            raise RecipeFileError(f"recipe {source}: aliases expand to more than {MAX_EXPANDED_NODES:,} "
                                  f"values (line {node.start_mark.line + 1}); refusing it")
    open_nodes.discard(key)
    sizes[key] = size
    return size


def read_recipe_file(path: str | Path) -> Any:
    """The parsed YAML of a recipe file. Raises OSError (unreadable), RecipeFileError, yaml.YAMLError."""
    source = str(path)
    with open(path, "rb") as f:
        raw = f.read(MAX_RECIPE_BYTES + 1)
    if len(raw) > MAX_RECIPE_BYTES:
        raise RecipeFileError(f"recipe {source} is larger than {MAX_RECIPE_BYTES // 1024} KiB: not a recipe")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeFileError(f"recipe {source} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                              f"{exc.start})") from None
    if "\x00" in text:
        raise RecipeFileError(f"recipe {source} is not a text file (it holds NUL bytes)")
    loader = _LimitedLoader(text, source)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, set(), source)
        return loader.construct_document(node)
    finally:
        loader.dispose()
