"""dags/seqrec_drops.py: when the raw-events sensor calls a drop complete. Stdlib only, so no Airflow."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "seqrec_drops", Path(__file__).resolve().parents[2] / "dags" / "seqrec_drops.py")
drops = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(drops)


def test_a_file_drop_is_complete_once_it_exists(tmp_path: Path) -> None:
    source = tmp_path / "user_behavior_2017-11-25.csv"
    assert drops.drop_status(source) == (False, "nothing there yet")
    source.write_text("1,2,3,pv,1511539200\n")
    assert drops.drop_status(source)[0]


def test_a_half_copied_folder_waits_for_the_marker(tmp_path: Path) -> None:
    folder = tmp_path / "ds=2017-11-25"
    folder.mkdir()
    (folder / "part-0.csv").write_text("1,2,3,pv,1511539200\n")  # the first file arrived, more are coming
    complete, why = drops.drop_status(folder)
    assert not complete and "_SUCCESS" in why
    (folder / "_SUCCESS").touch()
    assert drops.drop_status(folder) == (True, "the folder is marked complete by _SUCCESS")


def test_a_marker_without_data_is_not_a_drop(tmp_path: Path) -> None:
    (tmp_path / "_SUCCESS").touch()
    (tmp_path / ".part-0.csv.crc").write_text("x")
    (tmp_path / "_temporary").mkdir()
    (tmp_path / "_temporary" / "part-0.csv").write_text("1,2,3,pv,1511539200\n")
    complete, why = drops.drop_status(tmp_path)
    assert not complete and "no data file" in why


def test_data_in_subfolders_counts(tmp_path: Path) -> None:
    (tmp_path / "hour=00").mkdir()
    (tmp_path / "hour=00" / "part-0.csv").write_text("1,2,3,pv,1511539200\n")
    (tmp_path / "_SUCCESS").touch()
    assert drops.drop_status(tmp_path)[0]


@pytest.mark.parametrize("marker", ["", "READY"])
def test_the_marker_is_configurable(tmp_path: Path, marker: str) -> None:
    (tmp_path / "part-0.csv").write_text("1,2,3,pv,1511539200\n")
    (tmp_path / "_SUCCESS").touch()
    complete, why = drops.drop_status(tmp_path, marker)
    if marker:
        assert not complete and "READY" in why
        (tmp_path / "READY").touch()
        assert drops.drop_status(tmp_path, marker)[0]
    else:
        assert complete and "no marker required" in why


def test_an_empty_folder_without_a_marker_setting_still_waits(tmp_path: Path) -> None:
    assert drops.drop_status(tmp_path, "") == (False, "the folder holds no data file yet")
