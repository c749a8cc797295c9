"""Test helpers shared by several test folders (on sys.path via pytest's `pythonpath`)."""
