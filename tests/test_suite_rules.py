"""Rules of the test suite itself: committed fixtures are never skipped, optional packages skip alone."""

import ast
import os
import subprocess
import sys

import pytest

from tests.fixtures import HERE, committed


def test_a_missing_committed_fixture_fails_rather_than_skips():
    assert committed("golden") == os.path.join(HERE, "golden")
    with pytest.raises(pytest.fail.Exception, match="tests/corpus/no_such.prototxt is missing"):
        committed("corpus", "no_such.prototxt")


def _skips(tree):
    """(line, text) of each pytest.skip(...) call and skipif(...) mark in a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("skip", "skipif"):
            yield node.lineno, ast.unparse(node)


def test_no_test_skips_when_the_corpus_or_golden_cases_are_missing():
    """They are committed: a test that skips without them hides a broken checkout (use fixtures.committed)."""
    found = []
    for name in sorted(os.listdir(HERE)):
        if name.endswith(".py") and name != os.path.basename(__file__):
            with open(os.path.join(HERE, name), encoding="utf-8") as f:
                tree = ast.parse(f.read())
            found += ["%s:%d: %s" % (name, line, text) for line, text in _skips(tree)
                      if any(word in text.lower() for word in ("corpus", "golden", "not present", "not copied"))]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("module, keyword, at_least", [
    ("test_data_layers.py", "hdf5 or image or memory", 10),
    ("test_tools_data.py", "parse_log or plot_log", 2),
])
def test_a_missing_lmdb_does_not_skip_the_tests_that_do_not_need_it(module, keyword, at_least):
    """Without lmdb installed, the HDF5, ImageData, MemoryData and plot-log tests still run and pass."""
    code = ("import sys; sys.modules['lmdb'] = None; import pytest; "
            "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', %r, '-k', %r]))"
            % (os.path.join(HERE, module), keyword))
    done = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(HERE), capture_output=True, text=True,
                          timeout=300)
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 0, done.stdout[-2000:]
    assert "skipped" not in summary and int(summary.split(" passed")[0].split()[-1]) >= at_least, summary
