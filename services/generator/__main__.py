import logging
import os
import sys

from services.generator.server import serve

serve()
# Drained and stopped: every session has ended. Skip the interpreter's teardown (about a second of
# torch and gRPC finalisation on a small machine) so that the process exits within --grace-s.
logging.shutdown()
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
