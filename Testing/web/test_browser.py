"""``sasan web`` clicked through in headless Chromium, checked on the pixels of Slicer's axial slice view.

One server and one page for the module, in the order a user works: load the phantom sample, refuse bad
uploads, translate with a tiny model file (random weights: what is checked is where things are shown,
not image quality), switch attention maps, then cancel a slow run while scrolling slices.  Expected
positions come from the volumes the page itself downloads, mapped onto the screenshot by the view's
geometry (the slice fitted into a square at the view's centre, patient left on screen right).
"""
import io
import os
import pickle
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import start_server

pytestmark = pytest.mark.timeout(600)

SCREENSHOT_ENV = "SASAN_WEB_SCREENSHOT"  # where to copy the page's screenshot (the README's), if set
LOW_ATTENTION = 26  # uint8: maps below 0.1 are transparent
JPEG_TOLERANCE = 14  # per channel: the views arrive as JPEG


MAX_UPLOAD_MB = 0.05  # the phantom (about 1 MB) comes from the sample button, so small uploads suffice


@pytest.fixture(scope="module")
def server(web_folders):
    started = start_server(web_folders, ["--max-upload-mb", str(MAX_UPLOAD_MB)])
    yield started
    started.stop()


@pytest.fixture(scope="module")
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(server.url)
    page.wait_for_selector("#sample-ct")
    yield page
    context.close()


# ------------------------------------------------------------------ helpers
def choose(page, select_id: str, text: str) -> None:
    page.locator(f".v-select:has(#{select_id}) .v-field").click()
    page.locator(".v-overlay--active .v-list-item", has_text=text).first.click()
    page.keyboard.press("Escape")


def axial(page) -> np.ndarray:
    """The axial view as it is on screen, once two screenshots in a row agree (the still frame)."""
    from PIL import Image

    view = page.locator(".layout-grid-item").first
    previous = None
    for _ in range(30):
        shot = np.asarray(Image.open(io.BytesIO(view.screenshot())).convert("RGB")).astype(np.int16)
        if previous is not None and np.abs(shot - previous).max() <= 2:
            return shot
        previous = shot
        time.sleep(0.4)
    return previous


def message(page) -> str:
    return page.locator("#message").inner_text()


def download(page, button: str) -> bytes:
    with page.expect_download() as info:
        page.click(f"#download-{button}")
    return Path(info.value.path()).read_bytes()


def read_volume(content: bytes, suffix: str, folder: Path):
    import SimpleITK as sitk

    path = folder / f"volume{suffix}"
    path.write_bytes(content)
    return sitk.ReadImage(str(path))


class Grid:
    """Screen positions of the axial slice's voxel centres: the slice (N x N voxels, axis-aligned) fills a
    square of the view's smaller side at its centre; i grows toward patient left (screen right) and j toward
    posterior (screen down) when the direction is the identity in LPS, flipped for a negative axis."""

    def __init__(self, shot: np.ndarray, image) -> None:
        direction = np.array(image.GetDirection()).reshape(3, 3)
        assert np.allclose(np.abs(direction), np.eye(3)), "the phantom is axis-aligned"
        height, width = shot.shape[:2]
        ni, nj = image.GetSize()[:2]
        side = min(width, height)
        spacing = image.GetSpacing()
        extent = max(ni * spacing[0], nj * spacing[1])
        x0, y0 = (width - side) / 2, (height - side) / 2
        u = x0 + ((np.arange(ni) + 0.5) * spacing[0] + (extent - ni * spacing[0]) / 2) * side / extent
        v = y0 + ((np.arange(nj) + 0.5) * spacing[1] + (extent - nj * spacing[1]) / 2) * side / extent
        u = u if direction[0, 0] > 0 else u[::-1]
        v = v if direction[1, 1] > 0 else v[::-1]
        self.rows, self.columns = np.meshgrid(np.round(v).astype(int), np.round(u).astype(int), indexing="ij")

    def sample(self, shot: np.ndarray) -> np.ndarray:
        """(nj, ni, 3): the screen colour at each voxel centre of the slice."""
        return shot[self.rows, self.columns]


def interior(mask: np.ndarray) -> np.ndarray:
    """Voxels whose 3 x 3 neighbourhood is all in ``mask`` (away from edges, where pixels blend)."""
    padded = np.pad(mask, 1)
    out = np.ones_like(mask)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            out &= padded[dy:dy + mask.shape[0], dx:dx + mask.shape[1]]
    return out


def shown_slices(count: int) -> list[int]:
    """The axial slices next to the volume's centre, which the view shows after loading."""
    centre = (count - 1) / 2
    return sorted({int(np.floor(centre)), int(np.ceil(centre))})


SEGMENT_COLOURS = {500: np.array([0.85, 0.15, 0.2]) * 255, 820: np.array([0.95, 0.85, 0.25]) * 255}


