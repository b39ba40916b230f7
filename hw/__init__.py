"""Engine RTL in Amaranth 0.5: the engine (engine.py) and its arithmetic units."""
