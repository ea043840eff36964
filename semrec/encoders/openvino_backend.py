"""OpenVINO backends: "openvino-int8" (static int8, calibrated with NNCF on item texts) and
"openvino-fp32". Needs the `fast` extra.

The int8 export is mixed precision. Measured on MovieLens item texts (all-MiniLM-L6-v2, 300
calibration texts), quantising every linear layer gave mean cosine 0.9953 and top-10 overlap
0.884 against fp32, below the quality guard. Most of the error comes from the inputs of the
query/key/value projections (post-LayerNorm activations with outlier channels); the rest mainly
from the FFN output projections (post-GELU). Keeping those two groups in fp32 (`FP32_SCOPES`)
gave cosine 0.9989 and overlap 0.937; the attention output and FFN input projections (about
half of the linear-layer multiply-adds) stay int8.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import require
from ._calibration_texts import CALIBRATION_TEXTS
from ._export import convert_openvino
from ._pipeline import CompiledEncoder, Tokenizer, quiet_stdout

log = logging.getLogger(__name__)

OPENVINO_BACKENDS = ("openvino-int8", "openvino-fp32")
#: At most this many texts calibrate the int8 activation ranges (one text per sample).
MAX_CALIBRATION_TEXTS = 300
#: Linear layers kept in fp32 by the int8 export (regular expressions over OpenVINO node names
#: of a converted Hugging Face BERT-style model; a model without such nodes is fully int8).
FP32_SCOPES = (
    r".*attention\.self\.(query|key|value)/aten::linear/MatMul",  # Q/K/V projections
    r".*layer\.\d+\.output\.dense/aten::linear/MatMul",  # FFN output projections
)


def calibration_sample(texts: Sequence[str] | None, n: int = MAX_CALIBRATION_TEXTS) -> list[str]:
    """Up to `n` non-empty texts drawn (seeded) from `texts`, or the shipped texts if none."""
    pool = [t for t in (texts or ()) if t and t.strip()]
    if not pool:
        return list(CALIBRATION_TEXTS)
    if len(pool) <= n:
        return pool
    return random.Random(0).sample(pool, n)


def _export(
    st_model,
    folder: Path,
    precision: str,
    calibration: Sequence[str] | None,
    fp32_export: Path | None = None,
) -> dict:
    ov = require("openvino", "fast")
    if fp32_export is not None and (fp32_export / "meta.json").is_file():
        model = ov.Core().read_model(str(fp32_export / "model.xml"))  # reuse the fp32 export
    else:
        model = convert_openvino(st_model)
    meta = {"runtime": f"openvino {ov.__version__}", "precision": precision}
    if precision == "int8":
        nncf = require("nncf", "fast")
        nncf.set_log_level(logging.ERROR)
        texts = calibration_sample(calibration)
        tokenizer = Tokenizer(st_model.tokenizer, st_model.max_seq_length)
        samples = [
            {"input_ids": ids[None, :], "attention_mask": np.ones_like(ids)[None, :]}
            for ids in (np.asarray(s, dtype=np.int64) for s in tokenizer(texts))
        ]
        with quiet_stdout():
            model = nncf.quantize(
                model,
                nncf.Dataset(samples),
                model_type=nncf.ModelType.TRANSFORMER,
                subset_size=len(samples),
                ignored_scope=nncf.IgnoredScope(patterns=list(FP32_SCOPES), validate=False),
            )
        meta["calibration"] = {
            "texts": len(texts),
            "source": "sample_texts" if calibration else "shipped calibration texts",
        }
        meta["fp32_scopes"] = list(FP32_SCOPES)
    ov.save_model(model, str(folder / "model.xml"), compress_to_fp16=False)
    return meta


class OpenVINOEncoder(CompiledEncoder):
    """Encode with OpenVINO on CPU from a cached export of the torch model (arguments and
    example: `CompiledEncoder`; load it with `load_encoder(backend="openvino-int8")`).

    The int8 export is calibrated once, on `calibration_texts` (the catalogue being indexed)
    when given at the first export, else on texts shipped with semrec; later loads reuse it.
    """

    family = "openvino"
    runtime = "openvino"

    def _export(self, st_model, folder: Path, precision: str, fp32_export: Path, calibration_texts) -> dict:
        return _export(st_model, folder, precision, calibration_texts, fp32_export)

    def _load(self, ov) -> None:
        self._core = ov.Core()
        # single texts: one request at a time using every core (lowest latency)
        self.compiled = self._compile("LATENCY")
        self._request = self.compiled.create_infer_request()
        self._queue = None  # batches: compiled on first use (a query-only process never pays)

    def _compile(self, hint: str):
        config = {"PERFORMANCE_HINT": hint, "INFERENCE_NUM_THREADS": self.threads, "INFERENCE_PRECISION_HINT": "f32"}
        return self._core.compile_model(str(self.export_dir / "model.xml"), "CPU", config)

    def _infer(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        self._request.infer({"input_ids": input_ids, "attention_mask": attention_mask})
        return self._request.get_output_tensor(0).data.copy()

    def _infer_batches(self, batches, out: np.ndarray):
        """Batches overlap on OpenVINO's throughput streams (as many as it picks for the
        threads, e.g. one per core): measured 1.1-1.3x the one-request-at-a-time path on 2 cores
        (benchmarks/RESULTS.md section 3)."""
        import openvino as ov

        if self._queue is None:
            compiled = self._compile("THROUGHPUT")
            self._queue = ov.AsyncInferQueue(compiled, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        queue = self._queue
        queue.set_callback(lambda request, rows: out.__setitem__(rows, request.get_output_tensor(0).data))
        try:
            for rows, ids, mask in batches:
                queue.start_async({"input_ids": ids, "attention_mask": mask}, rows)
                yield len(rows)
        finally:
            queue.wait_all()
