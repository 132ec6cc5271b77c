"""Volume <-> scalar volume node: exact geometry (RAS vs LPS), voxels, dtypes and refused inputs."""
import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="the MRML glue needs the slicer-core wheel")

import vtk  # noqa: E402  (with slicer-core)
from SASANSlicerLib.nodes import (  # noqa: E402
    UnsupportedVolumeError,
    check_on_grid_of,
    check_translatable,
    node_from_volume,
    node_index_to_lps,
    update_node_from_volume,
    volume_from_node,
)
from slicer_glue_helpers import node_ids, rotation, show_as_sequence_frame  # noqa: E402

from sasan.data.volume import Volume  # noqa: E402


def oblique_volume(dtype=np.float32) -> Volume:
    array = (np.arange(5 * 6 * 7).reshape(5, 6, 7) * 1.5 - 20).astype(dtype)
    return Volume(array, spacing=(0.7, 1.3, 2.5), origin=(12.5, -30.25, 100.0), direction=rotation((20, -15, 35)))


def ijk_to_ras(node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def test_axis_aligned_geometry_by_hand(scene):
    volume = Volume(np.zeros((2, 3, 4), np.int16), spacing=(2.0, 3.0, 4.0), origin=(1.0, 2.0, 3.0))
    node = node_from_volume(volume, "hand", scene)
    # LPS (1, 2, 3) is RAS (-1, -2, 3); the i and j axes point to L and P, i.e. -R and -A.
    expected = np.array([[-2.0, 0, 0, -1.0], [0, -3.0, 0, -2.0], [0, 0, 4.0, 3.0], [0, 0, 0, 1]])
    np.testing.assert_array_equal(ijk_to_ras(node), expected)
    assert node.GetImageData().GetDimensions() == (4, 3, 2)


def test_round_trip_oblique_anisotropic_is_exact(scene):
    volume = oblique_volume()
    back = volume_from_node(node_from_volume(volume, "oblique", scene))
    assert back.array.dtype == np.float32
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.spacing == volume.spacing
    assert back.origin == volume.origin
    np.testing.assert_array_equal(back.direction, volume.direction)


def test_voxel_world_positions_agree_between_ras_and_lps(scene):
    volume = oblique_volume()
    node = node_from_volume(volume, "oblique", scene)
    for ijk in [(0, 0, 0), (6, 0, 0), (0, 5, 0), (3, 2, 4)]:
        ras = ijk_to_ras(node) @ np.array([*ijk, 1.0])
        lps = volume.index_to_world() @ np.array([*ijk, 1.0])
        np.testing.assert_allclose(ras[:3] * [-1, -1, 1], lps[:3], atol=1e-9)
    np.testing.assert_allclose(node_index_to_lps(node), volume.index_to_world(), atol=1e-12)


def test_written_nrrd_reads_back_in_simpleitk_with_the_same_geometry(scene, tmp_path):
    volume = oblique_volume()
    node = node_from_volume(volume, "oblique", scene)
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(tmp_path / "oblique.nrrd"))
    assert storage.WriteData(node)
    image = sitk.ReadImage(str(tmp_path / "oblique.nrrd"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), volume.array)
    np.testing.assert_allclose(image.GetSpacing(), volume.spacing, atol=1e-9)
    np.testing.assert_allclose(image.GetOrigin(), volume.origin, atol=1e-9)
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), volume.direction, atol=1e-9)


def test_simpleitk_file_loaded_by_slicer_gives_the_same_volume(scene, tmp_path):
    volume = oblique_volume(np.int16)
    image = sitk.GetImageFromArray(volume.array)
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(volume.direction.ravel().tolist())
    sitk.WriteImage(image, str(tmp_path / "from_itk.nrrd"))
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "from_itk")
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(tmp_path / "from_itk.nrrd"))
    assert storage.ReadData(node)
    back = volume_from_node(node)
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.same_geometry(volume, atol=1e-9)


def test_update_replaces_voxels_and_geometry(scene):
    node = node_from_volume(Volume(np.zeros((2, 2, 2), np.float32)), "target", scene)
    volume = oblique_volume()
    update_node_from_volume(node, volume)
    back = volume_from_node(node)
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.same_geometry(volume, atol=0)


