"""Flotilla's controllers (kube-controller-manager): one module per controller, one class
each with ``reconcile(key)``, and ``manager.py`` to run them under one supervisor.

Concurrency contract: everything runs on the server's event loop; see each module.
"""

from control.controllers.manager import (
    CONTROLLERS,
    ControllerContext,
    ControllerFactory,
    ControllerManager,
    ManagedController,
)
from control.controllers.namespace import NamespaceController

__all__ = [
    "CONTROLLERS",
    "ControllerContext",
    "ControllerFactory",
    "ControllerManager",
    "ManagedController",
    "NamespaceController",
]
