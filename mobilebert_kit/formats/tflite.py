"""``tflite`` (optional extra ``litert``, not part of ``all``): ``model.tflite`` for LiteRT (TensorFlow
Lite), Android's own runtime, converted with litert-torch; fp32, or INT8 dynamic-range weights when
INT8 is asked for. Packaged for Android with ``mbk package --target android --runtime litert``.

Sequence length is static: litert-torch cannot convert BERT-like models with a dynamic sequence
axis, so the file holds one signature per length bucket (``seq_16``, ``seq_32``, ... up to
``max_length``; the weights are stored once and shared). A caller pads its input to the smallest
bucket that holds it and runs that signature; batch is 1 and the inputs are int32.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import numpy as np

from mobilebert_kit.errors import ExportError, ModelError, PackageError
from mobilebert_kit.formats import INPUT_NAMES, Build, BundleFacts, ExportFormat, Runner, Source
from mobilebert_kit.formats.traced import first_line, traceable

EXTRA = "pip install 'mobilebert_kit[litert]'"
PINS = "litert-torch==0.10.0"
RUNTIME = "ai-edge-litert"
SIGNATURE_PREFIX = "seq_"
SMALLEST_BUCKET = 16
INT8_MAX_DROP = 0.01  # validation accuracy the INT8 file may lose vs its fp32 source (compress's default)
BUCKET_RULE = (
    "pad input_ids with pad_token_id and attention_mask/token_type_ids with 0 to the smallest of "
    "sequence_buckets >= the token count, then run signature seq_<bucket>"
)
QUANTIZATION = {
    "mode": "dynamic",
    "tool": "ai-edge-quantizer through litert_torch full_dynamic_recipe",
    "weights": "int8, symmetric, per channel (every supported op, embeddings included)",
    "activations": "float; quantized on the fly inside each INT8 kernel (dynamic range)",
}


def bucket_lengths(max_length: int) -> list[int]:
    """Sequence lengths with a signature: 16, 32, 64, ... below ``max_length``, then ``max_length``."""
    buckets, n = [], SMALLEST_BUCKET
    while n < max_length:
        buckets.append(n)
        n *= 2
    return [*buckets, max_length]


def signature_name(length: int) -> str:
    return f"{SIGNATURE_PREFIX}{length}"


def _quietly():
    """Silence litert-torch's progress lines and the quantizer's progress bars (Python-level output)."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


@contextlib.contextmanager
def _native_stderr_silenced():
    """Native (C++) log lines written straight to fd 2 on import and interpreter creation ("Created
    TensorFlow Lite XNNPACK delegate", oneDNN notes): errors still arrive as Python exceptions."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_litert_torch():
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the converter's native INFO lines
    try:
        with _quietly(), _native_stderr_silenced():
            import litert_torch
        return litert_torch
    except ImportError as e:
        raise ExportError(
            f"LiteRT (tflite) export needs the optional extra: {EXTRA} ({PINS}); or drop --format tflite ({e})"
        ) from e


def load_interpreter(path: Path, threads: int):
    """``path`` in the LiteRT interpreter (its default op resolver applies the XNNPACK delegate, as on Android)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:
        raise ModelError(f"running a .tflite needs the optional extra: {EXTRA}") from e
    try:
        with _native_stderr_silenced():
            return Interpreter(model_path=str(path), num_threads=threads)
    except Exception as e:  # noqa: BLE001
        raise ModelError(
            f"LiteRT could not load {path} ({type(e).__name__}: {first_line(e)}); re-run `mbk export`"
        ) from e


def runtime_version() -> str | None:
    return _version(RUNTIME)


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


