"""The Numba cache's dependency salt (``kernels/numba/internals.cache_for``), checked and shown to work.

Numba's on-disk cache invalidates a function when its own source file changes,
not when a kernel it calls from another file does. Each kernel module that
imports a sibling in ``mlpbench/kernels/numba/`` (or ``kernels/reference.py``,
key ``"..reference"``) therefore carries their source digests in ``_DEPENDS_ON``;
this file checks them, cascading (a stale constant in ``layers`` changes
``layers.py``, hence the constant of every module that imports it). ``python tests/test_kernel_salts.py`` prints the
constants to set, ``--write`` sets them.
"""

from __future__ import annotations

import ast
import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "mlpbench" / "kernels" / "numba"


def digest(text: str) -> str:
    """``internals.source_digest`` of a file holding ``text`` (computed apart, as a cross-check)."""
    return hashlib.sha256(text.encode().replace(b"\r\n", b"\n")).hexdigest()[:12]


def salt_block(depends_on: dict) -> str:
    """The ``_DEPENDS_ON = {...}`` statement, entries sorted and packed into lines of at most 116 characters."""
    lines = ["_DEPENDS_ON = {"]
    for k, v in sorted(depends_on.items()):
        entry = f'"{k}": "{v}",'
        if len(lines[-1]) + 1 + len(entry) > 116 and lines[-1].strip() != "_DEPENDS_ON = {":
            lines.append(" " * len("_DEPENDS_ON = {"))
        lines[-1] += entry if lines[-1].endswith(("{", " ")) else " " + entry
    return "\n".join(lines).rstrip(",") + "}\n"


def _facts(text: str):
    """(siblings imported, imports numba?, the ``_DEPENDS_ON`` assignment node or None, problems)."""
    tree = ast.parse(text)
    siblings, numba, salt, problems = set(), False, None, []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            siblings.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
        elif isinstance(node, ast.ImportFrom) and node.level == 2 and node.module == "reference":
            siblings.add("..reference")
        elif isinstance(node, ast.ImportFrom) and node.level > 1:
            problems.append(f"imports from outside kernels/numba/ and kernels/reference.py (line {node.lineno})")
        elif isinstance(node, ast.ImportFrom) and node.module.split(".")[0] == "numba":
            numba = True
        elif isinstance(node, ast.Import) and any(a.name.split(".")[0] == "numba" for a in node.names):
            numba = True
        elif isinstance(node, ast.keyword) and node.arg == "cache" and not _is_name(node.value, "CACHE"):
            problems.append(f"cache= other than CACHE (line {node.value.lineno})")
        elif isinstance(node, ast.Dict):
            for k, val in zip(node.keys, node.values):
                if isinstance(k, ast.Constant) and k.value == "cache" and not _is_name(val, "CACHE"):
                    problems.append(f"'cache': other than CACHE (line {val.lineno})")
    flag = False
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["_DEPENDS_ON"]:
            salt = node
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["CACHE"]:
            call = node.value
            flag = (isinstance(call, ast.Call) and _is_name(call.func, "cache_for") and len(call.args) == 2
                    and _is_name(call.args[0], "__name__") and _is_name(call.args[1], "_DEPENDS_ON"))
    return siblings, numba, salt, problems, flag


def _is_name(node, name):
    return isinstance(node, ast.Name) and node.id == name


