"""Every image holds what its components import, and nothing they do not.

Derived, not declared: which image a component runs in comes from components/images.py; which extras an
image installs comes from its Dockerfile (`ENV PACKWISE_EXTRAS=...`); what an extra installs comes from
pyproject.toml; what a component imports comes from an AST walk of its function body and of every packwise
function, class and module it reaches (function-local imports included, `if TYPE_CHECKING:` blocks
excluded). Third-party modules map to distributions through the installed metadata of this environment.

Two checks, each shown able to fail on a deliberately wrong mapping:
- no image installs an extra whose direct requirements none of its components import;
- every third-party module a component imports is installed in its image (directly or as a dependency).

No kfp import here: the component modules are parsed, not imported.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from packwise_components.images import COMPONENT_IMAGES, SERVICE_IMAGES

ROOT = Path(__file__).resolve().parents[2]
IMAGES_DIR = ROOT / "images"
OWN_PACKAGES = {
    "packwise": ROOT / "src" / "packwise",
    "packwise_components": ROOT / "components",
    "packwise_app": ROOT / "app",
}
# The `packwise` console script's libraries: core dependencies that no component imports. They sit in the
# base because `pip install packwise` must give a working CLI; moving them to a `cli` extra would drop them
# from every image.
CLI_ONLY_CORE = {"typer", "rich"}
# The executor that runs every lightweight component (`python3 -m kfp.dsl.executor_main`).
EXECUTOR = {"kfp"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ---------------------------------------------------------------- what each image installs ------------


def image_extras(dockerfile: Path) -> list[str]:
    """The extras an image's Dockerfile installs, from its `ENV PACKWISE_EXTRAS=...` line."""
    found = re.findall(r"^ENV PACKWISE_EXTRAS=\"?([\w,\-]*)\"?\s*$", dockerfile.read_text(), flags=re.M)
    assert len(found) == 1, f"{dockerfile}: expected exactly one `ENV PACKWISE_EXTRAS=...` line"
    return [e for e in found[0].split(",") if e]


def all_image_extras() -> dict[str, list[str]]:
    """Every image folder (component and service images) -> its extras."""
    return {
        d.name: image_extras(d / "Dockerfile")
        for d in sorted(IMAGES_DIR.iterdir())
        if d.is_dir() and d.name != "base" and (d / "Dockerfile").exists()
    }


def component_image_extras() -> dict[str, list[str]]:
    """The images pipeline components run in (service images such as the watcher are checked apart)."""
    return {name: extras for name, extras in all_image_extras().items() if name not in SERVICE_IMAGES}


@cache
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def direct_requirements(extra: str | None) -> dict[str, frozenset[str]]:
    """Distributions an extra (None: the core dependencies) lists in pyproject.toml for this platform, each
    with the extras it is asked with (`mlflow[auth]` pulls in Flask-WTF).

    Images are Linux: a requirement whose marker excludes this platform (xgboost on macOS) is not in them.
    """
    project = pyproject()["project"]
    reqs = [
        Requirement(r) for r in (project["dependencies"] if extra is None else project["optional-dependencies"][extra])
    ]
    out: dict[str, frozenset[str]] = {}
    for r in reqs:
        if r.marker is None or r.marker.evaluate():
            out[canonical(r.name)] = out.get(canonical(r.name), frozenset()) | frozenset(r.extras)
    return out


@cache
def installed_closure(dist: str, extras: frozenset[str] = frozenset()) -> frozenset[str]:
    """`dist` and everything it pulls in (with `extras`), from the installed metadata."""
    seen: set[str] = set()
    todo = [(dist, extras)]
    while todo:
        name, wanted = todo.pop()
        if name in seen and not wanted:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            envs = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                child = canonical(req.name)
                if child not in seen or req.extras:
                    todo.append((child, frozenset(req.extras)))
    return frozenset(seen)


def image_distributions(extras: Iterable[str]) -> set[str]:
    """Every distribution installed in an image with these extras: core + extras, transitively."""
    direct = dict(direct_requirements(None))
    for extra in extras:
        for name, asked in direct_requirements(extra).items():
            direct[name] = direct.get(name, frozenset()) | asked
    out: set[str] = set()
    for name, asked in direct.items():
        out |= installed_closure(name, asked)
    return out


# ---------------------------------------------------------------- what each component imports ---------


