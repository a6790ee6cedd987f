"""Generated gRPC stubs of ``protos/liveact/v1`` (``python -m liveact.protogen``; never edit by hand)."""
