"""What each kind of request costs on moto_server as its bucket fills: the server the S3 benchmarks run on.

    python benchmarks/moto_listing.py                      # 0, 5,000, 20,000 and 40,000 keys
    python benchmarks/moto_listing.py --keys 0,10000 --reps 31

The S3 figures in docs/benchmarks.md come from a local moto_server (tests/fixtures.py). moto answers a
listing (ListObjectsV2 with a prefix) by walking every key of the bucket in Python (moto 5.2.5,
`S3Backend.list_objects`), where a real object store reads its index. A sweep's bucket gains keys with every
trial, so any request that lists grows with the sweep on this server and not on S3. This measures, at each
bucket size, the median and interquartile range of:

- LIST: a prefix listing of a folder that does not exist (one ListObjectsV2);
- get_file_info on a missing file: pyarrow sends a HEAD, then a listing to look for a folder of that name;
- open_input_file on a missing file: one HEAD, then FileNotFoundError (sweeps/results/store.py `_is_file`);
- PUT: a 100-byte file (one PutObject).

The keys are filled 8 at a time, 100 bytes each, one folder per key, as trial files are.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(fn, reps: int) -> tuple[float, float, float]:
    """Median, first and third quartile of fn's wall time in ms over `reps` calls."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - start))
    q1, median, q3 = statistics.quantiles(times, n=4)
    return median, q1, q3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", default="0,5000,20000,40000", help="bucket sizes to measure at, ascending")
    parser.add_argument("--reps", type=int, default=15, help="calls per measurement")
    args = parser.parse_args(argv)
    try:
        sizes = [int(k) for k in args.keys.split(",")]
    except ValueError:
        parser.error(f"--keys {args.keys!r}: give whole numbers separated by commas, e.g. 0,5000")
    if sizes != sorted(sizes) or sizes[0] < 0 or args.reps < 4:
        parser.error("--keys must ascend from 0 or more, and --reps be 4 or more")

    import moto
    import pyarrow
    import pyarrow.fs as pafs
    import torch

    from benchmarks.env import describe
    from tests.fixtures import moto_s3
    print(describe(torch.device("cpu")) + f"\n# moto {moto.__version__} | pyarrow {pyarrow.__version__}")
    with moto_s3("bench") as env:
        fs = pafs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"], scheme="http", access_key="testing",
                               secret_key="testing", region="us-east-1", allow_delayed_open=True)

        def put(key: str) -> None:
            with fs.open_output_stream(key) as out:
                out.write(b"x" * 100)

        def missing_head() -> None:
            try:
                fs.open_input_file("bench/probe/missing.parquet")
            except FileNotFoundError:
                pass

        measures = {
            "LIST": lambda: fs.get_file_info(pafs.FileSelector("bench/probe/folder", allow_not_found=True)),
            "get_file_info(missing)": lambda: fs.get_file_info("bench/probe/missing.parquet"),
            "open_input_file(missing)": missing_head,
            "PUT": lambda: put("bench/probe/written.parquet"),
        }
        print(f"moto_server at {env['AWS_ENDPOINT_URL']}: median ms (IQR) of {args.reps} calls each")
        print("| keys in the bucket | " + " | ".join(measures) + " |")
        print("|---|" + "---|" * len(measures))
        filled, lists = 0, {}
        for size in sizes:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda k: put(f"bench/fill/{k:06d}/e0001.parquet"), range(filled, size)))
            filled = size
            cells = [timed(fn, args.reps) for fn in measures.values()]
            lists[size] = cells[0][0]
            print(f"| {size:,} | " + " | ".join(f"{m:.1f} ({a:.1f}-{b:.1f})" for m, a, b in cells) + " |", flush=True)
    print(f"moto_list_ms_ratio_{sizes[-1]}_vs_{sizes[0]}_keys: {lists[sizes[-1]] / lists[sizes[0]]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
