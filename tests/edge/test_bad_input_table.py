"""Bad input over every command, table-driven: each case is exactly one ``Error:`` line (the exact
text, or its start where the end is another library's words, marked ``…``), the exit code, no traceback,
and the files on disk unchanged (nothing written, nothing deleted). More file-content cases are in
test_hostile_input.py; crash and corruption cases in test_finetune.py / test_artifacts.py."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

M = ["--model", "{w}/model", "--data", "{w}/data.csv"]

CASES = [
    (
        "ft-missing-data",
        ["finetune", "--model", "{w}/model", "--data", "{w}/nope.csv", "-o", "{w}/o"],
        1,
        "Error: data file {w}/nope.csv does not exist; check the path or use --data rotten_tomatoes",
    ),
    (
        "ft-lr-nan",
        ["finetune", *M, "--lr", "nan", "-o", "{w}/o"],
        1,
        "Error: train: lr must be a finite number, got nan",
    ),
    (
        "ft-lr-inf",
        ["finetune", *M, "--lr", "inf", "-o", "{w}/o"],
        1,
        "Error: train: lr must be a finite number, got inf",
    ),
    (
        "ft-epochs-0",
        ["finetune", *M, "--epochs", "0", "-o", "{w}/o"],
        1,
        "Error: train: epochs must be in [1, inf), got 0",
    ),
    (
        "ft-batch-neg",
        ["finetune", *M, "--batch-size", "-4", "-o", "{w}/o"],
        1,
        "Error: train: batch_size must be in [1, inf), got -4",
    ),
    (
        "ft-maxlen-positions",
        ["finetune", *M, "--max-length", "600", "-o", "{w}/o"],
        1,
        "Error: max_length 600 is more than {w}/model can take (128 positions); use --max-length 128 or less",
    ),
    (
        "ft-model-missing",
        ["finetune", "--model", "{w}/nomodel", "--data", "{w}/data.csv", "-o", "{w}/o"],
        1,
        "Error: model '{w}/nomodel' is not a built-in name (minilm-l6, mpnet-base, paraphrase-minilm-l3) nor an existing folder; check the path or use --model minilm-l6",
    ),
    (
        "ft-model-broken",
        ["finetune", "--model", "{w}/broken", "--data", "{w}/data.csv", "-o", "{w}/o"],
        1,
        "Error: {w}/broken/config.json is not a valid model config (…",
    ),
    (
        "ft-model-pickle",
        ["finetune", "--model", "{w}/unsafe", "--data", "{w}/data.csv", "-o", "{w}/o"],
        1,
        "Error: unsafe pickle weights refused in {w}/unsafe (torch.load(weights_only=True) found code, not only tensors); convert the model to safetensors: model.save_pretrained(folder, safe_serialization=True)",
    ),
    (
        "ft-overwrite-user-folder",
        ["finetune", *M, "-o", "{w}/notes", "--overwrite"],
        1,
        "Error: --overwrite refused: {w}/notes was not written by mbk (no manifest.json), so replacing it could delete your files; choose another --output",
    ),
    (
        "ft-nonempty-output",
        ["finetune", *M, "-o", "{w}/notes"],
        1,
        "Error: output folder {w}/notes is not empty; pass --overwrite to replace it or choose another --output",
    ),
    (
        "ft-overwrite-own-input",
        ["finetune", *M, "-o", "{w}", "--overwrite"],
        1,
        "Error: --overwrite refused: {w} was not written by mbk (no manifest.json), so replacing it could delete your files; choose another --output",
    ),
    (
        "ft-resume-nothing",
        ["finetune", *M, "-o", "{w}/o", "--resume"],
        1,
        "Error: --resume: no checkpoint found in {w}/o.ckpt; run without --resume to start fresh",
    ),
    (
        "ft-text-column",
        ["finetune", *M, "--text-column", "body", "-o", "{w}/o"],
        1,
        "Error: {w}/data.csv has no column 'body'; columns are: text, label; set --text-column",
    ),
    (
        "ft-precision",
        ["finetune", *M, "--precision", "fp64", "-o", "{w}/o"],
        2,
        "Error: Invalid value for '--precision': 'fp64' is not one of 'auto', 'fp32', 'bf16', 'fp16'.",
    ),
    (
        "ft-device",
        ["finetune", *M, "--device", "tpu", "-o", "{w}/o"],
        1,
        "Error: train: device must be auto, cpu, cuda or cuda:N; got 'tpu'",
    ),
    (
        "ft-warmup",
        ["finetune", *M, "--warmup-ratio", "2", "-o", "{w}/o"],
        1,
        "Error: train: warmup_ratio must be in [0, 1], got 2.0",
    ),
    (
        "ft-builtin-unknown",
        ["finetune", "--model", "{w}/model", "--data", "imdbb", "-o", "{w}/o"],
        1,
        "Error: unknown built-in dataset 'imdbb'; known: rotten_tomatoes; or pass a .csv/.tsv/.jsonl file",
    ),
    (
        "di-alpha-nan",
        ["distill", "--teacher", "{w}/model", "--data", "{w}/data.csv", "--alpha", "nan", "-o", "{w}/o"],
        1,
        "Error: alpha must be a finite number, got nan",
    ),
    (
        "di-temperature-0",
        ["distill", "--teacher", "{w}/model", "--data", "{w}/data.csv", "--temperature", "0", "-o", "{w}/o"],
        1,
        "Error: temperature must be in (0, inf), got 0.0",
    ),
    (
        "di-teacher-broken",
        ["distill", "--teacher", "{w}/broken", "--data", "{w}/data.csv", "-o", "{w}/o"],
        1,
        "Error: {w}/broken/config.json is not a valid model config (…",
    ),
    (
        "di-teacher-missing",
        ["distill", "--teacher", "{w}/none", "--data", "{w}/data.csv", "-o", "{w}/o"],
        1,
        "Error: teacher folder {w}/none does not exist; run `mbk finetune` first or pass --teacher PATH",
    ),
    (
        "co-prune-range",
        ["compress", "--model", "{w}/model", "--prune", "1.5", "-o", "{w}/o"],
        1,
        "Error: prune must be in [0, 1), got 1.5",
    ),
    (
        "co-prune-neg",
        ["compress", "--model", "{w}/model", "--prune", "-0.1", "-o", "{w}/o"],
        1,
        "Error: prune must be in [0, 1), got -0.1",
    ),
    (
        "co-calib",
        ["compress", "--model", "{w}/model", "--int8", "--static", "--calib-method", "foo", "-o", "{w}/o"],
        1,
        "Error: calib_method must be one of minmax, entropy, percentile; got 'foo'",
    ),
    (
        "co-weight-type",
        ["compress", "--model", "{w}/model", "--int8", "--weight-type", "int4", "-o", "{w}/o"],
        1,
        "Error: weight_type must be one of qint8, quint8; got 'int4' (did you mean 'qint8'?)",
    ),
    (
        "co-model-missing",
        ["compress", "--model", "{w}/none", "--int8", "-o", "{w}/o"],
        1,
        "Error: model folder {w}/none does not exist; run the stage that produces it or pass --model PATH",
    ),
    (
        "co-model-pickle",
        ["compress", "--model", "{w}/pickled", "--int8", "-o", "{w}/o"],
        1,
        "Error: the pickle weights in {w}/pickled cannot be read (damaged, or not a PyTorch checkpoint); re-run the stage that wrote them, or give a folder with model.safetensors",
    ),
    (
        "co-max-drop-nan",
        ["compress", "--model", "{w}/model", "--int8", "--max-drop", "nan", "-o", "{w}/o"],
        1,
        "Error: max_drop must be a finite number, got nan",
    ),
    (
        "co-nothing",
        ["compress", "--model", "{w}/model", "-o", "{w}/o"],
        1,
        "Error: nothing to do: pass at least one of --prune, --prune-heads, --prune-ffn, --trim-vocab, --int4-embeddings, "
        "--int4-matmul, --int8",
    ),
    (
        "tu-objective",
        ["tune", "--model", "{w}/model", "--objective", "speed", "-o", "{w}/o"],
        1,
        "Error: objective must be one of size, latency, accuracy; got 'speed'",
    ),
    (
        "tu-no-data",
        ["tune", "--model", "{w}/model", "-o", "{w}/o"],
        1,
        "Error: no data to evaluate the trials on: {w}/model records none (no manifest.json with a 'data' entry); "
        "pass --data (the data the model was trained on)",
    ),
    (
        "tu-plans-missing",
        ["tune", "--model", "{w}/model", "--plans", "{w}/none.yaml", "-o", "{w}/o"],
        1,
        "Error: --plans {w}/none.yaml: No such file or directory; pass a YAML file listing {{name, steps}} plans",
    ),
    (
        "ex-format",
        ["export", "--model", "{w}/model", "--format", "onnxx", "-o", "{w}/o"],
        1,
        "Error: unknown export format 'onnxx' (did you mean 'onnx'?); known formats: onnx, ort, …",
    ),
    (
        "ex-opset",
        ["export", "--model", "{w}/model", "--opset", "5", "-o", "{w}/o"],
        1,
        "Error: opset must be in [14, 21], got 5",
    ),
    (
        "ex-model-broken",
        ["export", "--model", "{w}/broken", "-o", "{w}/o"],
        1,
        "Error: {w}/broken/config.json is not a valid model config (…",
    ),
    (
        "ex-model-pickle",
        ["export", "--model", "{w}/pickled", "-o", "{w}/o"],
        1,
        "Error: the pickle weights in {w}/pickled cannot be read (damaged, or not a PyTorch checkpoint); re-run the stage that wrote them, or give a folder with model.safetensors",
    ),
    (
        "ex-maxlen-0",
        ["export", "--model", "{w}/model", "--max-length", "0", "-o", "{w}/o"],
        1,
        "Error: max_length must be in [2, 8192], got 0",
    ),
    (
        "ex-overwrite-user",
        ["export", "--model", "{w}/model", "-o", "{w}/notes", "--overwrite"],
        1,
        "Error: output folder {w}/notes holds files mbk did not write (no manifest.json); the export would mix its format folders and manifest into them: choose a new --output",
    ),
    (
        "ve-missing",
        ["verify", "--export-dir", "{w}/none"],
        1,
        "Error: export folder {w}/none does not exist; run `mbk export` first or pass --export-dir",
    ),
    (
        "ve-not-export",
        ["verify", "--export-dir", "{w}/notes"],
        1,
        "Error: {w}/notes holds no exported format (no */model_meta.json); run `mbk export` first",
    ),
    (
        "ve-nan-tol",
        ["verify", "--export-dir", "{w}/export", "--max-abs-diff", "nan"],
        1,
        "Error: fp32: max_abs_diff must be a finite number, got nan",
    ),
    (
        "ve-format-absent",
        ["verify", "--export-dir", "{w}/export", "--format", "coreml"],
        1,
        "Error: {w}/export has no exported coreml (found: onnx); run `mbk export --format coreml` first",
    ),
    (
        "ve-agreement-range",
        ["verify", "--export-dir", "{w}/export", "--min-agreement", "1.5"],
        1,
        "Error: fp32: min_agreement must be in [0, 1], got 1.5",
    ),
    (
        "be-seq-text",
        ["bench", "--export-dir", "{w}/export", "--seq-lengths", "16,abc", "-o", "{w}/o"],
        2,
        "Error: Invalid value for --seq-lengths: expected comma-separated integers, got '16,abc'",
    ),
    (
        "be-threads-0",
        ["bench", "--export-dir", "{w}/export", "--threads", "0", "-o", "{w}/o"],
        1,
        "Error: threads must be in [1, 8192], got 0",
    ),
    (
        "be-impossible",
        ["bench", "--export-dir", "{w}/export", "--seq-lengths", "4096", "-o", "{w}/o", "--no-pytorch"],
        1,
        "Error: nothing to time: every case was skipped (onnx fp32: seq 4096 > max_length 128); choose --seq-lengths / --batch-sizes the models can take",
    ),
    (
        "be-missing",
        ["bench", "--export-dir", "{w}/none", "-o", "{w}/o"],
        1,
        "Error: export folder {w}/none does not exist; run `mbk export` first or pass --export-dir",
    ),
    (
        "be-runs-0",
        ["bench", "--export-dir", "{w}/export", "--runs", "0", "-o", "{w}/o"],
        1,
        "Error: runs must be in [1, inf), got 0",
    ),
    (
        "be-model-file",
        ["bench", "--model", "{w}/notes/notes.txt", "-o", "{w}/o"],
        1,
        "Error: cannot bench {w}/notes/notes.txt: expected a .onnx, .ort, …",
    ),
    (
        "pa-target",
        ["package", "--target", "windows", "--export-dir", "{w}/export", "-o", "{w}/o"],
        1,
        "Error: --target 'windows' is not supported; use one of: android, ios",
    ),
    (
        "pa-no-ort",
        ["package", "--target", "android", "--export-dir", "{w}/export", "-o", "{w}/o"],
        1,
        "Error: no 'ort' export in {w}/export (missing {w}/export/ort); run `mbk export --format ort` first or pass --export-dir",
    ),
    (
        "pa-install-into",
        ["package", "--target", "android", "--export-dir", "{w}/export", "-o", "{w}/o", "--install-into", "{w}/notes"],
        1,
        "Error: --install-into {w}/notes does not look like the android app (no app/src/main/AndroidManifest.xml); pass the app folder (android_demo)",
    ),
    (
        "run-missing",
        ["run", "{w}/none.yaml"],
        1,
        "Error: recipe {w}/none.yaml does not exist; check the path (the shipped recipes are in recipes/, e.g. recipes/default.yaml)",
    ),
    (
        "run-python-tag",
        ["run", "{w}/tag.yaml"],
        1,
        "Error: recipe {w}/tag.yaml is not valid YAML at line 2, column 11: could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'",
    ),
    (
        "run-unknown-stage",
        ["run", "{w}/stage.yaml"],
        1,
        "Error: unknown stage 'deploy'; known stages: finetune, distill, compress, …",
    ),
    (
        "run-not-mapping",
        ["run", "{w}/list.yaml"],
        1,
        "Error: recipe {w}/list.yaml must be a mapping of sections (stages:, data:, finetune:, ...), got list",
    ),
    (
        "run-unknown-key",
        ["run", "{w}/key.yaml"],
        1,
        "Error: unknown key 'finetune.epoch' (did you mean 'finetune.train.epochs'?)",
    ),
    (
        "validate-unknown-key",
        ["validate", "{w}/key.yaml"],
        1,
        "Error: unknown key 'finetune.epoch' (did you mean 'finetune.train.epochs'?)",
    ),
    (
        "run-bad-from",
        ["run", "{w}/ok.yaml", "--from", "deploy"],
        1,
        "Error: --from deploy: unknown stage 'deploy'; stages of this recipe: finetune",
    ),
    (
        "report-not-run",
        ["report", "{w}/notes"],
        1,
        "Error: {w}/notes is not an mbk run folder (no .state/ and no stage output folder in it); pass the run folder of a recipe, e.g. artifacts/runs/default",
    ),
    (
        "report-missing",
        ["report", "{w}/none"],
        1,
        "Error: run folder {w}/none does not exist; run `mbk run RECIPE` first or pass the run folder",
    ),
    (
        "compare-one-run",
        ["compare", "{w}"],
        1,
        "Error: comparing needs at least two run folders (got only {w}); e.g. mbk report artifacts/runs/a artifacts/runs/b",
    ),
    (
        "report-compare-not-run",
        ["report", "{w}", "{w}/notes", "-o", "{w}/cmp"],
        1,
        "Error: {w}/notes is not an mbk run folder (no .state/ and no stage output folder in it); pass the run folder of a recipe, e.g. artifacts/runs/default",
    ),
    (
        "device-bench-bundle",
        ["device-bench", "--bundle", "{w}/none", "--require-device"],
        1,
        "Error: {w}/none is not a packaged bundle (no model_meta.json); run `mbk package --target android` first or pass --bundle",
    ),
    (
        "ft-overwrite-holds-input",
        ["finetune", "--model", "{w}/model", "--data", "{w}/owned/data.csv", "-o", "{w}/owned", "--overwrite"],
        1,
        "Error: --overwrite refused: {w}/owned holds this command's input {w}/owned/data.csv; move it out or choose another --output",
    ),
]

RECIPES = {
    "tag.yaml": "stages: [finetune]\nfinetune: !!python/object/apply:os.system ['true']\n",
    "stage.yaml": "stages: [finetune, deploy]\n",
    "list.yaml": "- finetune\n- distill\n",
    "key.yaml": "stages: [finetune]\nfinetune:\n  epoch: 3\n",
    "ok.yaml": "stages: [finetune]\n",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_classifier_dir, sentiment_csv) -> Path:
    """A user's working folder: a model, data, notes, damaged and unsafe models, an ONNX export, recipes."""
    import torch
    from click.testing import CliRunner
    from safetensors.torch import load_file

    from mobilebert_kit.cli import main

    w = tmp_path_factory.mktemp("world")
    shutil.copytree(tiny_classifier_dir, w / "model")
    shutil.copy(sentiment_csv, w / "data.csv")
    (w / "notes").mkdir()
    (w / "notes" / "notes.txt").write_text("my notes")
    shutil.copytree(w / "model", w / "broken")
    (w / "broken" / "config.json").write_text("{not json")
    for name, weights in (("pickled", None), ("unsafe", os.system)):
        shutil.copytree(w / "model", w / name)
        state = load_file(w / name / "model.safetensors")
        os.remove(w / name / "model.safetensors")
        if weights is None:  # damaged: not a checkpoint at all
            (w / name / "pytorch_model.bin").write_bytes(b"PK\x03\x04junk")
        else:  # a pickle naming a function: torch.load(weights_only=True) must refuse it
            torch.save({**state, "evil": weights}, w / name / "pytorch_model.bin")
    (w / "owned").mkdir()
    (w / "owned" / "manifest.json").write_text('{"stage": "finetune"}')
    shutil.copy(sentiment_csv, w / "owned" / "data.csv")
    for name, text in RECIPES.items():
        (w / name).write_text(text)
    r = CliRunner().invoke(main, ["export", "-m", str(w / "model"), "--format", "onnx", "-o", str(w / "export"), "-q"])
    assert r.exit_code == 0, r.output
    return w


def _tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its content hash (folders: 'dir') and mode."""
    out = {}
    for p in sorted(root.rglob("*")):
        kind = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        out[str(p.relative_to(root))] = f"{kind} {oct(p.stat().st_mode)}"
    return out


@pytest.mark.parametrize("args,code,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(cli, world, args, code, expected):
    before = _tree(world)
    r = cli(*[a.format(w=world) for a in args])
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, r.output
    want = expected.format(w=world)
    if want.endswith("…"):
        assert errors[0].startswith(want[:-1]), errors[0]
    else:
        assert errors[0] == want
    assert _tree(world) == before  # nothing written, nothing deleted, no mode changed


def test_the_table_covers_every_command():
    from mobilebert_kit.cli import COMMANDS

    covered = {c[1][0] for c in CASES}
    assert covered >= set(COMMANDS) - {"version"}, set(COMMANDS) - covered
