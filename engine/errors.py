"""Errors that speak to the user: what was wrong and what to do."""


class LabInputError(ValueError):
    """Bad input from a user (CLI exit code 2, a red message in the page). Nothing was written."""


class RunCancelled(Exception):
    """Raised inside a run when the user pressed Cancel."""
