import pytest


@pytest.fixture(autouse=True, scope="session")
def _phantom_cache(tmp_path_factory):
    """Generate the phantom once per test session, in a private cache."""
    import os

    folder = tmp_path_factory.mktemp("sasan_cache")
    previous = os.environ.get("SASAN_CACHE")
    os.environ["SASAN_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("SASAN_CACHE", None)
    else:
        os.environ["SASAN_CACHE"] = previous
