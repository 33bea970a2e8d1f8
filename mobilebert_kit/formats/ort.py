"""``ort``: the export's ONNX graph converted to the ORT format for ONNX Runtime Mobile, plus
``required_operators.config`` for a reduced (minimal) build. Packaged for Android.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path

from mobilebert_kit.errors import ArtifactError, ExportError, PackageError
from mobilebert_kit.formats import Build, BundleFacts, Source
from mobilebert_kit.formats.onnx import Onnx, onnx_graph
from mobilebert_kit.runtimes import ANDROID_ORT_VERSION

# The Android demo pins onnxruntime-android ANDROID_ORT_VERSION (android_demo/app/build.gradle). ORT
# format v6 is what onnxruntime 1.16+ writes and reads; 1.32 still writes v6. A .ort with a newer format
# version than the pinned runtime reads is refused, rather than failing on the phone.
ANDROID_MAX_ORT_FORMAT = 6


class Ort(Onnx):
    """Runs and verifies like ``onnx`` (same runtime); built and packaged differently."""

    name = "ort"
    model_file = "model.ort"
    benchable = True
    file_suffixes = (".ort",)
    package_target = "android"
    demo_app = "android_demo"
    app_bundle_dir = "app/src/main/assets/bundle"
    app_marker = "app/src/main/AndroidManifest.xml"
    app_runtime_version = ANDROID_ORT_VERSION  # verify checks it too; package computes golden logits in it
    headline_rank = 0

    def export(self, src: Source, folder: Path, build: Build) -> dict:
        graph, _ = onnx_graph(src, build)
        convert_to_ort(graph, folder)
        import onnxruntime as ort

        return {
            "operator_config": "required_operators.config",
            "ort_format_version_writer": f"onnxruntime {ort.__version__}",
            "optimization_style": "Fixed",
            "target_platform": "arm",
            "note": "build a reduced runtime with --include_ops_by_config required_operators.config; "
            "the app's onnxruntime-mobile must read ORT format v6 (>= 1.19)",
        }

    def bundle_facts(self, model: Path, export_dir: Path, vocab: list[str], special_ids: dict, pad_id: int):
        version = ort_format_version(model)
        if version is not None and version > ANDROID_MAX_ORT_FORMAT:
            raise PackageError(
                f"{model} is ORT format v{version}; onnxruntime-android {ANDROID_ORT_VERSION} (pinned in "
                f"android_demo) reads up to v{ANDROID_MAX_ORT_FORMAT}. Raise the pin in "
                "android_demo/app/build.gradle and ANDROID_ORT_VERSION together"
            )
        runtime = BundleRuntime(model)
        num_outputs = len(runtime.logits([special_ids["[CLS]"], special_ids["[SEP]"]], pad_id))
        first_ok, past_end_rejected = runtime.embedding_rows_ok(len(vocab), pad_id)
        if not (first_ok and past_end_rejected):
            more = "more" if first_ok else "fewer"
            raise PackageError(
                f"vocab.txt has {len(vocab)} tokens but the model's word embedding has {more} rows; "
                "the vocab does not belong to this model. Re-export with the model's own tokenizer"
            )
        facts = {"ort_format_version": version, "onnxruntime_android": ANDROID_ORT_VERSION}
        return BundleFacts(runtime, runtime.input_names, num_outputs, len(vocab), runtime.fixed_length, facts)


FORMAT = Ort()


def convert_to_ort(onnx_file: Path, folder: Path) -> None:
    """Write ``model.ort`` (+ ``required_operators.config``) for ``onnx_file`` into ``folder``."""
    import logging

    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix=".ort-", dir=folder.parent))
    try:
        shutil.copy2(onnx_file, work / "model.onnx")
        captured = _run_converter(work)
        produced = work / "out" / "model.ort"
        config_file = work / "out" / "model.required_operators.config"
        if not produced.exists():
            raise ExportError(f"ORT format conversion wrote no model.ort; converter output: {captured[-300:]}")
        _check_loads(produced)
        shutil.move(str(produced), folder / "model.ort")
        if config_file.exists():
            shutil.move(str(config_file), folder / "required_operators.config")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_loads(ort_file: Path) -> None:
    """The converter can write a file its own runtime refuses (4-bit GatherBlockQuantized tables:
    ORT format cannot store uint4): load it once, so export fails here, not on the phone."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(ort_file), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
        raise ExportError(
            f"the ORT-format model does not load in onnxruntime {ort.__version__} "
            f"({str(e).strip().splitlines()[0][:160]}); graphs with 4-bit embeddings (GatherBlockQuantized) cannot "
            "be stored in ORT format: export --format onnx instead, or compress without int4_embeddings"
        ) from e


