"""`harness conformance NAME`: the suite a backend must pass before its numbers are compared.

`cases` holds the cases, `suite` runs them, `closed_form` states the optimizer steps the
optimizer cases expect in closed form."""
