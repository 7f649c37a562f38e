"""`kgen graph`: the lab drawn (docs/reference.md, `kgen graph`). See picture.py for the model.

Pure, like generator.render: the command line (generator/cli/graph.py) hands in a
Cluster, a StatusReport when the lab runs and a TraceResult to overlay; nothing
here asks Docker or reads a lab's files.
"""
