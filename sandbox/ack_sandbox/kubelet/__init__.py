"""The sandbox kubelet's machinery: pod workers (``pod``), container runners (``container``), pod IPs,
container processes, probes, pod status, container logs.

The reconcile loop that drives it is ``ack_sandbox.controllers.kubelet``. Container logs live at
``<state>/kubelet/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log``; ``logs.read_container_log``
is the lookup the Kubernetes API's ``pods/{name}/log`` handler calls.
"""
