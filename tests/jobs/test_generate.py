"""`seqrec generate`, `convert-sasrec` and `convert-events`: flags override the config and the files come out."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from jobs.cli import app


def test_generate_command_writes_the_requested_rows(tmp_path: Path):
    result = CliRunner().invoke(app, ["generate", "--events", "3000", "--days", "2", "--seed", "3",
                                      "--output", str(tmp_path / "raw")])
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "raw").glob("*.csv"))
    assert [f.name for f in files] == ["user_behavior_2017-11-25.csv", "user_behavior_2017-11-26.csv"]
    assert sum(len(f.read_text().splitlines()) for f in files) == 3000
    assert "3,000 rows" in result.output


def test_convert_sasrec_command_writes_events_and_the_config_that_reads_them(tmp_path: Path):
    source = tmp_path / "games.txt"
    source.write_text("1 10\n1 11\n2 10\n")
    result = CliRunner().invoke(app, ["convert-sasrec", "--input", str(source), "--output", str(tmp_path / "out"),
                                      "--ds", "2018-01-01"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "events.parquet").exists()
    written = yaml.safe_load((tmp_path / "out" / "seqrec.yaml").read_text())
    assert written["ingest"]["format"] == "generic"
    assert written["featurize"]["burst_window_seconds"] == 0
    assert "seqrec ingest --ds 2018-01-01" in result.output


def test_convert_events_command_warns_about_ids_from_zero_and_names_the_day_to_ingest(tmp_path: Path):
    source, heldout = tmp_path / "interactions.tsv", tmp_path / "heldout.tsv"
    source.write_text("user\titem\tbehavior\ttimestamp\n0\t5\tview\t1433221969\n0\t6\tcart\t1433222104\n")
    heldout.write_text("user\titem\n0\t7\n")
    arguments = ["convert-events", "--input", str(source), "--heldout", str(heldout), "--output", str(tmp_path / "out")]
    plain = CliRunner().invoke(app, arguments)
    assert plain.exit_code == 0, plain.output
    assert "3 rows have a user or item id of 0 or below" in " ".join(plain.output.split())
    shifted = CliRunner().invoke(app, [*arguments, "--id-offset", "1"])
    assert shifted.exit_code == 0, shifted.output
    assert "id of 0 or below" not in shifted.output and "seqrec ingest --ds 2015-06-02" in shifted.output
    written = yaml.safe_load((tmp_path / "out" / "seqrec.yaml").read_text())
    assert written["featurize"] == {"kcore_user_min_events": 1, "kcore_item_min_events": 1}
