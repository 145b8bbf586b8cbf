"""Environment suites behind one observation contract: gymnasium, dm_control, Atari."""
