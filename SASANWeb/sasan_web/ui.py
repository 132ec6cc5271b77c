"""The page: the SASAN panel on the left (as the Slicer module's panel), Slicer's slice views on the right.

Elements the browser tests click carry an ``id``; the texts are the Slicer module's.
"""
from __future__ import annotations

from trame.ui.vuetify3 import VAppLayout
from trame.widgets import html
from trame.widgets import vuetify3 as v3

PANEL_WIDTH = 380
VOLUME_ACCEPT = ".nrrd,.nii,.nii.gz,.mha"


def _upload_js(trigger: str) -> str:
    """Send the chosen file to ``trigger`` unless it is larger than the server accepts (said at once); either
    way the input is then made anew (``upload_generation``), so it shows no file and takes the same one again."""
    return (
        "const f = $event.target.files && $event.target.files[0];"
        "if (f) {"
        "  if (f.size > max_upload_bytes) {"
        "    message = `'${f.name}' is ${(f.size / 1e6).toFixed(1)} MB, more than this server accepts "
        "(${+(max_upload_bytes / 1e6).toFixed(2)} MB; see sasan web --max-upload-mb)`; message_type = 'error';"
        f"  }} else {{ trigger('{trigger}', [f]); }}"
        "}"
        "upload_generation += 1;"
    )


def _views_layout():
    from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

    return Layout(LayoutDirection.Horizontal,
                  [ViewLayoutDefinition.axial_view(),
                   Layout(LayoutDirection.Vertical,
                          [ViewLayoutDefinition.coronal_view(), ViewLayoutDefinition.sagittal_view()])],
                  flex_sizes=["2", "1"])


def _section(title: str) -> None:
    html.Div(title, classes="text-subtitle-2 mt-3 mb-1 text-medium-emphasis")


def _input_section(app) -> None:
    _section("Input volume")
    with html.Div(classes="d-flex ga-2 flex-wrap"):
        for modality in ("CT", "MR"):
            v3.VBtn(f"Phantom {modality}", id=f"sample-{modality.lower()}", size="small", variant="tonal",
                    prepend_icon="mdi-cube-outline", disabled=("running || busy",),
                    click=(app.load_sample, f"['{modality}']"))
    if app.data_files:
        with html.Div(classes="d-flex ga-2 align-center mt-2"):
            v3.VSelect(id="data-select", label="From the data folder", items=("data_items",),
                       v_model=("data_key",), density="compact", hide_details=True)
            v3.VBtn("Load", id="data-load", size="small", click=app.load_data_file, disabled=("!data_key || running",))
    v3.VFileInput(id="volume-upload", label="Upload a volume (NRRD, NIfTI, .mha)", accept=VOLUME_ACCEPT,
                  key=("`volume-${upload_generation}`",),
                  density="compact", hide_details=True, classes="mt-2", prepend_icon="mdi-upload",
                  disabled=("running",), change=_upload_js(app.server.controller.trigger_name(app.upload_volume)))
    html.Div("{{ input_name ? 'Input: ' + input_name : 'No volume loaded' }}", id="input-name",
             classes="text-body-2 mt-1")


def _model_section(app) -> None:
    _section("Model")
    v3.VSelect(id="model-select", items=("model_items",), v_model=("model_key",), density="compact",
               hide_details=True, disabled=("running",))
    v3.VFileInput(id="model-upload", label="Upload a model (.safetensors)", accept=".safetensors",
                  key=("`model-${upload_generation}`",),
                  density="compact", hide_details=True, classes="mt-2", prepend_icon="mdi-upload",
                  disabled=("running",), change=_upload_js(app.server.controller.trigger_name(app.upload_model)))
    with v3.VExpansionPanels(classes="mt-2"), v3.VExpansionPanel(title="Model card"):
        with v3.VExpansionPanelText():
            html.Div(v_html=("model_card_html",), id="model-card", classes="text-body-2")
    with v3.VAlert(v_if=("model_needs_trust",), id="trust", type="warning", variant="tonal", density="compact",
                   classes="mt-2"):
        html.Div("{{ trust_text }}", style="white-space: pre-wrap; font-size: 0.8rem;")
        v3.VBtn("Use this model", id="trust-model", size="small", classes="mt-2", click=app.trust_model)


