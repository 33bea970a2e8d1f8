"""``executorch`` (optional extra, not part of ``all``): ``model.pte`` lowered to XNNPACK, batch 1,
sequence 2..max_length; fp32, or INT8 when INT8 is requested (XNNPACK's PT2E quantizer: dynamic
int8 activations, symmetric per-channel int8 Linear weights; embeddings stay fp32).

``model.bpte`` is the same program with test vectors embedded (ExecuTorch BundledProgram): a few
texts' inputs and the fp32 PyTorch logits for them, so an app can check the runtime on the phone
(``bundled_program::verify_method_outputs``). verify runs both on the host ExecuTorch runtime: the
``.pte`` on the test split, and every test case embedded in the ``.bpte``.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from pathlib import Path

from mobilebert_kit.errors import ExportError, MbkError, ModelError
from mobilebert_kit.formats import Build, ExportFormat, Runner, Source
from mobilebert_kit.formats.traced import TorchModuleRunner, example_inputs, first_line, traceable

EXTRA = "pip install 'mobilebert_kit[executorch]'"
BUNDLE_FILE = "model.bpte"
METHOD = "forward"
# Short and long texts, an empty one ([CLS] [SEP]: the shortest program input) and one truncated to max_length.
TEST_TEXTS = (
    "a wonderful, moving film",
    "A dull, boring mess. Terrible acting!",
    "Café naïve résumé — ÜBER cool 😀",
    "",
    " ".join(["long"] * 600),
)
# Tolerance the bundled test cases are checked with (rtol 0); expected outputs are the fp32 PyTorch
# logits for both. fp32: what verify asks of fp32 exports. INT8: the XNNPACK program on the default
# student is within 0.013 of fp32 on these texts on x86 (0.064 over the whole test split); 0.05 leaves
# room for another CPU's kernels (ARM not measured here). PyTorch's own quantized graph (convert_pt2e)
# is NOT the reference: it is further from the program (0.067) than fp32 is, as XNNPACK's dynamic
# kernels quantize activations more finely than the graph's per-tensor scales.
BUNDLE_ATOL = {False: 1e-3, True: 5e-2}
INT8_INFO = {
    "mode": "dynamic",
    "method": "XNNPACKQuantizer (torchao pt2e) get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True)",
    "modules": ["Linear"],
    "per_channel": True,
    "note": "embeddings stay fp32 (the XNNPACK quantizer covers Linear layers)",
}


@contextlib.contextmanager
def quiet():
    """Silence ExecuTorch/torchao import chatter and the runtime's native cpuinfo lines (written to fd 2)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            os.dup2(null.fileno(), 2)
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                yield
    finally:
        sys.stderr.flush()  # logging handlers hold the real stderr: flush their lines into /dev/null
        os.dup2(saved, 2)
        os.close(saved)


def import_exir():
    try:
        with quiet():
            import executorch.exir as exir
        return exir
    except ImportError as e:
        raise ExportError(
            f"ExecuTorch export needs the optional extra: {EXTRA} (executorch==1.5.1); "
            f"or drop --format executorch ({e})"
        ) from e


class ExecuTorch(ExportFormat):
    name = "executorch"
    model_file = "model.pte"
    in_all = False
    benchable = True
    file_suffixes = (".pte",)
    dynamic_batch = False

    def check_dependencies(self) -> None:
        import_exir()

    def export(self, src: Source, folder: Path, build: Build) -> dict:
        try:
            with quiet():
                program = lower(src)
                cases = bundle_cases(src)
                (folder / self.model_file).write_bytes(program.buffer)
                (folder / BUNDLE_FILE).write_bytes(bundle(program, cases))
        except MbkError:
            raise
        except Exception as e:  # noqa: BLE001
            raise ExportError(f"ExecuTorch export of {src.path} failed ({type(e).__name__}: {first_line(e)})") from e
        return {
            "backend": "XNNPACK",
            "batch": 1,
            "sequence_range": [2, src.max_length],
            "int8_applied": src.int8,
            "quantization": dict(INT8_INFO) if src.int8 else None,
            "bundled_program": _bundle_meta(src, cases),
        }

    def load(self, path: Path, meta: dict) -> Runner:
        try:
            with quiet():
                from executorch.runtime import Runtime
        except ImportError as e:
            raise ModelError(f"benchmarking a .pte needs the optional extra: {EXTRA}") from e
        with quiet():
            method = Runtime.get().load_program(str(path)).load_method(METHOD)
        return TorchModuleRunner(lambda *inputs: method.execute(list(inputs))[0], "executorch", 1, fixed_threads=True)

    def verify(self, folder: Path, meta: dict, parity) -> list[dict]:
        """The ``.pte`` on the test split, then the ``.bpte``'s embedded test cases, both on the host runtime."""
        try:
            runner = self.load(folder / meta["model_file"], meta)
        except ModelError:
            parity.entry["numeric_parity"] = "skipped: executorch is not installed"
            detail = f"executorch is not installed ({EXTRA}); not run"
            return [parity.row("ExecuTorch parity", None, detail=detail)]
        checks = parity.compare("logits", parity.logits(runner))
        return [*checks, bundled_check(folder, meta, parity)]


