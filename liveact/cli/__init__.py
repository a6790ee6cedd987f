"""The ``liveact`` command line."""
