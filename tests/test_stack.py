"""Each component of the pinned stack runs for real: Petastorm over a Delta snapshot, Horovod over gloo."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from lake import Lake


def test_petastorm_reads_a_delta_snapshot_into_torch_tensors(lake: Lake):
    import torch
    from petastorm import make_batch_reader

    rows = {"user_id": list(range(10)), "split": ["train"] * 10,
            "items": [[2, 3, 4]] * 10, "behaviours": [[1, 1, 5]] * 10, "categories": [[2, 2, 3]] * 10,
            "gap_buckets": [[1, 4, 6]] * 10, "days": [[17495] * 3] * 10, "targets": [[3, 4, 5]] * 10,
            "target_behaviours": [[1, 1, 1]] * 10, "ds": ["2017-11-25"] * 10}
    lake.write("train_examples", pa.table(rows), partition="2017-11-25")
    urls = [f"file://{p}" for p in lake.file_uris("train_examples")]

    seen = []
    with make_batch_reader(urls, reader_pool_type="dummy", num_epochs=1,
                           schema_fields=["user_id", "items", "targets"]) as reader:
        for batch in reader:
            items = torch.as_tensor(np.stack(batch.items), dtype=torch.int64)  # [B, 3]
            seen.append((torch.as_tensor(batch.user_id), items))
    users = torch.cat([u for u, _ in seen])
    assert sorted(users.tolist()) == list(range(10))
    assert torch.cat([i for _, i in seen]).shape == (10, 3)


@pytest.mark.slow
@pytest.mark.horovod
def test_two_process_horovod_gloo_allreduce(tmp_path: Path):
    script = tmp_path / "allreduce.py"
    script.write_text(textwrap.dedent("""
        import horovod.torch as hvd, torch
        hvd.init()
        total = hvd.allreduce(torch.tensor([float(hvd.rank() + 1)]), op=hvd.Sum)
        print(f"rank={hvd.rank()} size={hvd.size()} total={total.item()}", flush=True)
    """))
    horovodrun = Path(sys.executable).with_name("horovodrun")
    result = subprocess.run(
        [str(horovodrun), "-np", "2", "-H", "localhost:2", "--gloo", sys.executable, str(script)],
        capture_output=True, text=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("size=2 total=3.0") == 2, result.stdout
