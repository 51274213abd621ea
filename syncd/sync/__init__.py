"""One pass: plan (pure), orchestrate (engine), act (transfer), and settle what is unknown."""
