"""Extract backbone features of every GIF of a dataset: ``python extract.py [overrides]``."""

import hydra
from omegaconf import DictConfig

from gifemo.runners.extract import extract


@hydra.main(config_path="conf", config_name="extract", version_base="1.3")
def main(cfg: DictConfig) -> None:
    store = extract(cfg)
    print(
        f"feature store {store.path}: {len(store)} GIFs x {store.visual.shape[1]}, "
        f"{len(store.failures)} failures (failures.jsonl), {int(store.truncated.sum())} truncated, "
        f"{len(store.notes)} with notes (notes.jsonl), weights {store.meta['weights_id']}"
    )


if __name__ == "__main__":
    main()
