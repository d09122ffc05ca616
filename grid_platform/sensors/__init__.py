"""Schedules and sensors; all start RUNNING so `make run` really runs them."""
