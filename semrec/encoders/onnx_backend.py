"""ONNX Runtime backends: "onnx-fp32" and "onnx-int8" (int8 weights of the linear layers, per
channel; activations quantised on the fly, one scale per batch). Needs the `fast` extra.

Only MatMul nodes are quantised: the embedding tables stay fp32 (quantising them too cost
fidelity for no speed). Dynamic per-batch activation scales are the main error source on
BERT-style models (outlier channels after LayerNorm); on MovieLens item texts onnx-int8 stays
below the quality guard (mean cosine ~0.993, top-10 overlap ~0.84), so "auto" rejects it there.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from ..errors import require
from ._export import OUTPUT_NAME, export_onnx
from ._pipeline import CompiledEncoder

log = logging.getLogger(__name__)

ONNX_BACKENDS = ("onnx-int8", "onnx-fp32")


def _export_fp32(st_model, folder: Path) -> dict:
    ort = require("onnxruntime", "fast")
    export_onnx(st_model, folder / "model.onnx")
    return {"runtime": f"onnxruntime {ort.__version__}", "precision": "fp32"}


def _export_int8(st_model, folder: Path, fp32_export: Path | None = None) -> dict:
    ort = require("onnxruntime", "fast")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = folder / "fp32.onnx"
    if fp32_export is not None and (fp32_export / "meta.json").is_file():
        shutil.copyfile(fp32_export / "model.onnx", fp32)  # the fp32 export is already made
    else:
        export_onnx(st_model, fp32)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime.quantization warns through the root logger
    try:
        quantize_dynamic(
            fp32,
            folder / "model.onnx",
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
        )
    finally:
        root.setLevel(level)
    fp32.unlink()
    return {
        "runtime": f"onnxruntime {ort.__version__}",
        "precision": "int8 MatMul weights (per channel), int8 activations quantised per batch",
    }


class OnnxEncoder(CompiledEncoder):
    """Encode with ONNX Runtime on CPU from a cached export of the torch model (arguments and
    example: `CompiledEncoder`; load it with `load_encoder(backend="onnx-int8")`)."""

    family = "onnx"
    runtime = "onnxruntime"

    def _export(self, st_model, folder: Path, precision: str, fp32_export: Path, calibration_texts) -> dict:
        if precision == "int8":
            return _export_int8(st_model, folder, fp32_export)
        return _export_fp32(st_model, folder)

    def _load(self, ort) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(self.export_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )

    def _infer(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        return self.session.run([OUTPUT_NAME], feeds)[0]