def _run_converter(work: Path) -> str:
    import logging

    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    # the converter sets its own logger to INFO and a 4-bit quantizer import may have configured the root
    # logger: silence INFO lines for the conversion only
    logging.disable(logging.INFO)
    with contextlib.redirect_stdout(io.StringIO()) as captured, contextlib.ExitStack() as undo:
        undo.callback(logging.disable, logging.NOTSET)
        try:
            convert_onnx_models_to_ort(
                work / "model.onnx",
                output_dir=work / "out",
                optimization_styles=[OptimizationStyle.Fixed],
                target_platform="arm",
            )
        except Exception as e:  # noqa: BLE001
            raise ExportError(
                f"ORT format conversion failed ({type(e).__name__}: {str(e)[:200]}); "
                f"converter output: {captured.getvalue()[-300:]}"
            ) from e
    return captured.getvalue()


def ort_format_version(path: Path) -> int | None:
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs import InferenceSession

    buf = path.read_bytes()
    try:
        v = InferenceSession.InferenceSession.GetRootAs(buf, 0).OrtVersion()
        return int(v.decode() if isinstance(v, bytes) else v)
    except Exception:  # noqa: BLE001 - unreadable header: report as unknown, loading will tell more
        return None


def bundle_feeds(ids: list[int], pad_id: int, fixed_length: int | None) -> dict:
    """One text's feeds as the apps build them: batch 1, padded with pad_id (mask 0) to fixed_length if set."""
    import numpy as np

    n = fixed_length or len(ids)
    arr = np.full((1, n), pad_id, dtype=np.int64)
    arr[0, : len(ids)] = ids
    mask = np.zeros((1, n), dtype=np.int64)
    mask[0, : len(ids)] = 1
    return {"input_ids": arr, "attention_mask": mask, "token_type_ids": np.zeros_like(arr)}


class BundleRuntime:
    """What a bundle needs from a .ort/.onnx: inputs, fixed length, embedding rows, golden logits."""

    def __init__(self, path: Path, threads: int = 1):
        import onnxruntime as ort

        self.path, self.threads = path, threads
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads  # the apps run 1 thread; golden spread is measured at 1, 2 and 4
        so.log_severity_level = 4  # the vocab probe triggers an expected Gather error; keep it off stderr
        if path.suffix == ".ort":
            so.add_session_config_entry("session.load_model_format", "ORT")
        try:
            self.sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001
            raise ArtifactError(
                f"ONNX Runtime could not load {path} ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                "re-run `mbk export`"
            ) from e
        self.input_names = [i.name for i in self.sess.get_inputs()]
        if "input_ids" not in self.input_names:
            raise PackageError(
                f"{path} has no 'input_ids' input (inputs: {', '.join(self.input_names)}); "
                "it is not a BERT classifier export"
            )
        seq = self.sess.get_inputs()[self.input_names.index("input_ids")].shape
        self.fixed_length = seq[1] if len(seq) > 1 and isinstance(seq[1], int) else None
        self.output_names = [o.name for o in self.sess.get_outputs()]

    def logits(self, ids: list[int], pad_id: int) -> list[float]:
        import numpy as np

        feeds = bundle_feeds(ids, pad_id, self.fixed_length)
        out = self.sess.run([self.output_names[0]], {k: v for k, v in feeds.items() if k in self.input_names})[0]
        return [float(x) for x in np.asarray(out).reshape(-1)]

    def embedding_rows_ok(self, vocab_size: int, pad_id: int) -> tuple[bool, bool]:
        """(id vocab_size-1 runs, id vocab_size is rejected): both True iff the embedding has exactly vocab_size rows."""

        def runs(i: int) -> bool:
            try:
                self.logits([i, i], pad_id)
                return True
            except Exception:  # noqa: BLE001 - ORT raises on out-of-range Gather indices
                return False

        return runs(vocab_size - 1), not runs(vocab_size)
