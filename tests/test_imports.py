"""The package's modules import each other in one direction: no cycle, even inside functions, and
the folders follow the flows (runtime < synth < models < data < training < apps)."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "sid_keras"


def _module_graph() -> dict[str, set[str]]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):  # every import, at any depth
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parents + ([base] if base else []))
                # `from pkg import module` needs that module (pkg's __init__ is its parent's business)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    # the package's lazy ``Enhancer`` (module __getattr__) is a name for users, not a dependency
    graph["sid_keras"].discard("sid_keras.runtime.inference")
    return graph


def test_no_import_cycle_inside_the_package():
    graph = _module_graph()
    assert len(graph) > 20 and "sid_keras.training.task" in graph["sid_keras.training.distributed"]
    state, cycles = {}, []

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


# Each folder may import only the folders before it.
FLOW = ("sid_keras.errors", "sid_keras.runtime", "sid_keras.synth", "sid_keras.models", "sid_keras.data",
        "sid_keras.training", "sid_keras.apps")
# The one way up: the runtime loads a .keras model through the models package, inside that function.
UPWARD_ALLOWED = {("sid_keras.runtime.runners", "sid_keras.models")}


def _flow_position(module: str) -> int:
    return next((i for i, folder in enumerate(FLOW) if module == folder or module.startswith(folder + ".")), -1)


def test_the_folders_follow_the_flows():
    graph = _module_graph()
    assert {_flow_position(name) for name in graph} >= set(range(len(FLOW)))  # every folder exists
    upward = sorted((a, b) for a, targets in graph.items() for b in targets
                    if _flow_position(b) > _flow_position(a) >= 0 and (a, b) not in UPWARD_ALLOWED)
    assert upward == []


def test_the_runtime_imports_no_tensorflow():
    """Every runtime module, and ``from sid_keras import Enhancer``, imports without TensorFlow or
    Keras: a phone-side or server-side runner needs only numpy, rawpy and LiteRT."""
    import subprocess
    import sys

    runtime = sorted(p.stem for p in (PACKAGE / "runtime").glob("*.py") if p.stem != "__init__")
    assert {"raw", "render", "inference", "lite", "dng", "io", "noise", "convention"} <= set(runtime)
    code = ("import sys\nfrom sid_keras import Enhancer\n"  # the README's Python call
            + "".join(f"import sid_keras.runtime.{name}\n" for name in runtime)
            + "loaded = [m for m in ('tensorflow', 'keras', 'tf_keras') if m in sys.modules]\n"
            + "assert not loaded, loaded\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_runtime_imports_silently_and_models_lists_without_tensorflow():
    """A user of the Python API sees no library log, and `sid-keras models` answers at once."""
    import subprocess
    import sys

    quiet = subprocess.run([sys.executable, "-c", "import sid_keras.runtime.inference"], capture_output=True, text=True)
    assert quiet.returncode == 0 and quiet.stdout == quiet.stderr == ""
    listing = subprocess.run(
        [sys.executable, "-c", "import sys; from sid_keras.apps.cli import main; code = main(['models']); "
         "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; sys.exit(code)"],
        capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    assert "unet_gan" in listing.stdout and "7,760,748" in listing.stdout


@pytest.mark.slow
def test_the_models_table_is_what_the_graphs_count():
    """assets/models.json (what `sid-keras models` prints) against a recount: rewrite it with
    ``python -c "from sid_keras.models import write_catalogue; write_catalogue()"``."""
    import json

    from sid_keras.models import CATALOGUE, describe_models

    assert json.loads(CATALOGUE.read_text()) == describe_models()
