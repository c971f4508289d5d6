"""Programs the sandbox kubelet runs as containers, one module per image family.

``registry.resolve(image, command, args, env)`` maps a container to a :class:`RuntimeSpec` (argv to exec,
environment, ports); ``None`` means the sandbox cannot run that image (the kubelet reports
ImagePullBackOff). Every runtime binds the pod IP from ``ACK_SANDBOX_POD_IP`` on its real container
port, logs to stdout and exits 0 on SIGTERM after finishing in-flight requests.
"""
