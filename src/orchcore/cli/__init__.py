"""The `orch` command line: thin verbs over the engine, each with --json."""
