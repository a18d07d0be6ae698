"""Test helpers: builders of fake inputs and read-only views that shipped code does not need."""
