"""Kill -9 and a full disk at random points of a whole run, then the same command again (issue 29): see
tests/fault_injection.py for the cases and the invariants. The default suite runs one seeded case of each;
`make reliability` runs the slow campaign, and benchmarks/fault_campaign.py records a long one."""

from __future__ import annotations

import pytest
from conftest import make_tiny_classifier, write_sentiment_csv
from fault_injection import can_mount, one_case, reference


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    scratch = tmp_path_factory.mktemp("faults")
    why = can_mount(scratch)
    if why:
        pytest.skip(why)
    model = make_tiny_classifier(scratch / "tiny", layers=2)
    data = write_sentiment_csv(scratch / "d.csv", n=160)
    ref = reference(scratch, model, data)
    assert ref["problems"] == [], ref["problems"]  # an uninterrupted run is whole and leaves nothing behind
    return scratch, model, data, ref


@pytest.mark.parametrize(("kind", "seed"), [("kill", 2), ("disk-full", 1)])  # distill, compress
def test_a_fault_then_the_same_command_gives_the_uninterrupted_result(world, kind, seed):
    outcome = one_case(kind, seed, *world)
    assert outcome.problems == [], outcome.to_json()
    if kind == "disk-full" and outcome.first_code:
        assert outcome.first_error.startswith("Error: out of disk space"), outcome.first_error


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(8))  # each of the 8 steps
@pytest.mark.parametrize("kind", ["kill", "disk-full"])
def test_fault_campaign(world, kind, seed):
    outcome = one_case(kind, seed, *world)
    assert outcome.problems == [], outcome.to_json()
