"""`acd api`: agent control, supervisor views, live updates and the built-in wallboard."""
