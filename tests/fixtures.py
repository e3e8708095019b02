"""The fixtures committed under tests/ (corpus, golden cases, data): a missing one is a failure.

A fresh clone has them all, so a test that finds one missing is looking at a broken checkout or a
wrong path; skipping would hide it (and every test behind it) as a green run.
"""

import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

__all__ = ["HERE", "committed"]


def committed(*parts: str) -> str:
    """The path of a committed fixture under tests/; fails the test (or its collection) when missing."""
    path = os.path.join(HERE, *parts)
    if not os.path.exists(path):
        pytest.fail("committed fixture tests/%s is missing (an incomplete checkout?)" % "/".join(parts),
                    pytrace=False)
    return path
