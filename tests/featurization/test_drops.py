"""The JVM-free drop scan: which files a drop holds, its identity and fingerprint, formats, headers, and the
lines that are not UTF-8."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurization.ingest.drops import open_drop
from featurization.ingest.settings import IngestSettings
from lake import EmptyInputError, InputError, load_config

HEADER = "user_id,item_id,category_id,behaviour,event_time"


def settings(**ingest: object) -> IngestSettings:
    return IngestSettings.from_config(load_config(environ={}).with_overrides({"ingest": ingest}))


TAOBAO, GENERIC = settings(), settings(format="generic")


def test_a_folder_holds_its_data_files_not_markers_or_hidden_files(tmp_path: Path):
    (tmp_path / "drop" / "_temporary").mkdir(parents=True)
    (tmp_path / "drop" / "a.csv").write_text("1,2,3,pv,4\n")
    (tmp_path / "drop" / "sub").mkdir()
    (tmp_path / "drop" / "sub" / "b.csv").write_text("5,6,7,pv,8\n")
    for hidden in ("_SUCCESS", ".a.csv.crc", "_temporary/c.csv"):
        (tmp_path / "drop" / hidden).write_text("not data\n")
    drop = open_drop(str(tmp_path / "drop"), TAOBAO)
    assert [Path(f.read_path).name for f in drop.files] == ["a.csv", "b.csv"]
    assert drop.bytes == 22 and drop.kind == "csv"


def test_identity_is_the_path_and_the_fingerprint_is_the_content(tmp_path: Path):
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.csv").write_text("1,2,3,pv,4\n")
    one, two = open_drop(str(tmp_path / "one"), TAOBAO), open_drop(str(tmp_path / "two"), TAOBAO)
    assert one.drop_id != two.drop_id and one.fingerprint == two.fingerprint
    assert open_drop((tmp_path / "one").as_uri(), TAOBAO).drop_id == one.drop_id
    (tmp_path / "one" / "a.csv").write_text("1,2,3,pv,5\n")
    again = open_drop(str(tmp_path / "one"), TAOBAO)
    assert again.drop_id == one.drop_id and again.fingerprint != one.fingerprint


def test_lines_that_are_not_utf8_are_found_with_their_number_and_bytes(tmp_path: Path):
    (tmp_path / "a.csv").write_bytes(b"1,2,3,pv,4\n5,caf\xe9,7,pv,8\n9,10,11,pv,12\n\xff\n")
    file = open_drop(str(tmp_path / "a.csv"), TAOBAO).files[0]
    assert file.invalid_count == 2
    assert [(line.line, line.raw) for line in file.invalid_lines] == [(2, "5,caf\\xe9,7,pv,8"), (4, "\\xff")]
    (tmp_path / "b.csv").write_text("1,2,3,pv,4\n5,café,7,pv,8\n")  # valid UTF-8, non-ASCII
    assert open_drop(str(tmp_path / "b.csv"), TAOBAO).files[0].invalid_count == 0


def test_the_format_comes_from_the_magic_bytes(tmp_path: Path):
    pq.write_table(pa.table({name: [1] for name in HEADER.split(",")}).set_column(
        3, "behaviour", pa.array(["pv"])), tmp_path / "part-0")
    assert open_drop(str(tmp_path / "part-0"), GENERIC).kind == "parquet"
    (tmp_path / "fake.parquet").write_text("not parquet at all\n")
    with pytest.raises(InputError, match=r"fake\.parquet: not a readable Parquet file"):
        open_drop(str(tmp_path / "fake.parquet"), GENERIC)


def test_a_drop_mixing_formats_is_refused(tmp_path: Path):
    pq.write_table(pa.table({"user_id": [1]}), tmp_path / "a.parquet")
    (tmp_path / "b.csv").write_text(f"{HEADER}\n")
    with pytest.raises(InputError, match="mixes Parquet and text files"):
        open_drop(str(tmp_path), GENERIC)


def test_generic_headers_are_matched_by_name(tmp_path: Path):
    (tmp_path / "a.csv").write_text(f"{HEADER}\n1,2,3,pv,4\n")
    (tmp_path / "b.csv").write_text("event_time,behaviour,category_id,item_id,user_id\n4,pv,3,2,1\n")
    drop = open_drop(str(tmp_path), GENERIC)
    assert [f.header[0] for f in drop.files] == ["user_id", "event_time"]
    (tmp_path / "c.csv").write_text("user_id,sku,category_id,behaviour,event_time\n1,2,3,pv,4\n")
    with pytest.raises(InputError, match=r"c\.csv: column\(s\) \['item_id'\] named in ingest.columns are missing "
                                         r"and \['sku'\] are new"):
        open_drop(str(tmp_path), GENERIC)


def test_a_header_that_is_not_utf8_is_refused(tmp_path: Path):
    (tmp_path / "a.csv").write_bytes(b"user_\xe9d,item_id,category_id,behaviour,event_time\n1,2,3,pv,4\n")
    with pytest.raises(InputError, match="the header line is not valid UTF-8"):
        open_drop(str(tmp_path / "a.csv"), GENERIC)


def test_empty_and_missing_sources(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "_SUCCESS").write_text("")
    with pytest.raises(EmptyInputError, match="holds no files"):
        open_drop(str(tmp_path / "empty"), TAOBAO)
    with pytest.raises(InputError, match="does not exist"):
        open_drop(str(tmp_path / "missing"), TAOBAO)
