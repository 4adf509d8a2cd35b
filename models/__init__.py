"""Data only: ARI resources and events, RCML verbs and nouns, the number configuration."""
