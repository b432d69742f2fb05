"""No pickle anywhere in ctsurv: every reader refuses a crafted pickle, and the source never
calls a loader that could unpickle (issue 20, item 7)."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import ctsurv
from ctsurv.exceptions import CtsurvError, WeightsNotFoundError

SRC = Path(ctsurv.__file__).parent

#: modules that unpickle (or execute) what they read
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


class _Payload:
    """Unpickling this opens (creates) ``sentinel``: proof that a reader executed the pickle."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            base = node.func.value
            yield (base.id if isinstance(base, ast.Name) else ""), node.func.attr, node


def test_source_never_unpickles():
    problems = []
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 50
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        where = path.relative_to(SRC)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
            else:
                continue
            problems += [f"{where}:{node.lineno} imports {n}" for n in names if n in UNSAFE_MODULES]
            if isinstance(node, ast.ImportFrom) and (node.module or "") in ("numpy", "torch"):
                problems += [f"{where}:{node.lineno} imports {node.module}.load by name (unchecked)"
                             for a in node.names if a.name == "load"]
        for base, attr, node in _calls(tree):
            kw = {k.arg: k.value for k in node.keywords}
            if base in ("np", "numpy") and attr == "load":
                v = kw.get("allow_pickle")
                if not (isinstance(v, ast.Constant) and v.value is False):
                    problems.append(f"{where}:{node.lineno} np.load without allow_pickle=False")
            if base == "torch" and attr == "load":
                v = kw.get("weights_only")
                if not (isinstance(v, ast.Constant) and v.value is True):
                    problems.append(f"{where}:{node.lineno} torch.load without weights_only=True")
            if attr in ("read_pickle", "to_pickle") or (base == "torch" and attr == "save"):
                problems.append(f"{where}:{node.lineno} {base}.{attr}")
    assert not problems, "\n".join(problems)


def _live(payload_bytes: bytes, sentinel: Path) -> None:
    """The crafted bytes really execute when unpickled (so the refusals below mean something)."""
    pickle.loads(payload_bytes).close()
    assert sentinel.exists()
    sentinel.unlink()


def test_embedding_cache_refuses_a_pickled_entry(tmp_path):
    from ctsurv.embed.cache import TrunkCache

    sentinel = tmp_path / "executed"
    _live(pickle.dumps(_Payload(sentinel)), sentinel)
    cache = TrunkCache(tmp_path / "cache")
    parts = {"backbone": "efficientnet-lite0", "patient": "P1"}
    path = cache.path(parts)
    path.parent.mkdir(parents=True)
    np.save(path, np.array([_Payload(sentinel)], dtype=object), allow_pickle=True)
    assert cache.load(parts, (1,)) is None and cache.misses == 1  # a miss: recomputed, not unpickled
    assert not sentinel.exists()


def test_prepared_artifact_with_a_pickled_member_is_refused(tmp_path):
    from ctsurv.preprocess import PreprocessedCT

    sentinel = tmp_path / "executed"
    path = tmp_path / "P1.npz"
    np.savez(path, meta=np.array("{}"), slices=np.array([_Payload(sentinel)], dtype=object))
    with pytest.raises(CtsurvError, match="not a readable ctsurv preprocessed CT"):
        PreprocessedCT.load(path)
    assert not sentinel.exists()


@pytest.mark.parametrize("reader", ["slice-backbone", "3d-encoder"])
def test_weights_file_with_a_pickled_object_is_refused(tmp_path, reader):
    sentinel = tmp_path / "executed"
    path = tmp_path / "weights.pth"
    torch.save({"conv.weight": torch.zeros(1), "extra": _Payload(sentinel)}, path)
    with pytest.raises(WeightsNotFoundError, match="cannot read weights file"):
        if reader == "slice-backbone":
            from ctsurv.embed import build_backbone

            build_backbone("efficientnet-lite0", weights=path)
        else:
            from ctsurv.models3d import build_volume_encoder

            build_volume_encoder("resnet3d-18", weights=path)
    assert not sentinel.exists()
    # torch.load's default pickle path would have executed it: the refusal is weights_only's
    torch.load(path, weights_only=False)
    assert sentinel.exists()
