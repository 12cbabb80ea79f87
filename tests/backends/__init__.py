"""The event backends: the contract every one passes, and each one's own deployments."""
