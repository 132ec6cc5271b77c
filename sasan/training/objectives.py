"""One training step's objectives: the translator's weighted loss and the discriminators' loss.

Pure functions of the networks and a batch, so every term can be tested and logged by name. Inputs are
batches ``{"image": (B, C, H, W) in [-1, 1], "label": (B, H, W) long, -1 = no label}`` per domain.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F

from .. import losses
from ..config import RunConfig
from .networks import SASANNetworks

PSEUDO_LABEL_CONFIDENCE = 0.7


@dataclass
class Outputs:
    """What the translator produced in a step (reused by the discriminator step and the image logs)."""

    fakes: dict[str, torch.Tensor] = field(default_factory=dict)            # modality -> translated into it
    reconstructions: dict[str, torch.Tensor] = field(default_factory=dict)  # modality -> cycled back
    maps: dict[str, torch.Tensor] = field(default_factory=dict)             # modality -> maps on its real images
    predictions: list[torch.Tensor] = field(default_factory=list)           # seg logits without ground truth
    segmentations: dict[str, torch.Tensor] = field(default_factory=dict)    # modality -> logits on real images


def _labels(batch: dict) -> Optional[torch.Tensor]:
    label = batch.get("label")
    if label is None or not bool((label >= 0).any()):
        return None
    return label


def _translate_stacked(nets: SASANNetworks, images: list[torch.Tensor], source: str,
                       target: str) -> list[tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]]:
    """``nets.translate`` of each batch of ``images``, computed as one pass over them stacked on the batch axis.

    Every network of a translator treats the images of a batch independently (instance norms, no batch
    statistics), so the pieces equal separate passes up to rounding; one larger pass runs faster on the CPU.
    """
    if len(images) == 1:
        return [nets.translate(images[0], source, target)]
    sizes = [len(batch) for batch in images]
    outputs = nets.translate(torch.cat(images), source, target)
    pieces = [output.split(sizes) if output is not None else [None] * len(sizes) for output in outputs]
    return list(zip(*pieces))


def _scores(discriminator: torch.nn.Module, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """``discriminator`` of each batch of ``inputs``, as one pass over them stacked (per-image networks)."""
    scores = discriminator(torch.cat(inputs) if len(inputs) > 1 else inputs[0])
    return list(scores.split([len(batch) for batch in inputs]))


def translator_objective(nets: SASANNetworks, batches: dict[str, dict], config: RunConfig,
                         autocast: Optional[torch.dtype] = None, adversarial_step: int = 0,
                         grouped: bool = False) -> tuple[torch.Tensor, dict[str, float], Outputs]:
    """Weighted sum of every generator-side loss of § 3.2; returns (total, terms, outputs).

    ``adversarial_step`` counts from the start of the adversarial phase; it decides whether
    ``losses.pseudo_label_steps`` still lets pseudo labels in. ``grouped`` (the fast training path) runs the
    passes of one network that do not depend on each other as one pass over their stacked batches: the
    translation of the real images with the identity pass of the other modality, and the segmentation
    discriminator's fakes; the same terms up to rounding (the default path keeps its order of operations,
    so its results stay bit for bit those of earlier versions).
    """
    w, setup = config.losses, config.training.setup
    pseudo_label_source = w.pseudo_labels if w.pseudo_label_steps is None \
        or adversarial_step < w.pseudo_label_steps else "none"
    a, b = nets.modalities
    device_type = batches[a]["image"].device.type
    out = Outputs()
    with torch.autocast(device_type, dtype=autocast or torch.float32, enabled=autocast is not None):
        x = {m: batches[m]["image"] for m in (a, b)}
        other = {a: b, b: a}
        seg_real, seg_fake, identity = {}, {}, {}
        for m in (a, b):
            # grouped: the identity pass of other[m], G_{m->other}(x[other]), shares this pass's networks
            images = [x[m], x[other[m]]] if grouped and w.identity > 0 else [x[m]]
            (fake, maps, logits), *identity_pass = _translate_stacked(nets, images, m, other[m])
            out.fakes[other[m]] = fake
            if maps is not None:
                out.maps[m], seg_real[m] = maps, logits
            if identity_pass:
                identity[other[m]] = identity_pass[0][0]
        cycled_maps = {}
        for m in (a, b):  # x[m] -> other -> back to m
            rec, maps, logits = nets.translate(out.fakes[other[m]], other[m], m)
            out.reconstructions[m] = rec
            if maps is not None:
                cycled_maps[m], seg_fake[other[m]] = maps, logits   # segmentation of images translated into other[m]
        if w.identity > 0 and not grouped:
            for m in (a, b):
                identity[m] = nets.translate(x[m], other[m], m)[0]

        f = lambda t: t.float()  # noqa: E731 - every loss is computed in fp32, whatever the autocast
        terms: dict[str, torch.Tensor] = {}
        terms["adversarial"] = sum(losses.lsgan_generator_loss(f(nets.image_discriminators[m](out.fakes[m])))
                                   for m in (a, b))
        terms["cycle"] = sum(losses.cycle_consistency_loss(f(out.reconstructions[m]), x[m], w.cycle_ssim)
                             for m in (a, b))
        if identity:
            terms["identity"] = sum(losses.identity_loss(f(identity[m]), x[m]) for m in (a, b))
        if setup == "paired":
            terms["voxel"] = sum(losses.voxel_loss(f(out.fakes[m]), x[m]) for m in (a, b))
        if out.maps and config.losses.use_regularization:
            terms["regularization"] = sum(losses.attention_orthogonality_loss(f(m)) for m in
                                          list(out.maps.values()) + list(cycled_maps.values()))
        if out.maps:
            truth = {m: _labels(batches[m]) for m in (a, b)}
            out.segmentations = {m: seg_real[m] for m in (a, b)}
            if config.losses.use_auxiliary:
                aux = []
                for m in (a, b):
                    if truth[m] is not None:  # its real images, and its images translated into the other domain
                        aux += [losses.segmentation_loss(f(seg_real[m]), truth[m]),
                                losses.segmentation_loss(f(seg_fake[other[m]]), truth[m])]
                    elif pseudo_label_source != "none":  # "own": its head on real images teaches the
                        # labelled domain's head on their translation; "translation": the reverse
                        teacher, student = (seg_real[m], seg_fake[other[m]]) if pseudo_label_source == "own" \
                            else (seg_fake[other[m]], seg_real[m])
                        aux.append(losses.segmentation_loss(
                            f(student), losses.pseudo_labels(f(teacher), PSEUDO_LABEL_CONFIDENCE)))
                if aux:
                    terms["auxiliary"] = sum(aux)
            unlabelled = [m for m in (a, b) if truth[m] is None] or [a, b]
            out.predictions = [seg_real[m] for m in unlabelled] + [seg_fake[other[m]] for m in unlabelled]
            if nets.segmentation_discriminator is not None and grouped:  # eq. (1): one term per fake, summed
                terms["segmentation_adversarial"] = sum(
                    losses.lsgan_generator_loss(f(scores)) for scores in _scores(
                        nets.segmentation_discriminator, [torch.softmax(f(p), 1) for p in out.predictions]))
            elif nets.segmentation_discriminator is not None:
                terms["segmentation_adversarial"] = sum(
                    losses.lsgan_generator_loss(f(nets.segmentation_discriminator(torch.softmax(f(p), 1))))
                    for p in out.predictions)
    weights = {"adversarial": w.adversarial, "cycle": w.cycle, "identity": w.identity, "voxel": w.voxel,
               "regularization": w.regularization, "auxiliary": w.auxiliary,
               "segmentation_adversarial": w.segmentation_adversarial}
    total = sum(weights[name] * value for name, value in terms.items())
    return total, {name: float(value.detach()) for name, value in terms.items()}, out


def real_segmentation(batches: dict[str, dict], num_classes: int) -> Optional[torch.Tensor]:
    """One-hot ground truth (B, classes, H, W) of the labelled domain(s): the segmentation GAN's 'real'."""
    found = [batch["label"] for batch in batches.values() if _labels(batch) is not None]
    if not found:
        return None
    labels = torch.cat(found).clamp(min=0)
    return F.one_hot(labels, num_classes).permute(0, 3, 1, 2).float()


