"""The kubelet half of the agent: node registration, status and lease (pods come later).

Modules: ``machine`` (reading the host), ``node_status`` (the Node object), ``lease``
(heartbeats). Each module states its own concurrency contract.
"""