def salt_fixes(texts: dict) -> tuple[dict, list]:
    """``texts``: module name -> source. Returns (module -> its source with every ``_DEPENDS_ON`` set right,
    for the modules that change; problems a rewrite cannot fix)."""
    texts, facts = dict(texts), {m: _facts(t) for m, t in texts.items()}
    problems = []
    order, state = [], {}

    def visit(m, path):  # siblings first; a circle is a problem
        if state.get(m) == "done":
            return
        if state.get(m) == "open":
            problems.append(f"import circle: {' -> '.join(path + [m])}")
            return
        state[m] = "open"
        for s in sorted(facts[m][0]):
            if s not in facts:
                problems.append(f"{m}: imports {s!r}, not a module of kernels/")
            else:
                visit(s, path + [m])
        state[m] = "done"
        order.append(m)

    for m in sorted(facts):
        visit(m, [])
    kernelish, fixed = {}, {}
    for m in order:
        siblings, numba, salt, own_problems, flag = facts[m]
        kernelish[m] = numba or any(kernelish.get(s, False) for s in siblings)
        if not (kernelish[m] and siblings):
            continue
        problems += [f"{m}.py: {p}" for p in own_problems]
        if not flag:
            problems.append(f"{m}.py: needs CACHE = cache_for(__name__, _DEPENDS_ON) and cache=CACHE")
        want = {s: digest(texts[s]) for s in siblings if s in texts}
        if salt is None:
            problems.append(f"{m}.py: imports {sorted(siblings)} but declares no _DEPENDS_ON; add\n{salt_block(want)}")
            continue
        try:
            have = ast.literal_eval(salt.value)
        except ValueError:
            have = None
        if have != want:
            lines = texts[m].splitlines(keepends=True)
            texts[m] = fixed[m] = "".join(lines[: salt.lineno - 1]) + salt_block(want) + "".join(lines[salt.end_lineno:])
    return fixed, problems


def kernel_sources() -> dict:
    texts = {p.stem: p.read_bytes().decode() for p in sorted(KERNELS.glob("*.py"))}
    texts["..reference"] = (KERNELS.parent / "reference.py").read_bytes().decode()
    return texts


def _path(name):
    return KERNELS.parent / "reference.py" if name == "..reference" else KERNELS / f"{name}.py"


def test_every_kernel_module_declares_the_source_digests_of_the_siblings_it_imports():
    fixed, problems = salt_fixes(kernel_sources())
    msg = "".join(f"\n{_path(m)}: set\n{salt_block(_current(t))}" for m, t in fixed.items())
    assert not fixed and not problems, (
        "Numba's cache would keep stale code of a changed sibling: " + "\n".join(problems) + msg
        + "\n(or run: python tests/test_kernel_salts.py --write)")


def _current(text):
    return ast.literal_eval(_facts(text)[2].value)


def test_a_changed_helper_makes_every_module_that_compiles_it_in_stale():
    texts = kernel_sources()
    assert not salt_fixes(texts)[0]
    texts["scalar"] += "# edited\n"
    fixed, problems = salt_fixes(texts)
    assert not problems
    # the direct importers and, through their rewritten constants, the modules importing those
    assert {"layers", "step", "loop", "batches", "batches_parallel", "fixed"} <= set(fixed), sorted(fixed)
    assert "scalar" not in fixed and "..reference" not in fixed
    assert salt_fixes({**texts, **fixed}) == ({}, [])  # one rewrite settles every constant


def test_the_checker_reports_a_missing_salt_and_a_foreign_cache_flag():
    texts = {"helper": "from numba import njit\n",
             "user": "from numba import njit\nfrom .helper import g\n@njit(cache=True)\ndef f(): return g()\n"}
    fixed, problems = salt_fixes(texts)
    assert any("declares no _DEPENDS_ON" in p and digest(texts["helper"]) in p for p in problems), problems
    assert any("cache= other than CACHE" in p for p in problems), problems


def test_the_runtime_guard_turns_a_stale_or_downstream_stale_cache_off(monkeypatch):
    pytest.importorskip("numba")
    from mlpbench.kernels.numba import (internals as numba_internals, layers as numba_layers, loop as numba_loop,
                                        scalar as numba_scalar, step as numba_step)

    for module in (numba_scalar, numba_layers, numba_step, numba_loop):
        assert module.CACHE is numba_internals.CACHE, module.__name__  # no stale constant in the package
        assert numba_internals.cache_for(module.__name__, module._DEPENDS_ON) is numba_internals.CACHE
    if not numba_internals.CACHE:
        pytest.skip("MLPBENCH_NUMBA_PUBLIC=1: the on-disk cache is off everywhere")
    stale = dict(numba_step._DEPENDS_ON, layers="0" * 12)
    with pytest.warns(UserWarning, match=r"_DEPENDS_ON\['layers'\] is '000000000000'.*"
                      + numba_internals.source_digest(numba_layers.__file__)):
        assert numba_internals.cache_for(numba_step.__name__, stale) is False
    monkeypatch.setattr(numba_layers, "CACHE", False)  # a sibling running uncached: so do its dependents
    assert numba_internals.cache_for(numba_step.__name__, numba_step._DEPENDS_ON) is False


