"""Bounded input: recipes, overrides and plan files have limits on size, nesting and alias expansion,
and every Error: line is bounded in length (long values elided with their size shown)."""

from __future__ import annotations

import resource
import time

import pytest

from mobilebert_kit.bounded_input import MAX_CONFIG_BYTES, MAX_DEPTH, MAX_NODES, check_yaml_text
from mobilebert_kit.errors import MAX_LINE_CHARS, ConfigError, bounded_message, elide

LAUGHS = "\n".join(
    ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]" for i in range(8)]
    + ["finetune: {train: {epochs: *i}}"]
)


def _one_error_line(r, limit: int = 1000) -> str:
    assert r.exit_code == 1, r.output
    assert r.output.count("Error:") == 1 and "Traceback" not in r.output and "internal error" not in r.output
    line = next(x for x in r.output.splitlines() if x.startswith("Error:"))
    assert len(line) < limit, len(line)
    return line


def test_billion_laughs_recipe_is_refused_fast_without_memory(cli, tmp_path):
    p = tmp_path / "laughs.yaml"
    p.write_text(LAUGHS)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    r = cli("validate", p)
    assert time.perf_counter() - t < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 100_000  # KiB: no expansion happened
    line = _one_error_line(r)
    assert f"recipe {p}: its aliases expand to " in line and f"(limit {MAX_NODES:,})" in line


def test_a_few_aliases_are_fine(cli, tmp_path):
    p = tmp_path / "ok.yaml"
    p.write_text("stages: [finetune]\nfinetune: &f {train: {epochs: 1}}\n")
    assert cli("validate", p, "-q").exit_code == 0


def test_deep_nesting_is_refused_before_the_parser_recurses(cli, tmp_path):
    p = tmp_path / "deep.yaml"
    p.write_text("finetune: " + "[" * 50_000 + "]" * 50_000 + "\n")
    line = _one_error_line(cli("validate", p))
    assert f"nests deeper than {MAX_DEPTH} levels (line 1)" in line


def test_an_alias_that_contains_itself_is_refused():
    with pytest.raises(ConfigError, match="an alias refers to the value that contains it"):
        check_yaml_text("a: &a [1, *a]\n", "recipe r.yaml")


def test_aliases_cannot_nest_past_the_depth_limit():
    levels = ["a0: &a0 [1]"] + [f"a{i}: &a{i} [[[[[[*a{i - 1}]]]]]]" for i in range(1, 10)]
    with pytest.raises(ConfigError, match=f"nest the values deeper than {MAX_DEPTH} levels"):
        check_yaml_text("\n".join(levels), "recipe r.yaml")


def test_an_oversized_recipe_is_refused(cli, tmp_path):
    p = tmp_path / "big.yaml"
    p.write_text("# " + "x" * MAX_CONFIG_BYTES + "\nstages: [finetune]\n")
    line = _one_error_line(cli("validate", p))
    assert f"configuration is limited to {MAX_CONFIG_BYTES:,} bytes" in line


def test_an_override_with_laughs_is_refused(cli, tmp_path):
    p = tmp_path / "ok.yaml"
    p.write_text("stages: [finetune]\n")
    value = "[" + ", ".join(f"&a{i} [" + ", ".join([f"*a{i - 1}" if i else "1"] * 10) + "]" for i in range(9)) + "]"
    line = _one_error_line(cli("validate", p, f"finetune.train.epochs={value}"))
    assert "an override value: its aliases expand to" in line


def test_a_huge_value_in_an_error_is_elided_with_its_size(cli, tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("stages: [finetune]\nfinetune: {train: {epochs: '" + "9" * 500_000 + "x'}}\n")
    line = _one_error_line(cli("validate", p), limit=MAX_LINE_CHARS + 100)
    assert "characters elided ...]" in line


def test_a_huge_option_value_is_elided_in_clicks_error(cli):
    r = cli("finetune", "--epochs", "x" * 300_000)
    assert r.exit_code == 2 and len(r.output) < MAX_LINE_CHARS + 1000
    assert "characters elided" in r.output


def test_bounded_message_elides_each_line_and_caps_the_lines():
    assert elide("short") == "short"
    long = "a" * 10_000
    cut = elide(long)
    assert len(cut) < MAX_LINE_CHARS + 100 and f"[... {10_000 - 1500 - 250:,} characters elided ...]" in cut
    many = "\n".join(f"  - problem {i}" for i in range(500))
    out = bounded_message(many)
    assert out.count("\n") == 60 and out.endswith("... 440 more lines")


def test_deeply_nested_json_data_is_a_data_error(tmp_path):
    from mobilebert_kit.data import DataConfig, load_dataset
    from mobilebert_kit.errors import DataError

    jl = tmp_path / "d.jsonl"
    jl.write_text('{"text": "a", "label": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(DataError, match="line 1 nests JSON values too deeply"):
        load_dataset(DataConfig(data=str(jl)))
    js = tmp_path / "d.json"
    js.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match="nests JSON values too deeply"):
        load_dataset(DataConfig(data=str(js)))


def test_a_manifest_that_is_not_utf8_or_too_deep_is_an_artifact_error(tmp_path):
    from mobilebert_kit.artifacts import read_json
    from mobilebert_kit.errors import ArtifactError

    p = tmp_path / "manifest.json"
    p.write_bytes(b'{"stage": "\xff"}')
    with pytest.raises(ArtifactError, match="is not UTF-8"):
        read_json(p)
    p.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ArtifactError, match="nests too deeply"):
        read_json(p)
