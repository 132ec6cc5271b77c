"""Knowing when an input is not the model's kind: a fingerprint of the training scans in the model card
(``fingerprint``, made from a run by ``from_run``) and the check of an input against it (``check``)."""
