"""The `readiness` command line tool: asks the service over HTTP, as any client does
(docs/integrations/cli.md)."""
