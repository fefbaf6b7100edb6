"""The shape the code keeps: small modules, simple functions, imports that run one way
(source -> mapping -> sink; nothing below the pipeline imports the recipe), an SDK that loads
no crawler."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "connector"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES = 400
MAX_COMPLEXITY = 15

# package -> packages/modules it must not import
FORBIDDEN = {
    "connector.source": ("connector.mapping", "connector.sinks", "connector.change_tracking", "connector.config",
                         "connector.run_parts", "connector.pipeline", "connector.state"),
    "connector.mapping": ("connector.sinks", "connector.change_tracking", "connector.config",
                          "connector.run_parts", "connector.pipeline", "connector.state", "connector.source.crawler",
                          "connector.source.http_backend"),
    "connector.sinks": ("connector.source", "connector.change_tracking", "connector.config",
                        "connector.run_parts", "connector.pipeline"),
    "connector.change_tracking": ("connector.sinks", "connector.config", "connector.run_parts",
                                  "connector.pipeline", "connector.source.crawler", "connector.source.http_backend"),
    # the settings step builds the parts; it does not run them
    "connector.run_parts": ("connector.pipeline", "connector.source.crawler", "connector.source.connect"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_module_is_small(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= MAX_LINES


def test_no_function_is_too_complex():
    from radon.complexity import cc_visit

    too_complex = [f"{path.relative_to(PACKAGE.parent)}:{block.lineno} {block.name} ({block.complexity})"
                   for path in MODULES for block in cc_visit(path.read_text(encoding="utf-8"))
                   if block.complexity > MAX_COMPLEXITY]
    assert too_complex == []


def test_imports_run_one_way():
    wrong = []
    for path in MODULES:
        name = _module_name(path)
        for package, forbidden in FORBIDDEN.items():
            if name == package or name.startswith(package + "."):
                # a prefix: `connector.config` covers every module of the package
                wrong += [f"{name} imports {m}" for m in _imports(path) if any(m.startswith(f) for f in forbidden)]
    assert wrong == []


def test_the_sdk_loads_no_crawler_pipeline_or_lock():
    probe = ("import sys, connector.sdk; print(sorted(m for m in ('connector.pipeline', 'connector.source.crawler', "
             "'fcntl', 'connector.change_tracking.tracker') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# The run's parts travel grouped (RunParts, ChangeTracking, VersionInputs): no long argument lists here.
FEW_ARGUMENTS = ("connector/pipeline.py", "connector/run_parts.py", "connector/mapping/registry.py")
MAX_ARGUMENTS = 5


def test_the_pipeline_and_the_registry_mapping_take_few_arguments():
    too_many = []
    for relative in FEW_ARGUMENTS:
        for node in ast.walk(ast.parse((PACKAGE.parent / relative).read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                names = [arg.arg for arg in (*a.posonlyargs, *a.args, *a.kwonlyargs) if arg.arg not in ("self", "cls")]
                if len(names) > MAX_ARGUMENTS:
                    too_many.append(f"{relative}:{node.lineno} {node.name}({', '.join(names)})")
    assert too_many == []
