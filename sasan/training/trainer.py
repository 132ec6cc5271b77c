"""The training loop: attention pre-training, adversarial SASAN training, then the detached U-Net.

One global step counter runs through three phases, ``[0, P)`` supervised attention warm-up, ``[P, P+S)``
alternating translator / discriminator updates, ``[P+S, P+S+U)`` the segmenter; a checkpoint holds
everything needed to continue at the same step with the same result (weights, optimisers, schedules,
EMA, RNG states; the data order is a function of the step, see ``run_data``).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from .. import losses
from ..config import RunConfig, resolved_yaml
from ..data.augment import augment_intensity
from ..models.channels_last import CHANNELS_LAST, use_channels_last
from ..models.translator import attention_name, direction_networks, translate
from ..progress import Progress
from ..runtime import training_device
from .allocator import keep_freed_memory
from .checkpoint import (
    capture_rng,
    discard_partial_checkpoints,
    latest_checkpoint,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from .distributed import DistributedContext
from .feedback import Feedback
from .networks import ExponentialAverage, SASANNetworks, adam, make_optimisers, make_schedulers
from .objectives import (
    PSEUDO_LABEL_CONFIDENCE,
    attention_pretraining_objective,
    discriminator_objective,
    translator_objective,
)
from .run_data import RunData, draw_batch, prepare_run_data, step_generator, write_intensity
from .run_folder import CONFIG_FILE, RUN_FILES
from .stop import TrainingStopped
from .validation import validation_dice

log = logging.getLogger(__name__)

INTENSITY_SALT = 200   # keeps the segmenter's intensity draws apart from its batch draws (salt 100 + domain)


class Trainer:
    """Train a SASAN run described by ``config`` into ``run_dir`` (checkpoints, logs, resolved config)."""

    def __init__(self, config: RunConfig, run_dir: Path, resume: bool = False,
                 dist: Optional[DistributedContext] = None, data: Optional[RunData] = None,
                 translator: Optional[dict[str, torch.nn.Module]] = None, progress: Optional[Progress] = None,
                 stop: Optional[Callable[[], bool]] = None) -> None:
        self.config, self.run_dir = config, Path(run_dir)
        # ``progress(fraction, message)`` replaces the progress bar; ``stop()`` True ends the run after the
        # current step with a checkpoint (``TrainingStopped``).
        self.progress, self.stop_requested = progress, stop or (lambda: False)
        t = config.training
        self.dist = dist or DistributedContext.single(training_device(t.device))
        self.device = self.dist.device
        if t.threads:
            torch.set_num_threads(t.threads)
        if t.deterministic:
            torch.use_deterministic_algorithms(True)
        torch.manual_seed(t.seed)
        self.phases = (t.pretrain_attention_steps, t.steps, t.segmenter_steps)
        self.total_steps = sum(self.phases)
        existing = latest_checkpoint(self.run_dir)
        if existing is not None and not resume:
            raise FileExistsError(f"{self.run_dir} already holds checkpoints; pass --resume to continue "
                                  "or choose another --output")
        foreign = sorted(p.name for p in self.run_dir.iterdir() if p.name not in RUN_FILES) \
            if self.run_dir.is_dir() else []
        if foreign:
            raise FileExistsError(f"{self.run_dir} is not a SASAN run folder (it holds {foreign[0]!r}); "
                                  "choose an empty or new --output")
        discard_partial_checkpoints(self.run_dir)
        self.data = data or prepare_run_data(config)
        self.nets = SASANNetworks(config).to(self.device)
        if t.fast:
            use_channels_last(self.nets)
            if self.device.type == "cpu":
                keep_freed_memory()
        self.optimisers = make_optimisers(self.nets, config)
        self.schedulers = make_schedulers(self.optimisers, config)
        self.pretrain_optimiser = (adam([p for a in self.nets.attention.values() for p in a.parameters()],
                                        config, t.attention_lr or t.lr) if self.phases[0] else None)
        # The segmenter's Adam keeps torch's default betas (0.9, 0.999), not the GAN's.
        self.segmenter_optimiser = (torch.optim.Adam(self.nets.segmenter.parameters(), lr=t.segmenter_lr,
                                                     fused=True if t.fast else None)
                                    if self.nets.segmenter is not None else None)
        self.ema = ExponentialAverage(self.nets.translator(), t.ema_decay) if t.ema_decay else None
        self.precision = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[t.precision]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=t.precision == "fp16")
        # Networks that translate the source for the segmenter's "w/ aug." images: another model's, or ours.
        self.external_translator = translator
        self.step = 0
        if existing is not None:
            self._restore(load_checkpoint(existing))
            log.info("resuming %s at step %d", self.run_dir, self.step)
        self.wrapped = self.dist.wrap(self.nets)
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / CONFIG_FILE).write_text(resolved_yaml(config), encoding="utf-8")
            write_intensity(self.run_dir, self.data.intensity)

    # --- checkpoints -----------------------------------------------------------------------------
    def state(self) -> dict:
        state = {"step": self.step, "networks": self.nets.state_dict(), "rng": capture_rng(),
                 "optimisers": {n: o.state_dict() for n, o in self.optimisers.items()},
                 "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
                 "scaler": self.scaler.state_dict()}
        if self.pretrain_optimiser is not None:
            state["pretrain_optimiser"] = self.pretrain_optimiser.state_dict()
        if self.segmenter_optimiser is not None:
            state["segmenter_optimiser"] = self.segmenter_optimiser.state_dict()
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def _restore(self, state: dict) -> None:
        self.nets.load_state_dict(state["networks"])
        for name, optimiser in self.optimisers.items():
            optimiser.load_state_dict(state["optimisers"][name])
        for name, scheduler in self.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][name])
        self.scaler.load_state_dict(state["scaler"])
        if self.pretrain_optimiser is not None:
            self.pretrain_optimiser.load_state_dict(state["pretrain_optimiser"])
        if self.segmenter_optimiser is not None:
            self.segmenter_optimiser.load_state_dict(state["segmenter_optimiser"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        restore_rng(state["rng"])
        self.step = int(state["step"])

    def save(self) -> None:
        if self.dist.is_main:
            save_checkpoint(self.run_dir, self.step, self.state())

    def translator(self) -> dict[str, torch.nn.Module]:
        """The translator that is validated and exported: the EMA weights when averaging is on, else the live ones."""
        return self.ema.shadow if self.ema is not None else self.nets.translator()

    def exported_networks(self) -> dict[str, torch.nn.Module]:
        """The networks to export: ``translator()`` and the segmenter."""
        return {**self.nets.exported(), **self.translator()}

    # --- steps -----------------------------------------------------------------------------------
    def _batches(self, salt_offset: int = 0) -> dict[str, dict]:
        t = self.config.training
        batches, first = {}, None
        for salt, (modality, dataset) in enumerate(self.data.train.items()):
            reuse = first if t.setup == "paired" else None
            batch = draw_batch(dataset, t.batch_size, self.step, t.seed, salt + salt_offset,
                               self.dist.rank, self.dist.world_size, indices=reuse)
            first = batch["indices"]
            batches[modality] = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            if t.fast:
                batches[modality]["image"] = batches[modality]["image"].contiguous(memory_format=CHANNELS_LAST)
        return batches

    def _is_labelled(self) -> dict[str, bool]:
        data = self.config.data
        return {data.source.modality: data.source.labelled, data.target.modality: data.target.labelled}

    def _freeze_pretrained(self) -> None:
        t = self.config.training
        if not (self.phases[0] and t.freeze_pretrained_attention):
            return
        labelled = self._is_labelled()
        for modality, module in self.nets.attention.items():
            if labelled[modality]:
                module.requires_grad_(False)

    def _begin_adversarial_phase(self) -> None:
        """After pre-training: seed the unlabelled attention module if asked, restart the weight average."""
        if self.config.training.copy_pretrained_attention:
            flags = self._is_labelled()  # exactly one labelled domain: the config checks it
            labelled = next(m for m, is_labelled in flags.items() if is_labelled)
            unlabelled = next(m for m, is_labelled in flags.items() if not is_labelled)
            self.nets.attention[unlabelled].load_state_dict(self.nets.attention[labelled].state_dict())
        if self.ema is not None:
            # The average starts from the pre-trained attention, not from the random initialisation
            # (a frozen module would otherwise only creep towards its trained weights).
            self.ema.reset(self.nets.translator())

    def _backward_step(self, loss: torch.Tensor, optimiser: torch.optim.Optimizer) -> None:
        optimiser.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.dist.average_gradients(optimiser)
        self.scaler.step(optimiser)
        self.scaler.update()

    def train_step(self) -> dict[str, float]:
        """One step of whichever phase ``self.step`` is in; returns the logged loss terms."""
        pretrain, adversarial, _ = self.phases
        nets = self.wrapped
        if self.step < pretrain:
            loss, terms = attention_pretraining_objective(nets, self._batches(), self.config, self.step)
            self._backward_step(loss, self.pretrain_optimiser)
            return terms
        if self.step < pretrain + adversarial:
            if self.step == pretrain and pretrain:
                self._begin_adversarial_phase()
            self._freeze_pretrained()
            batches = self._batches()
            for disc in nets.discriminators():
                disc.requires_grad_(False)
            fast = self.config.training.fast
            loss, terms, outputs = translator_objective(nets, batches, self.config, self.precision,
                                                         adversarial_step=self.step - pretrain, grouped=fast)
            self._backward_step(loss, self.optimisers["translator"])
            for disc in nets.discriminators():
                disc.requires_grad_(True)
            d_loss, d_terms = discriminator_objective(nets, batches, outputs, self.config, grouped=fast)
            self._backward_step(d_loss, self.optimisers["discriminator"])
            for scheduler in self.schedulers.values():
                scheduler.step()
            if self.ema is not None:
                self.ema.update(self.nets.translator())
            self._last_outputs = (batches, outputs)
            return {**terms, **d_terms, "translator": float(loss.detach())}
        return self._segmenter_step()

    def _segmenter_step(self) -> dict[str, float]:
        """The detached U-Net on the target modality's labelled slices (+ translated source if asked)."""
        target = self.config.data.target.modality
        source = self.config.data.source.modality
        batches = self._batches(salt_offset=100)
        images, labels = [batches[target]["image"]], [batches[target]["label"]]
        if self.config.training.segmenter_with_translations:
            translator = self.external_translator or self.translator()
            with torch.no_grad():
                fake, _, _ = translate(*direction_networks(translator, source, target), batches[source]["image"])
                source_labels = batches[source]["label"]
                target_attention = translator.get(attention_name(target))
                if not bool((source_labels >= 0).any()) and target_attention is not None:
                    source_labels = losses.pseudo_labels(target_attention(fake)[1], PSEUDO_LABEL_CONFIDENCE)
            images.append(fake)
            labels.append(source_labels)
        inputs = torch.cat(images)
        intensity = self.config.data.segmenter_intensity_augment
        if intensity.enabled:  # seeded by the step, so a resumed run replays it
            inputs = augment_intensity(inputs, intensity, step_generator(self.config.training.seed, self.step,
                                                                         self.dist.rank, INTENSITY_SALT))
        loss = losses.segmentation_loss(self.wrapped.segmenter(inputs).float(), torch.cat(labels))
        self._backward_step(loss, self.segmenter_optimiser)
        return {"segmenter": float(loss.detach())}

    def validation_scores(self, limit_slices: int = 32) -> dict[str, float]:
        """``validation_dice`` with the networks that have trained by this step.

        Scored on validation subjects only, never on test subjects. With a translator: the translated source
        slices (EMA weights when averaged) once the adversarial phase has begun, segmented by the target
        attention head, and by the segmenter in its phase. A segmenter-only run (no adversarial steps): the
        segmenter on the target modality's own validation slices. Before that (attention pre-training)
        nothing: a randomly initialised generator's translations would only log noise.
        """
        pretrain, adversarial, _ = self.phases
        data = self.config.data
        source, target = data.source.modality, data.target.modality
        translator = self.translator() if adversarial and self.step > pretrain else None
        segmenter = self.nets.segmenter if self.step > pretrain + adversarial else None
        volumes = self.data.validation.get(source if translator is not None else target, [])
        return validation_dice(volumes, translator, segmenter, source=source, target=target,
                               image_size=data.image_size, context=data.context, num_classes=self.config.num_classes,
                               device=self.device, limit_slices=limit_slices)

    # --- loop ------------------------------------------------------------------------------------
    def fit(self) -> Path:
        """Train to the last step; returns the run folder.  Raises ``TrainingStopped`` (after writing a
        checkpoint) when ``stop()`` asks for it before the last step."""
        t = self.config.training
        feedback = Feedback(self.run_dir, self.total_steps, self.step, enabled=self.dist.is_main,
                            progress=self.progress)
        self.nets.train()
        started = time.monotonic()
        try:
            while self.step < self.total_steps:
                terms = self.train_step()
                self.step += 1
                feedback.step(self.step, terms)
                if self.step % t.image_every == 0 and hasattr(self, "_last_outputs"):
                    feedback.images(self.step, *self._last_outputs)
                if self.step % t.validate_every == 0 or self.step == self.total_steps:
                    feedback.scalars(self.step, self.validation_scores())
                if self.step % t.checkpoint_every == 0 or self.step == self.total_steps:
                    self.save()
                    self.dist.barrier()
                if self.step < self.total_steps and self.dist.any_rank(self.stop_requested()):
                    if self.step % t.checkpoint_every:  # not saved just above
                        self.save()
                        self.dist.barrier()
                    raise TrainingStopped(self.step)
        finally:
            feedback.close()
        log.info("trained %d steps in %.0f s; run folder %s", self.total_steps, time.monotonic() - started,
                 self.run_dir)
        return self.run_dir
