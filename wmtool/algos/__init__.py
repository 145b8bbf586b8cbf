"""The algorithm layer: one module per algorithm family, holding its builder (world model +
behaviour + optimiser groups), its exportable acting policy and anything else only it has.
Registered by name in wmtool/registry.py; the engine and CLI reach them only from there.
Imports run downwards only: algos -> models, behavior, nets; never engine or cli."""
