"""train_seg: lesion segmentation network (smp architecture, EfficientNet-Lite0 encoder).

Reads only params section train_seg; `--split peer` trains on the peers' random split (outputs
suffixed _peer). See busdx.train.runner for inputs and outputs.
"""
from busdx.config import load_section
from busdx.train.runner import run, split_from_argv


def main(argv=None) -> None:
    run("seg", load_section("train_seg"), split=split_from_argv(argv))


if __name__ == "__main__":
    main()
