"""DropHost: a self-hosted static-site deployer for a LAN."""

__version__ = "0.1.0"