def discriminator_objective(nets: SASANNetworks, batches: dict[str, dict], out: Outputs,
                            config: RunConfig, grouped: bool = False) -> tuple[torch.Tensor, dict[str, float]]:
    """LSGAN losses of the image discriminators and of the segmentation discriminator.

    The segmentation GAN follows the weighting of the paper's eq. (1): each fake segmentation's term counts
    once and the real term is weighted by their number (2 where one domain is unlabelled: eq. (1)'s factor
    2), so real and fake weigh the same. Its fakes are ``Outputs.predictions``: the unlabelled domain's head
    on its real images, A_Y(y), and the labelled domain's head on their translations, A_X(G_X(y)) (the
    paper's prose and the authors' code). Eq. (1) as printed has A_Y(G_Y(x)) as the second fake, the
    unlabelled head on *labelled* images translated, whose true segmentation the auxiliary loss already
    gives it; we follow the prose.

    ``grouped`` (the fast training path): each discriminator scores its real and fake batches in one pass.
    """
    terms = {}
    for m, disc in nets.image_discriminators.items():
        if grouped:
            real, fake = _scores(disc, [batches[m]["image"], out.fakes[m].detach().float()])
            terms[f"D_{m}"] = losses.lsgan_discriminator_loss(real.float(), fake.float())
        else:
            terms[f"D_{m}"] = losses.lsgan_discriminator_loss(
                disc(batches[m]["image"]).float(), disc(out.fakes[m].detach().float()).float())
    real = real_segmentation(batches, config.num_classes)
    if nets.segmentation_discriminator is not None and real is not None and out.predictions:
        probabilities = [torch.softmax(p.detach().float(), 1) for p in out.predictions]
        if grouped:
            real_scores, *fakes = _scores(nets.segmentation_discriminator, [real, *probabilities])
        else:
            fakes = [nets.segmentation_discriminator(fake) for fake in probabilities]
            real_scores = nets.segmentation_discriminator(real)
        terms["D_segmentation"] = losses.lsgan_discriminator_loss(
            real_scores.float(), [fake.float() for fake in fakes], real_weight=float(len(fakes)))
    total = sum(terms.values())
    return total, {name: float(value.detach()) for name, value in terms.items()}


