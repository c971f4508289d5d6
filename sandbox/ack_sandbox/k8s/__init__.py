"""The sandbox's Kubernetes API server: an in-process object store served over the real wire protocol.

Modules: ``store`` (objects, resourceVersions, watches; the Python API controllers use), ``kinds`` /
``registry`` (per-kind metadata, defaults, validation, table columns), ``patch`` / ``apply`` (merge,
strategic merge, JSON patch, server-side apply), ``gc`` (finalizers, ownerReference GC, namespace
lifecycle), ``auth`` (bearer tokens), ``discovery``, ``handlers`` (HTTP wire), ``service`` (the app).
"""
