import pytest
import yaml

from ctsurv.config import RunConfig, from_dict, load_config
from ctsurv.exceptions import CtsurvError


def test_defaults_are_the_papers():
    cfg = RunConfig()
    assert cfg.train.epochs == 100 and cfg.train.batch_size == 4
    assert cfg.train.lr == 1e-4 and cfg.train.weight_decay == 1e-2
    assert (cfg.train.alpha, cfg.train.beta, cfg.train.sigma) == (0.5, 0.5, 0.1)
    assert cfg.cv.n_folds == 10 and cfg.cv.val_fraction == 0.1
    assert cfg.preprocess.spacing == (3.0, 1.0, 1.0) and cfg.preprocess.min_lung_fraction == 0.02
    assert (cfg.model.shared_layers, cfg.model.shared_width, cfg.model.dropout) == (5, 100, 0.2)
    assert cfg.embed.embedding_dim == 256 and cfg.model.aggregator == "soft"


def test_partial_yaml_and_relative_paths(tmp_path):
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(
        {"seed": 3, "data": {"images": "imgs", "clinical": "c.csv"}, "train": {"epochs": 7},
         "preprocess": {"window": [-900, 300]}}))
    cfg = load_config(tmp_path / "run.yaml")
    assert cfg.seed == 3 and cfg.train.epochs == 7 and cfg.train.batch_size == 4
    assert cfg.data.images == str((tmp_path / "imgs").resolve())
    assert cfg.preprocess.window == (-900.0, 300.0)
    cfg.save(tmp_path / "again.yaml")
    assert load_config(tmp_path / "again.yaml").to_dict() == cfg.to_dict()


def test_unknown_keys_are_errors():
    with pytest.raises(CtsurvError, match=r"unknown config key\(s\) train.epoch\b"):
        from_dict({"train": {"epoch": 3}})
    with pytest.raises(CtsurvError, match="unknown config key.*modle"):
        from_dict({"modle": {}})


def test_replace_keeps_other_values():
    cfg = RunConfig().replace(train={"epochs": 2}, permute_labels=True)
    assert cfg.train.epochs == 2 and cfg.train.lr == 1e-4 and cfg.permute_labels


def test_named_protocols_fill_in_only_what_the_configuration_leaves_unset():
    from ctsurv.config import PROTOCOLS, RunConfig

    paper = from_dict({})
    assert paper.train.protocol == "paper" and paper == RunConfig()  # seed 000's values
    preset = PROTOCOLS["shallow-head"]
    shallow = from_dict({"train": {"protocol": "shallow-head"}})
    for section, values in preset.items():
        for key, value in values.items():
            assert getattr(getattr(shallow, section), key) == value
    # a key the user sets wins over the preset
    own = from_dict({"train": {"protocol": "shallow-head", "epochs": 80}})
    assert own.train.epochs == 80 and own.model.shared_layers == preset["model"]["shared_layers"]
    # replace() with a new protocol applies it; replacing anything else keeps the values
    assert paper.replace(train={"protocol": "shallow-head"}) == shallow
    assert shallow.replace(train={"lr": 1e-3}).model.shared_layers == preset["model"]["shared_layers"]
    with pytest.raises(CtsurvError, match="unknown train.protocol 'fast'; known: paper"):
        from_dict({"train": {"protocol": "fast"}})
    # seed 002's design, written out here from the paper (Wang et al.), not from PROTOCOLS
    s2 = from_dict({"train": {"protocol": "seed002"}, "data": {"tumour_roi": "GTV-1"}})
    assert (s2.embed.kind, s2.embed.augment, s2.model.head) == ("tumour", True, "cox")
    assert (s2.train.batch_size, s2.train.lr, s2.cv.n_folds) == (16, 1e-4, 5)
    assert s2.data.horizon_months == 36 and s2.data.tumour_roi == "GTV-1"  # t-AUC at 12, 24, 36
