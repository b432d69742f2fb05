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
