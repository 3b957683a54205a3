"""The suite itself: every test starts from the same state, and no test input is drawn at collection time."""

import ast
import os
import random
from pathlib import Path

import numpy as np
import torch

from conftest import LIGHTNING_SEED_ENV, TEST_SEED

TESTS = Path(__file__).resolve().parent
# torch, numpy and `random` functions that draw from (or reseed) a global random stream
RANDOM_CALLS = {
    "rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like", "normal", "bernoulli",
    "multinomial", "normal_", "uniform_", "random_", "exponential_", "manual_seed", "seed", "seed_everything",
    "shuffle", "choice", "sample", "default_rng",
}


def collection_time_random_calls(source: str) -> list[str]:
    """Random draws that run when the file is imported (module level, decorators, parametrize lists, defaults)."""
    tree = ast.parse(source)
    in_bodies = {
        id(node)
        for function in ast.walk(tree)
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for statement in (function.body if isinstance(function.body, list) else [function.body])
        for node in ast.walk(statement)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and id(node) not in in_bodies:
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in RANDOM_CALLS:
                found.append((node.lineno, f"line {node.lineno}: {ast.unparse(node)}"))
    return [text for _, text in sorted(found)]


def test_the_collection_time_check_finds_draws_in_parametrize_lists_and_at_module_level():
    source = (
        "import pytest, torch\n"
        "X = torch.randn(3)\n"
        "@pytest.mark.parametrize('x', [torch.rand(2), 1])\n"
        "def test_a(x, y=torch.randint(3, (1,))):\n"
        "    torch.randn(2)\n"
        "    f = lambda: torch.randn(1)\n"
    )
    assert collection_time_random_calls(source) == [
        "line 2: torch.randn(3)", "line 3: torch.rand(2)", "line 4: torch.randint(3, (1,))"
    ]


def test_no_test_file_draws_random_inputs_at_collection_time():
    """Such tensors depend on every module collected before (and the autouse fixture cannot reseed them)."""
    found = {
        str(path.relative_to(TESTS)): calls
        for path in sorted(TESTS.rglob("*.py"))
        if (calls := collection_time_random_calls(path.read_text()))
    }
    assert not found, f"draw these inside the test, from a seeded torch.Generator: {found}"


def test_every_test_starts_from_seeded_rngs_and_a_clean_environment():
    assert torch.equal(torch.get_rng_state(), torch.Generator().manual_seed(TEST_SEED).get_state())
    state, seeded = np.random.get_state(), np.random.RandomState(TEST_SEED).get_state()
    assert np.array_equal(state[1], seeded[1]) and state[2] == seeded[2]
    assert random.getstate() == random.Random(TEST_SEED).getstate()
    assert not [name for name in os.environ if name in LIGHTNING_SEED_ENV or name.startswith("GAN_LIGHTNING_")]
    torch_home = Path(os.environ["TORCH_HOME"])
    assert not torch_home.exists() and "torch_home" in torch_home.parts  # the test's own, created on first use
