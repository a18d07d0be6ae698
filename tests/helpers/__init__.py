"""Test-only builders: stand-ins for networks and source layouts the shipped code must not carry."""
