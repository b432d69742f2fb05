"""Transfer learning (ctsurv finetune): fold-matched and single-model starts, frozen parts that
do not move, the same target folds as a from-scratch run, and the refusals.

The source run uses the shared tiny phantom cohort (patients ``PHANTOM-*``); the target is a
second phantom cohort with other patients (``TARGET-*``). Planted slice features stand in for the
trunk cache (``run_cv(features=...)``) so that the runs are fast.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from conftest import planted_slice_features, tiny_config
from ctsurv.build import network_factory
from ctsurv.estimators import SurvivalEstimator
from ctsurv.exceptions import CtsurvError
from ctsurv.pipeline import cohort_arrays, config_hash, prepare_step, run_cv
from ctsurv.train import TrainConfig
from ctsurv.train_batched import CohortTensors, Replica, train_replicas
from ctsurv.transfer import (adopt_source_settings, check_source, finetune_config, frozen_parameter_names,
                             load_transfer_source)

F_IN = 1280
TRAIN = {"epochs": 3, "lr": 1e-3}


def _features(cfg, root):
    _, prepared = prepare_step(cfg, root, progress=False)
    ids, time, _ = cohort_arrays(cfg, prepared)
    return planted_slice_features(ids, time, 0, n_features=F_IN)


@pytest.fixture(scope="module")
def source_run(tiny_cohort, tmp_path_factory):
    """A finished run of the tiny cohort (the source of fold-matched transfer)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("transfer-source")
    cfg = tiny_config(tiny_cohort, root / "prepared", train=TRAIN)
    run_cv(cfg, root / "run", progress=False, features=_features(cfg, root))
    return root / "run"


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    """(config, features) of a 12-patient target cohort whose patients the source never saw."""
    from ctsurv.synthetic import write_phantom_cohort

    root = tmp_path_factory.mktemp("transfer-target")
    write_phantom_cohort(root / "cohort", n_patients=12, seed=5, id_prefix="TARGET")
    cfg = tiny_config(root / "cohort", root / "prepared", train=TRAIN)
    return cfg, _features(cfg, root)


def _weights(run, k):
    return load_file(str(run / "folds" / f"fold_{k}.safetensors"))


def test_run_folders_save_their_fold_models(source_run):
    """Each fold's kept model is saved and reproduces the fold's out-of-fold curves."""
    import json

    from ctsurv.config import load_config
    from ctsurv.train import predict

    cfg = load_config(source_run / "config.yaml")
    rec = json.loads((source_run / "folds" / "fold_1.json").read_text())
    net = network_factory(cfg)()
    net.load_state_dict(_weights(source_run, 1))
    prepared = source_run.parent / "prepared"
    ids, time, _ = cohort_arrays(cfg, prepared)
    feats = planted_slice_features(ids, time, 0, n_features=F_IN)
    surv, _ = predict(net, [feats[p] for p in rec["test_ids"]])
    np.testing.assert_allclose(surv, np.asarray(rec["surv"]), atol=1e-6)


def test_fold_matched_transfer_freezes_and_pairs(source_run, target, tmp_path):
    cfg, feats = target
    ft = finetune_config(cfg, source_run, freeze=["backbone-head", "deephit-shared"])
    m = run_cv(ft, tmp_path / "ft", progress=False, features=feats)
    assert m["transfer"]["mode"] == "run"
    frozen = m["transfer"]["frozen_parameters"]
    assert "embedding.1.weight" in frozen and any(n.startswith("head.shared.") for n in frozen)
    for k in range(cfg.cv.n_folds):
        src, got = _weights(source_run, k), _weights(tmp_path / "ft", k)
        for n in frozen:  # frozen parts equal the source fold's kept model, bit for bit
            assert torch.equal(src[n], got[n]), (k, n)
        # the trained parts moved (3 epochs at lr 1e-3)
        assert not torch.equal(src["head.out.weight"], got["head.out.weight"])
    # fold k started from source fold k, not from one model: source folds differ
    assert not torch.equal(_weights(source_run, 0)["embedding.1.weight"],
                           _weights(source_run, 1)["embedding.1.weight"])
    # the matching from-scratch run has the same folds (patient-by-patient pairing)
    run_cv(cfg, tmp_path / "scratch", progress=False, features=feats)
    assert (tmp_path / "ft" / "folds.csv").read_text() == (tmp_path / "scratch" / "folds.csv").read_text()
    assert config_hash(ft) != config_hash(cfg)


