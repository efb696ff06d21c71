"""train_cls: 3-class classification network (timm EfficientNet-Lite0).

Reads only params section train_cls; `--split peer` trains on the peers' random split (outputs
suffixed _peer). See busdx.train.runner for inputs and outputs.
"""
from busdx.config import load_section
from busdx.train.runner import run, split_from_argv


def main(argv=None) -> None:
    run("cls", load_section("train_cls"), split=split_from_argv(argv))


if __name__ == "__main__":
    main()
