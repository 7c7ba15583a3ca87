"""The Flotilla agent: what runs on every machine (kubelet, and later the proxy).

Layering: imports only ``control.api``, ``control.client`` and ``control.runtime``
(tests/test_layering.py checks it). Entry point: :func:`agent.main.run_agent`.
"""
