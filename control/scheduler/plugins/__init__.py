"""The in-tree scheduling plugins, one module per plugin (Kubernetes' names and behaviour).

Each plugin is a small class implementing only its extension points; the decisions are pure
functions of (pod, node) data beside the class, tested by tables in tests/scheduler.
"""