class LiteRtRunner(Runner):
    """A ``.tflite`` with one signature per length bucket: each row is padded to its bucket and run alone."""

    runtime = RUNTIME
    static_batch = 1

    def __init__(self, path: Path, pad_id: int = 0, threads: int = 2):
        self.path, self.pad_id, self.threads = path, pad_id, threads
        self.interpreter = load_interpreter(path, threads)
        self.buckets = sorted(self._bucket_of(name) for name in self.interpreter.get_signature_list())
        self._signatures: dict[int, object] = {}
        self._invoked = False

    def _bucket_of(self, name: str) -> int:
        if not name.startswith(SIGNATURE_PREFIX) or not name[len(SIGNATURE_PREFIX) :].isdigit():
            raise ModelError(
                f"{self.path} has a signature '{name}', not {SIGNATURE_PREFIX}<length>: it was not written by "
                "`mbk export --format tflite`"
            )
        return int(name[len(SIGNATURE_PREFIX) :])

    def signature(self, length: int):
        """(bucket, signature runner) of the smallest bucket that holds ``length`` tokens."""
        bucket = next((b for b in self.buckets if b >= length), None)
        if bucket is None:
            raise ModelError(
                f"a {length}-token input is longer than the longest signature of {self.path} "
                f"({self.buckets[-1]}); re-export with --max-length {length}"
            )
        if bucket not in self._signatures:
            self._signatures[bucket] = self.interpreter.get_signature_runner(signature_name(bucket))
        return bucket, self._signatures[bucket]

    def row_logits(self, ids, mask, types) -> np.ndarray:
        """Logits of one unbatched example, padded to its bucket (pad id, attention mask 0)."""
        n = len(ids)
        bucket, run = self.signature(n)
        feeds = {name: np.zeros((1, bucket), dtype=np.int32) for name in INPUT_NAMES}
        feeds["input_ids"][0] = self.pad_id
        for name, values in zip(INPUT_NAMES, (ids, mask, types)):
            feeds[name][0, :n] = values
        if not self._invoked:  # the first invoke applies the XNNPACK delegate, which says so on fd 2
            with _native_stderr_silenced():
                out = run(**feeds)
            self._invoked = True
        else:
            out = run(**feeds)
        return np.asarray(out["logits"][0], dtype=np.float32)

    def logits(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        rows = zip(*(np.asarray(feeds[name]) for name in INPUT_NAMES))
        return np.stack([self.row_logits(*row) for row in rows])

    def timed_call(self, threads: int):
        return LiteRtRunner(self.path, self.pad_id, threads).logits


class TFLite(ExportFormat):
    name = "tflite"
    model_file = "model.tflite"
    in_all = False
    benchable = True
    file_suffixes = (".tflite",)
    package_target = "android"
    package_runtime = "litert"
    package_default = False  # `mbk package --target android` stays ONNX Runtime
    input_dtype = "int32"
    dynamic_batch = False

    def check_dependencies(self) -> None:
        import_litert_torch()

    def io_spec(self, src: Source) -> dict:
        spec = super().io_spec(src)
        buckets = bucket_lengths(src.max_length)
        spec["dynamic_axes"] = {}  # static shapes: batch 1, one signature per bucket
        spec["sequence_buckets"] = buckets
        spec["signatures"] = {signature_name(n): n for n in buckets}
        return spec

    def export(self, src: Source, folder: Path, build: Build) -> dict:
        path = folder / self.model_file
        buckets = bucket_lengths(src.max_length)
        convert(src, buckets, path)
        guard = int8_guard(src, path) if src.int8 else None
        return {
            "converter": f"litert-torch {_version('litert-torch')}",
            "runtime": {"name": RUNTIME, "version": runtime_version()},
            "batch": 1,
            "bucket_rule": BUCKET_RULE,
            "quantization": dict(QUANTIZATION) if src.int8 else None,
            "int8_guard": guard,
        }

    def load(self, path: Path, meta: dict) -> Runner:
        return LiteRtRunner(path, int(meta.get("pad_token_id") or 0))

    def verify(self, folder: Path, meta: dict, parity) -> list[dict]:
        parity.entry["runtime"] = {
            "name": RUNTIME,
            "version": runtime_version(),
            "delegate": "XNNPACK (the interpreter's default)",
        }
        try:
            runner = self.load(folder / meta["model_file"], meta)
        except ModelError as e:
            parity.entry["numeric_parity"] = f"skipped: {e}"
            return [parity.row("LiteRT parity", None, detail=f"{e}; not run")]
        return parity.compare("logits", parity.logits(runner))

    def bundle_facts(self, model: Path, export_dir: Path, vocab: list[str], special_ids: dict, pad_id: int):
        try:
            runner = LiteRtRunner(model, pad_id, threads=1)
        except ModelError as e:
            raise PackageError(f"{e}; packaging for LiteRT computes the golden logits with it") from e
        runtime = BundleRuntime(runner)
        num_outputs = len(runtime.logits([special_ids["[CLS]"], special_ids["[SEP]"]], pad_id))
        check_embedding_rows(runtime, len(vocab), pad_id)
        facts = {
            "sequence_buckets": runner.buckets,
            "signatures": {signature_name(n): n for n in runner.buckets},
            "input_dtype": "int32",
            "batch": 1,
            "bucket_rule": BUCKET_RULE,
            "ai_edge_litert": runtime_version(),
        }
        return BundleFacts(runtime, list(INPUT_NAMES), num_outputs, len(vocab), None, facts)


FORMAT = TFLite()


# --------------------------------------------------------------------------- conversion


def convert(src: Source, buckets: list[int], path: Path) -> None:
    """One multi-signature ``.tflite`` (INT8 dynamic-range weights when ``src.int8``) at ``path``."""
    litert_torch = import_litert_torch()
    module = _named_logits(traceable(src))
    try:
        with _quietly():
            converter = litert_torch.Converter()
            for n in buckets:
                converter.signature(signature_name(n), module, sample_kwargs=_example(src, n))
            converter.convert(quant_config=_int8_recipe() if src.int8 else None).export(str(path))
        drop_tensor_names(path)
    except Exception as e:  # noqa: BLE001 - any converter failure is this model's, reported on one line
        raise ExportError(
            f"LiteRT conversion of {src.path} failed ({type(e).__name__}: {first_line(e)}); "
            "the tflite format takes BERT-style classifiers (input_ids, attention_mask, token_type_ids)"
        ) from e


def drop_tensor_names(path: Path) -> None:
    """Rewrite ``path`` without its internal tensor names (litert's own flatbuffer tools).

    litert-torch names every tensor after its module scope, ~600 bytes each, once per signature: 0.66 MB
    (6%) of the default recipe's 10.75 MB file. The interpreter never reads them: inputs and outputs are
    found through the signature defs, which keep their names. ``flatbuffer_utils.strip_strings`` would
    drop those signature defs as well, hence this narrower version. Logits are bit-identical."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    if any(getattr(b, "offset", 0) for b in model.buffers):
        return  # buffers stored past the flatbuffer (files over 2 GB): write_model cannot re-pack them
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            tensor.name = None
    tmp = path.with_name(f".{path.name}.tmp")
    flatbuffer_utils.write_model(model, str(tmp))
    os.replace(tmp, path)


def _int8_recipe():
    # litert-torch's own dynamic-range recipe (ai-edge-quantizer on the converted flatbuffer): it
    # covers every signature at once, embeddings included; PT2E would need one quantized program
    # per bucket.
    from litert_torch.generative.quantize import quant_recipes

    return quant_recipes.full_dynamic_recipe()


def _named_logits(module):
    """``module`` returning ``{"logits": ...}``, so the signature's output is named ``logits``."""
    import torch

    class NamedLogits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return {"logits": self.inner(input_ids, attention_mask, token_type_ids)}

    return NamedLogits(module).eval()


def _example(src: Source, length: int) -> dict:
    """Keyword inputs of one bucket (their names become the signature's input names)."""
    import torch

    enc = src.tokenizer(
        ["an example sentence for tracing the model"], padding="max_length", truncation=True, max_length=length
    )
    ids = torch.tensor(enc["input_ids"], dtype=torch.long)
    mask = torch.tensor(enc["attention_mask"], dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


# --------------------------------------------------------------------------- INT8 accuracy guard


def int8_guard(src: Source, path: Path) -> dict:
    """The INT8 file vs its fp32 PyTorch source on the validation split, with compress's guard
    (accuracy drop <= INT8_MAX_DROP, real at 95%; label agreement bounded at verify's minimum)."""
    from mobilebert_kit.compression.guard import Guard
    from mobilebert_kit.compression.measure import score_logits
    from mobilebert_kit.compression.ort_quant import INT8_MIN_AGREEMENT

    val = _validation_split(src)
    if val is None:
        return {"passed": None, "skipped": "the source records no training data; `mbk verify` still gates INT8"}
    fp32 = _torch_logits(src, val)
    base = score_logits(fp32, val, len(src.label_names))
    scores = score_logits(_tflite_logits(src, path, val), val, len(src.label_names), fp32.argmax(-1))
    guard = Guard("accuracy", INT8_MAX_DROP, 0, base, INT8_MIN_AGREEMENT)
    agree = scores["agreement_with_input"]
    low, fidelity_ok = guard.fidelity(agree, len(val))
    scores.update({"agreement_with_fp32": agree, "agreement_with_fp32_low95": low})
    if guard.refuses(scores) or not fidelity_ok:
        raise ExportError(
            f"LiteRT INT8 accuracy guard failed: validation accuracy {base['accuracy']:.4f} (fp32 source) -> "
            f"{scores['accuracy']:.4f} (INT8 .tflite), {guard.describe(scores)}, bound {INT8_MAX_DROP:g}; "
            f"label agreement {agree:.2%} (95% low {low:.2%}, verify needs {INT8_MIN_AGREEMENT:.0%}). "
            "Nothing was written; export with --fp32"
        )
    return guard.check(scores, "tflite int8 dynamic range")


def _validation_split(src: Source):
    from mobilebert_kit.data import data_config_for, load_dataset
    from mobilebert_kit.errors import DataError

    try:
        ds = load_dataset(data_config_for(src.path))
    except DataError:
        return None
    val = ds.splits["validation"]
    return val if len(val) else None


def _torch_logits(src: Source, split) -> np.ndarray:
    from mobilebert_kit.batching import predict_logits

    return predict_logits(src.model, src.tokenizer, split.texts, split.pairs, max_length=src.max_length, batch_size=32)


def _tflite_logits(src: Source, path: Path, split) -> np.ndarray:
    from mobilebert_kit.batching import encode

    runner = LiteRtRunner(path, src.tokenizer.pad_token_id or 0)
    enc = encode(src.tokenizer, split.texts, split.pairs, src.max_length)
    types = enc.get("token_type_ids") or [[0] * len(ids) for ids in enc["input_ids"]]
    return np.stack([runner.row_logits(*row) for row in zip(enc["input_ids"], enc["attention_mask"], types)])


# --------------------------------------------------------------------------- bundle


class BundleRuntime:
    """Golden logits for ``mbk package``: unpadded ids in, logits out (bucket padding done here)."""

    runtime_name = RUNTIME  # golden.measure / package.runtime_record: not an onnxruntime session

    def __init__(self, runner: LiteRtRunner):
        self.runner = runner
        self.runtime_version = runtime_version()

    def logits(self, ids: list[int], pad_id: int) -> list[float]:
        n = len(ids)
        out = self.runner.row_logits(ids, [1] * n, [0] * n)
        return [float(x) for x in out]

    def runs(self, token_id: int, pad_id: int) -> bool:
        """Whether ``token_id`` is inside the embedding (LiteRT's EMBEDDING_LOOKUP refuses others)."""
        try:
            self.logits([token_id, token_id], pad_id)
            return True
        except Exception:  # noqa: BLE001 - the interpreter raises RuntimeError on an out-of-range id
            self.runner = LiteRtRunner(self.runner.path, self.runner.pad_id, self.runner.threads)  # clean state
            return False


def check_embedding_rows(runtime: BundleRuntime, vocab_size: int, pad_id: int) -> None:
    first_ok, past_end_rejected = runtime.runs(vocab_size - 1, pad_id), not runtime.runs(vocab_size, pad_id)
    if not (first_ok and past_end_rejected):
        more = "more" if first_ok else "fewer"
        raise PackageError(
            f"vocab.txt has {vocab_size} tokens but the model's word embedding has {more} rows; "
            "the vocab does not belong to this model. Re-export with the model's own tokenizer"
        )
