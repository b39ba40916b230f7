"""Engine compiler, program format and golden executor (docs/engine.md)."""