def test_single_model_transfer(target, tmp_path):
    cfg, feats = target
    rng = np.random.default_rng(3)
    time = rng.uniform(1, 30, 20)
    event = (rng.uniform(size=20) < 0.7).astype(int)
    src_feats = planted_slice_features([f"SRC-{i}" for i in range(20)], time, 1, n_features=F_IN)
    est = SurvivalEstimator(cfg.replace(train={"epochs": 2})).fit(list(src_feats.values()), time, event)
    model_dir = est.save(tmp_path / "model")
    ft = finetune_config(cfg, model_dir, freeze=["aggregator"], epochs=2)
    m = run_cv(ft, tmp_path / "ft", progress=False, features=feats)
    assert m["transfer"]["mode"] == "model"
    src = load_file(str(model_dir / "model.safetensors"))
    for k in range(cfg.cv.n_folds):
        got = _weights(tmp_path / "ft", k)
        for n in ("aggregator.score.0.weight", "aggregator.score.0.bias"):
            assert torch.equal(src[n], got[n])
        assert not torch.equal(src["embedding.1.weight"], got["embedding.1.weight"])


@pytest.mark.parametrize("sequential", [False, True])
def test_frozen_parameters_do_not_change_in_either_trainer(sequential):
    """Both trainers (the batched fast path and the one-model reference) keep frozen tensors at
    their starting values and move the others."""
    from ctsurv.config import from_dict

    cfg = from_dict({"embed": {"augment": False}})
    build = network_factory(cfg)
    torch.manual_seed(0)
    start = {k: v.clone() for k, v in build().state_dict().items()}
    rng = np.random.default_rng(0)
    ids = [f"P{i}" for i in range(16)]
    time = rng.uniform(1, 30, 16)
    event = (rng.uniform(size=16) < 0.7).astype(int)
    cohort = CohortTensors.from_features(list(planted_slice_features(ids, time, 0).values()))
    for parts in (["backbone-head"], ["aggregator", "deephit-shared"]):
        names = frozen_parameter_names(build(), parts)
        rep = Replica(np.arange(12), time[:12], event[:12], np.arange(12, 16), time[12:], event[12:], 7, start)
        res = train_replicas(build, cohort, [rep], TrainConfig(epochs=2, lr=1e-3, augment=False, freeze=names),
                             sequential=sequential)[0]
        after = res.model.state_dict()
        for n in names:
            assert torch.equal(after[n], start[n]), n
        moved = [n for n in after if n not in names and not torch.equal(after[n], start[n])]
        assert "head.out.weight" in moved


def test_freeze_parts_are_checked():
    from ctsurv.config import from_dict

    net = network_factory(from_dict({}))()
    assert frozen_parameter_names(net, ["backbone-head"]) == ("embedding.1.weight", "embedding.1.bias")
    with pytest.raises(CtsurvError, match="no such parameters"):  # feature-extractor: one linear
        frozen_parameter_names(net, ["early-blocks"])
    with pytest.raises(CtsurvError, match="unknown part"):
        frozen_parameter_names(net, ["trunk"])
    mean = network_factory(from_dict({"model": {"aggregator": "mean"}}))()
    with pytest.raises(CtsurvError, match="aggregator: this network has no such parameters"):
        frozen_parameter_names(mean, ["aggregator"])


def test_refusals(source_run, target, tiny_cohort, tmp_path):
    cfg, _ = target
    src = load_transfer_source(source_run)
    with pytest.raises(CtsurvError, match="36 months"):
        check_source(src, cfg.replace(data={"horizon_months": 36}))
    with pytest.raises(CtsurvError, match="'2d' model; the target configuration trains 'mst'"):
        check_source(src, cfg.replace(embed={"kind": "mst"}))
    with pytest.raises(CtsurvError, match="3 fold models.*cv.n_folds is 5"):
        check_source(src, cfg.replace(cv={"n_folds": 5}))
    # preprocessing: refused with the setting named, or adopted on request
    other = cfg.replace(preprocess={"spacing": [2.0, 1.0, 1.0]})
    with pytest.raises(CtsurvError, match=r"preprocess\.spacing: source \[3\.0, 1\.0, 1\.0\], target \[2\.0"):
        check_source(src, other)
    adopted = adopt_source_settings(src, other)
    assert adopted.preprocess == cfg.preprocess and adopted.data == other.data
    check_source(src, adopted)
    # a target cohort that shares patients with the source's training data (leakage)
    same = tiny_config(tiny_cohort, tmp_path / "prepared", train=TRAIN)
    ids = pd.read_csv(source_run / "folds.csv", dtype={"patient_id": str})["patient_id"].unique()
    with pytest.raises(CtsurvError, match="leakage"):
        check_source(src, same, ids)
    # a run folder without saved fold models
    old = tmp_path / "old-run"
    shutil.copytree(source_run, old)
    (old / "folds" / "fold_2.safetensors").unlink()
    with pytest.raises(CtsurvError, match="no saved fold models"):
        load_transfer_source(old)
    with pytest.raises(CtsurvError, match="neither a saved model"):
        load_transfer_source(tmp_path)
    with pytest.raises(CtsurvError, match="unknown part"):
        finetune_config(cfg, source_run, freeze=["everything"])


