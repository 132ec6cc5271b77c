"""SASAN in the browser: the SASANSlicer module's workflow on trame-slicer, for a machine with a GPU.

``sasan web`` (``sasan_web.server.serve``) starts one trame server whose slice views are drawn by Slicer's
own slice logic (``slicer-core``); the page is opened from any browser.  The work is done by the same
Qt-free ``SASANSlicerLib`` as in Slicer, run in a child process (``sasan_web.job``), so the page stays
responsive and a cancelled or failed run leaves the scene as it was.  Nothing here is imported by the
engine (``sasan/``); importing this package loads neither trame nor slicer.
"""
