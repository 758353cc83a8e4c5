"""The registry's lifecycle: drives, machines, jobs, intake and deployments over
imager.store, every state move checked against the lifecycle table."""