def test_finetune_command(source_run, target, tmp_path, capsys):
    """The command line refuses a bad source with a message, not a traceback."""
    from ctsurv.cli import main

    cfg, _ = target
    cfg.save(tmp_path / "target.yaml")
    code = main(["finetune", "--from", str(tmp_path), "--config", str(tmp_path / "target.yaml"),
                 "--out", str(tmp_path / "out")])
    assert code == 2
    assert "neither a saved model" in capsys.readouterr().err


def test_transfer_study_table(source_run, target, tmp_path):
    """Seed 000's Table 6 on the tiny pair: paired runs per repeat, the Wilcoxon test on the
    table's own pooled values (scipy as the oracle), Markdown and CSV."""
    from scipy.stats import wilcoxon

    from ctsurv.transfer_study import transfer_study

    cfg, feats = target
    res = transfer_study(cfg.replace(train={"epochs": 2}), source_run, tmp_path / "t6", repeats=3,
                         freeze=["backbone-head"], progress=False, features=feats)
    table = pd.read_csv(tmp_path / "t6" / "table.csv")
    assert list(table["seed"]) == [cfg.seed, cfg.seed + 1, cfg.seed + 2]
    for r in range(3):  # each repeat pairs scratch and transfer on one fold plan
        a = (tmp_path / "t6" / f"scratch_r{r}" / "folds.csv").read_text()
        assert a == (tmp_path / "t6" / f"transfer_r{r}" / "folds.csv").read_text()
    assert (tmp_path / "t6" / "scratch_r0" / "folds.csv").read_text() != \
        (tmp_path / "t6" / "scratch_r1" / "folds.csv").read_text()
    np.testing.assert_allclose(table["difference"], table["transfer_ctd_pooled"] - table["scratch_ctd_pooled"])
    if (table["difference"] != 0).any():
        assert res["wilcoxon"]["p_value"] == pytest.approx(
            wilcoxon(table["transfer_ctd_pooled"], table["scratch_ctd_pooled"]).pvalue)
    md = (tmp_path / "t6" / "table.md").read_text()
    assert "| mean |" in md and "Direct external evaluation: the direct external evaluation needs a saved model" in md
    with pytest.raises(CtsurvError, match="at least 2 repeats"):
        transfer_study(cfg, source_run, tmp_path / "t1", repeats=1, features=feats)


def test_transfer_beats_scratch_in_the_mean_over_repeats(target, tmp_path):
    """Seed 000's Question 4 on planted features: a source model that learnt the hazard from 200
    patients, fine-tuned briefly on the small target, ranks the target better than the same brief
    training from scratch, in the mean over repeats (and the direct external row is the source
    model unchanged)."""
    from ctsurv.transfer_study import transfer_study

    cfg, feats = target
    rng = np.random.default_rng(11)
    n = 200
    time = rng.uniform(1, 30, n)
    event = (rng.uniform(size=n) < 0.7).astype(int)
    src_feats = planted_slice_features([f"SRC-{i}" for i in range(n)], time, 2, n_features=F_IN)
    est = SurvivalEstimator(cfg.replace(train={"epochs": 10, "lr": 1e-3})).fit(
        list(src_feats.values()), time, event)
    model_dir = est.save(tmp_path / "model")
    brief = cfg.replace(train={"epochs": 1, "lr": 1e-4})
    res = transfer_study(brief, model_dir, tmp_path / "t6", repeats=3, progress=False, features=feats)
    table = pd.read_csv(tmp_path / "t6" / "table.csv")
    assert res["transfer_beats_scratch_in_mean"]
    assert table["transfer_ctd_pooled"].mean() > table["scratch_ctd_pooled"].mean() + 0.1
    assert table["transfer_ctd_pooled"].min() > 0.7


