"""The run configuration: typed dataclasses, loaded from YAML and validated key by key.

This is the engine's vocabulary (every package reads it), so it sits at the ground floor and imports
nothing of the engine; PyYAML is imported only where a file is read or written.

Every error names the offending key with its full dotted path and what was expected, so a typo in
a 100-line file is found at once.  ``resolved_yaml`` writes the complete configuration (defaults
included) that a run saves next to its checkpoints.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

Modality = str  # "CT", "MR", "T1", "T2", ... free text, compared case-insensitively


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


@dataclass
class LabelSpec:
    """One segmented structure: its name, its value in the label files and its display colour."""

    name: str
    value: int
    color: list[float] = field(default_factory=lambda: [1.0, 0.0, 0.0])


@dataclass
class NormalizationConfig:
    """How intensities are mapped to [-1, 1] (the model card stores it so inference can repeat it).

    ``percentile``: clip to the volume's own percentiles, z-score, then rescale to [-1, 1].
    ``window``: clip to a fixed window (CT in HU), then rescale linearly to [-1, 1].
    """

    method: Literal["percentile", "window"] = "percentile"
    percentiles: list[float] = field(default_factory=lambda: [2.0, 98.0])
    window: list[float] = field(default_factory=lambda: [-1000.0, 1000.0])


@dataclass
class CropConfig:
    """The in-plane region every volume of a domain is cropped to before slicing (``sasan.data.crop``).

    ``none``: whole slices. ``foreground``: the bounding box, over all slices, of voxels above
    ``threshold`` (original units; Otsu's threshold of the volume when unset), grown by ``margin_mm``.
    ``box``: fixed ``rows`` and ``columns`` of each slice as [start, end] fractions in 0..1. The model
    card stores it, so inference crops the same way and pastes its results back onto the whole grid.
    """

    method: Literal["none", "foreground", "box"] = "none"
    threshold: Optional[float] = None
    margin_mm: float = 10.0
    rows: list[float] = field(default_factory=lambda: [0.0, 1.0])
    columns: list[float] = field(default_factory=lambda: [0.0, 1.0])


@dataclass
class DomainConfig:
    """One imaging domain (source or target) and where its volumes come from."""

    modality: Modality = "CT"
    layout: Literal["phantom", "folder", "mmwhs", "brats", "rire"] = "phantom"
    root: Optional[str] = None
    labelled: bool = True
    brats_sequence: str = "t2"
    phantom_subjects: Optional[int] = None   # phantom layout: this domain's subjects; None: data.phantom_subjects
    normalization: NormalizationConfig = field(default_factory=NormalizationConfig)
    crop: CropConfig = field(default_factory=CropConfig)


@dataclass
class AugmentConfig:
    rotation_degrees: float = 10.0
    scale_range: list[float] = field(default_factory=lambda: [0.75, 1.0])
    flip_horizontal: bool = True
    flip_vertical: bool = False


@dataclass
class IntensityAugmentConfig:
    """Random intensity changes of the detached U-Net's input batches (real and translated images alike),
    never of the translator's: the U-Net then tolerates the small contrast, noise and sharpness offsets
    of a translation. Gamma on [-1, 1] mapped to [0, 1], contrast and brightness, Gaussian blur and
    Gaussian noise, each applied per image with its probability, the same to every context channel."""
    enabled: bool = False
    probability: float = 0.5            # of the gamma, the contrast/brightness and the noise change
    gamma_range: list[float] = field(default_factory=lambda: [0.7, 1.5])
    contrast_range: list[float] = field(default_factory=lambda: [0.75, 1.25])
    brightness: float = 0.1             # an offset uniform in +-brightness
    noise_std: float = 0.05             # the noise's standard deviation is uniform in [0, noise_std]
    blur_probability: float = 0.3
    blur_sigma: list[float] = field(default_factory=lambda: [0.5, 1.0])   # pixels


@dataclass
class NamedSplitConfig:
    """Subjects named by id for validation and for test, the rest training: a data set's published split, or
    a recipe that must hold particular scans out. Ids apply to both domains (paired subjects share them)."""
    validation: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)


@dataclass
class DataConfig:
    source: DomainConfig = field(default_factory=lambda: DomainConfig(modality="CT"))
    target: DomainConfig = field(default_factory=lambda: DomainConfig(modality="MR", labelled=False))
    image_size: int = 256
    context: int = 3
    axis: Literal["auto", "axial", "coronal", "sagittal"] = "auto"
    skip_empty: bool = True
    phantom_subjects: int = 10
    phantom_seed: int = 0
    phantom_size: int = 96
    # How far the phantom's subjects vary (``sasan.data.phantom_profiles``): "default", the embedded phantom;
    # "transfer", domain randomisation (contrast timing, noise, blur, slices, field of view, body, heart pose)
    # for models meant for real scans.
    phantom_profile: Literal["default", "transfer"] = "default"
    # Subjects split three ways by a seeded hash of their ids (``sasan.data.layouts.split_subjects``):
    # test (scored once, at the end: ``sasan evaluate``, the demo's table), validation (the trainer's
    # periodic validation and every choice) and training. 0 validation: no periodic validation.
    test_fraction: float = 0.2
    validation_fraction: float = 0.1
    split_seed: int = 0
    # Set: these named subjects replace the seeded fractions above (``sasan.data.layouts.named_split``).
    named_split: Optional[NamedSplitConfig] = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    segmenter_intensity_augment: IntensityAugmentConfig = field(default_factory=IntensityAugmentConfig)
    labels: list[LabelSpec] = field(default_factory=list)
    num_workers: int = 0
    # What the scans show, in plain words ("head"): the model card describes each modality's training scans
    # as "<body_region> <modality>" ("head CT"), and the input check names them when it warns.
    body_region: str = ""


@dataclass
class ModelConfig:
    """Network sizes. Defaults are the paper's (appendix)."""

    # "sasan": the generator re-normalised by the attention maps (with ``attention: false``, plain instance
    # norms: the SASAN-without-SPADE ablation); "resnet": the CycleGAN baseline's ResNet generator
    # (``sasan.models.cyclegan``, ``resnet_width`` wide, ``resnet_blocks`` residual blocks), no attention.
    generator: Literal["sasan", "resnet"] = "sasan"
    resnet_width: int = 64
    resnet_blocks: int = 9
    attention: bool = True
    num_maps: int = 8
    attention_widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    encoder_widths: list[int] = field(default_factory=lambda: [32, 64, 128, 128])
    decoder_widths: list[int] = field(default_factory=lambda: [128, 64, 32])
    head_width: int = 16
    spade_hidden: int = 64
    image_discriminator_widths: list[int] = field(default_factory=lambda: [32, 64, 128])
    segmentation_discriminator_widths: list[int] = field(default_factory=lambda: [32, 32, 32])
    segmenter_width: int = 64
    segmenter_depth: int = 4
    seg_head_scale: float = 10.0


@dataclass
class LossConfig:
    """Loss weights and the ablation switches of the paper's Table 3."""

    adversarial: float = 1.0
    segmentation_adversarial: float = 1.0
    cycle: float = 10.0
    cycle_ssim: bool = True        # the cycle loss is L1 + (1 - SSIM) (the paper's), else L1 alone (CycleGAN's)
    identity: float = 2.5
    regularization: float = 1.0
    auxiliary: float = 0.1
    voxel: float = 10.0
    use_segmentation_discriminator: bool = True
    use_auxiliary: bool = True
    use_regularization: bool = True
    # Where an unlabelled domain's pseudo labels come from: "own" (its own head's confident segmentation
    # labels the labelled domain's head on its translated images, so the translator keeps structures
    # recognisable), "translation" (the reverse: the head on its translations labels its own head) or
    # "none" (the design's "pseudo labels where a domain has none" is "own" or "translation"). "own" is
    # the default for its worst case: with "translation" the poor translations of the first adversarial
    # steps taught the unlabelled head to miss whole structures, and some seeds never recovered (phantom
    # seeds 0-3: "own" 0.57-0.77 mean Dice, "translation" 0.23-0.76, "none" 0.41-0.78;
    # benchmarks/RESULTS.md).
    pseudo_labels: Literal["own", "translation", "none"] = "own"
    # Adversarial steps during which those pseudo labels apply, then none (null: all of them). The
    # unlabelled head's early labels steer the translator while it is still poor; later they can keep
    # reinforcing its own mistakes (phantom: "own" for 250 of 1000 steps matched or beat both "own"
    # throughout and "none" on every seed measured; benchmarks/RESULTS.md).
    pseudo_label_steps: Optional[int] = None


@dataclass
class TrainingConfig:
    setup: Literal["unpaired", "unpaired_both_labels", "paired"] = "unpaired"
    steps: int = 100000
    batch_size: int = 2
    lr: float = 1e-4
    attention_lr: Optional[float] = None
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    decay_start: float = 0.5
    pretrain_attention_steps: int = 0
    # Fraction of the pre-training over which the orthogonality weight ramps up from 0 (0: constant).
    pretrain_regularization_warmup: float = 0.0
    freeze_pretrained_attention: bool = True
    # Start the unlabelled domain's attention module as a copy of the pre-trained labelled one (both
    # modalities show the same anatomy), instead of from its random initialisation.
    copy_pretrained_attention: bool = False
    ema_decay: float = 0.0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    # The fast training path: channels-last networks with the norms rewritten for that layout, the passes of
    # one network that do not depend on each other run as one pass over their stacked batches, fused Adam,
    # and (CPU) freed memory kept in the process (sasan/training/allocator.py). It learns the same function
    # as the default path up to rounding, not bit for bit; a run resumes exactly in the mode it started in.
    # Combine with ``precision: bf16`` where bf16 matmuls are faster than fp32 (benchmarks/training.py).
    fast: bool = False
    device: str = "auto"
    threads: int = 0
    seed: int = 0
    deterministic: bool = False
    checkpoint_every: int = 1000
    validate_every: int = 1000
    log_every: int = 50
    image_every: int = 1000
    segmenter_steps: int = 0
    segmenter_lr: float = 1e-3
    segmenter_with_translations: bool = False


@dataclass
class RunConfig:
    name: str = "sasan"
    output: str = "runs/sasan"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    losses: LossConfig = field(default_factory=LossConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    @property
    def num_classes(self) -> int:
        """Background plus one class per labelled structure."""
        return 1 + len(self.data.labels)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is Union:
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (inner,) = typing.get_args(tp)
        return f"a list of {_type_name(inner)}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false",
            type(None): "null"}.get(tp, str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is Union:
        errors = []
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, key)
            except ConfigError as error:
                errors.append(error)
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        (inner,) = typing.get_args(tp)
        return [_convert(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return section_from_dict(tp, value, key)
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{key}: expected null, got {value!r}")
        return None
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")  # pragma: no cover - schema bug


def section_from_dict(cls: type, mapping: Any, prefix: str) -> Any:
    """Build the dataclass ``cls`` (any section of the schema) from ``mapping``; errors name ``prefix.key``."""
    where = prefix or "the configuration"
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where}: expected a mapping, got {mapping!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - names)
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else str(unknown[0])
        raise ConfigError(f"{key}: unknown key (allowed here: {', '.join(sorted(names))})")
    for f in dataclasses.fields(cls):
        if f.name not in mapping and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            key = f"{prefix}.{f.name}" if prefix else f.name
            raise ConfigError(f"{key}: missing (expected {_type_name(hints[f.name])})")
    kwargs = {
        name: _convert(value, hints[name], f"{prefix}.{name}" if prefix else name)
        for name, value in mapping.items()
    }
    return cls(**kwargs)


class CropError(ConfigError):
    """A crop setting (a configuration's or a model card's) cannot be read."""


def crop_to_dict(crop: CropConfig) -> dict:
    """JSON-safe description for the model card."""
    return dataclasses.asdict(crop)


def crop_from_dict(mapping: object) -> CropConfig:
    """A model card's crop description back as a ``CropConfig``; ``CropError`` names what is wrong."""
    try:
        crop = section_from_dict(CropConfig, mapping, "crop")
    except ConfigError as error:
        raise CropError(str(error)) from None
    problem = crop_config_problem(crop)
    if problem:
        raise CropError(f"crop.{problem}")
    return crop


def crop_config_problem(crop: CropConfig) -> Optional[str]:
    """What is wrong with ``crop`` ("field: why"), or None; shared with the model card's check."""
    for name in ("rows", "columns"):
        span = getattr(crop, name)
        if len(span) != 2 or not 0.0 <= span[0] < span[1] <= 1.0:
            return f"{name}: expected [start, end] fractions with 0 <= start < end <= 1; got {span}"
    if not (math.isfinite(crop.margin_mm) and crop.margin_mm >= 0):
        return f"margin_mm: expected a finite number >= 0; got {crop.margin_mm}"
    if crop.threshold is not None and not math.isfinite(crop.threshold):
        return f"threshold: expected a finite number or null; got {crop.threshold}"
    return None


def _intensity_augment_ok(a: IntensityAugmentConfig) -> bool:
    ranges = (a.gamma_range, a.contrast_range, a.blur_sigma)
    return (all(len(r) == 2 and 0 < r[0] <= r[1] for r in ranges) and 0 <= a.probability <= 1
            and 0 <= a.blur_probability <= 1 and a.brightness >= 0 and a.noise_std >= 0)


def check_cross_fields(config: RunConfig) -> RunConfig:
    """Cross-field checks that the types alone cannot express."""
    d, t, m = config.data, config.training, config.model
    checks = [
        (d.context >= 1 and d.context % 2 == 1, "data.context: expected an odd number >= 1"),
        (d.image_size >= 16 and d.image_size % 16 == 0, "data.image_size: expected a multiple of 16, >= 16"),
        (0.0 < d.test_fraction < 1.0, "data.test_fraction: expected a number between 0 and 1"),
        (0.0 <= d.validation_fraction < 1.0 and d.test_fraction + d.validation_fraction < 1.0,
         "data.validation_fraction: expected a number in [0, 1) with test_fraction + validation_fraction < 1"),
        (d.named_split is None or not set(d.named_split.validation) & set(d.named_split.test),
         "data.named_split: a subject cannot be both in validation and in test"),
        (len(d.augment.scale_range) == 2 and 0 < d.augment.scale_range[0] <= d.augment.scale_range[1],
         "data.augment.scale_range: expected [low, high] with 0 < low <= high"),
        (_intensity_augment_ok(d.segmenter_intensity_augment), "data.segmenter_intensity_augment: expected probabilities "
         "in [0, 1], [low, high] ranges with 0 < low <= high and brightness, noise_std >= 0"),
        (t.steps >= 0, "training.steps: expected an integer >= 0"),
        (t.segmenter_steps >= 0 and t.pretrain_attention_steps >= 0,
         "training.segmenter_steps / pretrain_attention_steps: expected integers >= 0"),
        (t.steps + t.segmenter_steps >= 1, "training.steps: expected adversarial or segmenter steps to train"),
        (t.batch_size >= 1, "training.batch_size: expected a positive integer"),
        (t.lr > 0, "training.lr: expected a positive number"),
        (len(t.betas) == 2 and all(0 <= b < 1 for b in t.betas), "training.betas: expected two numbers in [0, 1)"),
        (0.0 <= t.decay_start <= 1.0, "training.decay_start: expected a fraction between 0 and 1"),
        (0.0 <= t.pretrain_regularization_warmup <= 1.0,
         "training.pretrain_regularization_warmup: expected a fraction between 0 and 1"),
        (0.0 <= t.ema_decay < 1.0, "training.ema_decay: expected a number in [0, 1)"),
        (config.losses.pseudo_label_steps is None or config.losses.pseudo_label_steps >= 0,
         "losses.pseudo_label_steps: expected an integer >= 0 or null"),
        (m.num_maps >= 1, "model.num_maps: expected a positive integer"),
        (m.generator != "resnet" or not m.attention,
         "model.generator: the 'resnet' generator takes no attention maps; set model.attention: false"),
        (m.resnet_width >= 1 and m.resnet_blocks >= 0,
         "model.resnet_width / resnet_blocks: expected a positive width and a number of blocks >= 0"),
        (len(m.attention_widths) >= 2, "model.attention_widths: expected at least two levels"),
        (d.image_size % (2 ** (len(m.attention_widths) - 1)) == 0,
         "model.attention_widths: data.image_size must be divisible by 2**(levels - 1)"),
        (len(m.encoder_widths) == 4, "model.encoder_widths: expected four widths (strides 1, 2, 2, 1)"),
        (len(m.decoder_widths) == 3, "model.decoder_widths: expected three widths (three SPADE blocks)"),
        (d.image_size % (2 ** m.segmenter_depth) == 0,
         "model.segmenter_depth: data.image_size must be divisible by 2**depth"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    for norm_key, domain in (("data.source", d.source), ("data.target", d.target)):
        n = domain.normalization
        if len(n.percentiles) != 2 or not 0 <= n.percentiles[0] < n.percentiles[1] <= 100:
            raise ConfigError(f"{norm_key}.normalization.percentiles: expected [low, high] within 0..100")
        if len(n.window) != 2 or not n.window[0] < n.window[1]:
            raise ConfigError(f"{norm_key}.normalization.window: expected [low, high] with low < high")
        crop_problem = crop_config_problem(domain.crop)
        if crop_problem:
            raise ConfigError(f"{norm_key}.crop.{crop_problem}")
        if domain.phantom_subjects is not None and (isinstance(domain.phantom_subjects, bool)
                                                    or domain.phantom_subjects < 1):
            raise ConfigError(f"{norm_key}.phantom_subjects: expected a positive integer or null")
        if domain.layout != "phantom" and not domain.root:
            raise ConfigError(f"{norm_key}.root: a {domain.layout!r} layout needs a data folder")
    if t.setup == "paired" and (d.source.crop != d.target.crop or d.source.crop.method == "foreground"):
        # A pair's two images must stay pixel-aligned for the voxel loss: only the same fixed box keeps them so.
        raise ConfigError("data.source.crop: the paired set-up needs the same crop in both domains, 'none' or "
                          "'box' (a foreground box is found per image and would misalign a pair)")
    labelled = [d.source.labelled, d.target.labelled]
    if t.setup == "unpaired" and not any(labelled):
        raise ConfigError("training.setup: 'unpaired' needs labels in one domain (data.source.labelled)")
    if t.setup == "unpaired_both_labels" and not all(labelled):
        raise ConfigError("training.setup: 'unpaired_both_labels' needs data.source.labelled and data.target.labelled")
    # Checked only where there is adversarial training: a segmenter-only run derived from such a
    # configuration (steps 0) keeps the key harmlessly.
    if t.copy_pretrained_attention and t.steps > 0 and not (t.pretrain_attention_steps > 0 and m.attention
                                                            and sum(labelled) == 1):
        raise ConfigError("training.copy_pretrained_attention: needs attention pre-training "
                          "(pretrain_attention_steps > 0, model.attention) and exactly one labelled domain")
    if t.pretrain_attention_steps > 0 and not m.attention:
        raise ConfigError("training.pretrain_attention_steps: there is no attention module to pre-train "
                          "(model.attention: false); set it to 0")
    if any(labelled) and not d.labels:
        raise ConfigError("data.labels: a labelled domain needs its structures listed (name, value, color)")
    return config


def config_from_dict(mapping: dict, base_dir: Optional[Path] = None) -> RunConfig:
    """Build and validate a configuration; relative data roots resolve against ``base_dir``."""
    config = check_cross_fields(section_from_dict(RunConfig, mapping, ""))
    if base_dir is not None:
        for key, domain in (("data.source", config.data.source), ("data.target", config.data.target)):
            if domain.root:
                root = Path(domain.root)
                if not root.is_absolute():
                    root = (base_dir / root).resolve()
                if not root.exists():
                    raise ConfigError(f"{key}.root: folder {str(root)!r} does not exist")
                domain.root = str(root)
    return config


def load_config(path: Union[str, Path]) -> RunConfig:
    """Read a YAML configuration file and validate it (``ConfigError`` names the bad key)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file {str(path)!r} does not exist")
    try:
        mapping = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(error)})") from None
    return config_from_dict(mapping, base_dir=Path.cwd())


def _yaml_problem(error: Exception) -> str:
    """The parser's complaint in one line, with the 1-based line and column where it noticed it."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def config_to_dict(config: RunConfig) -> dict:
    return dataclasses.asdict(config)


def resolved_yaml(config: RunConfig) -> str:
    """The full configuration, defaults included, as YAML (saved beside every run's checkpoints)."""
    import yaml

    return yaml.safe_dump(config_to_dict(config), sort_keys=False)
