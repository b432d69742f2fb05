"""The worked example of ``docs/architecture.md`` ("How to add a new kind") runs as written.

The code block marked ``<!-- example: new-kind -->`` is executed on the shared 12-patient phantom
cohort with ``cfg`` and ``out`` provided by the test (the doc says they come from the reader's
own configuration and folder). The new kind is removed from the registry afterwards.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import TINY_N, tiny_config
from ctsurv.build import KINDS, get_kind, load_model
from ctsurv.exceptions import CtsurvError
from ctsurv.models import MeanPool

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
MARKER = "<!-- example: new-kind -->"


def example_code(text: str) -> str:
    """The ```python block right after the marker, inside the "How to add a new kind" section."""
    section = re.search(r"^## \d+\. How to add a new kind.*?(?=^## |\Z)", text, re.M | re.S)
    if section is None:
        raise AssertionError(f"{DOC}: no 'How to add a new kind' section")
    body = section.group(0)
    if body.count(MARKER) != 1 or text.count(MARKER) != 1:
        raise AssertionError(f"{DOC}: the marker {MARKER!r} must appear exactly once, "
                             "in that section")
    m = re.search(re.escape(MARKER) + r"\s*\n```python\n(.*?)\n```", body, re.S)
    if m is None:
        raise AssertionError(f"{DOC}: the marker must be followed by a ```python block")
    return m.group(1)


def test_example_block_is_found_and_compiles():
    code = example_code(DOC.read_text(encoding="utf-8"))
    assert "register_kind(" in code and "run_cv(" in code and "fit_final(" in code
    compile(code, f"{DOC.name}:new-kind", "exec")


def test_new_kind_example_runs_end_to_end(tiny_cohort, tmp_path):
    torch.set_num_threads(1)
    code = example_code(DOC.read_text(encoding="utf-8"))
    name = "mean-mlp"
    assert name not in KINDS
    ns = {"__name__": "architecture_doc_example",
          "cfg": tiny_config(tiny_cohort, tmp_path / "prepared", train={"epochs": 1}),
          "out": tmp_path}
    try:
        exec(compile(code, f"{DOC.name}:new-kind", "exec"), ns)

        assert name in KINDS and get_kind(name).network is ns["mean_mlp_network"]
        assert ns["cfg"].embed.kind == name

        run = tmp_path / "run"
        preds = pd.read_csv(run / "predictions.csv", dtype={"patient_id": str})
        assert len(preds) == TINY_N and preds["patient_id"].is_unique
        cohort = pd.read_csv(tmp_path / "prepared" / "cohort.csv", dtype={"patient_id": str})
        assert sorted(preds["patient_id"]) == sorted(cohort["patient_id"])
        assert [c for c in preds.columns if c.startswith("S_")] == ns["cfg"].time_grid.columns
        assert (run / "metrics.json").is_file() and (run / "config.yaml").is_file()

        model_dir = Path(ns["model_dir"])
        assert (model_dir / "model.safetensors").is_file()
        model, cfg, _ = load_model(model_dir)
        assert cfg.embed.kind == name
        assert isinstance(model.aggregator, MeanPool)
        assert model.head.num_bins == cfg.time_grid.n_logits
        assert len(ns["scored"]) == TINY_N
    finally:
        KINDS.pop(name, None)
    assert name not in KINDS
    with pytest.raises(CtsurvError, match="embed.kind must be one of"):
        load_model(model_dir)