def test_early_blocks_stay_frozen_in_a_last_block_network():
    """The ``last-block`` strategy trains Lite0's last block and head convolution: ``early-blocks``
    freezes exactly those (not the embedding's final linear layer), and training keeps them,
    batch-norm statistics included."""
    from ctsurv.build import get_kind
    from ctsurv.config import from_dict
    from ctsurv.types import PatientFeatures

    cfg = from_dict({"preprocess": {"size": 64}, "embed": {"augment": False, "strategy": "last-block"}})
    encoder = get_kind(cfg).build_encoder(cfg)
    build = network_factory(cfg, encoder)
    torch.manual_seed(0)
    start = {k: v.clone() for k, v in build().state_dict().items()}
    names = frozen_parameter_names(build(), ["early-blocks"])
    linear = [n for n, m in build().embedding.named_modules() if isinstance(m, torch.nn.Linear)][-1]
    assert names and all(n.startswith("embedding.") for n in names)
    assert not any(n.startswith(f"embedding.{linear}.") for n in names)
    assert any(".weight" in n and start[n].ndim == 4 for n in names)  # convolution kernels
    rng = np.random.default_rng(0)
    shape = encoder.trunk_out_shape
    pats = [PatientFeatures(f"P{i}", rng.normal(size=(1, 4, *shape)).astype(np.float32),
                            np.linspace(0, 1, 4, dtype=np.float32)) for i in range(10)]
    time = rng.uniform(1, 30, 10)
    event = np.ones(10, dtype=int)
    rep = Replica(np.arange(8), time[:8], event[:8], np.arange(8, 10), time[8:], event[8:], 3, start)
    res = train_replicas(build, pats, [rep], TrainConfig(epochs=1, lr=1e-3, augment=False, freeze=names))[0]
    after = res.model.state_dict()
    for n in names:
        assert torch.equal(after[n], start[n]), n
    # the frozen blocks' batch-norm running statistics are the source's too
    stats = [k for k in after if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(after[k], start[k]) for k in stats)
    assert not torch.equal(after[f"embedding.{linear}.weight"], start[f"embedding.{linear}.weight"])


def test_stem_and_early_blocks_stay_frozen_in_the_tumour_kind():
    """Seed 002's fine-tuning (``--freeze stem early-blocks``): the Vision-Mamba stem, position
    embedding and first half of the blocks keep the source's values; the later blocks, the
    aggregator and the Cox head train. The input standardisation is refitted on the target."""
    from ctsurv.build import build_encoder
    from ctsurv.config import from_dict
    from ctsurv.types import PatientFeatures

    cfg = from_dict({"embed": {"kind": "tumour"}, "data": {"tumour_roi": "GTV-1"},
                     "model": {"head": "cox", "ssm_dim": 16, "ssm_depth": 2, "ssm_patch": 16, "ssm_state": 4,
                               "shared_layers": 1, "shared_width": 8}})
    build = network_factory(cfg, build_encoder(cfg))
    torch.manual_seed(0)
    start = {k: v.clone() for k, v in build().state_dict().items()}
    names = frozen_parameter_names(build(), ["stem", "early-blocks"])
    assert any(n.startswith("embedding.encoder.stem.") for n in names)
    assert "embedding.encoder.pos_embed" in names
    assert any(n.startswith("embedding.encoder.blocks.0.") for n in names)
    assert not any(n.startswith("embedding.encoder.blocks.1.") for n in names)
    rng = np.random.default_rng(0)
    pats = [PatientFeatures(f"P{i}", rng.normal(size=(1, 3, 1, 64, 64)).astype(np.float32),
                            np.linspace(0, 1, 3, dtype=np.float32)) for i in range(10)]
    time = rng.uniform(1, 30, 10)
    event = np.ones(10, dtype=int)
    rep = Replica(np.arange(8), time[:8], event[:8], np.arange(8, 10), time[8:], event[8:], 3, start)
    res = train_replicas(build, pats, [rep], TrainConfig(epochs=2, lr=1e-2, augment=True, freeze=names,
                                                         batch_size=4))[0]
    after = res.model.state_dict()
    for n in names:
        assert torch.equal(after[n], start[n]), n
    moved = [n for n in after if n not in names and not torch.equal(after[n], start[n])]
    assert any(n.startswith("embedding.encoder.blocks.1.") for n in moved)
    assert "embedding.norm.running_mean" in moved  # the target's own input statistics
    one = network_factory(cfg.replace(model={"ssm_depth": 1}), build_encoder(cfg))()
    with pytest.raises(CtsurvError, match="early-blocks: this network has no such parameters"):
        frozen_parameter_names(one, ["early-blocks"])  # depth 1: no block before the last
