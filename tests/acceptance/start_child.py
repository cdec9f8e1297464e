"""A `runtimeConfig.start` command for the `dbos start` tests.

It starts a grandchild (`sleep`) in its own process group, prints its
process IDs, waits for SIGINT or SIGTERM, says which came, waits for the
grandchild (which the same signal, sent to the whole group, ends), and
exits with the status given as its argument.
"""

import os
import signal
import subprocess
import sys

SIGNALS = {signal.SIGINT, signal.SIGTERM}
grandchild = subprocess.Popen(["sleep", "600"])
# Blocked, then taken with sigwait: none can slip in before the wait.
signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
print(f"READY {os.getpid()} {os.getpgid(0)} {grandchild.pid}", flush=True)
print(f"GOT {signal.sigwait(SIGNALS)}", flush=True)
print(f"GRANDCHILD {grandchild.wait()}", flush=True)
sys.exit(int(sys.argv[1]))