def module_file(module: str) -> Path | None:
    top, *rest = module.split(".")
    base = OWN_PACKAGES.get(top)
    if base is None:
        return None
    path = base.joinpath(*rest)
    if (path / "__init__.py").exists():
        return path / "__init__.py"
    if path.with_suffix(".py").exists():
        return path.with_suffix(".py")
    raise AssertionError(f"{module} is imported but has no file under {base}")


def is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def walk(nodes: Iterable[ast.AST], into_functions: bool) -> Iterable[ast.AST]:
    """ast.walk minus TYPE_CHECKING blocks (and, at module level, minus function bodies)."""
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if is_type_checking(node):
            stack.extend(node.orelse)  # type: ignore[attr-defined]
            continue
        yield node
        if not into_functions and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            stack.extend(node.decorator_list)
            continue
        stack.extend(ast.iter_child_nodes(node))


@dataclass
class Module:
    name: str
    tree: ast.Module
    defs: dict[str, ast.AST] = field(default_factory=dict)  # top-level functions and classes
    bindings: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # top-level imports of own code


@cache
def load(module: str) -> Module:
    path = module_file(module)
    assert path is not None
    tree = ast.parse(path.read_text(), filename=str(path))
    mod = Module(module, tree)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            mod.defs[node.name] = node
    for found in walk(tree.body, into_functions=False):
        if (
            isinstance(found, ast.ImportFrom)
            and found.level == 0
            and (found.module or "").split(".")[0] in OWN_PACKAGES
        ):
            for alias in found.names:
                mod.bindings[alias.asname or alias.name] = (found.module or "", alias.name)
    return mod


# "packwise.models.xgboost_tabular:XGBoostTabular": a plugin table entry, loaded with importlib.
PLUGIN_REF = re.compile(r"^((?:packwise|packwise_components)(?:\.\w+)+):(\w+)$")


@dataclass
class ImportWalker:
    """Third-party top-level modules reached from a function, following packwise code.

    A module's top level runs when it is imported; a function's body only when something walked
    references it by name; a class's methods only when their name is used as an attribute somewhere
    in the walked code (or is a dunder). Plugin table strings ("pkg.module:Attr") count as references.
    """

    external: dict[str, str] = field(default_factory=dict)  # module -> how it was reached
    done: set[tuple[str, str | None]] = field(default_factory=set)
    attrs: set[str] = field(default_factory=set)
    pending: dict[str, list[tuple[Module, ast.AST, str]]] = field(default_factory=dict)
    trail: list[str] = field(default_factory=list)

    def module(self, name: str) -> None:
        """Importing `name` runs its parents' and its own top level."""
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            key = (".".join(parts[:i]), None)
            if key in self.done:
                continue
            self.done.add(key)
            mod = load(key[0])
            self.visit(mod, mod.tree.body, key[0], into_functions=False)
            # A function named in a module-level table (the gate's criteria) is there to be called.
            values = [n.value for n in mod.tree.body if isinstance(n, ast.Assign | ast.AnnAssign) and n.value]
            self.visit(mod, values, key[0], into_functions=True)

    def definition(self, module: str, name: str) -> None:
        key = (module, name)
        if key in self.done:
            return
        self.done.add(key)
        self.module(module)
        mod = load(module)
        node = mod.defs.get(name)
        if node is None:
            if name in mod.bindings:  # re-exported from another packwise module
                self.definition(*mod.bindings[name])  # type: ignore[arg-type]
            elif module_file_exists(f"{module}.{name}"):
                self.module(f"{module}.{name}")
            return
        if isinstance(node, ast.ClassDef):
            self.visit(
                mod, [*node.bases, *node.keywords, *node.decorator_list], f"{module}.{name}", into_functions=True
            )
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    label = f"{module}.{name}.{item.name}"
                    if item.name.startswith("__") or item.name in self.attrs:
                        self.visit(mod, [item], label, into_functions=True)
                    else:
                        self.pending.setdefault(item.name, []).append((mod, item, label))
                else:
                    self.visit(mod, [item], f"{module}.{name}", into_functions=True)
        else:
            self.visit(mod, [node], f"{module}.{name}", into_functions=True)

    def visit(self, mod: Module, nodes: Iterable[ast.AST], label: str, into_functions: bool) -> None:
        self.trail.append(label)
        try:
            for node in walk(nodes, into_functions):
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        self.imported(alias.name, None, follow=into_functions)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    for alias in node.names:
                        self.imported(node.module, alias.name, follow=into_functions)
                elif isinstance(node, ast.Name) and into_functions:
                    if node.id in mod.defs:
                        self.definition(mod.name, node.id)
                    elif node.id in mod.bindings:
                        self.definition(*mod.bindings[node.id])  # type: ignore[arg-type]
                elif isinstance(node, ast.Attribute) and node.attr not in self.attrs:
                    self.attrs.add(node.attr)
                    for m, item, item_label in self.pending.pop(node.attr, []):
                        self.visit(m, [item], item_label, into_functions=True)
                elif (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and (ref := PLUGIN_REF.match(node.value))
                ):
                    self.definition(ref.group(1), ref.group(2))
        finally:
            self.trail.pop()

    def imported(self, module: str, name: str | None, follow: bool) -> None:
        """`follow`: a function-local import is there to be used, so what it names is walked too."""
        top = module.split(".")[0]
        if top in OWN_PACKAGES:
            self.module(module)
            if name is not None and module_file_exists(f"{module}.{name}"):
                self.module(f"{module}.{name}")
            elif name is not None and follow:
                self.definition(module, name)
        elif top not in sys.stdlib_module_names and top != "__future__":
            self.external.setdefault(top, " -> ".join(self.trail))


