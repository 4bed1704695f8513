"""Analysis of results directories: tables, figures, parameter sweeps (imported as stemflow.analysis).

`load` reads results and manifests into one DataFrame, `tables` aggregates, `figures` draws,
`run` decides what the data supports and writes it, `sweep` runs the simulator over a grid, and
`__main__` is the command line. Nothing here simulates, emulates or routes.
"""
