"""Tests of what a new user runs first: tools/demo, tools/start.sh, the Slurm script and the RBAC yaml."""
