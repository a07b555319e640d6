"""A catalogue of realistic backprop and optimizer bugs, each with the diagnosis it must get."""
