"""Training: the config, the task (data, model, step, callbacks), multi-worker and hyperparameter search."""