def module_file_exists(module: str) -> bool:
    try:
        return module_file(module) is not None
    except AssertionError:
        return False


@cache
def component_functions() -> dict[str, tuple[str, str]]:
    """Component name -> (module, function), from the `make(func, "name")`-style calls in components/."""
    found: dict[str, tuple[str, str]] = {}
    for path in sorted((ROOT / "components").glob("*.py")):
        module = f"packwise_components.{path.stem}"
        tree = ast.parse(path.read_text())
        top_defs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            names = [a.id for a in node.args if isinstance(a, ast.Name) and a.id in top_defs]
            names += [k.value.id for k in node.keywords if k.arg == "func" and isinstance(k.value, ast.Name)]
            labels = [
                a.value
                for a in ast.walk(node)
                if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value in COMPONENT_IMAGES
            ]
            if len(names) == 1 and len(labels) == 1:
                found[labels[0]] = (module, names[0])
    return found


@cache
def component_imports(component: str) -> dict[str, str]:
    """Third-party top-level modules the component imports -> the call chain that reaches each."""
    module, func = component_functions()[component]
    walker = ImportWalker()
    node = load(module).defs[func]
    # Only the function body ships (kfp writes its source to a file); the component module's top level
    # does not run in the container, so start from the body.
    walker.visit(load(module), list(ast.iter_child_nodes(node)), f"{module}.{func}", into_functions=True)
    return {**walker.external, **{m: "the kfp executor" for m in EXECUTOR}}


@cache
def module_distributions() -> Mapping[str, list[str]]:
    return metadata.packages_distributions()


def distributions_of(modules: Iterable[str]) -> dict[str, set[str]]:
    """Module -> the distributions that provide it (mlflow comes from mlflow, mlflow-skinny, ...)."""
    out = {}
    for m in modules:
        dists = module_distributions().get(m)
        assert dists, f"module {m!r} is imported but no installed distribution provides it"
        out[m] = {canonical(d) for d in dists}
    return out


# ---------------------------------------------------------------- the checks ---------------------------


def unused_extras(mapping: Mapping[str, str], extras_by_image: Mapping[str, list[str]]) -> list[str]:
    """Each extra's direct requirements that no component on that image imports."""
    problems = []
    for image, extras in extras_by_image.items():
        components = sorted(c for c, i in mapping.items() if i == image)
        imported = {d for c in components for ds in distributions_of(component_imports(c)).values() for d in ds}
        for extra in extras:
            for dist in sorted(direct_requirements(extra).keys() - imported):
                problems.append(f"image {image!r} installs {dist} ([{extra}]) but none of {components} imports it")
    return problems


def unused_core(mapping: Mapping[str, str]) -> list[str]:
    """Core dependencies (in every image, via the base) that no component imports at all."""
    imported = {d for c in mapping for ds in distributions_of(component_imports(c)).values() for d in ds}
    return [
        f"the base installs {dist} (core dependency) but no component imports it"
        for dist in sorted(direct_requirements(None).keys() - imported - CLI_ONLY_CORE)
    ]


