"""Container entry point, named after the binary: ``python -m ack_sandbox.runtimes.tensorflow_model_server FLAGS``.

With ``ACK_SANDBOX_TF_ZYGOTE`` set it only launches a fork of the pre-imported zygote (``tf_zygote``) and
imports nothing heavy (no aiohttp, numpy or TensorFlow), so the launcher starts fast and stays small;
otherwise, or when the zygote is unreachable, it runs the server (``tfserving.main``) in this process.
"""

from __future__ import annotations

import logging
import os
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from ack_sandbox.runtimes.tf_zygote import ZYGOTE_ENV, launch

    socket_path = os.environ.pop(ZYGOTE_ENV, "")
    if socket_path:
        logging.basicConfig(level="INFO", stream=sys.stdout, format="%(asctime)s %(levelname).1s %(name)s] %(message)s")
        rc = launch(socket_path, argv)
        if rc is not None:
            return rc
    from ack_sandbox.runtimes.tfserving import main as serve

    return serve(argv)


if __name__ == "__main__":
    sys.exit(main())
