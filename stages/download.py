"""download: find the archive (local mirror first, then URLs), verify, extract, manifest.

``download.dataset``: busi (default), synthetic (generated BUSI-like set) or mias (mini-MIAS,
busdx.data.mias: the same raw layout plus MIAS columns in the manifest and circle masks).
"""
import tempfile
import time
from pathlib import Path

from busdx.config import load_section
from busdx.data import archive
from busdx.io import atomic_path, write_json

RAW = Path("data/raw")


def main() -> None:
    cfg = load_section("download")
    t0 = time.perf_counter()
    RAW.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=RAW.parent) as work, atomic_path(RAW, is_dir=True) as raw:
        if cfg.dataset == "synthetic":
            from busdx.data.synthetic import make_archive

            path, source = Path(work) / "synthetic_busi.zip", "synthetic"
            expected = make_archive(path, cfg.synthetic)
        elif cfg.dataset == "mias":
            from busdx.data import mias

            found = archive.find_archive(cfg.sources, Path.cwd(), Path(work), cfg.timeout_s,
                                         "mini-MIAS", mias.HOW_TO_PROVIDE)
            path, source, expected = found.path, found.source, mias.MIAS_COUNTS
        else:
            found = archive.find_archive(cfg.sources, Path.cwd(), Path(work), cfg.timeout_s)
            path, source, expected = found.path, found.source, archive.BUSI_COUNTS
        print(f"download: using {source} ({path})")
        # mini-MIAS has its own layout (Info.txt, circle masks); the raw outputs are alike.
        adapter = mias if cfg.dataset == "mias" else archive
        counts = adapter.verify_archive(path, expected)
        sha = archive.sha256_file(path)
        adapter.extract(path, raw)
        manifest = adapter.build_manifest(raw)
        manifest.to_csv(raw / "manifest.csv", index=False, lineterminator="\n")
        info = {"dataset": cfg.dataset, "source": source, "sha256": sha, **counts}
        write_json(raw / "archive.json", info)
    write_json("metrics/download.json", {k: v for k, v in counts.items()})
    print(f"download: {counts['images']} images, {counts['masks']} masks, sha256 {sha}, "
          f"{time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
