from reconciler.cli import console

raise SystemExit(console())
