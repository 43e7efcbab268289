"""Every option of every config group composes, and every `_target_` in it instantiates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"
# Groups chosen on the command line as `group=option`; `hydra` is Hydra's own settings.
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra")


def options(group: str) -> list[str]:
    """Every option of a group, nested ones as `sub/name` (conf/experiment/table2/cmtl.yaml)."""
    root = CONF / group
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


# The full-size C3D (80 M parameters, random init) takes seconds to build: slow suite only.
SLOW_OPTIONS = {("backbone", "c3d")}
ALL_OPTIONS = [
    pytest.param(g, o, id=f"{g}={o}", marks=[pytest.mark.slow] if (g, o) in SLOW_OPTIONS else [])
    for g in GROUPS
    for o in options(g)
]


def base_overrides(data_dir: Path, out_dir: Path) -> list[str]:
    """Small and local: tiny generated data and a tiny C3D, everything under tmp dirs."""
    return [
        f"paths.data_dir={data_dir}",
        f"paths.output_dir={out_dir}",
        "data.synthetic_size=tiny",
        "backbone=c3d_tiny",
    ]


def compose_train(overrides: list[str], *, hydra_node: bool = False) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=hydra_node)


def targets(node: Any, path: str = "") -> list[tuple[str, DictConfig]]:
    """The outermost nodes holding a `_target_` (their children are built with them)."""
    if isinstance(node, DictConfig):
        if "_target_" in node:
            return [(path, node)]
        found = []
        for key in node:
            found += targets(node._get_node(key), f"{path}.{key}" if path else str(key))
        return found
    if OmegaConf.is_list(node):
        found = []
        for i, item in enumerate(node):
            found += targets(item, f"{path}[{i}]")
        return found
    return []


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data dir per test session, shared with tests/test_train.py (generated once)."""
    path = tmp_path_factory.getbasetemp() / "gifemo-e2-data"
    path.mkdir(exist_ok=True)
    return path


def test_groups_are_complete() -> None:
    want = {
        "data",
        "backbone",
        "extract",
        "features",
        "model",
        "trainer",
        "logger",
        "hparams_search",
        "experiment",
        "paths",
    }
    assert want <= set(GROUPS), f"missing groups: {want - set(GROUPS)}"
    assert {"lasso", "trace", "cmtl", "gp", "unsorted", "ridge"} <= set(options("model"))
    assert {"visual", "tag", "visual_tag"} == set(options("features"))
    assert {"wandb", "csv", "none"} <= set(options("logger"))
    assert {"table2", "table2/cmtl", "table2/unsorted"} <= set(options("experiment"))


@pytest.mark.parametrize(("group", "option"), ALL_OPTIONS)
def test_option_composes_and_instantiates(
    group: str, option: str, data_dir: Path, tmp_path: Path
) -> None:
    overrides = base_overrides(data_dir, tmp_path)
    if group == "backbone":
        overrides.remove("backbone=c3d_tiny")
    cfg = compose_train([*overrides, f"{group}={option}"], hydra_node=True)
    assert cfg.hydra.runtime.choices[group] == option
    hydra_cfg = cfg.hydra
    with open_dict(cfg):
        del cfg["hydra"]
    OmegaConf.resolve(cfg)  # every interpolation resolves
    # A group's option can only change its own subtree; experiments and searches change anything.
    scope = cfg if group in ("experiment", "hparams_search") else cfg.get(group)
    built = {}
    for path, node in targets(scope, "" if scope is cfg else group):
        if path == "trainer" and node.accelerator == "gpu" and not torch.cuda.is_available():
            continue  # Lightning refuses accelerator=gpu without CUDA; composing is checked
        built[path] = instantiate(node)
        assert built[path] is not None, path
    # the group's own object(s) are among what was built
    if group in ("data", "backbone") or (group == "trainer" and torch.cuda.is_available()):
        assert group in built
    if group == "model" and option not in ("finetune", "svm"):
        assert "model.estimator" in built
        assert hasattr(built["model.estimator"], "fit")
    if group == "logger":
        assert ("logger" in built) == (option != "none")
    if group == "hparams_search":
        assert hydra_cfg.sweeper._target_.endswith("OptunaSweeper")
        assert hydra_cfg.mode == RunMode.MULTIRUN


def open_dict(cfg: DictConfig) -> Any:
    from omegaconf import open_dict as _open_dict

    return _open_dict(cfg)


def test_trainer_group_maps_onto_lightning_trainer(data_dir: Path, tmp_path: Path) -> None:
    cfg = compose_train(
        [
            *base_overrides(data_dir, tmp_path),
            "trainer=cpu",
            "trainer.max_epochs=3",
            "trainer.max_steps=7",
            "trainer.limit_val_batches=2",
        ]
    )
    trainer = instantiate(cfg.trainer)
    assert trainer.max_epochs == 3 and trainer.max_steps == 7
    assert trainer.limit_val_batches == 2
    assert type(trainer.accelerator).__name__ == "CPUAccelerator"
    assert cfg.ckpt_path is None and cfg.seed == 0


def test_table2_experiment_lists_the_papers_methods(data_dir: Path, tmp_path: Path) -> None:
    cfg = compose_train([*base_overrides(data_dir, tmp_path), "experiment=table2"], hydra_node=True)
    assert cfg.hydra.mode == RunMode.MULTIRUN
    methods = str(cfg.hydra.sweeper.params["+experiment/table2@_global_"]).split(",")
    assert methods == ["unsorted", "lasso_visual", "lasso_tag", "lasso", "gp", "trace", "cmtl"]
    expect = {
        "unsorted": ("unsorted", "visual+tag"),
        "lasso_visual": ("lasso", "visual"),
        "lasso_tag": ("lasso", "tag"),
        "lasso": ("lasso", "visual+tag"),
        "gp": ("gp", "visual+tag"),
        "trace": ("trace", "visual+tag"),
        "cmtl": ("cmtl", "visual+tag"),
    }
    for m in methods:
        job = compose_train(
            [
                *base_overrides(data_dir, tmp_path),
                "experiment=table2",
                f"+experiment/table2@_global_={m}",
            ]
        )
        assert (job.model.name, job.features.name) == expect[m]


def test_list_valued_hyperparameters_form_the_cv_grid(data_dir: Path, tmp_path: Path) -> None:
    from gifemo.train import param_grid

    cfg = compose_train(
        [
            *base_overrides(data_dir, tmp_path),
            "model=cmtl",
            "model.rho=[1,2]",
            "model.rho2=5",
            "model.k=auto",
        ]
    )
    assert param_grid(cfg) == {"rho1": [1, 2], "rho2": 5, "k": "auto"}
    cfg = compose_train([*base_overrides(data_dir, tmp_path), "model=lasso", "model.rho=0.5"])
    assert param_grid(cfg) == {"rho": 0.5}


def test_every_config_file_is_documented() -> None:
    """Each YAML file of the runner's groups opens with a comment (what it is, how to use it)."""
    mine = [
        "train.yaml",
        "hydra",
        "model",
        "features",
        "trainer",
        "logger",
        "hparams_search",
        "experiment",
    ]
    files = [CONF / "train.yaml"] + [f for d in mine[1:] for f in (CONF / d).rglob("*.yaml")]
    undocumented = [
        str(f.relative_to(CONF)) for f in files if not f.read_text().lstrip().startswith("#")
    ]
    assert not undocumented, f"config files without a leading comment: {undocumented}"
