"""The SASAN web app: the SASANSlicer module's workflow on a trame-slicer scene, one page per server.

The page's state (``self.state``) mirrors the module's parameter node: input volume, model, target,
options, a run's progress, then the results with their display choices.  Every handler runs on the
server's event loop; the engine runs in a child process (``runner``), so the page stays responsive.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Optional

from trame.app import TrameApp

from . import files, ui
from .lib import SLICER_MODULE_DIR, ensure_slicer_lib, provide_module_logics

logger = logging.getLogger(__name__)

SAMPLE_MODALITIES = ("CT", "MR")
TARGETS = ("MR", "CT")
DEVICES = ("auto", "cuda", "cpu")


class MemorySettings:
    """Accepted models for this server's lifetime (``model_trust.ModelConsent``'s settings; in Slicer these
    are the application settings)."""

    def __init__(self) -> None:
        self._values: dict = {}

    def value(self, key, default=None):
        return self._values.get(key, default)

    def setValue(self, key, value) -> None:  # noqa: N802 (qt.QSettings' name)
        self._values[key] = value


class SASANWebApp(TrameApp):
    """``data_dir`` / ``models_dir``: the only folders (besides uploads and the shipped models) the page may
    read from; ``max_upload_bytes``: the largest upload accepted."""

    def __init__(self, server=None, *, data_dir: Optional[Path] = None, models_dir: Optional[Path] = None,
                 max_upload_bytes: int = files.DEFAULT_MAX_UPLOAD_MB * 1_000_000) -> None:
        super().__init__(server)
        ensure_slicer_lib()
        from SASANSlicerLib import model_files, model_trust
        from trame_slicer.core import SlicerApp
        from trame_slicer.rca_view import register_rca_factories

        self.data_dir = Path(data_dir).resolve() if data_dir else None
        self.models_dir = Path(models_dir).resolve() if models_dir else None
        self.uploads = files.UploadStore(max_upload_bytes)
        self.slicer_app = SlicerApp()
        self.scene = self.slicer_app.scene
        provide_module_logics(self.slicer_app.segmentations_logic)
        register_rca_factories(self.slicer_app.view_manager, self.server)
        shipped_folders = model_files.model_folders(SLICER_MODULE_DIR)
        self.shipped_models = [files.FileEntry(f"shipped:{m.path.name}", m.name, m.path)
                               for m in model_files.find_models(shipped_folders)]
        self.folder_models = [files.FileEntry(f"folder:{m.path.name}", m.name, m.path)
                              for m in model_files.find_models([self.models_dir] if self.models_dir else [])
                              if files.inside(m.path, self.models_dir)]
        self.uploaded_models: list[files.FileEntry] = []
        self.data_files = files.list_files(self.data_dir, lambda n: files.volume_suffix(n) is not None)
        self.consent = model_trust.ModelConsent(shipped_folders, MemorySettings())
        self.input_node = None
        self.results = None
        self.run = None
        self._task = self._cancel_task = None  # the running translation and its cancellation (kept referenced)
        self._choices: list = []
        self._init_state()
        self.ui = ui.build(self)
        self.state.change("model_key")(self._on_model_changed)
        self.state.change("attention_choice", "attention_opacity")(self._on_attention_display)
        self.state.change("show_segmentation")(self._on_segmentation_display)
        self.state.change("background")(self._on_background)
        self.state.change("download_format")(self._on_download_format)
        self.server.controller.on_server_exited.add(lambda **_: self.uploads.close())
        self._on_model_changed(self.state.model_key)

    # ----------------------------------------------------------------- state
    def _init_state(self) -> None:
        state = self.state
        state.trame__title = "SASAN"
        state.update({
            "message": "", "message_type": "info", "busy": False,
            "input_name": "", "data_items": [{"title": e.title, "value": e.key} for e in self.data_files],
            "data_key": None, "max_upload_bytes": self.uploads.max_bytes, "upload_generation": 0,
            "model_items": [], "model_key": None, "model_card_html": "", "model_needs_trust": False,
            "trust_text": "", "target": "MR", "segment": True, "attention": True, "device": "auto",
            "running": False, "progress": 0.0, "progress_text": "",
            "has_results": False, "results_summary": "", "background": "input", "show_segmentation": True,
            "legend": [], "attention_items": [], "attention_choice": "hidden", "attention_opacity": 0.6,
            "download_format": "nifti", "download_names": {},
        })
        self._refresh_models(select=self.shipped_models[0].key if self.shipped_models else None)

    def _say(self, text: str, kind: str = "info") -> None:
        self.state.message, self.state.message_type = text, kind

    # ----------------------------------------------------------------- input volume
    async def load_sample(self, modality: str) -> None:
        from SASANSlicerLib.sample_data import PHANTOM_SAMPLES, phantom_sample_path

        if modality not in SAMPLE_MODALITIES:
            return
        with self.state:
            self.state.busy = True
            self._say(f"Preparing the phantom {modality} sample ...")
        try:
            path = await asyncio.to_thread(phantom_sample_path, modality)  # the engine draws it once, then cached
            with self.state:
                self._load_input(path, PHANTOM_SAMPLES[modality], path.name)
        finally:
            with self.state:
                self.state.busy = False

    def load_data_file(self) -> None:
        try:
            path = files.resolve_entry(self.data_files, self.state.data_key)
            self._load_input(path, files.node_name(path.name), path.name)
        except files.UploadError as error:
            self._say(str(error), "error")

    def upload_volume(self, client_file: dict) -> None:
        name = files.display_name((client_file or {}).get("name", ""))
        try:
            content = self._content(client_file, name)
            suffix = files.volume_suffix(name)
            if suffix is None:
                raise files.UploadError(f"'{name}' is not a volume file SASAN reads (use NRRD, NIfTI or .mha)")
            path = self.uploads.save(content, name, suffix)
            self._load_input(path, files.node_name(name), name)
        except files.UploadError as error:
            self._say(str(error), "error")

    def _content(self, client_file: dict, name: str) -> bytes:
        from trame.app.file_upload import ClientFile

        upload = ClientFile(client_file)
        if upload.is_empty:
            raise files.UploadError(f"'{name}' arrived empty")
        self.uploads.check_size(len(upload.content), name)
        return upload.content

    def _load_input(self, path: Path, name: str, shown_name: str) -> None:
        """Check, then load ``path`` as the input node ``name``; on any problem say why (naming the file
        ``shown_name``) and change nothing."""
        from .scene import read_volume, remove_nodes

        if self.state.running:
            self._say("A translation is running: cancel it or wait before loading another volume.", "error")
            return
        try:
            files.check_volume_file(path, shown_name)
            node = read_volume(self.scene, path, name)
        except (files.UploadError, ValueError) as error:
            self._say(str(error), "error")
            return
        old = [self.input_node, *(self.results.nodes() if self.results else [])]
        self.input_node, self.results = node, None
        remove_nodes(self.scene, old)
        manager = self.slicer_app.display_manager
        manager.show_volume_in_slice_background(node)
        manager.show_volume_in_slice_foreground(None)
        manager.reset_views()
        self.state.update({"input_name": name, "has_results": False, "background": "input", "legend": [],
                           "attention_items": [], "attention_choice": "hidden", "results_summary": ""})
        self._say(f"Loaded '{name}'.", "success")

    # ----------------------------------------------------------------- model
    def _model_entries(self) -> list[files.FileEntry]:
        return [*self.shipped_models, *self.folder_models, *self.uploaded_models]

    def _refresh_models(self, select: Optional[str] = None) -> None:
        kinds = {"shipped": "shipped", "folder": "models folder", "upload": "uploaded"}
        self.state.model_items = [{"title": f"{e.title} ({kinds[e.key.split(':')[0]]})", "value": e.key}
                                  for e in self._model_entries()]
        if select is not None:
            self.state.model_key = select

    def _model_path(self) -> Optional[Path]:
        return next((e.path for e in self._model_entries() if e.key == self.state.model_key), None)

    def _on_model_changed(self, model_key=None, **_) -> None:
        from SASANSlicerLib.model_files import model_card_html
        from SASANSlicerLib.model_trust import confirmation_text

        path = self._model_path()
        self.state.model_card_html, self.state.model_needs_trust, self.state.trust_text = "", False, ""
        if path is None:
            return
        try:
            card = files.check_model_file(path, path.name)
        except files.UploadError as error:
            self._say(str(error), "error")
            return
        self.state.model_card_html = model_card_html(card, path.name)
        if self.consent.needs_confirmation(path, card):
            self.state.model_needs_trust = True
            self.state.trust_text = confirmation_text(card, path).replace(
                "\n\nUse this model? (You will not be asked again for this model.)", "")

    def upload_model(self, client_file: dict) -> None:
        name = files.display_name((client_file or {}).get("name", ""))
        try:
            if not name.lower().endswith(files.MODEL_SUFFIX):
                raise files.UploadError(f"'{name}' is not a model file (SASAN models end in .safetensors)")
            content = self._content(client_file, name)
            path = self.uploads.save(content, name, files.MODEL_SUFFIX)
            try:
                files.check_model_file(path, name)
            except files.UploadError:
                path.unlink(missing_ok=True)
                raise
        except files.UploadError as error:
            self._say(str(error), "error")
            return
        entry = files.FileEntry(f"upload:{len(self.uploaded_models) + 1}", name, path)
        self.uploaded_models.append(entry)
        self._refresh_models(select=entry.key)
        self._say(f"Uploaded the model '{name}': read its card before using it.", "info")

    def trust_model(self) -> None:
        from sasan.card import ModelFileError, read_card

        path = self._model_path()
        if path is None:
            return
        try:
            self.consent.accept(path, read_card(path))
        except ModelFileError as error:
            self._say(f"This model cannot be accepted: {error}", "error")
            return
        self.state.model_needs_trust = False
        self._say("Model accepted for this server's session.", "success")

    # ----------------------------------------------------------------- translate
    def _request_problem(self) -> Optional[str]:
        from sasan.card import request_problem

        if self.input_node is None:
            return "Load a volume first (the phantom sample, a data file or an upload)."
        path = self._model_path()
        if path is None:
            return "Choose a model."
        if self.state.model_needs_trust:
            return "Read the model's card and confirm that you trust it before the first use."
        if self.state.target not in TARGETS or self.state.device not in DEVICES:
            return "Choose a target modality and a device."
        try:
            card = files.check_model_file(path, path.name)
        except files.UploadError as error:
            return str(error)
        return request_problem(card, self.state.target, segment=bool(self.state.segment),
                               attention=bool(self.state.attention))

    def translate(self) -> None:
        """Start a run and return at once: the page's connection handles one message at a time, so a run
        awaited here would hold back every click and scroll until it ended."""
        if not self.state.running:
            self._task = asyncio.ensure_future(self._translate())

    async def _translate(self) -> None:
        from .runner import RunCancelled, RunFailed, TranslationRun
        from .scene import load_results, write_node

        if self.state.running:
            return
        problem = self._request_problem()
        if problem:
            self._say(problem, "error")
            return
        folder = self.uploads.scratch("run-")
        input_file = write_node(self.input_node, folder / "input.nrrd")
        input_node = self.input_node
        request = {"input": str(input_file), "name": input_node.GetName(), "model": str(self._model_path()),
                   "target": self.state.target, "device": self.state.device, "segment": bool(self.state.segment),
                   "attention": bool(self.state.attention), "output": str(folder)}
        self.run = TranslationRun(request, folder, self._on_progress)
        with self.state:
            self.state.update({"running": True, "progress": 0.0, "progress_text": "Starting the engine ..."})
            self._say(f"Translating '{input_node.GetName()}' to {self.state.target} ...")
        try:
            manifest = await self.run.run()
            if input_node is not self.input_node:  # another volume was loaded meanwhile
                raise RunCancelled("input changed")
            results = load_results(self.scene, self.slicer_app.segmentations_logic, manifest, folder, input_node)
        except RunCancelled:
            with self.state:
                self._say("Cancelled: nothing was added.", "info")
            return
        except (RunFailed, ValueError, OSError) as error:
            with self.state:
                self._say(f"The translation failed: {error}", "error")
            return
        finally:
            self.run = None
            with self.state:
                self.state.running, self.state.progress_text = False, ""
        with self.state:
            self._show_results(results)

    def _on_progress(self, fraction: float, message: str) -> None:
        from SASANSlicerLib.progress import progress_text

        with self.state:
            self.state.progress = round(100 * fraction, 1)
            self.state.progress_text = progress_text(fraction, message)

    def cancel(self) -> None:
        if self.run is not None:
            self.state.progress_text = "Cancelling ..."
            self._cancel_task = asyncio.ensure_future(self.run.cancel())

    # ----------------------------------------------------------------- results
    def _show_results(self, results) -> None:
        from SASANSlicerLib.attention_display import attention_choices

        from .scene import remove_nodes, segments

        if self.results is not None:
            remove_nodes(self.scene, self.results.nodes())
        self.results = results
        self._choices = attention_choices(results.attention, results.overview)
        name = self.input_node.GetName()
        suffix = files.FORMAT_SUFFIXES.get(self.state.download_format, ".nii.gz")
        first_map = next((i for i, (text, _) in enumerate(self._choices) if text.startswith("Map")), 0)
        self.state.update({
            "has_results": True, "results_summary": results.summary, "legend": segments(results.segmentation),
            "attention_items": [{"title": text, "value": str(index)} for index, (text, _) in enumerate(self._choices)],
            "attention_choice": str(first_map),
            "show_segmentation": True, "background": "input", "download_names": self._download_names(name, suffix),
        })
        self._on_attention_display()
        self._on_segmentation_display()
        self._say(results.summary, "success")

    @staticmethod
    def _download_names(name: str, suffix: str) -> dict:
        base = files.display_name(name).replace(" ", "_")
        return {"volume": f"{base}_translated{suffix}", "labels": f"{base}_segmentation{suffix}",
                "seg": f"{base}_segmentation.seg.nrrd", "attention": f"{base}_attention.zip"}

    def _on_download_format(self, download_format=None, **_) -> None:
        if self.input_node is not None:
            suffix = files.FORMAT_SUFFIXES.get(download_format, ".nii.gz")
            self.state.download_names = self._download_names(self.input_node.GetName(), suffix)

    def _on_attention_display(self, **_) -> None:
        from SASANSlicerLib.attention_display import show_attention

        if self.results is None:
            return
        try:
            node = self._choices[int(self.state.attention_choice)][1]
        except (ValueError, IndexError, TypeError):
            node = None
        opacity = min(1.0, max(0.0, float(self.state.attention_opacity or 0.0)))
        show_attention(node, opacity, self.scene)

    def _on_segmentation_display(self, **_) -> None:
        segmentation = self.results.segmentation if self.results else None
        if segmentation is not None and segmentation.GetDisplayNode() is not None:
            segmentation.GetDisplayNode().SetVisibility(bool(self.state.show_segmentation))

    def _on_background(self, background=None, **_) -> None:
        if self.input_node is None:
            return
        node = self.results.volume if background == "translated" and self.results else self.input_node
        self.slicer_app.display_manager.show_volume_in_slice_background(node)

    def download(self, what: str):
        """The bytes of one result for the browser to save (as ``download_names[what]``)."""
        from .scene import export_bytes, export_zip

        if self.results is None:
            return None
        suffix = files.FORMAT_SUFFIXES.get(self.state.download_format, ".nii.gz")
        if what == "volume":
            content = export_bytes(self.results.volume, suffix)
        elif what == "labels" and self.results.segmentation is not None:
            content = export_bytes(self.results.segmentation, suffix, self.input_node)
        elif what == "seg" and self.results.segmentation is not None:
            content = export_bytes(self.results.segmentation, ".seg.nrrd")
        elif what == "attention" and self.results.attention:
            nodes = [*self.results.attention, *([self.results.overview] if self.results.overview else [])]
            names = [f"attention_{i}" for i in range(1, len(self.results.attention) + 1)] + ["attention_all_maps"]
            content = export_zip(nodes, suffix, names[: len(nodes)])
        else:
            return None
        return self.server.protocol.addAttachment(content)
