"""train_multitask: one network for the lesion mask and the class (smp + class head).

Reads only params section train_multitask; `--split peer` trains on the peers' random split (outputs
suffixed _peer). See busdx.train.runner for inputs and outputs.
"""
from busdx.config import load_section
from busdx.train.runner import run, split_from_argv


def main(argv=None) -> None:
    run("multitask", load_section("train_multitask"), split=split_from_argv(argv))


if __name__ == "__main__":
    main()
