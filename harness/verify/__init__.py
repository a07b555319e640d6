"""How a run is judged: `tolerances` (every bound, with its numerical reason, and the error
metric), `oracle` (finite differences of a backend's own loss), `same_point` (every backend
evaluated at the reference's parameters) and `verdict` (the checks and the verdict)."""
