"""One router per resource: jobs, datasets, operations."""
