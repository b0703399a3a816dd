"""Running other frameworks' own unittest suites against xent's dialects."""