FORMAT = ExecuTorch()


def lower(src: Source):
    """The XNNPACK-lowered ExecuTorch program; INT8: the exported graph is quantized with XNNPACK's
    PT2E quantizer, re-exported and lowered."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    exir = import_exir()
    seq = torch.export.Dim("sequence", min=2, max=src.max_length)
    shapes = ({1: seq}, {1: seq}, {1: seq})
    example = example_inputs(src)
    with torch.no_grad():
        program = torch.export.export(traceable(src), example, dynamic_shapes=shapes)
        if src.int8:
            quantized = quantize_int8(program.module(), example)
            program = torch.export.export(quantized, example, dynamic_shapes=shapes)
        lowered = exir.to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    return lowered.to_executorch()


def quantize_int8(graph_module, example):
    """Dynamic per-channel INT8 Linear layers the XNNPACK delegate runs as int8 GEMMs."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True)
    prepared = prepare_pt2e(graph_module, XNNPACKQuantizer().set_global(config))
    prepared(*example)  # dynamic: activation scales are computed at run time; one call runs the observers once
    return convert_pt2e(prepared)


def bundle_cases(src: Source) -> list[dict]:
    """Each test text's inputs (unpadded, int64) and the fp32 PyTorch logits for them."""
    import torch

    reference = traceable(src)
    cases = []
    for text in TEST_TEXTS:
        enc = src.tokenizer([text], truncation=True, max_length=src.max_length, return_tensors="pt")
        ids = enc["input_ids"]
        inputs = (ids, enc["attention_mask"], enc.get("token_type_ids", torch.zeros_like(ids)))
        with torch.no_grad():
            expected = reference(*inputs).detach().float()
        cases.append({"text": text, "inputs": inputs, "expected": expected})
    return cases


def bundle(program, cases: list[dict]) -> bytes:
    """The program with its test cases, serialized as an ExecuTorch BundledProgram (``.bpte``)."""
    from executorch.devtools.bundled_program.config import MethodTestCase, MethodTestSuite
    from executorch.devtools.bundled_program.core import BundledProgram
    from executorch.devtools.bundled_program.serialize import serialize_from_bundled_program_to_flatbuffer

    tests = [MethodTestCase(inputs=list(c["inputs"]), expected_outputs=[c["expected"]]) for c in cases]
    return serialize_from_bundled_program_to_flatbuffer(
        BundledProgram(program, [MethodTestSuite(method_name=METHOD, test_cases=tests)])
    )


def _bundle_meta(src: Source, cases: list[dict]) -> dict:
    return {
        "file": BUNDLE_FILE,
        "method": METHOD,
        "atol": BUNDLE_ATOL[src.int8],
        "rtol": 0.0,
        "expected_from": "PyTorch fp32",
        "test_cases": [
            {
                "text": c["text"],
                "length": int(c["inputs"][0].shape[1]),
                "expected_logits": [float(x) for x in c["expected"].reshape(-1)],
            }
            for c in cases
        ],
    }


def bundled_check(folder: Path, meta: dict, parity) -> dict:
    """Every test case embedded in ``model.bpte``, run and compared by the ExecuTorch runtime itself."""
    import numpy as np

    name = "ExecuTorch bundled test vectors (host runtime)"
    info = meta.get("bundled_program") or {}
    path = folder / info.get("file", BUNDLE_FILE)
    if not info or not path.exists():
        return parity.row(name, None, detail=f"no {BUNDLE_FILE} (exported before test vectors were bundled)")
    results = run_bundled(path, info)
    failed = [i for i, (ok, _) in enumerate(results) if not ok]
    diffs = [
        float(np.abs(np.asarray(out).reshape(-1) - np.asarray(case["expected_logits"])).max())
        for (ok, out), case in zip(results, info["test_cases"])
        if ok
    ]
    worst = max(diffs, default=0.0)
    parity.entry["bundled_program"] = {"cases": len(results), "failed": failed, "max_abs_diff": worst}
    detail = f"{len(results) - len(failed)}/{len(results)} cases within atol {info['atol']:g}, max|Δ| {worst:.3g}"
    if failed:
        detail += f"; failed: case(s) {', '.join(map(str, failed))} (texts in model_meta.json bundled_program)"
    return parity.row(name, not failed and bool(results), worst, info["atol"], detail)


def run_bundled(path: Path, info: dict) -> list[tuple[bool, object]]:
    """(passed, outputs) per embedded test case. ExecuTorch's Python API reaches bundled programs only
    through these pybindings (the C++ runtime's bundled_program::verify_method_outputs)."""
    from executorch.extension.pybindings import portable_lib

    with quiet():
        bundled = portable_lib._load_bundled_program_from_buffer(path.read_bytes())
    results = []
    for i in range(len(info["test_cases"])):
        try:
            with quiet():
                out = bundled.verify_result_with_bundled_expected_output(
                    info.get("method", METHOD), i, rtol=info.get("rtol", 0.0), atol=info["atol"]
                )
            results.append((True, out[0].float().numpy()))
        except RuntimeError:  # the runtime's verdict: outputs differ from the embedded expected ones
            results.append((False, None))
    return results