def missing_packages(mapping: Mapping[str, str], extras_by_image: Mapping[str, list[str]]) -> list[str]:
    """Third-party modules a component imports that its image does not install."""
    problems = []
    for component, image in sorted(mapping.items()):
        installed = image_distributions(extras_by_image[image])
        for module, dists in sorted(distributions_of(component_imports(component)).items()):
            if not dists & installed:
                problems.append(
                    f"component {component!r} imports {module} ({'/'.join(sorted(dists))}) but image {image!r} "
                    f"does not install it (extras {extras_by_image[image]}); "
                    f"reached via {component_imports(component)[module]}"
                )
    return problems


# ---------------------------------------------------------------- tests --------------------------------


def test_every_component_has_a_function_and_an_image_folder() -> None:
    assert set(component_functions()) == set(COMPONENT_IMAGES), "a component in images.py has no definition"
    assert set(COMPONENT_IMAGES.values()) == set(component_image_extras()), "images.py and images/ disagree"


def test_every_extra_in_an_image_is_imported_by_one_of_its_components() -> None:
    assert unused_extras(COMPONENT_IMAGES, component_image_extras()) == []


def test_every_core_dependency_is_imported_by_some_component() -> None:
    assert unused_core(COMPONENT_IMAGES) == []


def test_every_component_import_is_installed_in_its_image() -> None:
    assert missing_packages(COMPONENT_IMAGES, component_image_extras()) == []


def test_the_walk_sees_the_heavy_imports() -> None:
    """Guards the analysis itself: these imports sit in function bodies two or three calls deep."""
    assert "duckdb" in component_imports("extract")
    assert {"xgboost", "sklearn"} <= set(component_imports("train"))  # xgboost through the plugin table
    assert "mlflow" in component_imports("register")
    assert "xgboost" not in component_imports("validate")  # reads a plugin's class attribute only
    assert not {"mlflow", "xgboost", "duckdb"} & set(component_imports("compare"))
    assert "scipy" in component_imports("compare")  # a function in the gate's module-level criteria table


@pytest.mark.parametrize(
    ("image", "extras"),
    [("data", ["train"]), ("gate", ["registry"]), ("warehouse", ["warehouse", "registry"])],
)
def test_an_extra_nobody_imports_is_caught(image: str, extras: list[str]) -> None:
    wrong = {**component_image_extras(), image: extras}
    assert unused_extras(COMPONENT_IMAGES, wrong)


@pytest.mark.parametrize(("component", "image"), [("train", "data"), ("register", "gate"), ("extract", "train")])
def test_a_component_on_the_wrong_image_is_caught(component: str, image: str) -> None:
    wrong = {**COMPONENT_IMAGES, component: image}
    assert missing_packages(wrong, component_image_extras())


def test_skaffold_builds_every_image_on_the_base() -> None:
    """skaffold.yaml has one artifact per image folder; component images are built FROM the built base."""
    import yaml

    config = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    artifacts = {a["image"]: a for a in config["build"]["artifacts"]}
    assert set(artifacts) == {"packwise-base"} | {f"packwise-{name}" for name in all_image_extras()}
    assert artifacts["packwise-base"]["docker"]["dockerfile"] == "images/base/Dockerfile"
    for name in all_image_extras():
        artifact = artifacts[f"packwise-{name}"]
        assert artifact["context"] == f"images/{name}"
        assert artifact["requires"] == [{"image": "packwise-base", "alias": "PACKWISE_BASE"}]
        dockerfile = (IMAGES_DIR / name / "Dockerfile").read_text()
        assert re.search(r"^ARG PACKWISE_BASE=\S+\nFROM \$\{PACKWISE_BASE\}$", dockerfile, flags=re.M), name
        assert "COPY" not in dockerfile, f"images/{name} copies files: the code comes from the base only"
    assert {p["name"] for p in config["profiles"]} >= {"kind", "eks"}


def test_service_images_hold_what_their_module_imports_and_nothing_more() -> None:
    """The watcher image: every extra it adds is imported by its module, and everything it imports is there."""
    for image, module in SERVICE_IMAGES.items():
        walker = ImportWalker()
        walker.module(module)
        for name, node in load(module).defs.items():
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                walker.definition(module, name)
        imported = {d for ds in distributions_of(walker.external).values() for d in ds}
        extras = all_image_extras()[image]
        for extra in extras:
            used = direct_requirements(extra).keys() & imported
            assert used, f"image {image!r} adds [{extra}] but {module} never uses it"
        installed = image_distributions(extras) | {"packwise"}  # packwise_pipelines ships in packwise
        for mod, dists in distributions_of(walker.external).items():
            assert dists & installed, f"{module} imports {mod} but image {image!r} lacks it"
