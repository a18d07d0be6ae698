"""The architecture as a test: imports point one way, each third-party framework lives in one
package, and the read-only commands stay light."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What each part of the project may import from the project (besides itself). Everything below a
# layer is allowed; nothing above it.
ALLOWED = {
    "models": set(),
    "data": set(),
    "study.errors": set(),
    "study.config": {"study.errors", "models.loss_names", "models.metric_names", "data.storage", "data.manifest",
                     "data.errors"},
    "study.search": {"study.errors", "study.config"},
    "study.training": {"study.errors", "study.config", "models", "data"},
    "study.analysis": {"study.errors", "study.config", "study.search.objective", "models.loss_names",
                       "models.metric_names"},
    "study.tracking": {"study.errors", "study.config", "study.search", "data.storage"},
    "study.orchestration": {"study.errors", "study.config", "study.search", "study.training", "data", "models"},
    "study.driver": {"study.errors", "study.config", "study.search", "study.training", "study.analysis",
                     "study.tracking", "study.orchestration", "data", "models"},
    "study.cli": {"study.errors", "study.config", "study.driver", "study.training", "data", "models"},
}
# Third-party frameworks and the one package each may appear in.
FRAMEWORK_HOMES = {"ray": "study.orchestration", "mlflow": "study.tracking", "optuna": "study.search.optuna_search"}
NO_HEAVY = {"torch", "ray", "mlflow", "optuna", "lpips", "pytorch_msssim", "torchvision"}
LIGHT_PACKAGES = ("study.analysis", "study.config", "study.search.objective", "study.search.trials",
                  "study.search.selection")


def _modules() -> dict[str, Path]:
    modules = {}
    for top in ("models", "data", "study"):
        for path in (ROOT / top).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _imports(path: Path, module: str) -> list[tuple[str, int]]:
    found = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, node.lineno))
            found += [(f"{target}.{alias.name}", node.lineno) for alias in node.names]
    return found


def _layer(module: str) -> str:
    for layer in sorted(ALLOWED, key=len, reverse=True):
        if module == layer or module.startswith(layer + "."):
            return layer
    raise AssertionError(f"{module} belongs to no layer: add it to ALLOWED")


def _within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


MODULES = _modules()


def test_every_module_belongs_to_a_layer():
    unassigned = [module for module in MODULES if module != "study"
                  and not any(module == layer or module.startswith(layer + ".") for layer in ALLOWED)]
    assert not unassigned, f"modules in no layer (add them to ALLOWED): {unassigned}"


def test_imports_point_one_way():
    problems = []
    project = ("models", "data", "study")
    for module, path in MODULES.items():
        if module == "study":
            continue
        layer = _layer(module)
        for name, line in _imports(path, module):
            if not _within(name, project) or _within(name, [layer]) or name in MODULES and _layer(name) == layer:
                continue
            if name.rpartition(".")[0] in MODULES and name not in MODULES:
                name = name.rpartition(".")[0]  # `from pkg.mod import symbol`: judge the module
            if name in ("study", "data", "models") or _within(name, [layer]) or _within(name, ALLOWED[layer]):
                continue
            problems.append(f"{path.relative_to(ROOT)}:{line}: {layer} imports {name}")
    assert not problems, "\n".join(problems)


def test_each_framework_is_imported_in_its_home_only():
    problems = []
    for module, path in MODULES.items():
        for name, line in _imports(path, module):
            for framework, home in FRAMEWORK_HOMES.items():
                if _within(name, [framework]) and not _within(module, [home]):
                    problems.append(f"{path.relative_to(ROOT)}:{line}: {framework} outside {home}")
            if _within(module, ["models", "data"]) and _within(name, ["study"]):
                problems.append(f"{path.relative_to(ROOT)}:{line}: {module} imports study")
    assert not problems, "\n".join(problems)


def test_light_packages_import_no_heavy_framework():
    problems = []
    for module, path in MODULES.items():
        if not _within(module, LIGHT_PACKAGES):
            continue
        for name, line in _imports(path, module):
            if name.split(".")[0] in NO_HEAVY:
                problems.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    assert not problems, "\n".join(problems)


def test_no_import_cycle():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for name, _ in _imports(path, module):
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module and name not in ("study", "models", "data") and not module.startswith(name + "."):
                graph[module].add(name)
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("argv", [["--help"], ["study", "status", "{study}"]])
def test_read_only_commands_import_neither_torch_nor_ray(argv, tmp_path):
    from study.config.study import StudyConfig
    from study.driver.state import StudyState

    state = StudyState(study_id="abc", name="light", created="now",
                       config=StudyConfig.model_validate({"data": {"path": "/nowhere"}}).model_dump(mode="json"))
    state.save(tmp_path)
    args = [arg.replace("{study}", str(tmp_path)) for arg in argv]
    probe = ("import sys, runpy; sys.argv = ['maskvae', *sys.argv[1:]]\n"
             "try:\n    from study.cli import main; main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             "heavy = sorted(m for m in ('torch', 'ray', 'mlflow', 'optuna') if m in sys.modules)\n"
             "print('HEAVY', heavy)")
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert "HEAVY []" in done.stdout, done.stdout + done.stderr


# --- One word, one home: the study's vocabulary is spelled in one module each. -------------------
VIEW_WORDS = {"composed", "decoder"}
REGION_WORDS = {"face", "full"}
VIEWS_HOME = "study.config.views"
TRIAL_PHASE_WORDS = {"tune", "final"}
PHASE_WORDS = TRIAL_PHASE_WORDS | {"rank", "done"}
PHASE_HOME = "study.search.trials"
TAGS_HOME = "study.tracking.tags"


def _study_trees():
    for module, path in MODULES.items():
        if _within(module, ["study"]):
            yield module, path, ast.parse(path.read_text())


def _is_str(node: ast.AST, words=None) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and (words is None or node.value in words)


def _names_view_or_region(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr in ("view", "region")
            or isinstance(node, ast.Subscript) and _is_str(node.slice, {"view", "region"})
            or isinstance(node, ast.Name) and node.id in ("view", "region"))


def _names_phase(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "phase" or isinstance(node, ast.Name) and node.id == "phase")


def _pair_literal(node: ast.AST) -> bool:
    return (isinstance(node, ast.Tuple) and len(node.elts) == 2 and _is_str(node.elts[0], VIEW_WORDS)
            and _is_str(node.elts[1], REGION_WORDS))


def _vocabulary_problems(module: str, tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if module != VIEWS_HOME:
            if _pair_literal(node):
                found.append((node.lineno, "(view, region) pair literal"))
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                if any(_is_str(s, VIEW_WORDS | REGION_WORDS) for s in sides) and any(map(_names_view_or_region, sides)):
                    found.append((node.lineno, "view/region compared with a literal"))
                if any(_is_str(s, VIEW_WORDS) for s in sides):
                    found.append((node.lineno, "view name compared with a literal"))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args.args + node.args.kwonlyargs
                defaults = [None] * (len(node.args.args) - len(node.args.defaults)) + node.args.defaults + node.args.kw_defaults
                for arg, default in zip(args, defaults):
                    if arg.arg in ("view", "region") and default is not None and _is_str(default):
                        found.append((node.lineno, f"default {arg.arg}={default.value!r}"))
        if module != PHASE_HOME:
            if _is_str(node, TRIAL_PHASE_WORDS):
                found.append((node.lineno, f"phase literal {node.value!r}"))
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                if any(map(_names_phase, sides)) and any(_is_str(s, PHASE_WORDS) for s in sides):
                    found.append((node.lineno, "phase compared with a literal"))
            if isinstance(node, ast.Assign) and _is_str(node.value, PHASE_WORDS) and any(map(_names_phase, node.targets)):
                found.append((node.lineno, "phase assigned a literal"))
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "at_least"
                    and any(_is_str(a, PHASE_WORDS) for a in node.args)):
                found.append((node.lineno, "phase literal passed to at_least"))
        if module != TAGS_HOME and _is_str(node) and node.value.startswith("maskvae."):
            found.append((node.lineno, f"tag literal {node.value!r}"))
    return found


def test_each_word_of_the_study_is_spelled_in_its_home_only():
    """(view, region) pairs live in study/config/views.py, phase names beside TrialRecord, MLflow tag
    names in study/tracking/tags.py: a rename is then one edit, and a typo fails at import."""
    problems = [f"{path.relative_to(ROOT)}:{line}: {what}"
                for module, path, tree in _study_trees() for line, what in _vocabulary_problems(module, tree)]
    assert not problems, "\n".join(problems)


def test_the_vocabulary_check_catches_each_kind_of_stray_word():
    strays = {
        'PAIR = ("decoder", "face")': "pair literal",
        'ok = ranking.view == "composed"': "compared",
        'def f(view="decoder"): pass': "default view",
        'state.phase = "rank"': "phase assigned",
        'NAME = "tune"': "phase literal",
        'if state.at_least("done"): pass': "at_least",
        'TAG = "maskvae.view"': "tag literal",
    }
    for source, expected in strays.items():
        problems = _vocabulary_problems("study.driver.example", ast.parse(source))
        assert any(expected in what for _, what in problems), (source, problems)
    assert not _vocabulary_problems(VIEWS_HOME, ast.parse('HEADLINE = ("decoder", "face")'))



def _unwraps_run(node: ast.AST) -> bool:
    return (isinstance(node, ast.Compare) and _is_str(node.left, {"run"})
            and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops)
            or isinstance(node, ast.Subscript) and _is_str(node.slice, {"run"}))


def test_final_trials_are_fed_flat_without_a_run_wrapper():
    """A final trial's config is the run itself: nothing tests for or reads a "run" key."""
    problems = [f"{path.relative_to(ROOT)}:{node.lineno}" for module, path, tree in _study_trees()
                for node in ast.walk(tree) if _unwraps_run(node)]
    assert not problems, "\n".join(problems)
    assert _unwraps_run(ast.parse('x = "run" in trial.config').body[0].value)


def _module_level_mutables(tree: ast.Module) -> list[tuple[int, str]]:
    found = []
    mutable_calls = {"dict", "list", "set", "defaultdict", "OrderedDict", "Counter", "deque"}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        mutable = isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)) or (
            isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in mutable_calls)
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        # UPPER_CASE dicts are constant tables by convention; state that changes is spelled lower-case.
        if mutable and any(not name.isupper() for name in names):
            found.append((node.lineno, ", ".join(names)))
    return found


def test_orchestration_keeps_no_mutable_module_state():
    """A worker's trial state lives in one context object per trial, not in module globals that a
    reused actor carries from one trial to the next."""
    problems = [f"{path.relative_to(ROOT)}:{line}: {names}" for module, path, tree in _study_trees()
                if _within(module, ["study.orchestration"]) for line, names in _module_level_mutables(tree)]
    assert not problems, "\n".join(problems)
    assert _module_level_mutables(ast.parse("_cache: dict = {}"))
