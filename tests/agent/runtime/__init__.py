"""Tests of the real process runtime (agent/runtime/process.py and its helpers)."""