def pretraining_regularization_weight(config: RunConfig, step: int) -> float:
    """The orthogonality weight at pre-training ``step``: ramped up linearly over the warm-up fraction.

    With the full weight from the start the softmax maps can saturate before every class owns a map, and
    a class left without one gets no gradient to claim one later (seen on the phantom: the aorta stayed
    at Dice 0 for 2500 steps in some runs).
    """
    t = config.training
    ramp = t.pretrain_regularization_warmup * t.pretrain_attention_steps
    return config.losses.regularization * (min(1.0, step / ramp) if ramp > 0 else 1.0)


def attention_pretraining_objective(nets: SASANNetworks, batches: dict[str, dict], config: RunConfig,
                                    step: int = 0) -> tuple[torch.Tensor, dict[str, float]]:
    """Supervised warm-up of the labelled domains' attention modules: CE + Dice + orthogonality."""
    regularization = pretraining_regularization_weight(config, step)
    terms = {}
    for m, batch in batches.items():
        label = _labels(batch)
        if label is None or m not in nets.attention:
            continue
        maps, logits = nets.attention[m](batch["image"])
        terms[f"pretrain_{m}"] = (losses.segmentation_loss(logits.float(), label)
                                  + regularization * losses.attention_orthogonality_loss(maps.float()))
    if not terms:
        raise ValueError("attention pre-training needs a labelled domain with attention (model.attention: true)")
    total = sum(terms.values())
    return total, {name: float(value.detach()) for name, value in terms.items()}