PROBE = """
import sys, warnings
sys.path.insert(0, sys.argv[1])
warnings.simplefilter("always")
from kpkg import helper, plain, salted
print(helper.g(1), plain.f(1), salted.f(1), salted.CACHE, len(salted.f.stats.cache_hits))
"""


def test_numba_keeps_a_dependents_stale_code_and_the_salt_fixes_it(tmp_path):
    """The premise, on Numba as installed, then the remedy: ``plain`` calls ``helper.g`` with a bare
    ``cache=True``; ``salted`` does the same through ``cache_for``. After ``g`` changes, ``plain`` still
    returns the old result from its cache; ``salted`` compiles afresh (and warns) until its constant is
    updated, then caches again."""
    pytest.importorskip("numba")
    pkg = tmp_path / "src" / "kpkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    helper = "from numba import njit\n\n@njit(cache=True)\ndef g(x):\n    return x + {}\n"
    (pkg / "helper.py").write_text(helper.format(1))
    (pkg / "plain.py").write_text("from numba import njit\nfrom .helper import g\n\n"
                                  "@njit(cache=True)\ndef f(x):\n    return g(x)\n")
    salted = textwrap.dedent("""\
        from numba import njit
        from mlpbench.kernels.numba.internals import cache_for
        from .helper import g
        {}CACHE = cache_for(__name__, _DEPENDS_ON)

        @njit(cache=CACHE)
        def f(x):
            return g(x)
        """)
    (pkg / "salted.py").write_text(salted.format(salt_block({"helper": digest(helper.format(1))})))
    env = {k: v for k, v in os.environ.items() if k != "MLPBENCH_NUMBA_PUBLIC"}
    env.update(NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"), PYTHONPATH=str(ROOT))

    def run():
        proc = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "src")], env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split(), proc.stderr

    def edit(path, text):  # a later mtime, as any edit gives (some filesystems stamp whole seconds)
        old = path.stat().st_mtime
        path.write_text(text)
        os.utime(path, (old + 10, old + 10))

    assert run()[0] == ["2", "2", "2", "True", "0"]  # compiled and cached
    assert run()[0] == ["2", "2", "2", "True", "1"]  # loaded from the cache
    edit(pkg / "helper.py", helper.format(2))
    out, err = run()
    assert out[0] == "3" and out[2:4] == ["3", "False"], out
    assert out[1] == "2", ("Numba now invalidates a cached function when a kernel it calls from another file "
                           "changes: the dependency salt (internals.cache_for) may be dropped", out)
    assert "_DEPENDS_ON['helper']" in err and digest(helper.format(2)) in err, err
    edit(pkg / "salted.py", salted.format(salt_block({"helper": digest(helper.format(2))})))
    assert run()[0][2:] == ["3", "True", "0"]  # the updated constant invalidated the stale entry
    assert run()[0][2:] == ["3", "True", "1"]  # and it caches again


if __name__ == "__main__":
    fixes, issues = salt_fixes(kernel_sources())
    for name, new_text in fixes.items():
        print(f"{_path(name)}:\n{salt_block(_current(new_text))}")
        if "--write" in sys.argv[1:]:
            _path(name).write_bytes(new_text.encode())
    print("\n".join(issues) or ("" if fixes else "every _DEPENDS_ON is up to date"))
    sys.exit(1 if issues else 0)
