"""The figures of a results folder: `folder` decides which images a folder gets and writes
them; `training` and `summary` draw them; `style` is the shared look."""
