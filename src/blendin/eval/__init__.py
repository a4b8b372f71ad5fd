"""Evaluation: tasks as data (``tasks``), answer extraction (``extract``), the runner (``runner``)."""
