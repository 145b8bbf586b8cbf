"""Episode stores (HDF5), replay and their maintenance."""
