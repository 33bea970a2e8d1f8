"""Training: the one loop (:mod:`.engine`) that fine-tuning, distillation and compress's recovery share, and its parts.

- :mod:`.engine`: the loop (precision, accumulation, checkpoint/resume, progress, evaluation).
- :mod:`.state`: where training stands (step, epoch, position in the epoch, partial losses,
  history, best metric, patience), saved with every checkpoint.
- :mod:`.checkpoint`: atomic checkpoints with RNG state, pruning of old ones, and resume that
  refuses a checkpoint made with other options.
- :mod:`.hooks`: what happens around the steps: the progress bar, the fault-injection test hook,
  and evaluation with best-epoch selection and early stopping.
- :mod:`.losses`: soft + hard distillation loss, hidden-state and attention losses.
- :mod:`.teacher_cache` / :mod:`.int8_teacher`: distillation's cached teacher outputs, and the teacher
  pass in checked dynamic INT8.
- :mod:`.common`: what the training stages (finetune, distill) share around the engine.
"""
