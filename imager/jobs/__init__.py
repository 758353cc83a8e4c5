"""The job runners that the agent and the CLI both execute (erase, uncover,
deploy), behind the JobStore protocol (imager.jobs.store)."""
