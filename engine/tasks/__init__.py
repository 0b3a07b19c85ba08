"""Runs beside the edges of the triangle: best-of-N decoding with a reward, and a reward model learned from
golden-labelled data (Sun et al. 2024). Their methods register like an edge's (engine/methods.py)."""
