"""Judging generated video (``liveact eval``): lip sync, identity drift and flicker over long sessions.

* ``scores``   - the three scores of one window of frames (and a shuffled-audio lip-sync control).
* ``long_run`` - one session of up to an hour, scored in windows ending at given marks.
* ``sheets``   - a contact sheet of a scored window (reference + evenly spaced frames), to look at.
"""

from liveact.evaluation.long_run import EvalSettings, evaluate, reference_face
from liveact.evaluation.scores import WindowScores, flicker, identity_drift, lip_sync, score_window
from liveact.evaluation.sheets import contact_sheet, write_sheet

__all__ = [
    "EvalSettings",
    "WindowScores",
    "contact_sheet",
    "evaluate",
    "flicker",
    "identity_drift",
    "lip_sync",
    "reference_face",
    "score_window",
    "write_sheet",
]
