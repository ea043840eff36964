"""Turning a sentence-transformers model into one graph: token ids in, sentence embedding out.

The graph runs the model's own modules after the transformer (its Pooling config: mean, CLS,
max...; Dense; Normalize), so a fast backend pools exactly as sentence-transformers does.
Exports use torch's and OpenVINO's own converters (not optimum's, which pins old transformers).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

from ._pipeline import quiet_stdout

log = logging.getLogger(__name__)

INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "sentence_embedding"


def embedding_module(st_model):
    """A `torch.nn.Module` with forward(input_ids, attention_mask) -> (batch, dim) embeddings."""
    import torch

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self, st) -> None:
            super().__init__()
            self.st = st

        def forward(self, input_ids, attention_mask):
            features = {"input_ids": input_ids, "attention_mask": attention_mask}
            return self.st(features)["sentence_embedding"]

    return SentenceEmbedding(st_model).eval()


def example_inputs(st_model, texts: Sequence[str] = ("an item", "a second, longer item text")):
    return st_model.tokenizer(
        list(texts), padding=True, return_tensors="pt", return_token_type_ids=False
    )


def export_onnx(st_model, path: Path) -> None:
    """Write an fp32 ONNX graph with dynamic batch and sequence axes (torch's dynamo exporter)."""
    import torch

    from ..errors import require

    require("onnxscript", "fast")  # torch.onnx's dynamo exporter needs it
    module = embedding_module(st_model).cpu()
    enc = example_inputs(st_model)
    dims = {0: "batch", 1: "sequence"}
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # "torchvision is not installed" and similar noise
    try:
        with torch.no_grad(), warnings.catch_warnings(), quiet_stdout():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (enc["input_ids"], enc["attention_mask"]),
                str(path),
                input_names=list(INPUT_NAMES),
                output_names=[OUTPUT_NAME],
                dynamic_shapes={name: dims for name in INPUT_NAMES},
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    finally:
        exporter_log.setLevel(level)


def convert_openvino(st_model):
    """An fp32 OpenVINO model converted straight from the torch module (dynamic shapes)."""
    import torch

    from ..errors import require

    ov = require("openvino", "fast")
    module = embedding_module(st_model).cpu()
    enc = example_inputs(st_model)
    with torch.no_grad(), warnings.catch_warnings(), quiet_stdout():
        warnings.simplefilter("ignore")
        return ov.convert_model(
            module,
            example_input={name: enc[name] for name in INPUT_NAMES},
            input=[(name, ov.PartialShape([-1, -1]), ov.Type.i64) for name in INPUT_NAMES],
        )

