"""The dashboard: every report as a static site (`kimi-student dashboard`)."""
