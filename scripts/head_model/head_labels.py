"""How the head model's labels are derived from what ships with the real scans (no manual drawing).

Two structures, written as one label map per volume: 0 background, ``HEAD_VALUE`` = head outside the
brain (scalp, skull, face, CSF around the brain), ``BRAIN_VALUE`` = brain (intracranial soft tissue).
The whole head is therefore ``labels > 0``. Every function takes and returns arrays ``(z, y, x)``
with z the axial slice index; masks are boolean.

CT (InVesalius "Cranium", HU):
  head  = the stored head threshold mask (HU >= -142), its largest 3D component (drops the head
          holder), holes filled slice by slice (sinuses, airways);
  bone  = the stored bone threshold mask (HU >= 226) inside the head;
  brain = per axial slice from the orbital roofs up (slice 44 of this CT): the convex hull of the
          bone minus the bone, kept where HU is in [-20, 100] (CSF and brain, not air or fat), then the
          largest 3D component and slice-wise hole filling. The hull bridges a defect in this
          patient's skull (lower left, slices ~55-85) that hole filling cannot. Below slice 44 the
          hull would take in the face, so those slices carry no brain label: the CT's labels are for
          evaluation only (the model trains with labels in MR only).
MR (Colin27 T1, mricron-data):
  head  = T1 above an Otsu threshold of the non-zero voxels, largest 3D component, closed, holes
          filled slice by slice;
  brain = the shipped brain-extracted T1 (``ch2bet``) > 0, closed (2 x 3x3x3) and filled slice-wise
          so that sulcal CSF counts as brain as on CT, inside the head.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, Delaunay, QhullError

HEAD_VALUE = 1
BRAIN_VALUE = 2
CT_BRAIN_HU = (-20.0, 100.0)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean volume (empty in, empty out)."""
    labelled, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if count == 0:
        return np.zeros_like(mask, dtype=bool)
    sizes = ndimage.sum_labels(mask, labelled, index=np.arange(1, count + 1))
    return labelled == (1 + int(np.argmax(sizes)))


def fill_slicewise(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of every axial slice of ``mask`` ``(z, y, x)``."""
    return np.stack([ndimage.binary_fill_holes(plane) for plane in mask])


def ct_head(head_mask: np.ndarray) -> np.ndarray:
    """Head of the CT from its stored threshold mask (see the module docstring)."""
    return fill_slicewise(largest_component(head_mask.astype(bool)))


def ct_bone(bone_mask: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Bone of the CT: the stored bone threshold mask inside the head."""
    return bone_mask.astype(bool) & head


def convex_hull_2d(plane: np.ndarray) -> np.ndarray:
    """The filled convex hull of the true pixels of a 2D boolean ``plane`` (empty if fewer than 3)."""
    points = np.argwhere(plane)
    if len(points) < 3:
        return np.zeros_like(plane, dtype=bool)
    try:
        hull = ConvexHull(points)
    except QhullError:  # all points on a line
        return plane.astype(bool)
    triangles = Delaunay(points[hull.vertices])
    rows, cols = np.indices(plane.shape)
    pixels = np.stack([rows.ravel(), cols.ravel()], axis=1)
    return (triangles.find_simplex(pixels) >= 0).reshape(plane.shape)


def ct_brain(ct_hu: np.ndarray, bone: np.ndarray, first_slice: int) -> np.ndarray:
    """Intracranial soft tissue of the CT from ``first_slice`` up (empty below).

    Per axial slice: the convex hull of the bone minus the bone, where HU is in ``CT_BRAIN_HU``. The
    hull (not hole filling) bridges the defect in this patient's skull; below the orbital roofs it
    would take in the face, hence ``first_slice``. An in-plane opening cuts thin strands along the
    skull's inner table, then the largest 3D component is kept and holes are filled slice-wise.
    """
    low, high = CT_BRAIN_HU
    soft = (ct_hu >= low) & (ct_hu <= high)
    inside = np.zeros_like(bone, dtype=bool)
    for z in range(max(first_slice, 0), bone.shape[0]):
        inside[z] = convex_hull_2d(bone[z]) & ~bone[z] & soft[z]
    inside = ndimage.binary_opening(inside, structure=np.ones((1, 3, 3), bool))
    return fill_slicewise(largest_component(inside))


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a 1D array of intensities."""
    histogram, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(histogram).astype(np.float64)
    total = weight[-1]
    mean = np.cumsum(histogram * centres)
    between = (mean[-1] * weight / total - mean) ** 2 / np.maximum(weight * (total - weight), 1e-12) * total
    return float(centres[int(np.argmax(between[:-1]))])


def mr_head(t1: np.ndarray) -> np.ndarray:
    """Head of a T1 image: Otsu threshold of the non-zero voxels, largest component, closed, filled."""
    threshold = otsu_threshold(t1[t1 > 0])
    head = largest_component(t1 > threshold)
    head = ndimage.binary_closing(head, structure=np.ones((3, 3, 3), bool), iterations=2, border_value=0)
    return fill_slicewise(head)


def mr_brain(brain_extracted: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Brain of a T1 image: its brain-extracted version's non-zero voxels, closed and filled slice-wise.

    Closing and filling take in the sulcal and fissural CSF, as the CT's intracranial region does.
    """
    brain = ndimage.binary_closing(brain_extracted > 0, structure=np.ones((3, 3, 3), bool), iterations=2,
                                   border_value=0)
    return fill_slicewise(brain) & head


def label_map(head: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """uint8 label map: ``HEAD_VALUE`` on the head, ``BRAIN_VALUE`` where the brain is."""
    labels = np.zeros(head.shape, np.uint8)
    labels[head] = HEAD_VALUE
    labels[brain] = BRAIN_VALUE
    return labels
