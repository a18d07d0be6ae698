"""Test-only builders and read-only views: stand-ins for networks and source layouts, and readers of what a
study wrote, that the shipped code must not carry."""
