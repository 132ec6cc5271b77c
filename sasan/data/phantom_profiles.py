"""What the phantom varies from subject to subject, and how far: the default profile and the "transfer" one.

Every range is ``(low, high)``; a subject draws its value uniformly from it. ``default`` is the embedded
phantom of the demo, the protocol and the shipped phantom model: its ranges are the ones the renderer always
had, and it renders bit for bit what it rendered before profiles existed (``Testing/data/test_phantom_profiles.py``
holds checksums). ``transfer`` (issue #24) widens them to what real cardiac CTs and MRs vary by, so that a
model trained on the phantom alone meets fewer surprises on a real scan (domain randomisation):

- contrast timing: left-heart blood 150-500 HU, the right heart and pulmonary trunk from a third of it
  (late arterial) to 1.4 times it (pulmonary phase), the myocardium enhancing with the blood;
- noise (CT 5-60 HU) and reconstruction blur (0.3-1.5 voxels), slice thickness (CT 1-5 mm, MR 1.5-8 mm),
  field of view (down to 0.8 of the body's width, so the body may be cut at the sides), a longer and
  shifted z coverage, a stronger MR bias field;
- body size (260-400 mm wide) and position in the field of view (+-30 mm), heart position and orientation
  (tilted 0-35 degrees), more or fewer lung vessels.

The right heart, the pulmonary trunk and its branches, the lungs with their vessels, the ribs and the spine
are in every subject of both profiles, unlabelled (``phantom_anatomy``): a model must learn that they are
not the left heart or the ascending aorta.

Phantom caches are named by ``phantom.PHANTOM_VERSION`` and the profile: bump the version when a change here
makes a profile render differently.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from sasan.data.phantom_anatomy import AnatomyRanges

Range = tuple[float, float]


@dataclass(frozen=True)
class Acquisition:
    """How a modality samples the chest: field of view, slices, stack obliquity, blur and where the grid sits."""

    fov_margin: Range  # in-plane field of view / largest body dimension
    slice_fraction: Range  # number of slices / in-plane size (unless ``slice_mm`` is set)
    z_coverage_mm: Range
    oblique_probability: float
    oblique_degrees: Range
    blur_voxels: Range  # in-plane Gaussian sigma; through-plane uses 0.7 of it
    grid_shift_mm: float = 10.0  # the grid's centre moves by up to this (x and y) from the body axis ...
    grid_z_mm: Range = (15.0, 35.0)  # ... and sits this far above the LV centre
    slice_mm: Optional[Range] = None  # slice thickness drawn directly; the number of slices follows


@dataclass(frozen=True)
class CTAppearance:
    """CT intensities that depend on the subject (HU) and the noise."""

    left_blood_hu: Range = (260.0, 400.0)  # LV, LA, aorta: the contrast timing
    right_to_left: Range = (0.55, 1.0)  # right-heart blood (RV, RA, pulmonary trunk) / left-heart blood
    right_blood_min_hu: float = 150.0
    myocardium_enhancement: Range = (0.0, 0.0)  # share of the left blood's enhancement the myocardium takes
    noise_hu: Range = (15.0, 25.0)


@dataclass(frozen=True)
class MRAppearance:
    """bSSFP-like intensities that depend on the subject (arbitrary units) and the noise and bias field."""

    left_blood: Range = (720.0, 820.0)
    noise: Range = (12.0, 25.0)
    bias_scale: float = 1.0  # multiplies the spread of the bias field's polynomial coefficients


@dataclass(frozen=True)
class PhantomProfile:
    """Everything the phantom draws per subject: anatomy, the two acquisitions and appearances."""

    name: str
    anatomy: AnatomyRanges = field(default_factory=AnatomyRanges)
    ct_acquisition: Acquisition = Acquisition((1.08, 1.25), (0.7, 0.8), (150.0, 180.0), 0.4, (3.0, 10.0), (0.5, 0.8))
    mr_acquisition: Acquisition = Acquisition((1.12, 1.32), (0.55, 0.65), (170.0, 200.0), 0.6, (4.0, 15.0),
                                              (0.8, 1.1))
    ct: CTAppearance = field(default_factory=CTAppearance)
    mr: MRAppearance = field(default_factory=MRAppearance)

    def acquisition(self, modality: str) -> Acquisition:
        return self.ct_acquisition if modality == "CT" else self.mr_acquisition


DEFAULT = PhantomProfile("default")

TRANSFER = PhantomProfile(
    "transfer",
    anatomy=AnatomyRanges(body_width_mm=(260.0, 400.0), body_depth_ratio=(0.55, 0.8), body_shift_mm=30.0,
                          heart_shift_x_mm=(0.0, 40.0), heart_shift_y_mm=(-45.0, -15.0),
                          heart_pose_degrees=(0.0, 35.0), lung_vessels=(120, 450)),
    ct_acquisition=Acquisition((0.8, 1.35), (0.7, 0.8), (140.0, 300.0), 0.4, (3.0, 15.0), (0.3, 1.5),
                               grid_shift_mm=30.0, grid_z_mm=(-10.0, 50.0), slice_mm=(1.0, 5.0)),
    mr_acquisition=Acquisition((0.85, 1.4), (0.55, 0.65), (150.0, 300.0), 0.6, (3.0, 20.0), (0.5, 1.8),
                               grid_shift_mm=30.0, grid_z_mm=(-10.0, 50.0), slice_mm=(1.5, 8.0)),
    ct=CTAppearance(left_blood_hu=(150.0, 500.0), right_to_left=(0.35, 1.4), right_blood_min_hu=80.0,
                    myocardium_enhancement=(0.05, 0.25), noise_hu=(5.0, 60.0)),
    mr=MRAppearance(left_blood=(600.0, 900.0), noise=(5.0, 40.0), bias_scale=2.0),
)

PROFILES = {profile.name: profile for profile in (DEFAULT, TRANSFER)}


def phantom_profile(profile: Union[str, PhantomProfile]) -> PhantomProfile:
    """The profile named ``profile`` (a ``PhantomProfile`` passes through); ``ValueError`` names the known ones."""
    if isinstance(profile, PhantomProfile):
        return profile
    if profile not in PROFILES:
        raise ValueError(f"unknown phantom profile {profile!r}; expected one of {', '.join(PROFILES)}")
    return PROFILES[profile]
