"""Container entry point, named after the binary: ``python -m ack_sandbox.runtimes.tensorflow_model_server FLAGS``.

With ``ACK_SANDBOX_TF_ZYGOTE`` set it only launches a fork of the pre-imported zygote (``tf_zygote``) and
imports nothing heavy (no aiohttp, numpy or TensorFlow), so the launcher starts fast and stays small;
otherwise, or when the zygote is unreachable, it runs the server (``tfserving.main``) in this process.
"""

from __future__ import annotations

import sys

from ack_sandbox.runtimes.launcher import run

if __name__ == "__main__":
    sys.exit(run("ack_sandbox.runtimes.tfserving", sys.argv[1:]))
