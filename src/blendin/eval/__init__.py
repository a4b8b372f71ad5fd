"""Evaluation: tasks as data (``tasks``), answer extraction (``extract``), the runner (``runner``), a run folder's settings (``runinfo``)."""
