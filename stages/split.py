"""split: duplicate-aware stratified test part + K folds (and the peers' random split)."""
import pandas as pd

from busdx.config import load_section
from busdx.data.split import make_splits, split_summary
from busdx.io import write_csv, write_json


def main() -> None:
    cfg = load_section("split")
    audit = pd.read_csv("data/interim/audit.csv")
    splits = make_splits(audit, cfg.protocol, cfg.test_size, cfg.n_folds, cfg.seed)
    peer = make_splits(audit, "random", cfg.test_size, cfg.n_folds, cfg.seed)
    write_csv("data/splits.csv", splits)
    write_csv("data/splits_peer.csv", peer)
    summary = {cfg.protocol: split_summary(splits, audit), "peer": split_summary(peer, audit)}
    write_json("metrics/split.json", summary)
    for name, s in summary.items():
        print(f"split[{name}]: train {s['train']}, test {s['test']}, excluded {s['excluded']}, "
              f"max class-ratio gap {s['max_class_ratio_gap']:.3f}, "
              f"test images with a duplicate in train {s['test_images_with_duplicate_in_train']}")


if __name__ == "__main__":
    main()