def _run_section(app) -> None:
    _section("Translate")
    with v3.VBtnToggle(v_model=("target",), mandatory=True, density="compact", divided=True, variant="outlined",
                       disabled=("running",)):
        v3.VBtn("to MR", value="MR", id="target-mr")
        v3.VBtn("to CT", value="CT", id="target-ct")
    with html.Div(classes="d-flex ga-2"):
        v3.VCheckbox(id="segment", label="Segment", v_model=("segment",), density="compact", hide_details=True,
                     disabled=("running",))
        v3.VCheckbox(id="attention", label="Attention maps", v_model=("attention",), density="compact",
                     hide_details=True, disabled=("running",))
    v3.VSelect(id="device-select", label="Device", items=("['auto', 'cuda', 'cpu']",), v_model=("device",),
               density="compact", hide_details=True, disabled=("running",))
    v3.VBtn("Translate", id="translate", v_if=("!running",), color="primary", block=True, classes="mt-2",
            disabled=("busy || !input_name",), click=app.translate)
    v3.VBtn("Cancel", id="cancel", v_else=True, color="error", block=True, classes="mt-2", click=app.cancel)
    v3.VProgressLinear(v_if=("running",), id="progress", model_value=("progress",), height=6, classes="mt-2",
                       color="primary")
    html.Div("{{ progress_text }}", v_if=("running",), id="progress-text", classes="text-caption")


def _results_section(app) -> None:
    with html.Div(v_if=("has_results",), id="results"):
        _section("Results")
        with v3.VBtnToggle(v_model=("background",), mandatory=True, density="compact", divided=True,
                           variant="outlined"):
            v3.VBtn("Input", value="input", id="show-input")
            v3.VBtn("Translated", value="translated", id="show-translated")
        v3.VSwitch(id="show-segmentation", label="Segmentation", v_model=("show_segmentation",), density="compact",
                   hide_details=True, color="primary")
        with html.Div(id="legend", classes="d-flex flex-wrap ga-1"):
            v3.VChip("{{ item.name }}", v_for="item in legend", key="item.name", size="small",
                     style=("{ backgroundColor: item.color, color: 'black' }",))
        v3.VSelect(id="attention-select", label="Attention map", items=("attention_items",),
                   v_model=("attention_choice",), density="compact", hide_details=True, classes="mt-2",
                   v_if=("attention_items.length",))
        v3.VSlider(id="attention-opacity", label="Opacity", v_model=("attention_opacity",), min=0, max=1, step=0.05,
                   density="compact", hide_details=True, v_if=("attention_items.length",))
        _section("Download")
        v3.VSelect(id="format-select", items=("[{title: 'NIfTI (.nii.gz)', value: 'nifti'}, "
                                              "{title: 'NRRD (.nrrd)', value: 'nrrd'}]",),
                   v_model=("download_format",), density="compact", hide_details=True)
        trigger = app.server.controller.trigger_name(app.download)
        with html.Div(classes="d-flex flex-wrap ga-1 mt-1"):
            for what, text in (("volume", "Translated volume"), ("labels", "Segmentation (labels)"),
                               ("seg", "Segmentation (.seg.nrrd)"), ("attention", "Attention maps (.zip)")):
                v3.VBtn(text, id=f"download-{what}", size="small", variant="tonal", prepend_icon="mdi-download",
                        click=f"utils.download(download_names['{what}'], trigger('{trigger}', ['{what}']))")


def build(app):
    """The page of ``app`` (a ``SASANWebApp``); returns its layout."""
    from trame_slicer.core import LayoutManager

    app.layout_manager = LayoutManager(app.scene, app.slicer_app.view_manager, app.server)
    app.layout_manager.register_layout("SASAN", _views_layout())
    app.layout_manager.set_layout("SASAN")
    with VAppLayout(app.server, full_height=True, theme="dark") as layout:
        with v3.VAppBar(density="compact"):
            v3.VAppBarTitle("SASAN: translate and segment (research use, not for diagnosis)")
        with v3.VNavigationDrawer(permanent=True, width=PANEL_WIDTH), html.Div(classes="pa-3", id="panel"):
            # The one message (error, progress, done) at the top, where it is seen whatever the scroll.
            v3.VAlert(v_if=("message",), id="message", text=("message",), type=("message_type",),
                      variant="tonal", density="compact", classes="mb-2")
            _input_section(app)
            _model_section(app)
            _run_section(app)
            _results_section(app)
        with v3.VMain(), html.Div(style="height: calc(100vh - 48px); display: flex;", id="views"):
            app.layout_manager.initialize_layout_grid(layout)
    return layout
