"""Helpers of the SASANTrainer module without Qt or the application: the training command line, its
log parsed into progress, and the headless training script ``train.py``.  Imports nothing itself."""
