"""`kgen graph`: the lab drawn (lab contract §6). See picture.py for the model."""
