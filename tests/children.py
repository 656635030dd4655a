"""Child processes that tests read, started as soon as collection ends.

A test module lists its children in ``CHILDREN = {key: make}``, ``make(folder)`` giving ``Child``'s
arguments (``argv``, and ``env`` and ``cwd`` where needed; ``folder`` is the child's own, emptied at the
end), and which of them a test item reads in ``child_keys(item)`` (default: every one). Each child that
a test selected for this run reads starts when collection ends: it runs on the second core while this
process runs the tests before its reader (a child's cold Numba build would otherwise leave one core idle
for most of a minute), and the reader's ``children.result(__name__, key)`` waits for its end. Its output
goes to files (a full pipe would stop it). Children still running when the session ends are killed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile


class Child:
    def __init__(self, argv, env=None, cwd=None, timeout=600):
        self.argv, self.env, self.cwd, self.timeout = list(argv), env, cwd, timeout
        self.proc = None

    def start(self, folder):
        self.folder = folder
        self.files = [open(os.path.join(folder, name), "w+") for name in ("stdout", "stderr")]
        self.proc = subprocess.Popen(self.argv, stdout=self.files[0], stderr=self.files[1], env=self.env,
                                     cwd=self.cwd)

    def result(self):
        """``(exit code, stdout, stderr)`` once the child has ended."""
        rc = self.proc.wait(timeout=self.timeout)
        out, err = ((f.seek(0), f.read())[1] for f in self.files)
        return rc, out, err

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in self.files:
            f.close()
        shutil.rmtree(self.folder, ignore_errors=True)


class Children:
    def __init__(self):
        self.modules, self.started = {}, {}

    def start_for(self, items):
        """Start every child the given test items read."""
        for item in items:
            module = getattr(item, "module", None)
            specs = getattr(module, "CHILDREN", None)
            if specs:
                self.modules[module.__name__] = module
                for key in getattr(module, "child_keys", lambda item: list(specs))(item):
                    self._start(module.__name__, key)

    def _start(self, module_name, key):
        if (module_name, key) not in self.started:
            folder = tempfile.mkdtemp(prefix="mlpbench-child-")
            child = Child(**self.modules[module_name].CHILDREN[key](folder))
            child.start(folder)
            self.started[(module_name, key)] = child
        return self.started[(module_name, key)]

    def result(self, module_name, key):
        """``(exit code, stdout, stderr)`` of the child ``key`` of module ``module_name`` (started now if it
        was not at collection)."""
        if module_name not in self.modules:
            import sys

            self.modules[module_name] = sys.modules[module_name]
        return self._start(module_name, key).result()

    def warm(self, items, modules, keyword, env):
        """Start one child that runs the ``keyword`` tests of ``modules`` (file names, in that order) among
        ``items``, each module only if some other test runs before it here; its results are not read (it
        fills on-disk caches). ``env``: set in the child, besides a folder of its own as MLPBENCH_CACHE_DIR."""
        first = {}
        for i, item in enumerate(items):
            first.setdefault(os.path.basename(str(item.path)), (i, str(item.path)))
        paths = [first[m][1] for m in modules if m in first and first[m][0] > 0]
        if not paths:
            return
        folder = tempfile.mkdtemp(prefix="mlpbench-warm-")
        child = Child([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                       "-m", "not slow and not benchmark and not gpu", "-k", keyword, *paths],
                      env=dict(os.environ, **env, MLPBENCH_CACHE_DIR=folder))  # at this process's priority:
        child.start(folder)  # at nice 10 it finished after this process had reached its kernels and built them too
        self.started[("warm", keyword)] = child

    def stop_all(self):
        for child in self.started.values():
            child.stop()
        self.started.clear()