def segment_fit(labels: np.ndarray, before: np.ndarray, after: np.ndarray) -> tuple[float, dict]:
    """How well one slice's labels explain the screen: each interior voxel must show the input unchanged
    (background) or its segment's colour blended over the input; (fraction that do, voxels per label)."""
    good, counts = 0, {}
    for value in (0, *SEGMENT_COLOURS):
        voxels = interior(labels == value)
        counts[value] = int(voxels.sum())
        if not counts[value]:
            continue
        if value == 0:
            good += (np.abs(after[voxels] - before[voxels]).max(axis=1) <= JPEG_TOLERANCE).sum()
            continue
        target = SEGMENT_COLOURS[value] - before[voxels]
        alpha = ((after[voxels] - before[voxels]) * target).sum(axis=1) / (target * target).sum(axis=1)
        blend = float(np.median(alpha))
        predicted = before[voxels] + blend * target
        if 0.2 < blend < 0.9:  # the colour is blended over the input, not painted or missing
            good += (np.abs(after[voxels] - predicted).max(axis=1) <= 3 * JPEG_TOLERANCE).sum()
    return good / max(1, sum(counts.values())), counts


# ------------------------------------------------------------------ the walk through
STATE = {}


def test_a_data_file_and_an_upload_load_and_a_large_upload_is_refused(page, tmp_path):
    from conftest import write_small_volume

    choose(page, "data-select", "small_ct.nrrd")
    page.click("#data-load")
    page.wait_for_selector("#input-name:has-text('Input: small_ct')")
    assert message(page) == "Loaded 'small_ct'."
    page.set_input_files("#volume-upload", str(write_small_volume(tmp_path / "upload ct.nrrd")))
    page.wait_for_selector("#input-name:has-text('Input: upload ct')")
    large = tmp_path / "large.nrrd"
    large.write_bytes(b"NRRD0004\n" + bytes(60_000))
    page.set_input_files("#volume-upload", str(large))
    page.wait_for_selector("#message:has-text('more than this server accepts (0.05 MB')")
    assert message(page).startswith("'large.nrrd' is 0.1 MB")
    assert page.locator("#input-name").inner_text() == "Input: upload ct"


def test_phantom_sample_loads_and_shows_in_the_axial_view(page, tmp_path):
    page.click("#sample-ct")
    page.wait_for_selector("#input-name:has-text('SASANPhantomCT')")
    assert "Loaded 'SASANPhantomCT'" in message(page)
    STATE["base"] = axial(page)
    assert STATE["base"].std() > 20, "the slice shows the phantom, not a blank view"


def test_bad_uploads_say_why_and_change_nothing(page, tmp_path):
    import SimpleITK as sitk

    before_model = page.locator("#model-select").input_value()
    not_a_volume = tmp_path / "notes.nrrd"
    not_a_volume.write_text("these are notes, not voxels\n")
    flat = tmp_path / "slice.nrrd"
    sitk.WriteImage(sitk.Image(64, 48, sitk.sitkInt16), str(flat))
    pickled = tmp_path / "model.safetensors"
    pickled.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    cases = [("#volume-upload", not_a_volume, "'notes.nrrd' is not a volume SASAN can read"),
             ("#volume-upload", flat, "'slice.nrrd' is a 2D image (64 x 48 pixels)"),
             ("#model-upload", pickled, "'model.safetensors' is not a SASAN model file")]
    for selector, path, expected in cases:
        page.set_input_files(selector, str(path))
        page.wait_for_selector(f"#message:has-text(\"{expected}\")")
        assert page.locator("#message").count() == 1
        assert page.locator("#input-name").inner_text() == "Input: SASANPhantomCT"
        assert page.locator("#model-select").input_value() == before_model
    assert np.abs(axial(page) - STATE["base"]).max() <= JPEG_TOLERANCE


