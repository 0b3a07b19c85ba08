"""The six edges of the triangle, one module per direction (a method variant adds `_<name>`): each module's
methods register themselves (engine/methods.py) and engine/registry.py imports every module named here."""
