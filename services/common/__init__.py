"""Plumbing shared by the three services: settings, the aio server life cycle, JSON logs, tensors."""
