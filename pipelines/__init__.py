"""KFP pipeline definitions: wiring only."""
