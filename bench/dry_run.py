"""How long Snakemake takes to plan a data-set run, per layout and number of images.

    .venv/bin/python bench/dry_run.py                                  # 10,000 / 100,000 / 1,000,000 images
    .venv/bin/python bench/dry_run.py --images 1000,10000 --layouts chunks --chunk-sizes 256,1024

For each number of images N and each layout (``pictures``: every picture an
output; ``chunks``: one folder per chunk job), it times ``snakemake -n`` of the
five-technique config of ``bench/dataset.py`` (feature maps, saliency, deep dream,
deep dream with octaves, Grad-CAM: one setting each, plus one predictions job per
chunk) over N tiny images in class folders of 1,000 (hard links of one 8 x 8 PNG,
so making a million costs seconds): cold (no image-check cache, no image lists)
and warm (the second run). A layout that times out at some N is not tried at a
larger N. Writes its section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dataset import dry_config, env_for_jobs, make_workdir, run_timed, snakemake_cmd  # noqa: E402
from results_file import REPO, display_command, write_section  # noqa: E402

PER_FOLDER = 1000
PER_SEED = 50000
TITLE = "## Dry run: planning N images x 5 techniques, per layout"


def make_links(root: Path, count: int) -> Path:
    """``count`` hard links of tiny PNGs (one file per :data:`PER_SEED`, under the file
    system's limit of links per file), in class folders of :data:`PER_FOLDER`."""
    from PIL import Image

    folder = root / f"ds-{count}"
    if folder.is_dir():
        return folder
    for index in range(count):
        seed = root / f"seed-{count}-{index // PER_SEED}.png"
        if index % PER_SEED == 0:
            root.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (120, 60, 30)).save(seed)
        sub = folder / f"class{index // PER_FOLDER:04d}"
        if index % PER_FOLDER == 0:
            sub.mkdir(parents=True)
        os.link(seed, sub / f"img {index:07d}.png")
    return folder


def children_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", default="10000,100000,1000000", help="comma-separated N (default %(default)s)")
    parser.add_argument("--layouts", default="pictures,chunks", help="comma-separated (default %(default)s)")
    parser.add_argument(
        "--chunk-sizes", default="256", help="comma-separated images per job, each measured (default %(default)s)"
    )
    parser.add_argument("--only", default="", help="N:LAYOUT:CHUNK_SIZE triples to run, comma-separated (default all)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per dry run (default %(default)s)")
    parser.add_argument("--tmp", type=Path, help="work folder (default: a new temporary one, removed at the end)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md", help="file to update")
    args = parser.parse_args()
    sizes = [int(n) for n in args.images.split(",")]
    layouts = args.layouts.split(",")
    chunk_sizes = [int(n) for n in args.chunk_sizes.split(",")]
    only = set(filter(None, args.only.split(",")))
    tmp = args.tmp or Path(tempfile.mkdtemp(prefix="cnnvis-dry-"))
    rows: list[dict] = []
    given_up: set[str] = set()
    try:
        for count in sizes:
            start = time.perf_counter()
            images = make_links(tmp, count)
            print(f"[dry] {count} images ready in {time.perf_counter() - start:.1f} s", flush=True)
            for layout, chunk_size in [(layout, size) for layout in layouts for size in chunk_sizes]:
                if only and f"{count}:{layout}:{chunk_size}" not in only:
                    continue
                row = {"images": count, "layout": layout, "chunk_size": chunk_size}
                rows.append(row)
                if (layout, chunk_size) in given_up:
                    row["skipped"] = True
                    continue
                # one rule per technique (no shared pass): the conservative count of jobs
                config = dry_config({"folder": str(images)}, chunk_size) | {"layout": layout, "share_passes": False}
                workdir = tmp / f"wf-{layout}-{count}-{chunk_size}"
                shutil.rmtree(workdir, ignore_errors=True)
                make_workdir(workdir, config)
                for case in ("cold", "warm"):
                    command = [*snakemake_cmd(), "-n", "--cores", "2", "--quiet", "all"]
                    log = tmp / f"{layout}-{count}-{chunk_size}-{case}.log"
                    result = run_timed(command, workdir, args.timeout, log, env_for_jobs())
                    row[case] = None if result["timed_out"] or result["rc"] else result["wall"]
                    row[case + "_peak"] = children_peak_mib()
                    shown = "timed out" if result["timed_out"] else f"{result['wall']:.1f} s rc {result['rc']}"
                    print(f"[dry] {count} x 5, {layout}, chunk_size {chunk_size}, {case}: {shown}", flush=True)
                    if result["rc"] and not result["timed_out"]:
                        print(result["tail"], file=sys.stderr)
                    if row[case] is None:
                        given_up.add((layout, chunk_size))
                        break
                write_section(args.out, section(rows, args))
    finally:
        if args.tmp is None:
            shutil.rmtree(tmp, ignore_errors=True)
    write_section(args.out, section(rows, args))


def section(rows: list[dict], args: argparse.Namespace) -> str:
    def seconds(row: dict, case: str) -> str:
        if row.get("skipped"):
            return "not tried (a smaller N timed out)"
        if case not in row:
            return "-"
        return f"{row[case]:.1f}" if row[case] is not None else f"> {args.timeout:.0f} (timed out or failed)"

    lines = [
        TITLE,
        "",
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores; `{display_command()}`",
        "",
        "`snakemake -n --cores 2` of five per-image techniques (one setting each) and the predictions, "
        "over N tiny images in class folders; cold: no image-check cache and no image "
        "lists; warm: the second dry run. Seconds, wall clock, the whole `snakemake` process (Python start, "
        "reading the workflow, listing the images, the plan, the DAG). At the start the pictures layout decodes "
        "every image (cached by size and time); the chunk layout opens none (its jobs decode them).",
        "",
        "| images | layout | chunk_size | jobs | cold (s) | warm (s) | per picture, warm (ms) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        warm = row.get("warm")
        per = f"{1000 * warm / (row['images'] * 5):.4f}" if warm else "-"
        chunks = 2 ** math.ceil(math.log2(math.ceil(row["images"] / row["chunk_size"])))
        lines.append(
            f"| {row['images']:,} | {row['layout']} | {row['chunk_size']} | about {6 * chunks:,} | "
            f"{seconds(row, 'cold')} | {seconds(row, 'warm')} | {per} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