@pytest.mark.parametrize("dtype, stored", [(np.bool_, np.uint8), (np.int64, np.int32), (np.float16, np.float32)])
def test_dtypes_vtk_cannot_show_are_converted(scene, dtype, stored):
    array = (np.arange(24).reshape(2, 3, 4) % 2).astype(dtype)
    back = volume_from_node(node_from_volume(Volume(array), "converted", scene))
    assert back.array.dtype == stored
    np.testing.assert_array_equal(back.array, array.astype(stored))


def test_out_of_range_64_bit_labels_are_refused_and_nothing_is_added(scene):
    before = node_ids(scene)
    array = np.full((2, 2, 2), 2**40, dtype=np.int64)
    with pytest.raises(ValueError, match="'huge'.*32-bit"):
        node_from_volume(Volume(array), "huge", scene)
    assert node_ids(scene) == before


def test_labelmap_node_class(scene):
    node = node_from_volume(Volume(np.ones((2, 2, 2), np.uint8)), "labels", scene, "vtkMRMLLabelMapVolumeNode")
    assert node.IsA("vtkMRMLLabelMapVolumeNode")
    with pytest.raises(ValueError, match="vtkMRMLVectorVolumeNode"):
        node_from_volume(Volume(np.ones((2, 2, 2))), "vector", scene, "vtkMRMLVectorVolumeNode")


def test_two_dimensional_volume_is_refused_naming_the_node(scene):
    node = node_from_volume(Volume(np.zeros((1, 6, 7), np.float32)), "single slice", scene)
    with pytest.raises(UnsupportedVolumeError, match=r"'single slice'.*2D \(7 x 6 x 1 voxels\)"):
        volume_from_node(node)


def test_vector_volume_is_refused_naming_the_node(scene):
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "colour photo")
    slicer.util.updateVolumeFromArray(node, np.zeros((4, 5, 6, 3), np.uint8))
    with pytest.raises(UnsupportedVolumeError, match="'colour photo'.*several values per voxel"):
        volume_from_node(node)


def test_multi_component_scalar_volume_is_refused(scene):
    image = vtk.vtkImageData()
    image.SetDimensions(6, 5, 4)
    image.AllocateScalars(vtk.VTK_FLOAT, 2)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "two channels")
    node.SetAndObserveImageData(image)
    with pytest.raises(UnsupportedVolumeError, match="'two channels' .*2 components"):
        volume_from_node(node)


def test_frame_of_a_4d_sequence_is_refused(scene):
    frame = node_from_volume(Volume(np.zeros((3, 4, 5), np.float32)), "cine", scene)
    show_as_sequence_frame(scene, frame)
    with pytest.raises(UnsupportedVolumeError, match="'cine'.*4D sequence shown by 'cine browser'"):
        volume_from_node(frame)


def test_node_without_voxels_and_missing_input_are_refused(scene):
    with pytest.raises(UnsupportedVolumeError, match="'empty'.*no voxels"):
        volume_from_node(scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty"))
    with pytest.raises(UnsupportedVolumeError, match="no input volume"):
        volume_from_node(None)


def test_check_on_grid_of_names_the_mismatch(scene):
    volume = oblique_volume()
    node = node_from_volume(volume, "reference", scene)
    check_on_grid_of(volume.with_array(np.zeros(volume.shape, np.uint8)), node, "labels")
    shifted = Volume(volume.array, volume.spacing, (0.0, 0.0, 0.0), volume.direction)
    with pytest.raises(ValueError, match="labels .* grid of 'reference'"):
        check_on_grid_of(shifted, node, "labels")


def test_checking_a_volume_keeps_no_reference_to_the_scene_nodes(scene):
    """The sequence-browser lookup must not leak the collection GetNodesByClass returns (vtkMRMLScene.h)."""
    volume = node_from_volume(Volume(np.zeros((3, 4, 5), np.float32)), "CT", scene)
    other = node_from_volume(Volume(np.zeros((3, 4, 5), np.float32)), "cine", scene)
    show_as_sequence_frame(scene, other)
    browser = scene.GetFirstNodeByClass("vtkMRMLSequenceBrowserNode")
    before = browser.GetReferenceCount(), volume.GetReferenceCount()
    for _ in range(3):
        check_translatable(volume)
    assert (browser.GetReferenceCount(), volume.GetReferenceCount()) == before