def test_translate_shows_segments_and_attention_where_they_lie(page, server, tmp_path):
    choose(page, "model-select", "tiny (models folder)")
    page.wait_for_selector("#trust")
    assert "is not one of the models shipped with SASAN" in page.locator("#trust").inner_text()
    assert "SHA-256 of the weights:" in page.locator("#trust").inner_text()
    page.click("#trust-model")
    page.click("#translate")
    page.wait_for_selector("#results", timeout=180_000)
    assert "Done in" in message(page) and "2 attention maps" in message(page)
    assert page.locator("#legend").inner_text().split() == ["LV", "blood", "ascending", "aorta"]

    choose(page, "format-select", "NRRD")
    labels = read_volume(download(page, "labels"), ".nrrd", tmp_path)
    with zipfile.ZipFile(io.BytesIO(download(page, "attention"))) as archive:
        assert sorted(archive.namelist()) == ["attention_1.nrrd", "attention_2.nrrd", "attention_all_maps.nrrd"]
        maps = [read_volume(archive.read(f"attention_{k}.nrrd"), ".nrrd", tmp_path) for k in (1, 2)]
    seg_file = download(page, "seg")
    assert seg_file.startswith(b"NRRD") and b"Segment0_Name:=LV blood" in seg_file
    import SimpleITK as sitk

    label_array = sitk.GetArrayFromImage(labels)
    assert set(np.unique(label_array)) <= {0, 500, 820}
    base = STATE["base"]
    grid = Grid(base, labels)

    # Segments: with attention hidden, each interior voxel shows the input, or its segment's colour over it.
    choose(page, "attention-select", "Hidden")
    with_segments = axial(page)
    STATE["grid"], STATE["maps"] = grid, [sitk.GetArrayFromImage(m) for m in maps]
    before, after = grid.sample(base).astype(float), grid.sample(with_segments).astype(float)
    # The view shows the centre slice; which voxel slice Slicer's reslicing lands on is read from the pixels.
    fits = {k: segment_fit(label_array[k], before, after) for k in shown_slices(label_array.shape[0])}
    STATE["k"], (accuracy, counts) = max(fits.items(), key=lambda item: item[1][0])
    assert accuracy > 0.9, f"segment colours where the segments lie: {fits}"
    assert min(counts.values()) >= 20, f"every structure and the background are checked: {counts}"

    # Attention map 1 over the input (segments hidden): unchanged where it is 0, coloured where it attends.
    page.click("#show-segmentation")
    choose(page, "attention-select", "Map 1")
    check_attention_overlay(page, STATE["maps"][0], base, grid)
    STATE["map 1"] = axial(page)
    page.click("#show-segmentation")
    time.sleep(1)
    if os.environ.get(SCREENSHOT_ENV):  # the README's picture: tall enough for the whole panel
        for height in (1300, 900):
            page.set_viewport_size({"width": 1400, "height": height})
            time.sleep(2)
            for button in page.locator(".view-gutter button:has(.mdi-camera-flip-outline)").all():
                button.click()  # "Reset Camera": fit the slices to the new size
            page.mouse.move(5, 5)  # no tooltip in the picture
            time.sleep(2)
            if height == 1300:
                page.screenshot(path=os.environ[SCREENSHOT_ENV])


def check_attention_overlay(page, attention: np.ndarray, base: np.ndarray, grid: Grid) -> None:
    shot = axial(page)
    before, after = grid.sample(base).astype(float), grid.sample(shot).astype(float)
    shown = attention[STATE["k"]]
    quiet, attended = interior(shown < LOW_ATTENTION), interior(shown >= 96)
    assert quiet.sum() > 30 and attended.sum() > 30, "the map attends somewhere and not everywhere"
    assert (np.abs(after[quiet] - before[quiet]).max(axis=1) <= JPEG_TOLERANCE).mean() > 0.95
    assert (np.abs(after[attended] - before[attended]).mean(axis=1) > 20).mean() > 0.9


def test_the_map_selector_changes_the_overlay(page):
    page.click("#show-segmentation")  # segments off, as in the check of map 1
    choose(page, "attention-select", "Map 2")
    map_2 = axial(page)
    changed = np.abs(map_2 - STATE["map 1"]).max(axis=2) > 3 * JPEG_TOLERANCE
    assert changed.mean() > 0.05, "map 2 looks different from map 1"
    check_attention_overlay(page, STATE["maps"][1], STATE["base"], STATE["grid"])
    page.click("#show-segmentation")


def test_cancel_mid_run_adds_nothing_and_slices_scroll_meanwhile(page):
    results_before = page.locator("#results").inner_text()
    view_before = axial(page)
    choose(page, "model-select", "slow (models folder)")
    page.click("#trust-model")
    page.click("#translate")
    page.wait_for_selector("#progress-text:has-text('Translating')", timeout=120_000)
    page.wait_for_function("document.querySelector('#progress-text') && "
                           "/Translating: ([1-9]\\d*)%/.test(document.querySelector('#progress-text').innerText)")
    box = page.locator(".layout-grid-item").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(5):  # the mouse wheel scrolls the slices, as in Slicer
        page.mouse.wheel(0, 120)
        time.sleep(0.2)
    scrolled = axial(page)
    assert page.locator("#cancel").is_visible(), "the run is still going while the slices scroll"
    assert np.abs(scrolled - view_before).max(axis=2).mean() > 2, "another slice is shown"
    page.click("#cancel")
    page.wait_for_selector("#message:has-text('Cancelled: nothing was added.')", timeout=60_000)
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(5):  # back to the slice shown before the run
        page.mouse.wheel(0, -120)
        time.sleep(0.2)
    assert page.locator("#results").inner_text() == results_before
    assert np.abs(axial(page) - view_before).max(axis=2).mean() < 2


def listening_addresses(port: int) -> set:
    """The local addresses with a socket listening on ``port`` (Linux /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_only_this_machine_and_only_with_the_token(browser, server):
    from urllib.parse import urlsplit

    url = urlsplit(server.url)
    if Path("/proc/net/tcp").exists():
        assert listening_addresses(url.port) == {"0100007F"}, "bound to 127.0.0.1 only"
    context = browser.new_context()
    try:
        for address in (f"{url.scheme}://{url.netloc}/", f"{url.scheme}://{url.netloc}/?secret=wrong"):
            stranger = context.new_page()
            stranger.goto(address)
            time.sleep(5)
            assert stranger.locator("#sample-ct").count() == 0, f"{address} must not get the app"
            stranger.close()
    finally:
        context.close()
