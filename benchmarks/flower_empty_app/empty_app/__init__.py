"""An empty Flower app (the deployment engine's floor per round trip)."""
