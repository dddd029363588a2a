"""The closed loop: triggers, retraining cycles, rollout decisions, rollback."""
