"""KFP component definitions: interface only; the work is done by packwise."""
