"""The service proxy of an agent: Services' virtual IPs and node ports to their endpoints."""
