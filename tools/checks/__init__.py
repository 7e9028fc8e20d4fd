"""Helpers of the long must-show checks (tools/*_check.py)."""
