"""The demo estate, its stand-in agent and the local run behind scripts/demo."""
