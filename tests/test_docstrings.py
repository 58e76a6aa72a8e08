"""The examples in the engine's docstrings run and print what they say."""

import doctest
import importlib
import pkgutil

import pytest

import neuralode

MODULES = sorted(name for _, name, _ in pkgutil.iter_modules(neuralode.__path__, "neuralode."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_every_module_is_checked():
    assert {"neuralode.solver", "neuralode.gradients", "neuralode.nn", "neuralode.checks"} <= set(MODULES)
