"""Property-based hostile input (issue 29): generated data files through the readers, generated recipes and
overrides through ``mbk validate``, generated option values through every command. Every case must end in
success or one clean error; no traceback, no "internal error", no user file changed.

The default suite runs a small seeded slice (the same cases every run); the long campaign is ``slow``
(``make reliability``); benchmarks/hostile_campaign.py runs it and records the counts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from campaign_helpers import (
    Tally,
    check_cli,
    check_reader,
    cli_args,
    command_params,
    data_file,
    override,
    recipe_text,
    run_family,
    stage_fields,
    stub_stages,
)
from conftest import write_sentiment_csv

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def arena(tmp_path, monkeypatch, tiny_classifier_dir):
    """A user folder (data, a model, a recipe) that no case may change, and a work folder as cwd."""
    user = tmp_path / "user"
    user.mkdir()
    write_sentiment_csv(user / "data.csv", n=60)
    shutil.copytree(tiny_classifier_dir, user / "model")
    shutil.copy(ROOT / "recipes" / "smoke.yaml", user / "recipe.yaml")
    (user / "notes.txt").write_text("my notes\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    stub_stages(monkeypatch)
    paths = [str(p) for p in (user / "data.csv", user / "model", user / "recipe.yaml", user / "notes.txt")]
    paths += [str(user / "missing"), str(work / "out"), str(ROOT / "recipes" / "default.yaml")]
    return user, work, paths


def campaign(arena, n_readers: int, n_recipes: int, n_overrides: int, n_cli: int, seed: int | None = None) -> Tally:
    user, work, paths = arena
    tally = Tally()
    fields = stage_fields()
    recipe = work / "r.yaml"

    def recipe_case(text: str) -> None:
        recipe.write_text(text, encoding="utf-8", errors="surrogatepass")
        check_cli(tally, "recipes", ["validate", str(recipe)], user)

    def override_case(items: list[str]) -> None:
        check_cli(tally, "overrides", ["validate", str(user / "recipe.yaml"), *items], user)

    import hypothesis.strategies as st

    run_family(data_file, lambda c: check_reader(tally, c, work), n_readers, seed)
    run_family(recipe_text(fields), recipe_case, n_recipes, seed)
    run_family(st.lists(override(fields), min_size=1, max_size=3), override_case, n_overrides, seed)
    run_family(cli_args(command_params(), paths), lambda a: check_cli(tally, "cli", a, user), n_cli, seed)
    return tally


def test_seeded_slice(arena):
    tally = campaign(arena, n_readers=150, n_recipes=60, n_overrides=60, n_cli=120)
    assert not tally.findings, tally.findings[:3]
    assert sum(tally.cases.values()) >= 300
    # the slice reaches past the first checks: some data loads, some recipes validate
    assert tally.outcomes["readers: loaded"] > 0 and tally.outcomes["readers: clean error"] > 0


@pytest.mark.slow
def test_long_campaign(arena):
    tally = campaign(arena, n_readers=4000, n_recipes=2000, n_overrides=2000, n_cli=3000)
    assert not tally.findings, tally.findings[:3]
    assert sum(tally.cases.values()) >= 10_000


# --------------------------------------------------------------------------- what the campaign found


def test_found_a_data_file_named_gz_that_is_not_gzip_is_a_data_error(tmp_path):
    from mobilebert_kit.data import DataConfig, load_dataset
    from mobilebert_kit.errors import DataError

    p = tmp_path / "d.csv.gz"
    p.write_bytes(b"text,label\na,pos\n")
    with pytest.raises(DataError, match=r"d.csv.gz is not a complete gzip file \(Not a gzipped file"):
        load_dataset(DataConfig(data=str(p)))
    import gzip

    p.write_bytes(gzip.compress(b"text,label\n" + b"a,pos\n" * 50)[:-12])  # truncated
    with pytest.raises(DataError, match="is not a complete gzip file"):
        load_dataset(DataConfig(data=str(p)))


def test_found_an_output_given_as_a_mapping_is_a_config_problem(cli):
    r = cli("validate", ROOT / "recipes" / "smoke.yaml", "finetune.output.a.b=1")
    assert r.exit_code == 1 and r.output.count("Error:") == 1 and "internal error" not in r.output
    assert "finetune.output must be a folder path, got dict" in r.output


def test_found_a_null_package_target_is_a_config_problem(cli):
    r = cli("validate", ROOT / "recipes" / "smoke.yaml", "package.target=null")
    assert r.exit_code == 1 and r.output.count("Error:") == 1 and "internal error" not in r.output
    assert "package.target must be android, ios or [android, ios], got None" in r.output


def test_found_a_header_cell_with_a_line_break_stays_on_the_error_line(tmp_path):
    from mobilebert_kit.data import DataConfig, load_dataset
    from mobilebert_kit.errors import DataError

    p = tmp_path / "d.csv"
    p.write_text('"re\nview",stars\n"a",1\n', encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_dataset(DataConfig(data=str(p)))
    assert "\n" not in str(e.value) and "columns are: 're\\nview', stars" in str(e.value)
