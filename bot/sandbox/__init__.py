"""Sandbox mode: local stand-ins for the outside services, speaking their real protocols."""
