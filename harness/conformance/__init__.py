"""`harness conformance NAME`: the suite a backend must pass before its numbers are compared.

`candidates` holds the specs the cases run on, `cases` the cases, `suite` runs them. The
reference is the textbook `numpy` backend; the optimizer cases expect what `harness.optim`
computes."""
