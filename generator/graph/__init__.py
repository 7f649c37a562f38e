"""`kgen graph`: the lab drawn (docs/reference.md, `kgen graph`). See picture.py for the model."""
