"""Flotilla's scheduler (kube-scheduler): ``scheduler.py`` runs the loop, ``framework.py``
the plugin pipeline, ``plugins/`` the plugins, ``cache.py`` and ``queue.py`` its state.

Concurrency contract: everything runs on one event loop; see each module.
"""
