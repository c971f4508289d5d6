"""The sandbox's controllers: small reconcile loops over the in-process Kubernetes store.

``base`` holds what every controller shares (the reconcile-loop base class, the event recorder, the
condition helper and the kinds). One module per controller: ``scheduler``, ``deployment``,
``replicaset``, ``kubelet``, ``volumes``, ``nodes`` (CS instances -> Node objects), ``node_autoscaler``
(ACK node-pool autoscaling), and part B's ``seldon``, ``ingress``, ``metrics``, ``hpa``.
``service`` is the daemon service that starts them all.
"""
