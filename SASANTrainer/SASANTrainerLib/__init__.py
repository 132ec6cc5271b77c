"""Helpers of the SASANTrainer module without Qt or the application: the training command line (the
engine's ``sasan train``) and its output read back as lines.  Imports nothing itself."""
