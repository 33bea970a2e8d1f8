"""The parts of the training engine (:mod:`mobilebert_kit.training.engine` puts them together).

- :mod:`.state`: where training stands (step, epoch, position in the epoch, partial losses,
  history, best metric, patience), saved with every checkpoint.
- :mod:`.checkpoint`: atomic checkpoints with RNG state, pruning of old ones, and resume that
  refuses a checkpoint made with other options.
- :mod:`.hooks`: what happens around the steps: the progress bar, the fault-injection test hook,
  and evaluation with best-epoch selection and early stopping.
- :mod:`.stages`: what the training stages (finetune, distill) share around the engine.
"""
