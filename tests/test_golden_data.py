"""The five golden data-layer cases (computed by BVLC Caffe): LMDB with transforms and a mean file,
HDF5 across files, ImageData in colour (BGR) and grey.  Each runs with its case folder as the
working directory, as ../shared/tools/golden_check.py runs it, since Caffe resolves `source` there."""

import os

import pytest

from tests.golden_runner import GOLDEN, case_names, run_layer_case

LAYERS = os.path.join(GOLDEN, "layers")
DATA_CASES = [n for n in case_names("layers") if n.startswith("data_")]


def test_all_five_data_cases_are_present():
    assert DATA_CASES == ["data_hdf5_across_files", "data_image_color_bgr", "data_image_gray",
                          "data_lmdb_mean_file", "data_lmdb_transform"]


@pytest.mark.parametrize("name", DATA_CASES)
def test_golden_data_case(name):
    pytest.importorskip("lmdb" if "lmdb" in name else "h5py" if "hdf5" in name else "PIL")
    bad = run_layer_case(os.path.join(LAYERS, name))
    assert not bad, "; ".join(bad)


def test_lmdb_is_opened_without_a_lock_file():
    """The golden LMDBs live in a read-only folder: reading must not create lock.mdb."""
    pytest.importorskip("lmdb")
    folder = os.path.join(LAYERS, "data_lmdb_transform")
    run_layer_case(folder)
    assert sorted(os.listdir(os.path.join(folder, "db"))) == ["data.mdb"]
