"""What ``sasan web`` reads and refuses, without a browser: uploads, folders, the command line."""
import pickle

import numpy as np
import pytest

files = pytest.importorskip("sasan_web.files")
sitk = pytest.importorskip("SimpleITK")


def write(path, array, spacing=(1.0, 1.0, 2.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing[: image.GetDimension()])
    sitk.WriteImage(image, str(path))
    return path


def test_a_3d_scalar_volume_passes_in_every_single_file_format(tmp_path):
    volume = np.zeros((4, 5, 6), np.int16)
    for name in ("ct.nrrd", "ct.nii.gz", "ct.nii", "ct.mha"):
        assert files.check_volume_file(write(tmp_path / name, volume), name) == (6, 5, 4)


@pytest.mark.parametrize("make, expected", [
    (lambda p: p.write_text("notes"), "is not a volume SASAN can read"),
    (lambda p: write(p, np.zeros((5, 6), np.int16)), "is a 2D image (6 x 5 pixels)"),
    (lambda p: write(p, np.zeros((1, 5, 6), np.int16)), "is a 2D image (6 x 5 x 1 pixels)"),
    (lambda p: write(p, np.zeros((3, 5, 6, 3), np.uint8)), "has 3 values per voxel"),
])
def test_bad_volumes_are_refused_with_one_sentence(tmp_path, make, expected):
    path = tmp_path / "upload.nrrd"
    make(path)
    with pytest.raises(files.UploadError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        files.check_volume_file(path, "upload.nrrd")


def test_headers_that_point_at_other_files_are_refused(tmp_path):
    detached = tmp_path / "a.nrrd"
    detached.write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2 2\nencoding: raw\n"
                         b"data file: /etc/passwd\n\n")
    with pytest.raises(files.UploadError, match="keeps its voxels in another file"):
        files.check_volume_file(detached, "a.nrrd")
    meta = tmp_path / "b.mha"
    meta.write_bytes(b"ObjectType = Image\nNDims = 3\nDimSize = 2 2 2\nElementType = MET_SHORT\n"
                     b"ElementDataFile = /etc/passwd\n")
    with pytest.raises(files.UploadError, match="keeps its voxels in another file"):
        files.check_volume_file(meta, "b.mha")


def test_a_pickle_renamed_safetensors_is_refused_unread(tmp_path):
    path = tmp_path / "upload-1.safetensors"
    path.write_bytes(pickle.dumps({"weights": [1, 2]}))
    with pytest.raises(files.UploadError, match="'model.safetensors' is not a SASAN model file") as error:
        files.check_model_file(path, "model.safetensors")
    assert str(tmp_path) not in str(error.value)  # no server path reaches the page


def test_uploads_get_server_made_names_and_a_size_limit(tmp_path):
    store = files.UploadStore(max_bytes=10, root=tmp_path)
    try:
        path = store.save(b"12345", "../../etc/evil name.nrrd", ".nrrd")
        assert path.parent == store.root and path.name == "upload-1.nrrd"
        with pytest.raises(files.UploadError, match="more than this server accepts"):
            store.save(b"x" * 11, "big.nrrd", ".nrrd")
    finally:
        store.close()
    assert not store.root.exists()
    assert files.display_name("../../etc/pass\x00wd") == "passwd"
    assert files.node_name("ct scan.nii.gz") == "ct scan"


def test_only_listed_files_resolve_and_links_out_of_the_folder_are_not_listed(tmp_path):
    data, outside = tmp_path / "data", tmp_path / "outside"
    (data / "sub").mkdir(parents=True)
    outside.mkdir()
    write(data / "sub" / "ct.nrrd", np.zeros((3, 3, 3), np.int16))
    write(outside / "secret.nrrd", np.zeros((3, 3, 3), np.int16))
    (data / "link.nrrd").symlink_to(outside / "secret.nrrd")
    (data / "notes.txt").write_text("x")
    entries = files.list_files(data, lambda name: files.volume_suffix(name) is not None)
    assert [entry.key for entry in entries] == ["sub/ct.nrrd"]
    assert files.resolve_entry(entries, "sub/ct.nrrd") == data / "sub" / "ct.nrrd"
    for typed in ("../outside/secret.nrrd", str(outside / "secret.nrrd"), "link.nrrd"):
        with pytest.raises(files.UploadError, match="not offered here"):
            files.resolve_entry(entries, typed)


def test_the_command_line_contract():
    from sasan.cli import build_parser

    args = build_parser().parse_args(["web"])
    assert (args.host, args.port, args.data, args.models) == ("127.0.0.1", 8080, None, None)
    args = build_parser().parse_args(["web", "--host", "0.0.0.0", "--port", "9000", "--data", "d", "--models", "m"])
    assert (args.host, args.port, args.data, args.models) == ("0.0.0.0", 9000, "d", "m")


def test_only_loopback_addresses_count_as_local():
    from sasan_web.server import _is_loopback

    assert _is_loopback("127.0.0.1") and _is_loopback("localhost") and _is_loopback("::1")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("10.1.2.3") and not _is_loopback("gpu-server")


def test_importing_the_app_package_loads_neither_trame_nor_slicer():
    import subprocess
    import sys

    code = ("import sys, sasan_web, sasan_web.files, sasan_web.server, sasan_web.job, sasan_web.runner\n"
            "print(','.join(sorted(m for m in ('trame', 'slicer', 'vtk', 'torch') if m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
